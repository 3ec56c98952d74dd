//! The encoding pipeline: special-token split, ALBERT preprocessing, sentencepiece
//! normalization, word-by-word unigram Viterbi, unknown merging, digit+comma rule,
//! `[CLS]`/`[SEP]` and truncation. See the module docs of `tokenizer` for the overview.

use super::albert::{Preprocess, Settings};
use super::layout::{self, piece_type};
use super::{comma_rule_applies, Token, TokenizeError, Tokenizer, NODE, SCRATCH_PER_BYTE};

/// Why a stage stopped early: the consumer has all the tokens it wants, or an error.
pub(crate) enum Halt {
    Stop,
    Err(TokenizeError),
}

impl From<TokenizeError> for Halt {
    fn from(e: TokenizeError) -> Self {
        Halt::Err(e)
    }
}

/// Receives `(id, surface text)` for every token of a segment.
type Sink<'s> = dyn FnMut(u32, &str) -> Result<(), Halt> + 's;

/// `U+2581 LOWER ONE EIGHTH BLOCK`, sentencepiece's escaped space.
const SPACE: &[u8] = "\u{2581}".as_bytes();

/// transformers' `truncate_sequences` (truncation=True, side "right"): how many tokens of
/// each segment to keep. Longest-first for pairs: equivalent to removing one token at a time
/// from the longer segment (from the second one on ties).
pub fn truncation(
    la: usize,
    lb: usize,
    is_pair: bool,
    max_len: usize,
) -> Result<(usize, usize), TokenizeError> {
    let special = if is_pair { 3 } else { 2 };
    let total = la + lb + special;
    if total <= max_len {
        return Ok((la, lb));
    }
    let remove = total - max_len;
    if !is_pair {
        // transformers logs an error and returns the sequence untruncated otherwise.
        return if la > remove {
            Ok((la - remove, 0))
        } else {
            Err(TokenizeError::MaxLenTooSmall)
        };
    }
    let first_remove = la.abs_diff(lb).min(remove);
    let second_remove = remove - first_remove;
    let (ra, rb) = if la > lb {
        (
            first_remove + second_remove / 2,
            second_remove - second_remove / 2,
        )
    } else {
        (
            second_remove / 2,
            first_remove + second_remove - second_remove / 2,
        )
    };
    let (ka, kb) = (la.saturating_sub(ra), lb.saturating_sub(rb));
    if ka + kb + special > max_len {
        return Err(TokenizeError::MaxLenTooSmall);
    }
    Ok((ka, kb))
}

/// Runs the whole encoding; `on_token` receives every output token.
pub(crate) fn encode(
    tok: &Tokenizer<'_>,
    text: &str,
    pair: Option<&str>,
    max_len: Option<usize>,
    scratch: &mut [u8],
    on_token: &mut dyn FnMut(Token<'_>),
) -> Result<usize, TokenizeError> {
    let (keep_a, keep_b) = match max_len {
        None => (usize::MAX, usize::MAX),
        Some(m) => {
            let la = count(tok, text, scratch)?;
            let lb = match pair {
                Some(p) => count(tok, p, scratch)?,
                None => 0,
            };
            truncation(la, lb, pair.is_some(), m)?
        }
    };
    let mut n = 1usize;
    emit_special(tok, tok.cls, 0, on_token);
    let mut run =
        |seg: &str, keep: usize, type_id: u32, n: &mut usize, f: &mut dyn FnMut(Token<'_>)| {
            let mut kept = 0usize;
            let r = segment(tok, seg, scratch, &mut |id, text| {
                if kept >= keep {
                    return Err(Halt::Stop);
                }
                kept += 1;
                f(Token { id, type_id, text });
                Ok(())
            });
            *n += kept;
            match r {
                Ok(()) | Err(Halt::Stop) => Ok(()),
                Err(Halt::Err(e)) => Err(e),
            }
        };
    run(text, keep_a, 0, &mut n, on_token)?;
    emit_special(tok, tok.sep, 0, on_token);
    n += 1;
    if let Some(p) = pair {
        run(p, keep_b, 1, &mut n, on_token)?;
        emit_special(tok, tok.sep, 1, on_token);
        n += 1;
    }
    Ok(n)
}

fn emit_special(tok: &Tokenizer<'_>, id: u32, type_id: u32, on_token: &mut dyn FnMut(Token<'_>)) {
    let text = tok.piece(id).unwrap_or("");
    on_token(Token { id, type_id, text });
}

