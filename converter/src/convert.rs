//! The whole conversion as one function over in-memory values, so it can be
//! tested without files: interpret -> (prune) -> quantize/pack -> reload check.

use crate::calibrate::{self, Sample};
use crate::load::RawCheckpoint;
use crate::model::Albert;
use crate::names;
use crate::pack;
use crate::quantize::QuantError;
use albert_edge::{Model, Precision};
use anyhow::{Context, Result};

/// What a conversion produced, for the summary.
#[derive(Debug, Clone)]
pub struct Report {
    /// Parameters of the model written (shared weights counted once).
    pub parameters: usize,
    /// Bytes of the input files.
    pub input_bytes: u64,
    /// Bytes of the model file.
    pub file_bytes: usize,
    /// Workspace bytes for one sequence of the maximum length.
    pub workspace_bytes_max_seq: usize,
    /// Maximum sequence length.
    pub max_seq: usize,
    /// Whether a tokenizer section was written.
    pub has_tokenizer: bool,
    /// Quantization error per int8 matrix.
    pub quant_errors: Vec<QuantError>,
}

/// Builds the tokenizer section from the checkpoint's `spiece.model`, if any.
pub fn tokenizer_section(raw: &RawCheckpoint) -> Result<Option<Vec<u8>>> {
    match &raw.spiece {
        Some(sp) => Ok(Some(
            crate::spm::build_tokenizer_section(sp, raw.tokenizer_config.as_deref())
                .context("reading spiece.model")?,
        )),
        None => Ok(None),
    }
}

/// Packs an interpreted model and proves the result loads. For int8, the
/// activation ranges come from `samples` (synthetic sequences when `None`).
pub fn finish(
    m: &Albert,
    precision: Precision,
    tokenizer: Option<&[u8]>,
    input_bytes: u64,
    samples: Option<&[Sample]>,
) -> Result<(Vec<u8>, Report)> {
    let stats = if precision == Precision::Int8 {
        let synthetic;
        let samples = match samples {
            Some(s) => s,
            None => {
                synthetic =
                    calibrate::synthetic(m.arch.vocab, m.arch.max_positions, m.arch.type_vocab);
                &synthetic
            }
        };
        Some(calibrate::collect(m, samples, |_| {})?)
    } else {
        None
    };
    let packed = pack::pack(m, precision, tokenizer, stats.as_ref())?;
    let model = Model::from_vec(&packed.bytes)
        .map_err(|e| anyhow::anyhow!("internal error: the written file does not load: {e}"))?;
    let max_seq = model.config().max_positions as usize;
    let report = Report {
        parameters: m.parameter_count(),
        input_bytes,
        file_bytes: packed.bytes.len(),
        workspace_bytes_max_seq: model.workspace_len(max_seq, 1),
        max_seq,
        has_tokenizer: tokenizer.is_some(),
        quant_errors: packed.quant_errors,
    };
    Ok((packed.bytes, report))
}

/// Converts a loaded checkpoint to model-file bytes.
pub fn convert(raw: &RawCheckpoint, precision: Precision) -> Result<(Vec<u8>, Report)> {
    let m = names::interpret(raw)?;
    let tok = tokenizer_section(raw)?;
    finish(&m, precision, tok.as_deref(), raw.source_bytes, None)
}
