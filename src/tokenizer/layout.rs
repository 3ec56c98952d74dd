//! Byte layout of the tokenizer section (shared by the converter, which writes it, and
//! [`Tokenizer::from_section`](super::Tokenizer::from_section), which validates it).
//!
//! Everything is little-endian. Offsets are relative to the section start, which the model
//! file places at a 64-byte aligned offset; every array starts at a multiple of 8, so u32 and
//! f32 arrays are naturally aligned. See `docs/tokenizer-section.md` for the full description.
//!
//! ```text
//! header (HEADER_LEN = 96 bytes, fields below)
//! piece_offsets : u32 x (vocab_size + 1)   piece i = piece_bytes[off[i]..off[i+1]], UTF-8
//! scores        : f32 x vocab_size         sentencepiece log-probabilities
//! index         : u32 x index_slots        hash table over ALL pieces (piece -> id): piece p
//!                                            is in one of the slots (fnv1a(p) + i) mod slots,
//!                                            i < index_probes, before any NO_ID slot
//! types         : u8  x vocab_size         sentencepiece piece type (1..=6)
//! piece_bytes   : u8  x piece_bytes_len    all pieces' UTF-8, concatenated
//! charsmap      : u8  x charsmap_len       sentencepiece `precompiled_charsmap`, verbatim
//! ```

/// Section magic, first 4 bytes.
pub const MAGIC: [u8; 4] = *b"ALTK";
/// Layout version, bytes 4..8 (version 1 held a double-array trie where the
/// hash table is: 12 bytes a trie node, about 3.5 times the size).
pub const VERSION: u32 = 2;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 96;
/// Alignment of every array inside the section.
pub const ARRAY_ALIGN: usize = 8;

/// Byte offsets of the header fields (each a little-endian u32).
pub mod field {
    /// `MAGIC`.
    pub const MAGIC: usize = 0;
    /// `VERSION`.
    pub const VERSION: usize = 4;
    /// `HEADER_LEN`.
    pub const HEADER_LEN: usize = 8;
    /// Flag bits (`FLAG_*`).
    pub const FLAGS: usize = 12;
    /// Number of pieces.
    pub const VOCAB_SIZE: usize = 16;
    /// Id of the UNKNOWN piece.
    pub const UNK_ID: usize = 20;
    /// Id of `<pad>`.
    pub const PAD_ID: usize = 24;
    /// Id of `[CLS]`.
    pub const CLS_ID: usize = 28;
    /// Id of `[SEP]`.
    pub const SEP_ID: usize = 32;
    /// Id of `[MASK]`, or `NO_ID`.
    pub const MASK_ID: usize = 36;
    /// Slots of the piece index (a power of two larger than the vocabulary).
    pub const INDEX_SLOTS: usize = 40;
    /// Offset of `piece_offsets`.
    pub const PIECE_OFFSETS: usize = 44;
    /// Offset of `scores`.
    pub const SCORES: usize = 48;
    /// Offset of `index`.
    pub const INDEX: usize = 52;
    /// Slots a lookup examines at most (every piece is found within them).
    pub const INDEX_PROBES: usize = 56;
    /// Reserved, zero.
    pub const RESERVED_60: usize = 60;
    /// Offset of `types`.
    pub const TYPES: usize = 64;
    /// Offset of `piece_bytes`.
    pub const PIECE_BYTES: usize = 68;
    /// Length of `piece_bytes`.
    pub const PIECE_BYTES_LEN: usize = 72;
    /// Offset of `charsmap`.
    pub const CHARSMAP: usize = 76;
    /// Length of `charsmap` (0: identity normalization).
    pub const CHARSMAP_LEN: usize = 80;
    /// Total section length in bytes.
    pub const TOTAL_LEN: usize = 84;
    /// Start of the reserved bytes (88..96), which must be zero, as `RESERVED_60`.
    pub const RESERVED: usize = 88;
}

/// transformers `do_lower_case`.
pub const FLAG_DO_LOWER_CASE: u32 = 1 << 0;
/// transformers `keep_accents`.
pub const FLAG_KEEP_ACCENTS: u32 = 1 << 1;
/// transformers `remove_space`.
pub const FLAG_REMOVE_SPACE: u32 = 1 << 2;
/// sentencepiece `normalizer_spec.add_dummy_prefix`.
pub const FLAG_ADD_DUMMY_PREFIX: u32 = 1 << 3;
/// sentencepiece `normalizer_spec.remove_extra_whitespaces`.
pub const FLAG_REMOVE_EXTRA_WHITESPACES: u32 = 1 << 4;
/// sentencepiece `normalizer_spec.escape_whitespaces` (must be set).
pub const FLAG_ESCAPE_WHITESPACES: u32 = 1 << 5;
/// All defined flag bits.
pub const FLAGS_ALL: u32 = (1 << 6) - 1;

/// "No such id" in the header and an empty slot of `index`.
pub const NO_ID: u32 = u32::MAX;
/// The most slots a lookup may examine (`INDEX_PROBES`): the converter grows the
/// table until every piece is within this many of its hash.
pub const MAX_PROBES: u32 = 64;

/// FNV-1a (32 bits) of `bytes`, the piece index's hash.
pub const fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h = FNV_OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        h = fnv1a_step(h, bytes[i]);
        i += 1;
    }
    h
}

/// FNV-1a's start value.
pub const FNV_OFFSET: u32 = 0x811c_9dc5;

/// One byte of FNV-1a: `fnv1a(b"ab") == fnv1a_step(fnv1a_step(FNV_OFFSET, b'a'), b'b')`.
#[inline]
pub const fn fnv1a_step(h: u32, b: u8) -> u32 {
    (h ^ b as u32).wrapping_mul(0x0100_0193)
}

/// sentencepiece piece types (`ModelProto.SentencePiece.Type`).
pub mod piece_type {
    /// Ordinary piece.
    pub const NORMAL: u8 = 1;
    /// The unknown piece.
    pub const UNKNOWN: u8 = 2;
    /// Control symbol (`[CLS]`, ...), never produced by segmentation.
    pub const CONTROL: u8 = 3;
    /// User-defined symbol, always matched as a whole.
    pub const USER_DEFINED: u8 = 4;
    /// Unused piece, skipped by segmentation.
    pub const UNUSED: u8 = 5;
    /// Byte-fallback piece (not supported).
    pub const BYTE: u8 = 6;
}

/// Rounds `n` up to a multiple of [`ARRAY_ALIGN`].
pub const fn align_up(n: usize) -> usize {
    n.div_ceil(ARRAY_ALIGN) * ARRAY_ALIGN
}
