//! Error types of the FHIRPath engine.
//!
//! Owns: `ParseError` (syntax/semantic problems found at compile time, with position and what was
//! expected) and `FhirPathError` (everything that can go wrong while evaluating).
//! Must not: carry patient data — messages name functions, types and positions, never values.

use thiserror::Error;

/// A problem found while compiling an expression.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} at line {line}, column {column} (offset {offset})")]
pub struct ParseError {
    /// Byte offset into the expression text.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What went wrong, including what was expected.
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(text: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(text.len());
        let mut line = 1;
        let mut column = 1;
        for (i, ch) in text.char_indices() {
            if i >= offset {
                break;
            }
            if ch == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        ParseError {
            offset,
            line,
            column,
            message: message.into(),
        }
    }
}

/// A problem while evaluating an expression.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FhirPathError {
    /// The expression did not compile.
    #[error("FHIRPath syntax error: {0}")]
    Parse(#[from] ParseError),
    /// The expression is well-formed but evaluation failed (e.g. `single()` on two items,
    /// a function given a collection of more than one item, an unknown type name).
    #[error("FHIRPath evaluation error: {0}")]
    Evaluation(String),
    /// The engine cannot decide the answer (e.g. `memberOf` on a ValueSet that needs a
    /// terminology server, `conformsTo` without a hook). Validators report this as information.
    #[error("FHIRPath expression cannot be evaluated: {0}")]
    CannotEvaluate(String),
}

pub(crate) fn eval_err<T>(msg: impl Into<String>) -> Result<T, FhirPathError> {
    Err(FhirPathError::Evaluation(msg.into()))
}
