//! [`LoadError`]: everything that can be wrong with a model file.

use core::fmt;

/// Why a model file was rejected. Every variant is produced by [`super::parse`]
/// or by [`crate::Model`] loading, and each has a test in `tests/format.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The buffer ends before a structure it must contain.
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        got: u64,
    },
    /// The first 8 bytes are not `ALBEDGE\0`: not a model file.
    BadMagic,
    /// The file was written for another format version.
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this runtime reads.
        supported: u32,
    },
    /// A section's bytes do not match its stored CRC-32 (corruption).
    ChecksumMismatch {
        /// Which section.
        section: &'static str,
    },
    /// The buffer is longer than the file it holds.
    TrailingBytes {
        /// Length declared by the header (or covered by the sections).
        expected: u64,
        /// Actual length.
        got: u64,
    },
    /// The buffer does not start at a multiple of `align` bytes.
    Misaligned {
        /// Required alignment.
        align: usize,
    },
    /// A structural problem in one section.
    BadSection {
        /// Which section.
        section: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A required section is absent.
    MissingSection(&'static str),
    /// An enumerated field holds a value this runtime does not know.
    UnknownCode {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u32,
    },
    /// A dimension is zero or larger than the runtime accepts.
    DimensionOutOfRange {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u32,
    },
    /// Fields that contradict each other.
    Inconsistent(&'static str),
    /// An offset or size computation overflowed.
    Overflow,
    /// A tensor entry is wrong.
    BadTensor {
        /// The tensor's role name (e.g. `layer.ffn.weight`).
        role: &'static str,
        /// Stored layer index (0 for global tensors).
        layer: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// A tensor the config requires is absent.
    MissingTensor {
        /// The tensor's role name.
        role: &'static str,
        /// Stored layer index.
        layer: u32,
    },
    /// The tokenizer section is invalid.
    Tokenizer(crate::tokenizer::TokenizerError),
    /// The host is big-endian; model files are little-endian.
    BigEndianHost,
    /// Reading or mapping the file failed (only from `Model::open`).
    Io(&'static str),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, got } => write!(
                f,
                "model file is truncated: needs {needed} bytes, has {got}"
            ),
            Self::BadMagic => write!(f, "not an albert-edge model file (bad magic)"),
            Self::UnsupportedVersion { found, supported } => {
                write!(f, "model file format version {found} is not supported (this runtime reads version {supported}); convert the checkpoint again")
            }
            Self::ChecksumMismatch { section } => write!(
                f,
                "model file is corrupted: checksum mismatch in the {section} section"
            ),
            Self::TrailingBytes { expected, got } => write!(
                f,
                "model file has trailing bytes: expected {expected} bytes, got {got}"
            ),
            Self::Misaligned { align } => write!(
                f,
                "model bytes must start at a {align}-byte aligned address"
            ),
            Self::BadSection { section, reason } => {
                write!(f, "invalid {section} section: {reason}")
            }
            Self::MissingSection(s) => write!(f, "model file lacks the {s} section"),
            Self::UnknownCode { field, value } => write!(f, "unknown {field} code {value}"),
            Self::DimensionOutOfRange { field, value } => {
                write!(f, "config field {field} = {value} is out of range")
            }
            Self::Inconsistent(what) => write!(f, "inconsistent config: {what}"),
            Self::Overflow => write!(f, "model file offsets or sizes overflow"),
            Self::BadTensor {
                role,
                layer,
                reason,
            } => write!(f, "invalid tensor {role} (layer {layer}): {reason}"),
            Self::MissingTensor { role, layer } => {
                write!(f, "model file lacks tensor {role} (layer {layer})")
            }
            Self::Tokenizer(e) => write!(f, "invalid tokenizer section: {e}"),
            Self::BigEndianHost => write!(f, "big-endian hosts are not supported"),
            Self::Io(what) => write!(f, "cannot read model file: {what}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LoadError {}
