//! The `.albert` model file: layout, encoding helpers and validation.
//!
//! `docs/FORMAT.md` is the byte-level specification; this module is its
//! executable form. Everything is little-endian. The file is:
//!
//! ```text
//! header (64 bytes) | section table (32 bytes per section) | sections, each 64-byte aligned
//! ```
//!
//! [`parse`] validates a whole file once (magic, version, lengths, every
//! offset with checked arithmetic, every checksum, every tensor's size for its
//! dtype and shape, zero padding, no trailing bytes) and returns a
//! [`ParsedFile`] of plain ranges. After that the runtime slices the bytes
//! without further checks beyond Rust's own bounds checks.

mod error;
mod tensor;

pub use error::LoadError;
pub use tensor::{
    q8_layout, q8_pair_bounded, DType, Q8Layout, Role, RoleKind, TensorEntry, Q8_K_GROUP,
    Q8_N_BLOCK, Q8_PAIR_BOUND,
};

/// The first 8 bytes of every model file.
pub const MAGIC: [u8; 8] = *b"ALBEDGE\0";
/// The format version this runtime reads and the converter writes.
pub const VERSION: u32 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 64;
/// Size of one section-table entry.
pub const SECTION_ENTRY_LEN: usize = 32;
/// Every section and every tensor starts at a multiple of this, counted from the
/// start of the file; the file itself must be loaded at an address aligned to it.
pub const ALIGN: usize = 64;
/// Size of the encoded [`ModelConfig`].
pub const CONFIG_LEN: usize = 128;
/// Size of one encoded [`TensorEntry`].
pub const TENSOR_ENTRY_LEN: usize = 32;
/// Upper bound for any single dimension in a config; larger values are rejected
/// before anything is sized from them (protects against allocation bombs).
pub const MAX_DIM: u32 = 1 << 20;
/// Upper bound on the number of sections in a file.
pub const MAX_SECTIONS: u32 = 16;
/// Upper bound on the number of tensors in a file.
pub const MAX_TENSORS: u32 = 4096;
/// Upper bound on the layer applications of one run (`num_layers *
/// inner_group_num`). ALBERT shares its layers, so a file with a handful of
/// weights could otherwise ask for a billion of them and make every run hang.
pub const MAX_LAYER_CALLS: u32 = 1024;

/// Section kinds.
pub mod section {
    /// The [`ModelConfig`](super::ModelConfig), 128 bytes.
    pub const CONFIG: u32 = 1;
    /// Label names: `count u32`, then `count` (offset u32, len u32) pairs relative to
    /// the section start, then UTF-8 bytes.
    pub const LABELS: u32 = 2;
    /// Tokenizer data (see `docs/FORMAT.md`); optional.
    pub const TOKENIZER: u32 = 3;
    /// Tensor table: `count u32, reserved u32`, then `count` 32-byte entries.
    pub const TENSOR_TABLE: u32 = 4;
    /// Tensor payloads, each 64-byte aligned.
    pub const TENSOR_DATA: u32 = 5;
}

/// Hidden activation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, transformers' `gelu_new`.
    GeluNew = 0,
    /// `0.5 x (1 + erf(x / sqrt 2))`, transformers' `gelu`.
    Gelu = 1,
    /// `max(x, 0)`.
    Relu = 2,
}

impl Activation {
    /// Decodes a stored activation code.
    pub fn from_code(c: u32) -> Option<Self> {
        match c {
            0 => Some(Self::GeluNew),
            1 => Some(Self::Gelu),
            2 => Some(Self::Relu),
            _ => None,
        }
    }
    /// The transformers name.
    pub fn name(self) -> &'static str {
        match self {
            Self::GeluNew => "gelu_new",
            Self::Gelu => "gelu",
            Self::Relu => "relu",
        }
    }
}

/// The task head on top of the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// `AlbertModel`: `last_hidden_state`, and `pooler_output` when the file has a pooler.
    Base = 0,
    /// `AlbertForSequenceClassification`: `logits` `[B, labels]` from the pooled output.
    SequenceClassification = 1,
    /// `AlbertForTokenClassification`: `logits` `[B, S, labels]`.
    TokenClassification = 2,
    /// `AlbertForQuestionAnswering`: `start_logits`, `end_logits` `[B, S]`.
    QuestionAnswering = 3,
    /// `AlbertForMaskedLM`: `logits` `[B, S, vocab]`.
    MaskedLm = 4,
}

