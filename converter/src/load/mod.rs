//! Readers that turn a checkpoint on disk into a [`RawCheckpoint`]: Hugging Face
//! tensor names mapped to f32 arrays, plus the config and tokenizer files.
//!
//! Every reader produces the same thing, so everything after loading (naming,
//! pruning, quantization, packing) is shared by the safetensors and ONNX paths.

#[cfg(feature = "onnx")]
pub mod onnx;
pub mod safetensors;

use crate::config::HfConfig;
use std::collections::BTreeMap;

/// A dense f32 tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

impl Tensor {
    /// Builds a tensor, checking that the data length matches the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> anyhow::Result<Self> {
        let n: usize = shape.iter().product();
        anyhow::ensure!(
            n == data.len(),
            "tensor data has {} values, shape {:?} needs {}",
            data.len(),
            shape,
            n
        );
        Ok(Tensor { shape, data })
    }
}

/// A checkpoint as read from disk, before any interpretation.
///
/// `tensors` uses the names Hugging Face `save_pretrained` writes for the model class
/// (`albert.`-prefixed for the head classes, unprefixed for `AlbertModel`), with
/// `nn.Linear` weights as `[out, in]`.
#[derive(Debug, Clone)]
pub struct RawCheckpoint {
    /// Parsed `config.json` (or a config reconstructed from a graph).
    pub config: HfConfig,
    /// Tensor name -> value.
    pub tensors: BTreeMap<String, Tensor>,
    /// Bytes of `spiece.model`, if one was found or given.
    pub spiece: Option<Vec<u8>>,
    /// Text of `tokenizer_config.json`, if present.
    pub tokenizer_config: Option<String>,
    /// Total size of the input files in bytes (for the summary).
    pub source_bytes: u64,
}