/// Number of tokens of one segment (without special tokens around it).
fn count(tok: &Tokenizer<'_>, text: &str, scratch: &mut [u8]) -> Result<usize, TokenizeError> {
    let mut n = 0usize;
    match segment(tok, text, scratch, &mut |_, _| {
        n += 1;
        Ok(())
    }) {
        Ok(()) | Err(Halt::Stop) => Ok(n),
        Err(Halt::Err(e)) => Err(e),
    }
}

/// If a special-token string starts `rest`, its id and the number of bytes of `rest` it
/// covers. transformers lower-cases every char that does not start an exact special-token
/// string, then splits the lower-cased text at the special strings, so `<PAD>` is `<pad>`
/// too; a lower-cased match must end at the end of a char's lowercase expansion.
fn special_at(tok: &Tokenizer<'_>, rest: &str, lower: bool) -> Option<(u32, usize)> {
    let mut best: Option<(u32, usize)> = None;
    let ids = [
        Some(tok.pad),
        Some(tok.unk),
        Some(tok.cls),
        Some(tok.sep),
        tok.mask,
    ];
    for id in ids.into_iter().flatten() {
        let Some(s) = tok.piece(id) else { continue };
        let len = if rest.starts_with(s) {
            Some(s.len())
        } else if lower {
            lowered_match(rest, s.as_bytes())
        } else {
            None
        };
        if let Some(len) = len {
            if best.is_none_or(|(_, l)| len > l) {
                best = Some((id, len));
            }
        }
    }
    best
}

/// Bytes of `rest` whose per-char lowercase spells exactly `s`, if any.
fn lowered_match(rest: &str, s: &[u8]) -> Option<usize> {
    let mut k = 0usize;
    for (off, c) in rest.char_indices() {
        for l in c.to_lowercase() {
            let mut buf = [0u8; 4];
            let e = l.encode_utf8(&mut buf).as_bytes();
            if s.get(k..k + e.len()) != Some(e) {
                return None;
            }
            k += e.len();
        }
        if k == s.len() {
            return Some(off + c.len_utf8());
        }
    }
    None
}

/// One segment: split at special tokens, encode each chunk between them.
fn segment(
    tok: &Tokenizer<'_>,
    text: &str,
    scratch: &mut [u8],
    sink: &mut Sink<'_>,
) -> Result<(), Halt> {
    let lower = tok.flag(layout::FLAG_DO_LOWER_CASE);
    let mut chunk_start = 0usize;
    let mut i = 0usize;
    while let Some(rest) = text.get(i..) {
        let Some(c) = rest.chars().next() else { break };
        if let Some((id, len)) = special_at(tok, rest, lower) {
            chunk(tok, text.get(chunk_start..i).unwrap_or(""), scratch, sink)?;
            sink(id, tok.piece(id).unwrap_or(""))?;
            i += len;
            chunk_start = i;
        } else {
            i += c.len_utf8();
        }
    }
    chunk(tok, text.get(chunk_start..).unwrap_or(""), scratch, sink)
}

/// One chunk of text without special tokens: ALBERT preprocessing, sentencepiece, then the
/// digit+comma rule of `AlbertTokenizer._tokenize`.
fn chunk(
    tok: &Tokenizer<'_>,
    text: &str,
    scratch: &mut [u8],
    sink: &mut Sink<'_>,
) -> Result<(), Halt> {
    if text.is_empty() {
        return Ok(());
    }
    let settings = Settings {
        lower: tok.flag(layout::FLAG_DO_LOWER_CASE),
        remove_space: tok.flag(layout::FLAG_REMOVE_SPACE),
        strip_accents: !tok.flag(layout::FLAG_KEEP_ACCENTS),
    };
    let comma_len = match tok.comma_scratch {
        usize::MAX => scratch.len() / 2,
        c => c.min(scratch.len()),
    };
    let split = scratch.len() - comma_len;
    let (main, comma) = scratch.split_at_mut(split);
    if tok.comma_scratch == 0 {
        return sp_encode(tok, Preprocess::new(text, settings), main, sink);
    }
    sp_encode(
        tok,
        Preprocess::new(text, settings),
        main,
        &mut |id, piece| {
            if !(piece.chars().count() > 1 && comma_rule_applies(piece)) {
                return sink(id, piece);
            }
            // cur_pieces = sp.EncodeAsPieces(piece[:-1].replace("▁", "")); the first one loses a
            // leading "▁" the piece did not have; then "," is appended.
            let body = piece.get(..piece.len() - 1).unwrap_or("");
            let starts_with_space = piece.starts_with('\u{2581}');
            let mut first = true;
            sp_encode(
                tok,
                body.chars().filter(|&c| c != '\u{2581}'),
                comma,
                &mut |id, sub| {
                    if core::mem::take(&mut first) && !starts_with_space {
                        if let Some(stripped) = sub.strip_prefix('\u{2581}') {
                            if stripped.is_empty() {
                                return Ok(());
                            }
                            return sink(tok.piece_to_id(stripped), stripped);
                        }
                    }
                    sink(id, sub)
                },
            )?;
            sink(tok.piece_to_id(","), ",")
        },
    )
}

