//! String functions: search, substring, case, replace, regular expressions (cached), length,
//! characters, trim/split/join, encode/decode, escape/unescape.
//!
//! Owns: the string-manipulation FHIRPath functions.
//! Must not: navigate JSON.

use super::{boolean, single, Call};
use crate::fhirpath::ast::Func;
use crate::fhirpath::error::{eval_err, FhirPathError};
use crate::fhirpath::eval::EvalResult;
use crate::fhirpath::value::{Collection, Item, Prim, Text};
use regex::Regex;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static REGEX_CACHE: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

/// Compiles (or fetches from the per-thread cache) a regex; `full` anchors it.
fn with_regex<T>(
    pattern: &str,
    full: bool,
    f: impl FnOnce(&Regex) -> T,
) -> Result<T, FhirPathError> {
    let key = if full {
        format!("^(?:{pattern})$")
    } else {
        pattern.to_string()
    };
    REGEX_CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        if let Some(r) = cache.get(&key) {
            return Ok(f(r));
        }
        let re = regex::RegexBuilder::new(&key)
            .dot_matches_new_line(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| FhirPathError::Evaluation(format!("invalid regular expression: {e}")))?;
        let out = f(&re);
        if cache.len() > 512 {
            cache.clear();
        }
        cache.insert(key, re);
        Ok(out)
    })
}

fn chars_substring(s: &str, start: i64, len: Option<i64>) -> Option<String> {
    let n = s.chars().count() as i64;
    if start < 0 || start >= n {
        return None;
    }
    let take = match len {
        Some(l) if l <= 0 => 0,
        Some(l) => l,
        None => n,
    };
    Some(s.chars().skip(start as usize).take(take as usize).collect())
}

fn char_index(s: &str, byte: usize) -> i64 {
    s[..byte].chars().count() as i64
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8], url: bool) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                let c = B64[(n >> (18 - 6 * i) & 63) as usize];
                out.push(match (url, c) {
                    (true, b'+') => '-',
                    (true, b'/') => '_',
                    _ => c as char,
                });
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        bits = bits << 6 | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    Some(out)
}

