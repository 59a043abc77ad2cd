//! FHIRPath parser: tokens to `ast::Node`, with operator precedence, literals (numbers,
//! quantities, dates) and compile-time function resolution and arity checks.
//!
//! Owns: grammar and syntax/semantic errors with position and what was expected.
//! Must not: evaluate anything.

use super::ast::{BinOp, Func, Literal, Node, TypeSpec};
use super::datetime::PartialDate;
use super::error::ParseError;
use super::lexer::{tokenize, Tok, Token};
use super::quantity::{calendar_unit, Quantity};
use rust_decimal::Decimal;
use std::str::FromStr;

const MAX_DEPTH: usize = 200;

pub fn parse(text: &str) -> Result<Node, ParseError> {
    let tokens = tokenize(text)?;
    let mut p = Parser {
        text,
        tokens,
        pos: 0,
        depth: 0,
    };
    let node = p.expression(0)?;
    match p.peek() {
        Tok::Eof => Ok(node),
        other => Err(p.err_here(format!(
            "unexpected {}: expected an operator or end of expression",
            describe(other)
        ))),
    }
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier `{s}`"),
        Tok::Delimited(s) => format!("identifier `{s}`"),
        Tok::Str(_) => "string".into(),
        Tok::Number(n) => format!("number `{n}`"),
        Tok::DateTime(d) => format!("date/time `@{d}`"),
        Tok::Dollar(d) => format!("`${d}`"),
        Tok::Env(e) => format!("`%{e}`"),
        Tok::Punct(p) => format!("`{p}`"),
        Tok::Eof => "end of expression".into(),
    }
}

/// (binding power, op) of an infix operator token.
fn infix(t: &Tok) -> Option<(u8, BinOp)> {
    Some(match t {
        Tok::Punct(p) => match *p {
            "*" => (90, BinOp::Mul),
            "/" => (90, BinOp::Div),
            "+" => (80, BinOp::Add),
            "-" => (80, BinOp::Sub),
            "&" => (80, BinOp::Concat),
            "|" => (60, BinOp::Union),
            "<" => (50, BinOp::Lt),
            ">" => (50, BinOp::Gt),
            "<=" => (50, BinOp::Le),
            ">=" => (50, BinOp::Ge),
            "=" => (40, BinOp::Eq),
            "!=" => (40, BinOp::Ne),
            "~" => (40, BinOp::Equiv),
            "!~" => (40, BinOp::NotEquiv),
            _ => return None,
        },
        Tok::Ident(s) => match s.as_str() {
            "div" => (90, BinOp::IntDiv),
            "mod" => (90, BinOp::Mod),
            "in" => (30, BinOp::In),
            "contains" => (30, BinOp::Contains),
            "and" => (20, BinOp::And),
            "or" => (10, BinOp::Or),
            "xor" => (10, BinOp::Xor),
            "implies" => (5, BinOp::Implies),
            _ => return None,
        },
        _ => return None,
    })
}

