//! Quoting user-supplied text inside error messages.
//!
//! Names, paths and file contents that reach an error message come from whoever supplied
//! them: a 100 000-character input name or a binary `.npy` header must not turn a one-line
//! error into a screenful of bytes or a terminal escape sequence. [`quote`] renders such text
//! as one short line: double-quoted, control characters and quotes escaped the way Rust's
//! `{:?}` does, and cut after [`QUOTE_MAX_CHARS`] characters with a note of how long the
//! whole was. The engine, the C ABI and the command line all quote through it, so every
//! front-end bounds messages the same way. [`one_line`] is the front-ends' other half: a
//! message that spans lines (a loader's list of attempts, a parser's report) joined into one.

use std::fmt;

/// The most characters of the original text a [`Quoted`] shows before cutting it.
pub const QUOTE_MAX_CHARS: usize = 64;

/// User-supplied text, displayed quoted, escaped and bounded (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Quoted<'a>(&'a str);

/// Quotes `text` for an error message: `"name"`, or `"long prefix…" (100000 bytes)` when cut.
///
/// ```
/// use dataparallel::quote::quote;
///
/// assert_eq!(quote("input").to_string(), r#""input""#);
/// assert_eq!(quote("a\nb").to_string(), r#""a\nb""#);
/// let long = "x".repeat(1000);
/// assert!(quote(&long).to_string().ends_with("…\" (1000 bytes)"));
/// ```
pub fn quote(text: &str) -> Quoted<'_> {
    Quoted(text)
}

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let cut = text
            .char_indices()
            .nth(QUOTE_MAX_CHARS)
            .map_or(text.len(), |(at, _)| at);
        f.write_str("\"")?;
        for c in text[..cut].chars() {
            // `escape_debug` escapes quotes, backslashes, control and non-printable
            // characters, so the output is one line and cannot steer a terminal.
            write!(f, "{}", c.escape_debug())?;
        }
        if cut < text.len() {
            write!(f, "…\" ({} bytes)", text.len())
        } else {
            f.write_str("\"")
        }
    }
}

/// `text` on one line: its non-empty lines, trimmed, joined with `"; "`.
///
/// ```
/// use dataparallel::quote::one_line;
///
/// assert_eq!(one_line("first\n  second  \n\nthird"), "first; second; third");
/// assert_eq!(one_line(" one line "), "one line");
/// ```
pub fn one_line(text: &str) -> String {
    if !text.contains(['\n', '\r']) {
        return text.trim().to_owned();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_quoted_whole() {
        assert_eq!(quote("").to_string(), r#""""#);
        assert_eq!(quote("logits").to_string(), r#""logits""#);
        assert_eq!(
            quote(&"é".repeat(64)).to_string(),
            format!("\"{}\"", "é".repeat(64))
        );
    }

    #[test]
    fn control_characters_and_quotes_are_escaped() {
        assert_eq!(quote("a\"b").to_string(), r#""a\"b""#);
        assert_eq!(quote("\u{1b}[2J\r\n").to_string(), r#""\u{1b}[2J\r\n""#);
        assert!(!quote("a\nb\rc").to_string().contains(['\n', '\r']));
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary_with_its_length() {
        let long = "é".repeat(100_000);
        let shown = quote(&long).to_string();
        assert_eq!(
            shown,
            format!("\"{}…\" (200000 bytes)", "é".repeat(QUOTE_MAX_CHARS))
        );
        let exact = "y".repeat(QUOTE_MAX_CHARS + 1);
        assert!(quote(&exact).to_string().ends_with("…\" (65 bytes)"));
    }
}
