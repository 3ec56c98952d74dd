//! Text files the converter reads for calibration (`--calibrate`) and vocabulary
//! pruning (`--keep-vocab`), and their tokenization with the runtime's tokenizer.
//!
//! Two layouts are accepted:
//! * a GLUE-style TSV whose header names a text column (`sentence`, `sentence1`,
//!   `question` or `text`) and optionally a second one (`sentence2`, `question2`,
//!   `hypothesis` or `text_pair`); other columns (labels) are ignored;
//! * plain text, one text per line (used when the first line names no text column).
//!
//! Empty lines are skipped.

use crate::calibrate::Sample;
use albert_edge::tokenizer::Tokenizer;
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// One text, or a pair of texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// The (first) text.
    pub a: String,
    /// The second text of a pair.
    pub b: Option<String>,
}

/// Parses file contents (see the module docs); `name` is used in error messages.
pub fn parse(content: &str, name: &str) -> Result<Vec<Text>> {
    let mut lines = content.lines().enumerate();
    let Some((_, first)) = lines.next() else {
        bail!("{name}: empty file");
    };
    let header: Vec<&str> = first.split('\t').map(str::trim).collect();
    let col = |names: &[&str]| header.iter().position(|h| names.contains(h));
    let mut out = Vec::new();
    match col(&["sentence", "sentence1", "question", "text"]) {
        Some(a) => {
            let b = col(&["sentence2", "question2", "hypothesis", "text_pair"]);
            for (i, line) in lines {
                if line.trim().is_empty() {
                    continue;
                }
                let f: Vec<&str> = line.split('\t').collect();
                let get = |c: usize| {
                    f.get(c)
                        .map(|s| s.to_string())
                        .ok_or_else(|| anyhow!("{name}: line {}: missing column {}", i + 1, c + 1))
                };
                out.push(Text {
                    a: get(a)?,
                    b: b.map(get).transpose()?,
                });
            }
        }
        None => {
            for line in content.lines() {
                if !line.trim().is_empty() {
                    out.push(Text {
                        a: line.to_string(),
                        b: None,
                    });
                }
            }
        }
    }
    if out.is_empty() {
        bail!("{name}: no texts");
    }
    Ok(out)
}

/// Reads a corpus file (see the module docs).
pub fn read(path: &Path) -> Result<Vec<Text>> {
    let content =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&content, &path.display().to_string())
}

/// Token ids of `texts` (`[CLS] a [SEP] (b [SEP])`, truncated to `max_len` tokens as
/// transformers does), with their token types.
pub fn tokenize(
    tok: &Tokenizer<'_>,
    texts: &[Text],
    max_len: Option<usize>,
) -> Result<Vec<Sample>> {
    let longest = texts
        .iter()
        .map(|t| t.a.len().max(t.b.as_ref().map_or(0, String::len)))
        .max()
        .unwrap_or(0);
    let mut scratch = vec![0u8; tok.scratch_len(longest)];
    let mut out = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        let mut s = Sample {
            ids: Vec::new(),
            types: Vec::new(),
        };
        tok.encode_with(&t.a, t.b.as_deref(), max_len, &mut scratch, |x| {
            s.ids.push(x.id);
            s.types.push(x.type_id);
        })
        .map_err(|e| anyhow!("text {}: cannot tokenize: {e}", i + 1))?;
        out.push(s);
    }
    Ok(out)
}
