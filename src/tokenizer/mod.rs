//! ALBERT tokenizer: an exact, allocation-free reimplementation of transformers 4.57.6's
//! slow `AlbertTokenizer` (sentencepiece unigram), reading the model file's tokenizer section
//! in place.
//!
//! Pipeline for one text (each stage links the source it reproduces):
//!
//! 1. split at the special-token strings (`<pad> <unk> [CLS] [SEP] [MASK]`, case-sensitive,
//!    after the per-char lower-casing of everything else): `encode.rs`;
//! 2. ALBERT `preprocess_text` (whitespace collapse, quotes, NFKD minus combining marks,
//!    lower): `albert.rs`;
//! 3. sentencepiece normalization (precompiled charsmap, user-defined symbols, dummy prefix,
//!    extra whitespace removal, `▁` escaping): `encode.rs`, after
//!    <https://github.com/google/sentencepiece/blob/v0.2.0/src/normalizer.cc>;
//! 4. unigram Viterbi, word by word (no piece contains an inner `▁`, so every `▁` starts a
//!    token and the lattice splits there exactly; the running path score is carried across
//!    words so float rounding is the same as on the whole string): `encode.rs`, after
//!    `EncodeOptimized` in
//!    <https://github.com/google/sentencepiece/blob/v0.2.0/src/unigram_model.cc>;
//! 5. merging of consecutive unknown pieces (sentencepiece_processor.cc), the digit+comma
//!    re-split of `AlbertTokenizer._tokenize`, then `[CLS] A [SEP] (B [SEP])` with
//!    longest-first truncation.
//!
//! All working memory is a caller-provided scratch buffer ([`Tokenizer::scratch_len`]) plus a
//! few hundred bytes of stack.

mod albert;
mod charsmap;
mod encode;
pub mod layout;
mod nfkd;

use charsmap::Charsmap;
use layout::{field, piece_type, NO_ID};

/// Why a tokenizer section was rejected by [`Tokenizer::from_section`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerError {
    /// The section is shorter than its header or than its declared length.
    Truncated,
    /// The first 4 bytes are not `layout::MAGIC`.
    BadMagic,
    /// The layout version is not `layout::VERSION`.
    UnsupportedVersion,
    /// Header length, reserved bytes or flags are invalid (or a required flag is missing).
    BadHeader,
    /// An array lies outside the section, overlaps another or is misaligned.
    BadArray,
    /// The vocabulary size is zero or too large.
    BadVocabSize,
    /// Piece offsets are not increasing, a piece is empty, or not UTF-8.
    BadPiece,
    /// A piece type is not one of the supported sentencepiece types.
    BadPieceType,
    /// A score is NaN or infinite.
    BadScore,
    /// A special-token id is out of range or does not name the right piece.
    BadSpecialId,
    /// The vocabulary cannot be segmented word by word (a piece with an inner `▁`, no `▁`
    /// piece, or an over-long user-defined symbol).
    UnsupportedVocab,
    /// The piece index is malformed or does not hold exactly the vocabulary.
    BadPieceIndex,
    /// The precompiled charsmap is malformed.
    BadCharsmap,
}

impl core::fmt::Display for TokenizerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TokenizerError::Truncated => "tokenizer section truncated",
            TokenizerError::BadMagic => "bad tokenizer section magic",
            TokenizerError::UnsupportedVersion => {
                "unsupported tokenizer section version (convert the model again with this release's albert-convert)"
            }
            TokenizerError::BadHeader => "bad tokenizer section header",
            TokenizerError::BadArray => "tokenizer array out of bounds, overlapping or misaligned",
            TokenizerError::BadVocabSize => "bad vocabulary size",
            TokenizerError::BadPiece => "bad piece offsets or piece text",
            TokenizerError::BadPieceType => "bad piece type",
            TokenizerError::BadScore => "non-finite piece score",
            TokenizerError::BadSpecialId => "bad special-token id",
            TokenizerError::UnsupportedVocab => "vocabulary not supported",
            TokenizerError::BadPieceIndex => "bad piece index",
            TokenizerError::BadCharsmap => "bad precompiled charsmap",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TokenizerError {}

