//! FHIRPath lexer: text to tokens with byte offsets.
//!
//! Owns: tokenising (identifiers, delimited identifiers, strings with escapes, numbers,
//! date/time literals, operators, `$`/`%` names, comments).
//! Must not: know grammar precedence or evaluate anything.

use super::error::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Plain identifier (may be a keyword such as `and`, `is`, `true`).
    Ident(String),
    /// `` `delimited` `` identifier (never a keyword).
    Delimited(String),
    Str(String),
    /// Number text (integer or decimal).
    Number(String),
    /// `@...` literal text without the `@`.
    DateTime(String),
    /// `$this`, `$index`, `$total`.
    Dollar(String),
    /// `%name` with the name.
    Env(String),
    Punct(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub offset: usize,
}

const PUNCTS: [&str; 21] = [
    "!=", "!~", "<=", ">=", ".", "[", "]", "(", ")", "{", "}", ",", "|", "+", "-", "*", "/", "&",
    "=", "~", "<",
];

pub fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            let start = i;
            i += 2;
            loop {
                if i + 1 >= bytes.len() {
                    return Err(ParseError::at(
                        text,
                        start,
                        "unterminated comment: expected `*/`",
                    ));
                }
                if bytes[i] == b'*' && bytes[i + 1] == b'/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(text[start..i].to_string()),
                offset: start,
            });
            continue;
        }
        if c.is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push(Token {
                tok: Tok::Number(text[start..i].to_string()),
                offset: start,
            });
            continue;
        }
        match c {
            b'\'' | b'`' => {
                let (s, next) = read_quoted(text, i, c)?;
                i = next;
                out.push(Token {
                    tok: if c == b'\'' {
                        Tok::Str(s)
                    } else {
                        Tok::Delimited(s)
                    },
                    offset: start,
                });
            }
            b'@' => {
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || matches!(bytes[i], b'-' | b':' | b'.' | b'+'))
                {
                    // a '.' is part of the literal only when followed by a digit (fraction)
                    if bytes[i] == b'.' && !bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit()) {
                        break;
                    }
                    i += 1;
                }
                if i == start + 1 {
                    return Err(ParseError::at(
                        text,
                        start,
                        "expected a date/time after `@`",
                    ));
                }
                out.push(Token {
                    tok: Tok::DateTime(text[start + 1..i].to_string()),
                    offset: start,
                });
            }
            b'$' => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Dollar(text[start + 1..i].to_string()),
                    offset: start,
                });
            }
            b'%' => {
                i += 1;
                let name = match bytes.get(i) {
                    Some(b'`') | Some(b'\'') => {
                        let (s, next) = read_quoted(text, i, bytes[i])?;
                        i = next;
                        s
                    }
                    _ => {
                        let s = i;
                        while i < bytes.len()
                            && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_')
                        {
                            i += 1;
                        }
                        text[s..i].to_string()
                    }
                };
                if name.is_empty() {
                    return Err(ParseError::at(
                        text,
                        start,
                        "expected a variable name after `%`",
                    ));
                }
                out.push(Token {
                    tok: Tok::Env(name),
                    offset: start,
                });
            }
            _ => {
                let rest = &text[i..];
                let p = PUNCTS
                    .iter()
                    .chain([">"].iter())
                    .find(|p| rest.starts_with(**p))
                    .copied();
                match p {
                    Some(p) => {
                        i += p.len();
                        out.push(Token {
                            tok: Tok::Punct(p),
                            offset: start,
                        });
                    }
                    None => {
                        let ch = rest.chars().next().unwrap_or('?');
                        return Err(ParseError::at(
                            text,
                            start,
                            format!("unexpected character `{ch}`"),
                        ));
                    }
                }
            }
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        offset: text.len(),
    });
    Ok(out)
}

fn read_quoted(text: &str, start: usize, quote: u8) -> Result<(String, usize), ParseError> {
    let mut s = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((off, ch)) = chars.next() {
        if ch as u32 == quote as u32 {
            return Ok((s, start + 1 + off + 1));
        }
        if ch == '\\' {
            let Some((_, e)) = chars.next() else { break };
            match e {
                'n' => s.push('\n'),
                'r' => s.push('\r'),
                't' => s.push('\t'),
                'f' => s.push('\u{c}'),
                'u' => {
                    let mut code = 0u32;
                    for _ in 0..4 {
                        let d = chars.next().and_then(|(_, h)| h.to_digit(16));
                        match d {
                            Some(d) => code = code * 16 + d,
                            None => {
                                return Err(ParseError::at(
                                    text,
                                    start,
                                    "invalid `\\u` escape: expected 4 hex digits",
                                ))
                            }
                        }
                    }
                    s.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                other => s.push(other),
            }
            continue;
        }
        s.push(ch);
    }
    let what = if quote == b'\'' {
        "string"
    } else {
        "delimited identifier"
    };
    Err(ParseError::at(
        text,
        start,
        format!("unterminated {what}: expected closing {}", quote as char),
    ))
}
