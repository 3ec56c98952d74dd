//! Hugging Face checkpoint folder reader: `config.json`, `model.safetensors` (or its
//! shards and `model.safetensors.index.json`), and the tokenizer files `spiece.model` /
//! `tokenizer_config.json` when present.

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
    let (tensors, weight_bytes) = read_weights(dir)?;
    let spiece = std::fs::read(dir.join("spiece.model")).ok();
    let tokenizer_config = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok();
    let source_bytes =
        text.len() as u64 + weight_bytes + spiece.as_ref().map_or(0, |s| s.len() as u64);
    Ok(RawCheckpoint {
        config,
        tensors,
        spiece,
        tokenizer_config,
        source_bytes,
    })
}

/// The folder's weights: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists (what `save_pretrained` writes above its
/// `max_shard_size`). Other weight formats are named in the error.
fn read_weights(dir: &Path) -> Result<(BTreeMap<String, Tensor>, u64)> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.exists() || !index.exists() {
        let bytes = match std::fs::read(&single) {
            Ok(b) => b,
            Err(e) => {
                let other = ["pytorch_model.bin", "tf_model.h5", "flax_model.msgpack"]
                    .into_iter()
                    .find(|f| dir.join(f).exists());
                if let Some(f) = other {
                    bail!(
                        "{} has {f} but no model.safetensors: only safetensors weights are read \
                         (save the model with transformers' save_pretrained, which writes \
                         safetensors by default, or export it to ONNX)",
                        dir.display()
                    );
                }
                return Err(e).with_context(|| format!("cannot read {}", single.display()));
            }
        };
        let tensors =
            read_safetensors(&bytes).with_context(|| format!("in {}", single.display()))?;
        return Ok((tensors, bytes.len() as u64));
    }
    let text = std::fs::read_to_string(&index)
        .with_context(|| format!("cannot read {}", index.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", index.display()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{} has no weight_map object", index.display()))?;
    let mut shards = std::collections::BTreeSet::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .with_context(|| format!("{}: the shard of {name} is not a string", index.display()))?;
        // Shards are files of this folder, never paths elsewhere.
        if file.is_empty() || file.contains(['/', '\\']) || file == "." || file == ".." {
            bail!(
                "{}: shard name {file:?} is not a file name",
                index.display()
            );
        }
        shards.insert(file.to_string());
    }
    let (mut tensors, mut total) = (BTreeMap::new(), 0u64);
    for file in &shards {
        let path = dir.join(file);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        total += bytes.len() as u64;
        for (name, t) in
            read_safetensors(&bytes).with_context(|| format!("in {}", path.display()))?
        {
            if tensors.insert(name.clone(), t).is_some() {
                bail!("tensor {name} is in more than one shard");
            }
        }
    }
    for name in map.keys() {
        if !tensors.contains_key(name) && !name.ends_with("position_ids") {
            bail!("{}: tensor {name} is not in its shard", index.display());
        }
    }
    Ok((tensors, total))
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
