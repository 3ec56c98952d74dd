//! transformers' ALBERT text preprocessing, as a streaming `char` iterator (no buffer).
//!
//! Reproduces, for one chunk of text between special tokens, transformers 4.57.6
//! `PreTrainedTokenizer.tokenize` (the per-character `lower()` of non-special text) followed by
//! `AlbertTokenizer.preprocess_text`
//! (<https://github.com/huggingface/transformers/blob/v4.57.6/src/transformers/models/albert/tokenization_albert.py>):
//!
//! ```text
//! text = lower(text)                                  # per char, tokenize()'s regex pass
//! text = " ".join(text.strip().split())               # remove_space, Python whitespace
//! text = text.replace("``", '"').replace("''", '"')
//! text = NFKD(text), minus chars with combining class != 0   # unless keep_accents
//! text = text.lower()                                 # do_lower_case
//! ```
//!
//! NFKD followed by dropping every non-starter equals decomposing each char on its own and
//! dropping its non-starters (canonical reordering only permutes non-starters), so no
//! reordering buffer is needed.
//!
//! Known divergence: Python's whole-string `lower()` maps a capital sigma to final `ς` in
//! word-final position. The first, per-character pass already lower-cases every `Σ`, so the
//! only way to reach this is a character whose NFKD is `Σ` but that has no lowercase mapping
//! itself (the mathematical capital sigmas U+1D6BA etc.); those become `σ` here.

use super::nfkd::strip_accents;

/// Python `str.isspace()` for one char: Rust's `White_Space` plus U+001C..=U+001F (which
/// Python counts as whitespace because their bidi class is B/S).
#[inline]
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Settings of the preprocessing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub lower: bool,
    pub remove_space: bool,
    pub strip_accents: bool,
}

/// Capacity of the output queue: the longest compatibility decomposition is 18 chars
/// (U+FDFA), and lower-casing maps one char to at most 3.
const OUT_CAP: usize = 64;

/// The preprocessed chars of one chunk.
pub(crate) struct Preprocess<'t> {
    src: core::str::Chars<'t>,
    s: Settings,
    /// Lower-cased chars of the current source char (stage 1).
    low: [char; 3],
    low_pos: usize,
    low_len: usize,
    /// Whitespace collapsing (stage 2).
    started: bool,
    held: Option<char>,
    /// Quote pairing (stage 3).
    quote_held: Option<char>,
    /// NFKD + lower output (stages 4, 5).
    out: [char; OUT_CAP],
    out_pos: usize,
    out_len: usize,
}

impl<'t> Preprocess<'t> {
    pub(crate) fn new(chunk: &'t str, s: Settings) -> Self {
        Preprocess {
            src: chunk.chars(),
            s,
            low: ['\0'; 3],
            low_pos: 0,
            low_len: 0,
            started: false,
            held: None,
            quote_held: None,
            out: ['\0'; OUT_CAP],
            out_pos: 0,
            out_len: 0,
        }
    }

    /// Stage 1: per-char `lower()`.
    fn lowered(&mut self) -> Option<char> {
        if self.low_pos < self.low_len {
            self.low_pos += 1;
            return self.low.get(self.low_pos - 1).copied();
        }
        let c = self.src.next()?;
        if !self.s.lower {
            return Some(c);
        }
        let mut n = 0;
        for l in c.to_lowercase() {
            if let Some(slot) = self.low.get_mut(n) {
                *slot = l;
                n += 1;
            }
        }
        self.low_len = n;
        self.low_pos = 1;
        self.low.first().copied()
    }

    /// Stage 2: `" ".join(text.strip().split())`.
    fn collapsed(&mut self) -> Option<char> {
        if !self.s.remove_space {
            return self.lowered();
        }
        if let Some(c) = self.held.take() {
            return Some(c);
        }
        let mut saw_space = false;
        loop {
            let c = self.lowered()?; // trailing whitespace is dropped here
            if is_py_space(c) {
                saw_space = true;
                continue;
            }
            if saw_space && self.started {
                self.held = Some(c);
                return Some(' ');
            }
            self.started = true;
            return Some(c);
        }
    }

    /// Stage 3: "``" -> '"' and "''" -> '"' (left to right, non-overlapping; the two
    /// replacements never interact because they involve disjoint characters).
    fn quoted(&mut self) -> Option<char> {
        let c = match self.quote_held.take() {
            Some(c) => c,
            None => self.collapsed()?,
        };
        if c == '`' || c == '\'' {
            match self.collapsed() {
                Some(d) if d == c => return Some('"'),
                Some(d) => self.quote_held = Some(d),
                None => {}
            }
        }
        Some(c)
    }

    fn push_out(&mut self, c: char) {
        if self.s.lower {
            for l in c.to_lowercase() {
                if let Some(slot) = self.out.get_mut(self.out_len) {
                    *slot = l;
                    self.out_len += 1;
                }
            }
        } else if let Some(slot) = self.out.get_mut(self.out_len) {
            *slot = c;
            self.out_len += 1;
        }
    }
}

impl Iterator for Preprocess<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        loop {
            if self.out_pos < self.out_len {
                self.out_pos += 1;
                return self.out.get(self.out_pos - 1).copied();
            }
            self.out_pos = 0;
            self.out_len = 0;
            let c = self.quoted()?;
            if self.s.strip_accents {
                let mut buf = ['\0'; 24];
                let mut n = 0;
                strip_accents(c, |d| {
                    if let Some(slot) = buf.get_mut(n) {
                        *slot = d;
                        n += 1;
                    }
                });
                for &d in buf.get(..n).unwrap_or(&[]) {
                    self.push_out(d);
                }
            } else {
                self.push_out(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::String;

    fn run(s: &str) -> String {
        Preprocess::new(
            s,
            Settings {
                lower: true,
                remove_space: true,
                strip_accents: true,
            },
        )
        .collect()
    }

    #[test]
    fn basics() {
        assert_eq!(run("  Hello \t World  "), "hello world");
        assert_eq!(run("``like this''"), "\"like this\"");
        assert_eq!(run("```'''"), "\"`\"'");
        assert_eq!(run("Café"), "cafe");
        assert_eq!(run("İstanbul"), "istanbul");
        assert_eq!(run("a\u{1c}b\u{85}c\u{a0}d"), "a b c d");
        assert_eq!(run("ﬁ ½"), "fi 1\u{2044}2");
        assert_eq!(run(""), "");
        assert_eq!(run(" \t\n "), "");
    }
}