/// Bytes of preprocessed text kept ahead of the normalizer (longer than any user-defined
/// symbol, which `from_section` limits to 128 bytes, and any charsmap key).
const LOOKAHEAD: usize = 256;

/// Look-ahead window over the preprocessed text, for `NormalizePrefix`.
struct Look {
    buf: [u8; 512],
    start: usize,
    end: usize,
    done: bool,
}

impl Look {
    fn fill<I: Iterator<Item = char>>(&mut self, src: &mut I, need: usize) {
        while !self.done && self.end - self.start < need {
            if self.end + 4 > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match src.next() {
                Some(c) => {
                    if let Some(dst) = self.buf.get_mut(self.end..self.end + 4) {
                        self.end += c.encode_utf8(dst).len();
                    }
                }
                None => self.done = true,
            }
        }
    }
    fn input(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }
}

/// Byte length of the UTF-8 sequence starting with `b` (sentencepiece `OneCharLen`).
#[inline]
fn one_char_len(b: u8) -> usize {
    match b >> 4 {
        0xc | 0xd => 2,
        0xe => 3,
        0xf => 4,
        _ => 1,
    }
}

/// `Normalizer::NormalizePrefix`: the normalized form of the longest rule matching the start
/// of `input`, and how many input bytes it consumes. User-defined symbols win (longest match,
/// sentencepiece's `PrefixMatcher`) and are kept verbatim; then the longest charsmap key;
/// else one char unchanged (the input is valid UTF-8, so the U+FFFD branch cannot occur).
fn normalize_prefix<'x>(
    tok: &Tokenizer<'x>,
    input: &'x [u8],
    is_final: bool,
) -> Result<(&'x [u8], usize), Halt> {
    let mut ud = 0usize;
    for (len, id) in tok.prefixes(input, tok.longest_from(input, true)) {
        if tok.piece_type(id) == piece_type::USER_DEFINED {
            ud = len;
        }
    }
    if ud > 0 {
        return Ok((input.get(..ud).unwrap_or(&[]), ud));
    }
    match tok.charsmap.longest_prefix(input, is_final) {
        Ok(Some((len, r))) => return Ok((r, len)),
        Ok(None) => {}
        Err(()) => return Err(Halt::Err(TokenizeError::LookaheadExceeded)),
    }
    let n = input
        .first()
        .map_or(0, |&b| one_char_len(b))
        .min(input.len());
    Ok((input.get(..n).unwrap_or(&[]), n))
}

/// sentencepiece `Normalizer::Normalize` on the chars of `src`, feeding the normalized text
/// word by word to the unigram model, which feeds `sink`.
fn sp_encode<I: Iterator<Item = char>>(
    tok: &Tokenizer<'_>,
    mut src: I,
    region: &mut [u8],
    sink: &mut Sink<'_>,
) -> Result<(), Halt> {
    let remove_extra = tok.flag(layout::FLAG_REMOVE_EXTRA_WHITESPACES);
    let need = LOOKAHEAD;
    let mut look = Look {
        buf: [0; 512],
        start: 0,
        end: 0,
        done: false,
    };
    // Ignores heading spaces.
    if remove_extra {
        loop {
            look.fill(&mut src, need);
            let input = look.input();
            if input.is_empty() {
                break;
            }
            let (r, n) = normalize_prefix(tok, input, look.done)?;
            if r != b" " {
                break;
            }
            look.start += n.max(1);
        }
    }
    look.fill(&mut src, need);
    if look.input().is_empty() {
        return Ok(());
    }
    let mut words = Words::new(region);
    if tok.flag(layout::FLAG_ADD_DUMMY_PREFIX) {
        words.push_space(tok, sink)?;
    }
    let mut is_prev_space = remove_extra;
    loop {
        look.fill(&mut src, need);
        let input = look.input();
        if input.is_empty() {
            break;
        }
        let (mut r, n) = normalize_prefix(tok, input, look.done)?;
        if is_prev_space {
            while let Some(rest) = r.strip_prefix(b" ") {
                r = rest;
            }
        }
        if !r.is_empty() {
            let mut i = 0;
            while let Some(&b) = r.get(i) {
                if b == b' ' {
                    words.push_space(tok, sink)?;
                    i += 1;
                } else if r.get(i..i + 3) == Some(SPACE) {
                    words.push_space(tok, sink)?;
                    i += 3;
                } else {
                    words.push_byte(b, tok, sink)?;
                    i += 1;
                }
            }
            is_prev_space = r.ends_with(b" ");
        }
        look.start += n.max(1);
        if !remove_extra {
            is_prev_space = false;
        }
    }
    // `Words` emits a pending `▁` only once text follows it: trailing `▁`s are dropped
    // with `remove_extra_whitespaces` (sentencepiece strips them), kept without it.
    words.finish(tok, sink, !remove_extra)
}