/// Why [`Tokenizer::encode_into`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizeError {
    /// `ids` or `type_ids` is shorter than the encoding; `needed` is the encoding length when
    /// known (0 when the encoding was stopped before it could be counted).
    OutputTooSmall {
        /// Length of the full (truncated) encoding.
        needed: usize,
    },
    /// The scratch buffer is too small for one word of the normalized text.
    ScratchTooSmall,
    /// `max_len` is too small to hold the special tokens plus at least the tokens
    /// transformers would keep (transformers logs an error and does not truncate then).
    MaxLenTooSmall,
    /// A charsmap rule longer than the normalizer's 256-byte look-ahead window matched
    /// (sentencepiece's charsmaps have keys of a few dozen bytes at most).
    LookaheadExceeded,
}

impl core::fmt::Display for TokenizeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TokenizeError::OutputTooSmall { needed } => {
                write!(f, "output buffers too small ({needed} tokens needed)")
            }
            TokenizeError::ScratchTooSmall => f.write_str("scratch buffer too small for a word"),
            TokenizeError::MaxLenTooSmall => {
                f.write_str("max_len too small for the special tokens")
            }
            TokenizeError::LookaheadExceeded => {
                f.write_str("charsmap rule longer than the look-ahead")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TokenizeError {}

/// One output token, as passed to the callback of [`Tokenizer::encode_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'s> {
    /// Vocabulary id.
    pub id: u32,
    /// Token type: 0 for `[CLS]`, the first segment and its `[SEP]`, 1 for the second
    /// segment and its `[SEP]`.
    pub type_id: u32,
    /// Surface text: the piece (e.g. `▁hello`); for an unknown run, its normalized
    /// characters (e.g. `😀`); for special tokens, their string (e.g. `[CLS]`).
    pub text: &'s str,
}

/// Result of [`Tokenizer::encode_pair`] (std only).
#[cfg(feature = "std")]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoding {
    /// Token ids.
    pub ids: std::vec::Vec<u32>,
    /// Token type ids.
    pub type_ids: std::vec::Vec<u32>,
    /// Attention mask (all ones).
    pub attention_mask: std::vec::Vec<u32>,
    /// Surface text of every token (see [`Token::text`]).
    pub pieces: std::vec::Vec<std::string::String>,
}

/// Bytes of normalized text produced per input byte, at most (checked for every Unicode
/// scalar value by `tests/tokenizer_props.rs`).
pub const MAX_EXPANSION: usize = 12;
/// Bytes of scratch per byte of normalized word: the byte itself + a 12-byte lattice node.
const SCRATCH_PER_BYTE: usize = 13;
/// Lattice node size.
const NODE: usize = 12;

/// A validated view of a tokenizer section. Cheap to copy; borrows the section bytes.
#[derive(Clone, Copy, Debug)]
pub struct Tokenizer<'a> {
    offsets: &'a [u8],
    pieces: &'a [u8],
    scores: &'a [u8],
    types: &'a [u8],
    /// The piece index: `u32` ids by hash slot (see `layout`).
    index: &'a [u8],
    /// Its slot count (a power of two) and probe bound.
    slots: usize,
    probes: usize,
    /// By first byte: the longest piece the segmentation may use (NORMAL or
    /// USER_DEFINED), and the longest user-defined piece, in bytes (bounds of
    /// the prefix searches).
    longest: [u16; 256],
    longest_user_defined: [u8; 256],
    charsmap: Charsmap<'a>,
    flags: u32,
    vocab: usize,
    unk: u32,
    pad: u32,
    cls: u32,
    sep: u32,
    mask: Option<u32>,
    /// sentencepiece `min_score_` / `max_score_` (over NORMAL pieces, starting from
    /// FLT_MAX / FLT_MIN as in unigram_model.cc).
    min_score: f32,
    max_score: f32,
    /// Scratch reserved for the digit+comma re-encoding (0 if it can never fire).
    comma_scratch: usize,
}