const TYPE_BP: u8 = 70;

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.pos).map_or(&Tok::Eof, |t| &t.tok)
    }
    fn offset(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.text.len(), |t| t.offset)
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }
    fn err_here(&self, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.text, self.offset(), msg)
    }
    fn expect(&mut self, p: &'static str) -> Result<(), ParseError> {
        if self.peek() == &Tok::Punct(p) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err_here(format!("expected `{p}`, found {}", describe(self.peek()))))
        }
    }

    fn expression(&mut self, min_bp: u8) -> Result<Node, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_here("expression nested too deeply"));
        }
        let mut lhs = self.unary()?;
        loop {
            let t = self.peek().clone();
            if let Tok::Ident(s) = &t {
                if (s == "is" || s == "as") && TYPE_BP > min_bp {
                    self.pos += 1;
                    let ts = self.type_spec()?;
                    lhs = if s == "is" {
                        Node::Is(Box::new(lhs), ts)
                    } else {
                        Node::As(Box::new(lhs), ts)
                    };
                    continue;
                }
            }
            let Some((bp, op)) = infix(&t) else { break };
            if bp <= min_bp {
                break;
            }
            self.pos += 1;
            let rhs = self.expression(bp)?;
            lhs = Node::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn type_spec(&mut self) -> Result<TypeSpec, ParseError> {
        let first = match self.next() {
            Tok::Ident(s) | Tok::Delimited(s) => s,
            other => {
                self.pos -= 1;
                return Err(
                    self.err_here(format!("expected a type name, found {}", describe(&other)))
                );
            }
        };
        if self.peek() == &Tok::Punct(".") {
            if let Some(Tok::Ident(s) | Tok::Delimited(s)) =
                self.tokens.get(self.pos + 1).map(|t| t.tok.clone())
            {
                self.pos += 2;
                return Ok(TypeSpec {
                    namespace: Some(first),
                    name: s,
                });
            }
        }
        Ok(TypeSpec {
            namespace: None,
            name: first,
        })
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_here("expression nested too deeply"));
        }
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Result<Node, ParseError> {
        match self.peek() {
            Tok::Punct("-") => {
                self.pos += 1;
                let inner = self.unary()?;
                Ok(match inner {
                    Node::Literal(Literal::Int(i)) => Node::Literal(Literal::Int(-i)),
                    Node::Literal(Literal::Dec(d)) => Node::Literal(Literal::Dec(-d)),
                    Node::Literal(Literal::Quantity(mut q)) => {
                        q.value = -q.value;
                        Node::Literal(Literal::Quantity(q))
                    }
                    other => Node::Neg(Box::new(other)),
                })
            }
            Tok::Punct("+") => {
                self.pos += 1;
                self.unary()
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Node, ParseError> {
        let mut node = self.term()?;
        loop {
            match self.peek() {
                Tok::Punct(".") => {
                    self.pos += 1;
                    let start = self.offset();
                    let name = match self.next() {
                        Tok::Ident(s) | Tok::Delimited(s) => s,
                        other => {
                            self.pos -= 1;
                            return Err(self.err_here(format!(
                                "expected an identifier or function after `.`, found {}",
                                describe(&other)
                            )));
                        }
                    };
                    if self.peek() == &Tok::Punct("(") {
                        node = self.call(Some(node), &name, start)?;
                    } else {
                        node = Node::Path(Box::new(node), name);
                    }
                }
                Tok::Punct("[") => {
                    self.pos += 1;
                    let idx = self.expression(0)?;
                    self.expect("]")?;
                    node = Node::Index(Box::new(node), Box::new(idx));
                }
                _ => return Ok(node),
            }
        }
    }

    fn call(&mut self, target: Option<Node>, name: &str, start: usize) -> Result<Node, ParseError> {
        self.expect("(")?;
        let mut args = Vec::new();
        if self.peek() != &Tok::Punct(")") {
            loop {
                args.push(self.expression(0)?);
                if self.peek() == &Tok::Punct(",") {
                    self.pos += 1;
                    continue;
                }
                break;
            }
        }
        self.expect(")")?;
        let Some((func, min, max)) = Func::lookup(name) else {
            return Err(ParseError::at(
                self.text,
                start,
                format!("unknown function `{name}`"),
            ));
        };
        if args.len() < min || args.len() > max {
            let want = if min == max {
                format!("{min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(ParseError::at(
                self.text,
                start,
                format!(
                    "function `{name}` expects {want} argument(s), found {}",
                    args.len()
                ),
            ));
        }
        if matches!(func, Func::Is | Func::As | Func::OfType) {
            let ts = match args.pop() {
                Some(Node::Member(n)) => TypeSpec {
                    namespace: None,
                    name: n,
                },
                Some(Node::Path(inner, n)) => match *inner {
                    Node::Member(ns) => TypeSpec {
                        namespace: Some(ns),
                        name: n,
                    },
                    _ => {
                        return Err(ParseError::at(
                            self.text,
                            start,
                            format!("`{name}` expects a type name"),
                        ))
                    }
                },
                _ => {
                    return Err(ParseError::at(
                        self.text,
                        start,
                        format!("`{name}` expects a type name"),
                    ))
                }
            };
            args.push(Node::Type(ts));
        }
        Ok(Node::Call {
            target: target.map(Box::new),
            func,
            args,
        })
    }

    fn term(&mut self) -> Result<Node, ParseError> {
        let start = self.offset();
        let tok = self.next();
        match tok {
            Tok::Number(n) => {
                let lit = if n.contains('.') {
                    Decimal::from_str(&n)
                        .map(Literal::Dec)
                        .map_err(|_| ParseError::at(self.text, start, "invalid decimal"))?
                } else {
                    match n.parse::<i64>() {
                        Ok(i) => Literal::Int(i),
                        Err(_) => Decimal::from_str(&n)
                            .map(Literal::Dec)
                            .map_err(|_| ParseError::at(self.text, start, "number out of range"))?,
                    }
                };
                // quantity: number followed by a unit string or a calendar keyword
                let value = match &lit {
                    Literal::Int(i) => Decimal::from(*i),
                    Literal::Dec(d) => *d,
                    _ => Decimal::ZERO,
                };
                match self.peek().clone() {
                    Tok::Str(u) => {
                        self.pos += 1;
                        Ok(Node::Literal(Literal::Quantity(Quantity::new(value, &u))))
                    }
                    Tok::Ident(w) if calendar_unit(&w).is_some() => {
                        self.pos += 1;
                        Ok(Node::Literal(Literal::Quantity(Quantity::new(value, &w))))
                    }
                    _ => Ok(Node::Literal(lit)),
                }
            }
            Tok::Str(s) => Ok(Node::Literal(Literal::Str(s.into()))),
            Tok::DateTime(d) => self.date_literal(&d, start),
            Tok::Dollar(d) => match d.as_str() {
                "this" => Ok(Node::This),
                "index" => Ok(Node::IndexVar),
                "total" => Ok(Node::Total),
                _ => Err(ParseError::at(
                    self.text,
                    start,
                    format!("unknown variable `${d}`: expected $this, $index or $total"),
                )),
            },
            Tok::Env(e) => Ok(Node::Env(e)),
            Tok::Punct("(") => {
                let e = self.expression(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("{") => {
                self.expect("}")?;
                Ok(Node::Literal(Literal::Empty))
            }
            Tok::Ident(s) => {
                if self.peek() == &Tok::Punct("(") {
                    return self.call(None, &s, start);
                }
                match s.as_str() {
                    "true" => Ok(Node::Literal(Literal::Bool(true))),
                    "false" => Ok(Node::Literal(Literal::Bool(false))),
                    _ => Ok(Node::Member(s)),
                }
            }
            Tok::Delimited(s) => Ok(Node::Member(s)),
            other => {
                self.pos = self.pos.saturating_sub(1);
                Err(ParseError::at(
                    self.text,
                    start,
                    format!(
                        "expected an expression (identifier, literal, `(`, function), found {}",
                        describe(&other)
                    ),
                ))
            }
        }
    }

    fn date_literal(&self, d: &str, start: usize) -> Result<Node, ParseError> {
        let bad = || {
            ParseError::at(
                self.text,
                start,
                format!("invalid date/time literal `@{d}`"),
            )
        };
        if let Some(t) = d.strip_prefix('T') {
            return PartialDate::parse_time(t)
                .map(|t| Node::Literal(Literal::Time(t)))
                .ok_or_else(bad);
        }
        if d.contains('T') {
            return PartialDate::parse_datetime(d)
                .map(|t| Node::Literal(Literal::DateTime(t)))
                .ok_or_else(bad);
        }
        PartialDate::parse_date(d)
            .map(|t| Node::Literal(Literal::Date(t)))
            .ok_or_else(bad)
    }
}
