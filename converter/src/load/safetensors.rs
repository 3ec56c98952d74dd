//! Hugging Face checkpoint folder reader: `config.json`, `model.safetensors`,
//! and the tokenizer files `spiece.model` / `tokenizer_config.json` when present.

use super::{RawCheckpoint, Tensor};
use crate::config::HfConfig;
use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads a checkpoint folder.
pub fn load_dir(dir: &Path) -> Result<RawCheckpoint> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("cannot read {}", cfg_path.display()))?;
    let config =
        HfConfig::from_json(&text).with_context(|| format!("in {}", cfg_path.display()))?;
    let st_path = dir.join("model.safetensors");
    let bytes =
        std::fs::read(&st_path).with_context(|| format!("cannot read {}", st_path.display()))?;
    let tensors = read_safetensors(&bytes).with_context(|| format!("in {}", st_path.display()))?;
    let spiece = std::fs::read(dir.join("spiece.model")).ok();
    let tokenizer_config = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok();
    let source_bytes =
        text.len() as u64 + bytes.len() as u64 + spiece.as_ref().map_or(0, |s| s.len() as u64);
    Ok(RawCheckpoint {
        config,
        tensors,
        spiece,
        tokenizer_config,
        source_bytes,
    })
}

/// Decodes every tensor of a safetensors file to f32 (F32, F16 and BF16 are accepted).
pub fn read_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>> {
    let st = SafeTensors::deserialize(bytes).context("not a valid safetensors file")?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::I64 | Dtype::I32 if name.ends_with("position_ids") => continue, // a buffer, not a weight
            other => bail!("tensor {name}: dtype {other:?} is not supported (F32, F16, BF16)"),
        };
        out.insert(
            name.clone(),
            Tensor::new(view.shape().to_vec(), values).with_context(|| format!("tensor {name}"))?,
        );
    }
    Ok(out)
}

/// IEEE half to single precision (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: normalize.
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn f16_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
    }
}