/// The normalized text, cut at every `▁` into words that are segmented independently.
///
/// No piece contains `▁` after its first byte and `▁` itself is a piece, so in the lattice
/// of the whole string every node starting before a `▁` ends at or before it, and a token
/// starts at every `▁`: the Viterbi path is the concatenation of the words' paths. The
/// path score at each word start is carried over (`base`), so every float operation is the
/// one sentencepiece performs on the whole string.
struct Words<'r> {
    word: &'r mut [u8],
    lattice: &'r mut [u8],
    len: usize,
    /// `▁`s seen but not yet emitted (they are dropped if nothing follows them).
    pending: usize,
    base: f32,
}

impl<'r> Words<'r> {
    fn new(region: &'r mut [u8]) -> Self {
        let cap = region.len().saturating_sub(NODE) / SCRATCH_PER_BYTE;
        let (word, lattice) = region.split_at_mut(cap);
        Words {
            word,
            lattice,
            len: 0,
            pending: 0,
            base: 0.0,
        }
    }

    fn push_space(&mut self, tok: &Tokenizer<'_>, sink: &mut Sink<'_>) -> Result<(), Halt> {
        if self.len > 0 {
            self.flush(tok, sink)?;
        }
        self.pending += 1;
        Ok(())
    }

    fn push_raw(&mut self, b: u8) -> Result<(), Halt> {
        let slot = self
            .word
            .get_mut(self.len)
            .ok_or(Halt::Err(TokenizeError::ScratchTooSmall))?;
        *slot = b;
        self.len += 1;
        Ok(())
    }

    /// Writes the pending `▁`s into the word buffer, each its own word except the last,
    /// which stays in the buffer (the start of the next word). Pending `▁`s only follow a
    /// flushed word, so the buffer is empty when there are any.
    fn spill_pending(&mut self, tok: &Tokenizer<'_>, sink: &mut Sink<'_>) -> Result<(), Halt> {
        while self.pending > 0 {
            for &s in SPACE {
                self.push_raw(s)?;
            }
            self.pending -= 1;
            if self.pending > 0 {
                self.flush(tok, sink)?;
            }
        }
        Ok(())
    }

    fn push_byte(&mut self, b: u8, tok: &Tokenizer<'_>, sink: &mut Sink<'_>) -> Result<(), Halt> {
        self.spill_pending(tok, sink)?;
        self.push_raw(b)
    }

    /// Segments what is left; `keep_trailing` first emits the pending `▁`s, each its own
    /// word (no piece continues past a `▁`, so each is the piece `▁`).
    fn finish(
        &mut self,
        tok: &Tokenizer<'_>,
        sink: &mut Sink<'_>,
        keep_trailing: bool,
    ) -> Result<(), Halt> {
        if keep_trailing {
            self.spill_pending(tok, sink)?;
        }
        if self.len > 0 {
            self.flush(tok, sink)?;
        }
        Ok(())
    }