impl HeadKind {
    /// Decodes a stored head code.
    pub fn from_code(c: u32) -> Option<Self> {
        match c {
            0 => Some(Self::Base),
            1 => Some(Self::SequenceClassification),
            2 => Some(Self::TokenClassification),
            3 => Some(Self::QuestionAnswering),
            4 => Some(Self::MaskedLm),
            _ => None,
        }
    }
    /// A short name for messages and `info`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::SequenceClassification => "sequence-classification",
            Self::TokenClassification => "token-classification",
            Self::QuestionAnswering => "question-answering",
            Self::MaskedLm => "masked-lm",
        }
    }
}

/// Weight precision of the file's matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Every tensor is f32: the exact reference path.
    F32 = 0,
    /// Encoder matrices and word embeddings are int8 per output row.
    Int8 = 1,
}

impl Precision {
    /// Decodes a stored precision code.
    pub fn from_code(c: u32) -> Option<Self> {
        match c {
            0 => Some(Self::F32),
            1 => Some(Self::Int8),
            _ => None,
        }
    }
    /// `"f32"` or `"int8"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Int8 => "int8",
        }
    }
}

/// What a sequence classifier's logits mean (transformers' `problem_type`),
/// which decides the function that turns them into scores
/// ([`ModelConfig::score_function`]). Only sequence-classification files may
/// store anything but the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProblemType {
    /// One class per input (`single_label_classification`, or unset).
    #[default]
    SingleLabel = 0,
    /// Any subset of the labels per input (`multi_label_classification`).
    MultiLabel = 1,
    /// One or more real-valued outputs (`regression`).
    Regression = 2,
    /// `AlbertForMultipleChoice`: one output per row, the score of one
    /// (prompt, choice) pair; the rows of one question compete (a softmax
    /// over them). Set by the converter from the architecture (transformers
    /// has no such `problem_type`); one label only.
    MultipleChoice = 3,
}

impl ProblemType {
    /// Decodes a stored code.
    pub fn from_code(c: u32) -> Option<Self> {
        match c {
            0 => Some(Self::SingleLabel),
            1 => Some(Self::MultiLabel),
            2 => Some(Self::Regression),
            3 => Some(Self::MultipleChoice),
            _ => None,
        }
    }
    /// transformers' name (`problem_type` in `config.json`; `multiple_choice`
    /// for [`ProblemType::MultipleChoice`], which is not one).
    pub fn name(self) -> &'static str {
        match self {
            Self::SingleLabel => "single_label_classification",
            Self::MultiLabel => "multi_label_classification",
            Self::Regression => "regression",
            Self::MultipleChoice => "multiple_choice",
        }
    }
    /// The type a `config.json` `problem_type` names (`None` for an unknown name).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::SingleLabel, Self::MultiLabel, Self::Regression]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// The function that turns a sequence classifier's logits into scores, as
/// transformers' text-classification pipeline chooses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreFunction {
    /// `exp(x_i) / sum_j exp(x_j)`: one class.
    Softmax,
    /// `1 / (1 + exp(-x_i))` per label: multi-label, or a single output.
    Sigmoid,
    /// The logits themselves: regression.
    Identity,
    /// A softmax over the rows of one question, each row's one logit the
    /// score of one choice: multiple choice.
    ChoiceSoftmax,
}

impl ScoreFunction {
    /// A short name for messages and JSON (`softmax`, `sigmoid`, `none`,
    /// `softmax over choices`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Softmax => "softmax",
            Self::Sigmoid => "sigmoid",
            Self::Identity => "none",
            Self::ChoiceSoftmax => "softmax over choices",
        }
    }
}