#[inline]
fn rd_u32(b: &[u8], i: usize) -> Option<u32> {
    let at = i.checked_mul(4)?;
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Python `str.isdigit()` approximated by `char::is_numeric` (Nd/Nl/No); only used by the
/// digit+comma rule, which needs a piece ending in `<digit>,`.
#[inline]
fn py_isdigit(c: char) -> bool {
    c.is_numeric()
}

/// Whether AlbertTokenizer._tokenize re-splits this piece: more than one char, ends with
/// `,`, and the char before is a digit.
fn comma_rule_applies(text: &str) -> bool {
    let mut it = text.chars().rev();
    matches!((it.next(), it.next()), (Some(','), Some(d)) if py_isdigit(d))
}

impl<'a> Tokenizer<'a> {
    /// Validates a tokenizer section (see `docs/tokenizer-section.md`) and returns a view of
    /// it. Everything is checked: bounds, alignment, offsets, UTF-8 of every piece, piece
    /// types and scores, special ids, the piece index (it must hold exactly the vocabulary),
    /// and the charsmap trie (every leaf must point at a UTF-8 string). Never panics.
    pub fn from_section(bytes: &'a [u8]) -> Result<Self, TokenizerError> {
        use TokenizerError as E;
        if bytes.len() < layout::HEADER_LEN {
            return Err(E::Truncated);
        }
        if bytes.get(..4) != Some(&layout::MAGIC[..]) {
            return Err(E::BadMagic);
        }
        let h = |f: usize| rd_u32(bytes, f / 4).unwrap_or(0);
        if h(field::VERSION) != layout::VERSION {
            return Err(E::UnsupportedVersion);
        }
        if h(field::HEADER_LEN) as usize != layout::HEADER_LEN
            || h(field::RESERVED_60) != 0
            || bytes.get(88..96).is_none_or(|r| r.iter().any(|&b| b != 0))
        {
            return Err(E::BadHeader);
        }
        let total = h(field::TOTAL_LEN) as usize;
        if total != bytes.len() {
            return Err(E::Truncated);
        }
        let flags = h(field::FLAGS);
        if flags & !layout::FLAGS_ALL != 0 || flags & layout::FLAG_ESCAPE_WHITESPACES == 0 {
            return Err(E::BadHeader);
        }
        let vocab = h(field::VOCAB_SIZE) as usize;
        if vocab == 0 || vocab >= (1 << 28) {
            return Err(E::BadVocabSize);
        }
        let slots = h(field::INDEX_SLOTS) as usize;
        let probes = h(field::INDEX_PROBES) as usize;
        if !slots.is_power_of_two()
            || slots <= vocab
            || slots > (1 << 29)
            || probes == 0
            || probes > layout::MAX_PROBES as usize
        {
            return Err(E::BadPieceIndex);
        }
        // Arrays, in their canonical order: each aligned, after the previous one, in bounds.
        let mut cursor = layout::HEADER_LEN;
        let mut array = |off_field: usize, len: usize| -> Result<&'a [u8], TokenizerError> {
            let off = h(off_field) as usize;
            if !off.is_multiple_of(layout::ARRAY_ALIGN) || off < cursor {
                return Err(E::BadArray);
            }
            let end = off.checked_add(len).ok_or(E::BadArray)?;
            let s = bytes.get(off..end).ok_or(E::BadArray)?;
            cursor = end;
            Ok(s)
        };
        let offsets = array(field::PIECE_OFFSETS, (vocab + 1) * 4)?;
        let scores = array(field::SCORES, vocab * 4)?;
        let index = array(field::INDEX, slots * 4)?;
        let types = array(field::TYPES, vocab)?;
        let pieces = array(field::PIECE_BYTES, h(field::PIECE_BYTES_LEN) as usize)?;
        let charsmap_blob = array(field::CHARSMAP, h(field::CHARSMAP_LEN) as usize)?;
        if cursor != total {
            return Err(E::BadArray);
        }

        let mut t = Tokenizer {
            offsets,
            pieces,
            scores,
            types,
            index,
            slots,
            probes,
            longest: [0; 256],
            longest_user_defined: [0; 256],
            charsmap: Charsmap::empty(),
            flags,
            vocab,
            unk: 0,
            pad: 0,
            cls: 0,
            sep: 0,
            mask: None,
            min_score: f32::MAX,
            max_score: f32::MIN_POSITIVE,
            comma_scratch: 0,
        };

        // Pieces, types, scores.
        if rd_u32(offsets, 0) != Some(0) || rd_u32(offsets, vocab) != Some(pieces.len() as u32) {
            return Err(E::BadPiece);
        }
        let mut unk = None;
        let mut has_space_piece = false;
        let mut max_piece = 0usize;
        let mut comma_possible = false;
        let mut comma_known = false;
        for id in 0..vocab {
            let p = t.piece(id as u32).ok_or(E::BadPiece)?;
            let ty = *types.get(id).ok_or(E::BadPieceType)?;
            let score = f32::from_bits(rd_u32(scores, id).ok_or(E::BadScore)?);
            if !score.is_finite() {
                return Err(E::BadScore);
            }
            max_piece = max_piece.max(p.len());
            match ty {
                piece_type::NORMAL => {
                    t.min_score = t.min_score.min(score);
                    t.max_score = t.max_score.max(score);
                }
                piece_type::UNKNOWN => {
                    if unk.replace(id as u32).is_some() {
                        return Err(E::BadSpecialId);
                    }
                }
                piece_type::CONTROL | piece_type::UNUSED => {}
                piece_type::USER_DEFINED => {
                    if p.len() > 128 {
                        return Err(E::UnsupportedVocab);
                    }
                    let first = &mut t.longest_user_defined[usize::from(p.as_bytes()[0])];
                    *first = (*first).max(p.len() as u8);
                }
                _ => return Err(E::BadPieceType),
            }
            if matches!(ty, piece_type::NORMAL | piece_type::USER_DEFINED) {
                let first = &mut t.longest[usize::from(p.as_bytes()[0])];
                *first = (*first).max(u16::try_from(p.len()).map_err(|_| E::UnsupportedVocab)?);
                if p.char_indices().any(|(at, c)| at > 0 && c == '\u{2581}') {
                    return Err(E::UnsupportedVocab);
                }
                has_space_piece |= p == "\u{2581}";
                comma_known |= p == ",";
                comma_possible |= comma_rule_applies(p);
            }
        }
        if !has_space_piece {
            return Err(E::UnsupportedVocab);
        }
        // Special ids: the UNKNOWN piece, and the named pieces.
        let unk = unk.ok_or(E::BadSpecialId)?;
        if h(field::UNK_ID) != unk {
            return Err(E::BadSpecialId);
        }
        t.unk = unk;
        let named = |f: usize, s: &str| -> Result<u32, TokenizerError> {
            let id = h(f);
            match t.piece(id) {
                Some(p) if p == s => Ok(id),
                _ => Err(E::BadSpecialId),
            }
        };
        let pad = named(field::PAD_ID, "<pad>")?;
        let cls = named(field::CLS_ID, "[CLS]")?;
        let sep = named(field::SEP_ID, "[SEP]")?;
        let mask = match h(field::MASK_ID) {
            NO_ID => None,
            _ => Some(named(field::MASK_ID, "[MASK]")?),
        };
        (t.pad, t.cls, t.sep, t.mask) = (pad, cls, sep, mask);

        t.validate_index()?;

        t.charsmap = Charsmap::parse(charsmap_blob)?;

        // The digit+comma rule re-encodes a piece; reserve scratch for that if it can fire:
        // a vocabulary piece of that form, or an unknown run ending in ',' (only if ',' is
        // not itself a piece).
        t.comma_scratch = if !comma_known {
            usize::MAX // decided per call: half of the scratch
        } else if comma_possible {
            Self::scratch_for_word(max_piece * MAX_EXPANSION + 3)
        } else {
            0
        };
        Ok(t)
    }

    /// Checks the piece index: every slot empty or a piece id, as many filled slots as
    /// pieces, and every piece found by [`Tokenizer::lookup`] (so each id is in it once,
    /// within the probe bound of its hash). Linear in the slots plus the pieces' bytes
    /// times the probe bound.
    fn validate_index(&self) -> Result<(), TokenizerError> {
        use TokenizerError as E;
        let mut filled = 0usize;
        for slot in 0..self.slots {
            match rd_u32(self.index, slot).ok_or(E::BadPieceIndex)? {
                NO_ID => {}
                id if (id as usize) < self.vocab => filled += 1,
                _ => return Err(E::BadPieceIndex),
            }
        }
        if filled != self.vocab {
            return Err(E::BadPieceIndex);
        }
        for id in 0..self.vocab as u32 {
            let p = self.piece(id).ok_or(E::BadPiece)?;
            if self.lookup(p.as_bytes()) != Some(id) {
                return Err(E::BadPieceIndex);
            }
        }
        Ok(())
    }

    /// The id of the piece `key` whose FNV-1a hash is `hash`: the slots from the
    /// hash's, up to the first empty one, within the probe bound.
    #[inline]
    fn find(&self, hash: u32, key: &[u8]) -> Option<u32> {
        let mask = self.slots - 1;
        for i in 0..self.probes {
            let id = rd_u32(self.index, (hash as usize).wrapping_add(i) & mask)?;
            if id == NO_ID {
                return None;
            }
            if self.piece_bytes(id) == Some(key) {
                return Some(id);
            }
        }
        None
    }

    /// Exact piece lookup (`PieceToId` without the unknown fallback).
    fn lookup(&self, key: &[u8]) -> Option<u32> {
        self.find(layout::fnv1a(key), key)
    }

    /// The pieces that are prefixes of `text` and at most `max` bytes long, shortest
    /// first: `(length in bytes, id)` (sentencepiece's common-prefix search). `max`
    /// from [`Tokenizer::longest_from`] bounds the search to what may be found.
    #[inline]
    fn prefixes<'t>(
        &'t self,
        text: &'t [u8],
        max: usize,
    ) -> impl Iterator<Item = (usize, u32)> + 't {
        let mut h = layout::FNV_OFFSET;
        text.iter()
            .take(max)
            .enumerate()
            .filter_map(move |(i, &b)| {
                h = layout::fnv1a_step(h, b);
                Some((i + 1, self.find(h, text.get(..=i)?)?))
            })
    }

    /// The longest segmentation piece (`user_defined`: user-defined piece) that
    /// starts with `text`'s first byte, in bytes; 0 for none.
    #[inline]
    fn longest_from(&self, text: &[u8], user_defined: bool) -> usize {
        match text.first() {
            Some(&b) if user_defined => usize::from(self.longest_user_defined[usize::from(b)]),
            Some(&b) => usize::from(self.longest[usize::from(b)]),
            None => 0,
        }
    }

    /// The bytes of piece `id`.
    #[inline]
    fn piece_bytes(&self, id: u32) -> Option<&'a [u8]> {
        let start = rd_u32(self.offsets, id as usize)? as usize;
        let end = rd_u32(self.offsets, (id as usize).checked_add(1)?)? as usize;
        self.pieces.get(start..end)
    }

    /// `PieceToId`: the id of a piece string, or the unknown id.
    fn piece_to_id(&self, piece: &str) -> u32 {
        self.lookup(piece.as_bytes()).unwrap_or(self.unk)
    }

    #[inline]
    fn piece_type(&self, id: u32) -> u8 {
        self.types.get(id as usize).copied().unwrap_or(0)
    }

    #[inline]
    fn score(&self, id: u32) -> f32 {
        rd_u32(self.scores, id as usize).map_or(0.0, f32::from_bits)
    }

    fn flag(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    /// Number of pieces in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// The text of piece `id` (`None` if out of range).
    pub fn piece(&self, id: u32) -> Option<&'a str> {
        let b = self.piece_bytes(id).filter(|b| !b.is_empty())?;
        core::str::from_utf8(b).ok()
    }

    /// Id of `[CLS]`.
    pub fn cls_id(&self) -> u32 {
        self.cls
    }
    /// Id of `[SEP]`.
    pub fn sep_id(&self) -> u32 {
        self.sep
    }
    /// Id of `<pad>`.
    pub fn pad_id(&self) -> u32 {
        self.pad
    }
    /// Id of the unknown piece (`<unk>`).
    pub fn unk_id(&self) -> u32 {
        self.unk
    }
    /// Id of `[MASK]`, if the vocabulary has it.
    pub fn mask_id(&self) -> Option<u32> {
        self.mask
    }

    /// Scratch for one normalized word of `word_bytes` bytes.
    const fn scratch_for_word(word_bytes: usize) -> usize {
        word_bytes * SCRATCH_PER_BYTE + NODE
    }

    /// Scratch bytes [`encode_into`](Self::encode_into) needs for texts of up to
    /// `max_text_bytes` UTF-8 bytes per segment, whatever their content (worst case:
    /// one word expanding [`MAX_EXPANSION`] times). Ordinary text needs far less: see
    /// [`scratch_len_for_word`](Self::scratch_len_for_word).
    pub fn scratch_len(&self, max_text_bytes: usize) -> usize {
        self.scratch_len_for_word(
            max_text_bytes
                .saturating_mul(MAX_EXPANSION)
                .saturating_add(3),
        )
    }

    /// Scratch bytes for texts whose longest normalized word (a `▁` plus the following
    /// characters up to the next space, after normalization) has at most `word_bytes` bytes.
    /// Longer words make `encode_into` return [`TokenizeError::ScratchTooSmall`].
    pub fn scratch_len_for_word(&self, word_bytes: usize) -> usize {
        let main = Self::scratch_for_word(word_bytes);
        match self.comma_scratch {
            usize::MAX => main.saturating_mul(2),
            c => main.saturating_add(c),
        }
    }

    /// Encodes `[CLS] text [SEP]` or `[CLS] text [SEP] pair [SEP]` into `ids` and `type_ids`
    /// and returns the number of tokens written. With `max_len`, the sequence is truncated
    /// to at most `max_len` tokens: from the end of `text` for a single text, longest-first
    /// for a pair (transformers' `truncation=True`). Never allocates, never panics.
    pub fn encode_into(
        &self,
        text: &str,
        pair: Option<&str>,
        max_len: Option<usize>,
        scratch: &mut [u8],
        ids: &mut [u32],
        type_ids: &mut [u32],
    ) -> Result<usize, TokenizeError> {
        let cap = ids.len().min(type_ids.len());
        let mut n = 0usize;
        let mut overflow = false;
        let total = self.encode_with(text, pair, max_len, scratch, |tok| {
            match (ids.get_mut(n), type_ids.get_mut(n)) {
                (Some(i), Some(t)) => {
                    *i = tok.id;
                    *t = tok.type_id;
                }
                _ => overflow = true,
            }
            n += 1;
        })?;
        if overflow || total > cap {
            return Err(TokenizeError::OutputTooSmall { needed: total });
        }
        Ok(total)
    }

    /// Like [`encode_into`](Self::encode_into), but hands every token (id, type id and
    /// surface text) to `on_token` instead of writing buffers. Returns the token count.
    pub fn encode_with<F: FnMut(Token<'_>)>(
        &self,
        text: &str,
        pair: Option<&str>,
        max_len: Option<usize>,
        scratch: &mut [u8],
        mut on_token: F,
    ) -> Result<usize, TokenizeError> {
        encode::encode(self, text, pair, max_len, scratch, &mut on_token)
    }

    /// `[CLS] text [SEP]` ids (std convenience; allocates).
    #[cfg(feature = "std")]
    pub fn encode(&self, text: &str) -> std::vec::Vec<u32> {
        self.encode_pair(text, None, None).ids
    }

    /// Ids, type ids, attention mask and surface pieces of `a` (and `b`), truncated to
    /// `max_len` when given (std convenience; allocates). If `max_len` cannot be honoured
    /// (see [`TokenizeError::MaxLenTooSmall`]) the sequence is returned untruncated, as
    /// transformers does.
    #[cfg(feature = "std")]
    pub fn encode_pair(&self, a: &str, b: Option<&str>, max_len: Option<usize>) -> Encoding {
        let longest = a.len().max(b.map_or(0, str::len));
        let mut scratch = std::vec![0u8; self.scratch_len(longest)];
        let mut e = Encoding::default();
        let mut run = |max_len| {
            let mut e = Encoding::default();
            let r = self.encode_with(a, b, max_len, &mut scratch, |t| {
                e.ids.push(t.id);
                e.type_ids.push(t.type_id);
                e.attention_mask.push(1);
                e.pieces.push(t.text.into());
            });
            r.map(|_| e)
        };
        match run(max_len) {
            Ok(x) => e = x,
            Err(TokenizeError::MaxLenTooSmall) => {
                if let Ok(x) = run(None) {
                    e = x;
                }
            }
            Err(_) => {} // cannot happen: the scratch is sized for the worst case
        }
        e
    }
}