    /// Viterbi over the current word (sentencepiece `Model::EncodeOptimized`), then emits its
    /// pieces, merging consecutive unknowns (`SentencePieceProcessor::Encode`).
    ///
    /// Lattice node `p` (12 bytes): best path score ending at byte `p` (f32), where that last
    /// token starts (u32, `u32::MAX` = none yet), its id (u32). After the forward pass the
    /// score slot of each node on the best path is reused as "end of the token starting here".
    fn flush(&mut self, tok: &Tokenizer<'_>, sink: &mut Sink<'_>) -> Result<(), Halt> {
        let len = self.len;
        self.len = 0;
        let word = self.word.get(..len).unwrap_or(&[]);
        let lat = &mut *self.lattice;
        if lat.len() < (len + 1) * NODE {
            return Err(Halt::Err(TokenizeError::ScratchTooSmall));
        }
        const UNSET: u32 = u32::MAX;
        let get = |lat: &[u8], p: usize, k: usize| -> u32 {
            let at = p * NODE + k * 4;
            lat.get(at..at + 4)
                .map_or(UNSET, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        };
        let set = |lat: &mut [u8], p: usize, k: usize, v: u32| {
            let at = p * NODE + k * 4;
            if let Some(s) = lat.get_mut(at..at + 4) {
                s.copy_from_slice(&v.to_le_bytes());
            }
        };
        for p in 0..=len {
            set(lat, p, 0, 0);
            set(lat, p, 1, UNSET);
            set(lat, p, 2, UNSET);
        }
        set(lat, 0, 0, self.base.to_bits());
        let unk_score = tok.min_score - 10.0; // kUnkPenalty
        let max_score = tok.max_score;
        let mut start = 0usize;
        while start < len {
            let till = f32::from_bits(get(lat, start, 0));
            let mblen = word
                .get(start)
                .map_or(1, |&b| one_char_len(b))
                .min(len - start);
            let mut has_single = false;
            let rest = word.get(start..len).unwrap_or(&[]);
            for (length, id) in tok.prefixes(rest, tok.longest_from(rest, false)) {
                let key = start + length;
                let ty = tok.piece_type(id);
                if ty != piece_type::NORMAL && ty != piece_type::USER_DEFINED {
                    continue; // UNUSED is skipped; CONTROL/UNKNOWN are not in sentencepiece's trie
                }
                // sentencepiece >= 0.2.1 (the reference is 0.2.3) keeps the path scores in
                // float: candidate = score + best_path_score_till_here, both f32. (0.2.0
                // compared in double, which breaks some ties differently, e.g. "000".)
                // User-defined symbols get `length * max_score_ - 0.1` to always win.
                let score: f32 = if ty == piece_type::USER_DEFINED {
                    (f64::from(length as f32 * max_score) - 0.1) as f32
                } else {
                    tok.score(id)
                };
                let cand = score + till;
                if get(lat, key, 1) == UNSET || cand > f32::from_bits(get(lat, key, 0)) {
                    set(lat, key, 0, cand.to_bits());
                    set(lat, key, 1, start as u32);
                    set(lat, key, 2, id);
                }
                if length == mblen {
                    has_single = true;
                }
            }
            if !has_single {
                let end = start + mblen;
                let cand = unk_score + till;
                if get(lat, end, 1) == UNSET || cand > f32::from_bits(get(lat, end, 0)) {
                    set(lat, end, 0, cand.to_bits());
                    set(lat, end, 1, start as u32);
                    set(lat, end, 2, tok.unk);
                }
            }
            start += mblen.max(1);
        }
        self.base = f32::from_bits(get(lat, len, 0));
        // Backtrack, linking each path node to the end of the token that starts there.
        let mut end = len;
        while end > 0 {
            let s = get(lat, end, 1) as usize;
            if s >= end {
                return Err(Halt::Err(TokenizeError::ScratchTooSmall)); // unreachable
            }
            set(lat, s, 0, end as u32);
            end = s;
        }
        // Forward: emit tokens, merging runs of unknowns into one piece.
        let mut s = 0usize;
        while s < len {
            let mut e = get(lat, s, 0) as usize;
            if e <= s || e > len {
                break;
            }
            let mut id = get(lat, e, 2);
            let is_unk = id == tok.unk;
            if is_unk {
                while e < len {
                    let next = get(lat, e, 0) as usize;
                    if next <= e || next > len || get(lat, next, 2) != tok.unk {
                        break;
                    }
                    e = next;
                }
            }
            let text = word
                .get(s..e)
                .and_then(|b| core::str::from_utf8(b).ok())
                .unwrap_or("");
            if is_unk {
                // `PieceToId(merged surface)`, as transformers' convert_tokens_to_ids does.
                id = tok.piece_to_id(text);
            }
            sink(id, text)?;
            s = e;
        }
        Ok(())
    }
}