/// The model's shape and head, as stored in the CONFIG section (128 bytes,
/// 32 little-endian 4-byte fields; unused fields must be zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelConfig {
    /// Word-piece vocabulary size.
    pub vocab_size: u32,
    /// Embedding size E.
    pub embedding_size: u32,
    /// Hidden size H.
    pub hidden_size: u32,
    /// Attention heads kept in the shared block(s) (after any pruning).
    pub num_heads: u32,
    /// Size of one head, `d` (the attention scale is `d^-0.5`).
    pub head_dim: u32,
    /// FFN inner size (after any pruning).
    pub intermediate_size: u32,
    /// Layer applications (`num_hidden_layers`).
    pub num_layers: u32,
    /// Distinct layer groups (`num_hidden_groups`).
    pub num_groups: u32,
    /// Layers per group (`inner_group_num`).
    pub inner_group_num: u32,
    /// Hidden activation.
    pub activation: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// Position table size; the longest sequence the model accepts.
    pub max_positions: u32,
    /// Token-type table size.
    pub type_vocab_size: u32,
    /// Task head.
    pub head: HeadKind,
    /// Output labels of the classification heads (2 for QA, 0 for base and MLM).
    pub num_labels: u32,
    /// Matrix precision.
    pub precision: Precision,
    /// Whether the file has a pooler (`pooler_output`).
    pub has_pooler: bool,
    /// What the logits of a sequence classifier mean (default for other heads).
    pub problem_type: ProblemType,
}

fn rd_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}
fn rd_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

impl ModelConfig {
    /// How a sequence classifier's logits become scores, by transformers'
    /// text-classification pipeline's rule: none for regression, a sigmoid
    /// per label for multi-label models and for a single output, else a
    /// softmax (also what other heads' label logits take).
    pub fn score_function(&self) -> ScoreFunction {
        match self.problem_type {
            ProblemType::Regression => ScoreFunction::Identity,
            ProblemType::MultipleChoice => ScoreFunction::ChoiceSoftmax,
            ProblemType::MultiLabel => ScoreFunction::Sigmoid,
            ProblemType::SingleLabel if self.num_labels == 1 => ScoreFunction::Sigmoid,
            ProblemType::SingleLabel => ScoreFunction::Softmax,
        }
    }

    /// Attention width of the shared block: `num_heads * head_dim`.
    pub fn attention_dim(&self) -> usize {
        self.num_heads as usize * self.head_dim as usize
    }

    /// Which stored layer (`group * inner_group_num + inner`) the `step`-th outer
    /// layer application uses, following transformers:
    /// `group = int(step / (num_hidden_layers / num_hidden_groups))` in Python
    /// float arithmetic.
    pub fn group_of_step(&self, step: u32) -> u32 {
        let per = self.num_layers as f64 / self.num_groups as f64;
        let g = (step as f64 / per) as u32;
        if g >= self.num_groups {
            self.num_groups - 1
        } else {
            g
        }
    }

