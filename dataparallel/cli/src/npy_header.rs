//! The `.npy` header dict (`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 8), }`),
//! parsed without trusting it.
//!
//! numpy writes the header as a Python literal. This parser takes the subset numpy writes
//! (dicts, tuples, lists, strings, integers, `True`/`False`/`None`), nested at most
//! [`MAX_DEPTH`] deep, and keeps every dimension as a `u64` so the caller checks their
//! product with checked arithmetic. It exists because `npyz`'s header reader computes the
//! element count and strides with unchecked products (a panic in debug builds and a wrong
//! size in release builds for shapes such as `(2**63, 4)`).

use std::fmt::Write as _;

use dataparallel::quote::quote;

/// Deepest nesting of brackets accepted (a structured dtype nests a few levels; a header of
/// 10 000 `[` must not recurse 10 000 deep).
pub const MAX_DEPTH: usize = 16;

/// The dtype field of a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Descr {
    /// A plain type string such as `<f4`.
    Plain(String),
    /// A structured dtype (a list of fields), shown as a short summary.
    Structured(String),
}

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `descr`.
    pub descr: Descr,
    /// `fortran_order`.
    pub fortran_order: bool,
    /// `shape`, as written.
    pub shape: Vec<u64>,
}

/// A Python literal value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    /// A non-negative integer that fits in a `u64`.
    Int(u64),
    /// An integer that is negative or above `u64::MAX` (kept as its text).
    BadInt(String),
    Bool(bool),
    None,
    Seq(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
            self.chars.next();
        }
    }

    fn expect_end(&mut self) -> Result<(), String> {
        self.skip_space();
        match self.chars.next() {
            None => Ok(()),
            Some(c) => Err(format!(
                "unexpected {} after the dict",
                quote(&c.to_string())
            )),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested more than {MAX_DEPTH} deep"));
        }
        self.skip_space();
        match self.chars.peek().copied() {
            None => Err("it ends too early".to_owned()),
            Some(quote_char @ ('\'' | '"')) => {
                self.chars.next();
                self.string(quote_char)
            }
            Some('(') => self.sequence(')', depth),
            Some('[') => self.sequence(']', depth),
            Some('{') => self.dict(depth),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => Ok(self.int()),
            Some(c) if c.is_ascii_alphabetic() => self.word(),
            Some(c) => Err(format!("unexpected {}", quote(&c.to_string()))),
        }
    }

    fn string(&mut self, end: char) -> Result<Value, String> {
        let mut text = String::new();
        loop {
            match self.chars.next() {
                None => return Err("a string is not closed".to_owned()),
                Some('\\') => match self.chars.next() {
                    Some(c) => text.push(c),
                    None => return Err("a string is not closed".to_owned()),
                },
                Some(c) if c == end => return Ok(Value::Str(text)),
                Some(c) => text.push(c),
            }
        }
    }

    fn int(&mut self) -> Value {
        let mut text = String::new();
        while let Some(&c) = self.chars.peek() {
            if c.is_ascii_digit() || ((c == '-' || c == '+') && text.is_empty()) {
                text.push(c);
                self.chars.next();
            } else {
                break;
            }
        }
        // Python 2's long suffix, as old numpy wrote (`3L`).
        if self.chars.peek().is_some_and(|&c| c == 'L' || c == 'l') {
            self.chars.next();
        }
        let digits = text.strip_prefix('+').unwrap_or(&text);
        match digits.parse::<u64>() {
            Ok(n) => Value::Int(n),
            Err(_) => Value::BadInt(text),
        }
    }

    fn word(&mut self) -> Result<Value, String> {
        let mut word = String::new();
        while let Some(&c) = self.chars.peek() {
            if !c.is_ascii_alphanumeric() || word.len() > 8 {
                break;
            }
            word.push(c);
            self.chars.next();
        }
        match word.as_str() {
            "True" => Ok(Value::Bool(true)),
            "False" => Ok(Value::Bool(false)),
            "None" => Ok(Value::None),
            _ => Err(format!("unexpected word {}", quote(&word))),
        }
    }

    fn sequence(&mut self, end: char, depth: usize) -> Result<Value, String> {
        self.chars.next();
        let mut items = Vec::new();
        loop {
            self.skip_space();
            if self.chars.peek() == Some(&end) {
                self.chars.next();
                return Ok(Value::Seq(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip_space();
            match self.chars.next() {
                Some(',') => {}
                Some(c) if c == end => return Ok(Value::Seq(items)),
                _ => return Err(format!("expected `,` or `{end}` in a sequence")),
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Value, String> {
        self.chars.next();
        let mut entries = Vec::new();
        loop {
            self.skip_space();
            if self.chars.peek() == Some(&'}') {
                self.chars.next();
                return Ok(Value::Dict(entries));
            }
            let key = self.value(depth + 1)?;
            self.skip_space();
            if self.chars.next() != Some(':') {
                return Err("expected `:` after a dict key".to_owned());
            }
            let value = self.value(depth + 1)?;
            entries.push((key, value));
            self.skip_space();
            match self.chars.next() {
                Some(',') => {}
                Some('}') => return Ok(Value::Dict(entries)),
                _ => return Err("expected `,` or `}` in the dict".to_owned()),
            }
        }
    }
}

/// A short summary of a structured dtype for messages: its field names.
fn summary(fields: &[Value]) -> String {
    let mut text = String::new();
    for (i, field) in fields.iter().take(4).enumerate() {
        let name = match field {
            Value::Seq(parts) => match parts.first() {
                Some(Value::Str(name)) => name.as_str(),
                _ => "?",
            },
            _ => "?",
        };
        let _ = write!(text, "{}{}", if i > 0 { ", " } else { "" }, quote(name));
    }
    if fields.len() > 4 {
        let _ = write!(text, ", … {} fields", fields.len());
    }
    format!("fields {text}")
}

/// Parses the header dict's text.
///
/// # Errors
///
/// A short reason (no header text beyond a quoted, bounded token): not a dict, a key
/// missing or of the wrong type, a negative or too-large dimension, bad syntax.
pub fn parse(text: &str) -> Result<Header, String> {
    let mut parser = Parser {
        chars: text.chars().peekable(),
    };
    let Value::Dict(entries) = parser.value(0)? else {
        return Err("it is not a dict".to_owned());
    };
    parser.expect_end()?;
    let field = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(k) if k == key))
            .map(|(_, v)| v)
            .ok_or_else(|| format!("it has no '{key}'"))
    };
    let descr = match field("descr")? {
        Value::Str(s) => Descr::Plain(s.clone()),
        Value::Seq(fields) => Descr::Structured(summary(fields)),
        _ => return Err("'descr' is neither a string nor a list".to_owned()),
    };
    let fortran_order = match field("fortran_order")? {
        Value::Bool(b) => *b,
        _ => return Err("'fortran_order' is not True or False".to_owned()),
    };
    let shape = match field("shape")? {
        Value::Seq(dims) => dims
            .iter()
            .map(|d| match d {
                Value::Int(n) => Ok(*n),
                Value::BadInt(text) => Err(format!(
                    "dimension {} is negative or above 2^64",
                    quote(text)
                )),
                _ => Err("'shape' holds something other than integers".to_owned()),
            })
            .collect::<Result<Vec<u64>, String>>()?,
        _ => return Err("'shape' is not a tuple".to_owned()),
    };
    Ok(Header {
        descr,
        fortran_order,
        shape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_headers_parse() {
        let h = parse("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 8), }   \n").unwrap();
        assert_eq!(h.descr, Descr::Plain("<f4".to_owned()));
        assert!(!h.fortran_order);
        assert_eq!(h.shape, vec![2, 8]);
        let h = parse("{\"descr\":\"|u1\",\"fortran_order\":True,\"shape\":(3L,)}").unwrap();
        assert_eq!((h.fortran_order, h.shape), (true, vec![3]));
        assert_eq!(
            parse("{'descr': '<i8', 'fortran_order': False, 'shape': ()}")
                .unwrap()
                .shape,
            Vec::<u64>::new()
        );
        let h =
            parse("{'descr': [('a', '<f4'), ('b', '<i2')], 'fortran_order': False, 'shape': (1,)}")
                .unwrap();
        assert_eq!(h.descr, Descr::Structured(r#"fields "a", "b""#.to_owned()));
        let big =
            parse("{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 8)}")
                .unwrap();
        assert_eq!(big.shape, vec![u64::MAX, 8]);
    }

    #[test]
    fn bad_headers_are_short_reasons() {
        for (text, needle) in [
            ("", "ends too early"),
            ("[1, 2]", "not a dict"),
            ("{'descr': '<f4', 'fortran_order': False}", "no 'shape'"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 8)}",
                "negative",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551616,)}",
                "above 2^64",
            ),
            ("{'descr': '<f4'", "expected"),
            ("{'descr': '<f4'} trailing", "after the dict"),
            ("{'a': bogus}", "unexpected word"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).unwrap_err().contains("nested"));
    }
}