pub fn call<'a>(cx: &Call<'_, '_, 'a>, func: Func, input: Collection<'a>) -> EvalResult<'a> {
    let model = cx.ev.env.model;
    if func == Func::Join {
        return join(cx, input);
    }
    let Some(item) = single(&input, func.name())? else {
        return Ok(Collection::new());
    };
    let prim = item.prim(model);
    let s: &str = match (&prim, func) {
        (Prim::Str(s), _) => s,
        (_, Func::ToChars | Func::Length) => {
            return eval_err(format!("{}() expects a string", func.name()))
        }
        _ => return eval_err(format!("{}() expects a string input", func.name())),
    };
    let str_out = |v: String| -> Collection<'a> { smallvec::smallvec![Item::Str(Text::from(v))] };
    macro_rules! arg {
        ($i:expr) => {
            match cx.str_arg($i)? {
                Some(a) => a,
                None => return Ok(Collection::new()),
            }
        };
    }
    Ok(match func {
        Func::IndexOf => {
            let a = arg!(0);
            smallvec::smallvec![Item::Int(s.find(&*a).map_or(-1, |b| char_index(s, b)))]
        }
        Func::LastIndexOf => {
            let a = arg!(0);
            smallvec::smallvec![Item::Int(s.rfind(&*a).map_or(-1, |b| char_index(s, b)))]
        }
        Func::Substring => {
            let Some(start) = cx.int_arg(0)? else {
                return Ok(Collection::new());
            };
            let len = if cx.args.len() > 1 {
                cx.int_arg(1)?
            } else {
                None
            };
            chars_substring(s, start, len)
                .map(str_out)
                .unwrap_or_default()
        }
        Func::StartsWith => boolean(s.starts_with(&*arg!(0))),
        Func::EndsWith => boolean(s.ends_with(&*arg!(0))),
        Func::ContainsStr => boolean(s.contains(&*arg!(0))),
        Func::Upper => str_out(s.to_uppercase()),
        Func::Lower => str_out(s.to_lowercase()),
        Func::Replace => {
            let (pat, rep) = (arg!(0), arg!(1));
            if pat.is_empty() {
                let mut out = rep.to_string();
                for c in s.chars() {
                    out.push(c);
                    out.push_str(&rep);
                }
                str_out(out)
            } else {
                str_out(s.replace(&*pat, &rep))
            }
        }
        Func::Matches => boolean(with_regex(&arg!(0), false, |r| r.is_match(s))?),
        Func::MatchesFull => boolean(with_regex(&arg!(0), true, |r| r.is_match(s))?),
        Func::ReplaceMatches => {
            let (pat, rep) = (arg!(0), arg!(1));
            if pat.is_empty() {
                return Ok(str_out(s.to_string()));
            }
            str_out(with_regex(&pat, false, |r| {
                r.replace_all(s, rep.as_str()).into_owned()
            })?)
        }
        Func::Length => smallvec::smallvec![Item::Int(s.chars().count() as i64)],
        Func::ToChars => s
            .chars()
            .map(|c| Item::Str(Text::from(c.to_string())))
            .collect(),
        Func::Trim => str_out(s.trim().to_string()),
        Func::Split => {
            let sep = arg!(0);
            s.split(sep.as_str())
                .map(|p| Item::Str(Text::from(p.to_string())))
                .collect()
        }
        Func::Encode | Func::Decode => {
            let fmt = arg!(0);
            let out = match (func, fmt.as_str()) {
                (Func::Encode, "base64") => Some(b64_encode(s.as_bytes(), false)),
                (Func::Encode, "urlbase64") => Some(b64_encode(s.as_bytes(), true)),
                (Func::Encode, "hex") => Some(s.bytes().map(|b| format!("{b:02x}")).collect()),
                (Func::Decode, "base64" | "urlbase64") => {
                    b64_decode(s).and_then(|b| String::from_utf8(b).ok())
                }
                (Func::Decode, "hex") => {
                    let bytes: Option<Vec<u8>> = (0..s.len() / 2)
                        .map(|i| {
                            s.get(2 * i..2 * i + 2)
                                .and_then(|h| u8::from_str_radix(h, 16).ok())
                        })
                        .collect();
                    bytes.and_then(|b| String::from_utf8(b).ok())
                }
                _ => None,
            };
            out.map(str_out).unwrap_or_default()
        }
        Func::Escape | Func::Unescape => {
            let fmt = arg!(0);
            let out = match (func, fmt.as_str()) {
                (Func::Escape, "html") => s
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&quot;")
                    .replace('\'', "&#39;"),
                (Func::Escape, "json") => s.replace('\\', "\\\\").replace('"', "\\\""),
                (Func::Unescape, "html") => s
                    .replace("&quot;", "\"")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&#39;", "'")
                    .replace("&amp;", "&"),
                (Func::Unescape, "json") => s.replace("\\\"", "\"").replace("\\\\", "\\"),
                _ => return Ok(Collection::new()),
            };
            str_out(out)
        }
        _ => return eval_err(format!("{}() is not a string function", func.name())),
    })
}

/// `join()` works on the whole collection, not on a single string.
pub fn join<'a>(cx: &Call<'_, '_, 'a>, input: Collection<'a>) -> EvalResult<'a> {
    let model = cx.ev.env.model;
    let sep = if cx.args.is_empty() {
        String::new()
    } else {
        cx.str_arg(0)?.map(|t| t.to_string()).unwrap_or_default()
    };
    let mut parts = Vec::with_capacity(input.len());
    for i in &input {
        match i.prim(model) {
            Prim::Str(s) => parts.push(s.to_string()),
            _ => return eval_err("join() expects strings"),
        }
    }
    Ok(smallvec::smallvec![Item::Str(Text::from(parts.join(&sep)))])
}