    /// Encodes to the 128-byte CONFIG section.
    pub fn to_bytes(&self) -> [u8; CONFIG_LEN] {
        let fields: [u32; 18] = [
            self.vocab_size,
            self.embedding_size,
            self.hidden_size,
            self.num_heads,
            self.head_dim,
            self.intermediate_size,
            self.num_layers,
            self.num_groups,
            self.inner_group_num,
            self.activation as u32,
            self.layer_norm_eps.to_bits(),
            self.max_positions,
            self.type_vocab_size,
            self.head as u32,
            self.num_labels,
            self.precision as u32,
            self.has_pooler as u32,
            self.problem_type as u32,
        ];
        let mut out = [0u8; CONFIG_LEN];
        for (i, f) in fields.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&f.to_le_bytes());
        }
        out
    }

    /// Decodes and validates the CONFIG section.
    pub fn from_bytes(b: &[u8]) -> Result<Self, LoadError> {
        if b.len() != CONFIG_LEN {
            return Err(LoadError::BadSection {
                section: "config",
                reason: "length is not 128 bytes",
            });
        }
        let f = |i: usize| rd_u32(b, i * 4);
        if (18..32).any(|i| f(i) != 0) {
            return Err(LoadError::BadSection {
                section: "config",
                reason: "reserved fields are not zero",
            });
        }
        let activation = Activation::from_code(f(9)).ok_or(LoadError::UnknownCode {
            field: "activation",
            value: f(9),
        })?;
        let head = HeadKind::from_code(f(13)).ok_or(LoadError::UnknownCode {
            field: "head",
            value: f(13),
        })?;
        let precision = Precision::from_code(f(15)).ok_or(LoadError::UnknownCode {
            field: "precision",
            value: f(15),
        })?;
        let problem_type = ProblemType::from_code(f(17)).ok_or(LoadError::UnknownCode {
            field: "problem_type",
            value: f(17),
        })?;
        let has_pooler = match f(16) {
            0 => false,
            1 => true,
            v => {
                return Err(LoadError::UnknownCode {
                    field: "has_pooler",
                    value: v,
                })
            }
        };
        let cfg = ModelConfig {
            vocab_size: f(0),
            embedding_size: f(1),
            hidden_size: f(2),
            num_heads: f(3),
            head_dim: f(4),
            intermediate_size: f(5),
            num_layers: f(6),
            num_groups: f(7),
            inner_group_num: f(8),
            activation,
            layer_norm_eps: f32::from_bits(f(10)),
            max_positions: f(11),
            type_vocab_size: f(12),
            head,
            num_labels: f(14),
            precision,
            has_pooler,
            problem_type,
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Checks ranges and consistency; every dimension is non-zero and at most [`MAX_DIM`].
    pub fn check(&self) -> Result<(), LoadError> {
        let dims: [(&'static str, u32); 11] = [
            ("vocab_size", self.vocab_size),
            ("embedding_size", self.embedding_size),
            ("hidden_size", self.hidden_size),
            ("num_heads", self.num_heads),
            ("head_dim", self.head_dim),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_groups", self.num_groups),
            ("inner_group_num", self.inner_group_num),
            ("max_positions", self.max_positions),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (field, value) in dims {
            if value == 0 || value > MAX_DIM {
                return Err(LoadError::DimensionOutOfRange { field, value });
            }
        }
        if self
            .num_heads
            .checked_mul(self.head_dim)
            .is_none_or(|a| a > MAX_DIM)
        {
            return Err(LoadError::DimensionOutOfRange {
                field: "num_heads * head_dim",
                value: u32::MAX,
            });
        }
        if self.num_groups > self.num_layers {
            return Err(LoadError::Inconsistent(
                "num_groups is larger than num_layers",
            ));
        }
        if self
            .num_groups
            .checked_mul(self.inner_group_num)
            .is_none_or(|n| n > 4096)
        {
            return Err(LoadError::Inconsistent("too many stored layers"));
        }
        let calls = self.num_layers.saturating_mul(self.inner_group_num);
        if calls > MAX_LAYER_CALLS {
            return Err(LoadError::DimensionOutOfRange {
                field: "num_layers * inner_group_num (layer applications)",
                value: calls,
            });
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps >= 0.0) {
            return Err(LoadError::Inconsistent(
                "layer_norm_eps is not a finite non-negative number",
            ));
        }
        if self.num_labels > MAX_DIM {
            return Err(LoadError::DimensionOutOfRange {
                field: "num_labels",
                value: self.num_labels,
            });
        }
        let labels_ok = match self.head {
            HeadKind::Base | HeadKind::MaskedLm => self.num_labels == 0,
            HeadKind::QuestionAnswering => self.num_labels == 2,
            HeadKind::SequenceClassification | HeadKind::TokenClassification => {
                self.num_labels >= 1
            }
        };
        if !labels_ok {
            return Err(LoadError::Inconsistent("num_labels does not fit the head"));
        }
        if self.problem_type != ProblemType::SingleLabel
            && self.head != HeadKind::SequenceClassification
        {
            return Err(LoadError::Inconsistent(
                "problem_type is set for a head other than sequence classification",
            ));
        }
        if self.problem_type == ProblemType::MultipleChoice && self.num_labels != 1 {
            return Err(LoadError::Inconsistent(
                "a multiple-choice classifier has one output",
            ));
        }
        if self.head == HeadKind::SequenceClassification && !self.has_pooler {
            return Err(LoadError::Inconsistent(
                "sequence classification needs a pooler",
            ));
        }
        Ok(())
    }
}

/// One entry of the section table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionEntry {
    /// One of the [`section`] kinds.
    pub kind: u32,
    /// Absolute byte offset, a multiple of [`ALIGN`].
    pub offset: u64,
    /// Byte length (no padding included).
    pub len: u64,
    /// CRC-32 (IEEE) of the section's bytes.
    pub crc32: u32,
}

impl SectionEntry {
    /// Encodes to 32 bytes: kind, flags (0), offset, len, crc32, reserved (0).
    pub fn to_bytes(&self) -> [u8; SECTION_ENTRY_LEN] {
        let mut out = [0u8; SECTION_ENTRY_LEN];
        out[0..4].copy_from_slice(&self.kind.to_le_bytes());
        out[8..16].copy_from_slice(&self.offset.to_le_bytes());
        out[16..24].copy_from_slice(&self.len.to_le_bytes());
        out[24..28].copy_from_slice(&self.crc32.to_le_bytes());
        out
    }
}

/// Encodes the 64-byte header: magic, version, header length, file length,
/// section count, flags (0), section-table offset, reserved zeros, and a CRC-32
/// of bytes 0..60 in bytes 60..64.
pub fn header_bytes(file_len: u64, section_count: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&file_len.to_le_bytes());
    h[24..28].copy_from_slice(&section_count.to_le_bytes());
    h[32..40].copy_from_slice(&(HEADER_LEN as u64).to_le_bytes());
    let crc = crc32fast::hash(&h[0..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Rounds `n` up to a multiple of [`ALIGN`], or `None` on overflow.
pub fn align_up(n: u64) -> Option<u64> {
    n.checked_add(ALIGN as u64 - 1)
        .map(|v| v & !(ALIGN as u64 - 1))
}

/// A validated file: every field decoded, every range checked.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    /// The model configuration.
    pub config: ModelConfig,
    /// Byte range of the LABELS section.
    pub labels: core::ops::Range<usize>,
    /// Number of labels stored.
    pub label_count: usize,
    /// Byte range of the TOKENIZER section, when present.
    pub tokenizer: Option<core::ops::Range<usize>>,
    /// Byte range of the tensor table's entries.
    pub tensor_table: core::ops::Range<usize>,
    /// Number of tensors.
    pub tensor_count: usize,
    /// Whether every int8 matrix is pair-bounded ([`q8_pair_bounded`]): each
    /// pair of inputs `2j, 2j + 1` of a row sums to at most
    /// [`Q8_PAIR_BOUND`] in magnitude. Not a format rule (files without it
    /// are valid and give the same results); measured at load, it lets the
    /// AVX2 int8 GEMM take its faster exact path.
    pub q8_pairs_bounded: bool,
}

impl ParsedFile {
    /// The `i`-th tensor entry (already validated by [`parse`]).
    pub fn tensor(&self, bytes: &[u8], i: usize) -> TensorEntry {
        let off = self.tensor_table.start + i * TENSOR_ENTRY_LEN;
        TensorEntry::decode(&bytes[off..off + TENSOR_ENTRY_LEN])
    }

    /// Finds the tensor with `role` (binary search: the table is sorted by role code).
    pub fn find(&self, bytes: &[u8], role: Role) -> Option<TensorEntry> {
        let want = role.code();
        let (mut lo, mut hi) = (0usize, self.tensor_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let off = self.tensor_table.start + mid * TENSOR_ENTRY_LEN;
            let code = rd_u32(bytes, off);
            if code == want {
                return Some(self.tensor(bytes, mid));
            } else if code < want {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        None
    }

    /// Label `i` as a string (validated UTF-8 at parse time).
    pub fn label<'a>(&self, bytes: &'a [u8], i: usize) -> Option<&'a str> {
        if i >= self.label_count {
            return None;
        }
        let s = &bytes[self.labels.clone()];
        let off = rd_u32(s, 4 + i * 8) as usize;
        let len = rd_u32(s, 8 + i * 8) as usize;
        core::str::from_utf8(s.get(off..off + len)?).ok()
    }
}

/// Validates `bytes` as a complete model file.
///
/// Checks, in order: minimum length, magic, version, header CRC, that the
/// declared file length equals `bytes.len()`, that the buffer is aligned to
/// [`ALIGN`]; then the section table (known kinds, each once, 64-byte aligned,
/// increasing, non-overlapping, zero padding between them, the last ending
/// exactly at the end of the file, a CRC per section); then the config, labels
/// and tensor table (see `tensor::validate_table`).
pub fn parse(bytes: &[u8]) -> Result<ParsedFile, LoadError> {
    if bytes.len() < HEADER_LEN {
        return Err(LoadError::Truncated {
            needed: HEADER_LEN as u64,
            got: bytes.len() as u64,
        });
    }
    if bytes[0..8] != MAGIC {
        return Err(LoadError::BadMagic);
    }
    let version = rd_u32(bytes, 8);
    if version != VERSION {
        return Err(LoadError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let crc = rd_u32(bytes, 60);
    if crc32fast::hash(&bytes[0..60]) != crc {
        return Err(LoadError::ChecksumMismatch { section: "header" });
    }
    if rd_u32(bytes, 12) as usize != HEADER_LEN
        || rd_u32(bytes, 28) != 0
        || rd_u64(bytes, 32) != HEADER_LEN as u64
    {
        return Err(LoadError::BadSection {
            section: "header",
            reason: "unexpected header length, flags or table offset",
        });
    }
    if bytes[40..60].iter().any(|&b| b != 0) {
        return Err(LoadError::BadSection {
            section: "header",
            reason: "reserved bytes are not zero",
        });
    }
    let file_len = rd_u64(bytes, 16);
    if file_len != bytes.len() as u64 {
        return Err(if file_len > bytes.len() as u64 {
            LoadError::Truncated {
                needed: file_len,
                got: bytes.len() as u64,
            }
        } else {
            LoadError::TrailingBytes {
                expected: file_len,
                got: bytes.len() as u64,
            }
        });
    }
    if !file_len.is_multiple_of(ALIGN as u64) {
        return Err(LoadError::BadSection {
            section: "header",
            reason: "file length is not a multiple of 64",
        });
    }
    if !(bytes.as_ptr() as usize).is_multiple_of(ALIGN) {
        return Err(LoadError::Misaligned { align: ALIGN });
    }
    let nsec = rd_u32(bytes, 24);
    if nsec == 0 || nsec > MAX_SECTIONS {
        return Err(LoadError::BadSection {
            section: "header",
            reason: "section count out of range",
        });
    }
    let table_end = HEADER_LEN + nsec as usize * SECTION_ENTRY_LEN;
    if table_end > bytes.len() {
        return Err(LoadError::Truncated {
            needed: table_end as u64,
            got: bytes.len() as u64,
        });
    }
    let mut ranges: [Option<core::ops::Range<usize>>; 6] = [None, None, None, None, None, None];
    let mut prev_end = table_end as u64;
    for i in 0..nsec as usize {
        let e =
            &bytes[HEADER_LEN + i * SECTION_ENTRY_LEN..HEADER_LEN + (i + 1) * SECTION_ENTRY_LEN];
        let kind = rd_u32(e, 0);
        let (flags, offset, len, crc, reserved) = (
            rd_u32(e, 4),
            rd_u64(e, 8),
            rd_u64(e, 16),
            rd_u32(e, 24),
            rd_u32(e, 28),
        );
        let name = section_name(kind).ok_or(LoadError::UnknownCode {
            field: "section kind",
            value: kind,
        })?;
        if flags != 0 || reserved != 0 {
            return Err(LoadError::BadSection {
                section: name,
                reason: "flags or reserved field not zero",
            });
        }
        if offset % ALIGN as u64 != 0 {
            return Err(LoadError::BadSection {
                section: name,
                reason: "offset is not 64-byte aligned",
            });
        }
        if offset < prev_end {
            return Err(LoadError::BadSection {
                section: name,
                reason: "overlaps the previous section or the table",
            });
        }
        let expect_start = align_up(prev_end).ok_or(LoadError::Overflow)?;
        if offset != expect_start {
            return Err(LoadError::BadSection {
                section: name,
                reason: "gap before the section",
            });
        }
        let end = offset.checked_add(len).ok_or(LoadError::Overflow)?;
        if end > file_len {
            return Err(LoadError::Truncated {
                needed: end,
                got: file_len,
            });
        }
        // Padding between the previous end and this section must be zero.
        if bytes[prev_end as usize..offset as usize]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(LoadError::BadSection {
                section: name,
                reason: "padding before the section is not zero",
            });
        }
        let range = offset as usize..end as usize;
        if crc32fast::hash(&bytes[range.clone()]) != crc {
            return Err(LoadError::ChecksumMismatch { section: name });
        }
        let slot = &mut ranges[kind as usize];
        if slot.is_some() {
            return Err(LoadError::BadSection {
                section: name,
                reason: "appears twice",
            });
        }
        *slot = Some(range);
        prev_end = end;
    }
    if prev_end != file_len {
        return Err(LoadError::TrailingBytes {
            expected: prev_end,
            got: file_len,
        });
    }
    let need = |kind: u32| {
        ranges[kind as usize]
            .clone()
            .ok_or(LoadError::MissingSection(section_name(kind).unwrap_or("?")))
    };
    let config = ModelConfig::from_bytes(&bytes[need(section::CONFIG)?])?;
    let labels = need(section::LABELS)?;
    let label_count = validate_labels(&bytes[labels.clone()], &config)?;
    let tt = need(section::TENSOR_TABLE)?;
    let data = need(section::TENSOR_DATA)?;
    let tsec = &bytes[tt.clone()];
    if tsec.len() < 8 {
        return Err(LoadError::BadSection {
            section: "tensor table",
            reason: "shorter than its count",
        });
    }
    let count = rd_u32(tsec, 0);
    if count > MAX_TENSORS || rd_u32(tsec, 4) != 0 {
        return Err(LoadError::BadSection {
            section: "tensor table",
            reason: "count out of range or reserved field not zero",
        });
    }
    if tsec.len() != 8 + count as usize * TENSOR_ENTRY_LEN {
        return Err(LoadError::BadSection {
            section: "tensor table",
            reason: "length does not match the count",
        });
    }
    let parsed = ParsedFile {
        config,
        labels,
        label_count,
        tokenizer: ranges[section::TOKENIZER as usize].clone(),
        tensor_table: tt.start + 8..tt.end,
        tensor_count: count as usize,
        q8_pairs_bounded: false,
    };
    let q8_pairs_bounded = tensor::validate_table(bytes, &parsed, data)?;
    Ok(ParsedFile {
        q8_pairs_bounded,
        ..parsed
    })
}

fn section_name(kind: u32) -> Option<&'static str> {
    Some(match kind {
        section::CONFIG => "config",
        section::LABELS => "labels",
        section::TOKENIZER => "tokenizer",
        section::TENSOR_TABLE => "tensor table",
        section::TENSOR_DATA => "tensor data",
        _ => return None,
    })
}

fn validate_labels(s: &[u8], cfg: &ModelConfig) -> Result<usize, LoadError> {
    const NAME: &str = "labels";
    if s.len() < 4 {
        return Err(LoadError::BadSection {
            section: NAME,
            reason: "shorter than its count",
        });
    }
    let n = rd_u32(s, 0) as usize;
    let want = match cfg.head {
        HeadKind::SequenceClassification | HeadKind::TokenClassification => cfg.num_labels as usize,
        _ => 0,
    };
    if n != want {
        return Err(LoadError::BadSection {
            section: NAME,
            reason: "label count does not match the config",
        });
    }
    let table_end = n
        .checked_mul(8)
        .and_then(|v| v.checked_add(4))
        .ok_or(LoadError::Overflow)?;
    if table_end > s.len() {
        return Err(LoadError::BadSection {
            section: NAME,
            reason: "table runs past the section",
        });
    }
    let mut pos = table_end;
    for i in 0..n {
        let off = rd_u32(s, 4 + i * 8) as usize;
        let len = rd_u32(s, 8 + i * 8) as usize;
        if off != pos {
            return Err(LoadError::BadSection {
                section: NAME,
                reason: "strings are not contiguous",
            });
        }
        let end = off.checked_add(len).ok_or(LoadError::Overflow)?;
        let text = s.get(off..end).ok_or(LoadError::BadSection {
            section: NAME,
            reason: "string runs past the section",
        })?;
        if core::str::from_utf8(text).is_err() {
            return Err(LoadError::BadSection {
                section: NAME,
                reason: "a label is not UTF-8",
            });
        }
        pos = end;
    }
    if pos != s.len() {
        return Err(LoadError::BadSection {
            section: NAME,
            reason: "bytes after the last label",
        });
    }
    Ok(n)
}

/// Encodes the LABELS section for `labels`.
#[cfg(feature = "std")]
pub fn labels_bytes(labels: &[&str]) -> std::vec::Vec<u8> {
    let mut out = std::vec::Vec::new();
    out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
    let mut off = 4 + labels.len() * 8;
    for l in labels {
        out.extend_from_slice(&(off as u32).to_le_bytes());
        out.extend_from_slice(&(l.len() as u32).to_le_bytes());
        off += l.len();
    }
    for l in labels {
        out.extend_from_slice(l.as_bytes());
    }
    out
}
