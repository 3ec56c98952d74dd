//! Shared test helpers: fixture paths, reference arrays, conversions.
#![allow(dead_code)]

use albert_convert::{convert, load};
use albert_edge::Precision;
use serde_json::Value;
use std::path::PathBuf;

/// The shared fixtures folder (`../shared` beside the repo, or `$ALBERT_EDGE_SHARED`).
pub fn shared() -> PathBuf {
    let p = std::env::var_os("ALBERT_EDGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")));
    assert!(
        p.join("fixtures").is_dir(),
        "fixtures not found at {} (set ALBERT_EDGE_SHARED)",
        p.display()
    );
    p
}

/// Every checkpoint folder under fixtures, as `variant/head`.
pub const CHECKPOINTS: &[&str] = &[
    "tiny-base/base",
    "tiny-base/seqcls2",
    "tiny-base/seqcls3",
    "tiny-base/tokcls5",
    "tiny-base/qa",
    "tiny-base/mlm",
    "tiny-groups/base",
    "tiny-groups/seqcls2",
    "tiny-gelu/base",
    "tiny-gelu/seqcls2",
    "tiny-relu/base",
    "tiny-relu/seqcls2",
    "tiny-e-eq-h/base",
    "tiny-e-eq-h/seqcls2",
];

/// Converts a fixture checkpoint to model-file bytes (with the converter's
/// defaults, as `albert-convert FIXTURE -o FILE --precision P` does).
///
/// With `ALBERT_EDGE_FIXTURE_MODELS=DIR`, reads `DIR/<ckpt with / as __>.<int8|f32>.albert`
/// instead when it exists: `.ci/arm-tests.sh` converts the fixtures once,
/// natively, and the emulated aarch64 runs test the runtime on those files
/// (converting on the big machine and running on the device is how the
/// files are used; the converter's own tests run natively).
pub fn convert_fixture(ckpt: &str, precision: Precision) -> Vec<u8> {
    if let Some(d) = std::env::var_os("ALBERT_EDGE_FIXTURE_MODELS") {
        let name = format!("{}.{}.albert", ckpt.replace('/', "__"), precision.name());
        if let Ok(b) = std::fs::read(std::path::Path::new(&d).join(name)) {
            return b;
        }
    }
    let dir = shared().join("fixtures").join(ckpt);
    let raw = load::safetensors::load_dir(&dir).unwrap_or_else(|e| panic!("{ckpt}: {e:#}"));
    convert::convert(&raw, precision)
        .unwrap_or_else(|e| panic!("{ckpt}: {e:#}"))
        .0
}

/// A float array from a reference file (inline or in the safetensors sidecar).
pub fn f32_array(ckpt_dir: &std::path::Path, a: &Value) -> (Vec<usize>, Vec<f32>) {
    let shape: Vec<usize> = a["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    if let Some(data) = a.get("data") {
        return (
            shape,
            data.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect(),
        );
    }
    let file = a["safetensors"].as_str().unwrap();
    let bytes = std::fs::read(ckpt_dir.join(file)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(a["tensor"].as_str().unwrap()).unwrap();
    (
        shape,
        t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// An integer array from a reference case.
pub fn u32_array(a: &Value) -> (Vec<usize>, Vec<u32>) {
    let shape: Vec<usize> = a["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    (
        shape,
        a["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect(),
    )
}

/// Parsed `reference.json` of a checkpoint.
pub fn reference(ckpt: &str) -> (PathBuf, Value) {
    let dir = shared().join("fixtures").join(ckpt);
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    (dir, v)
}

/// Max absolute difference.
pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Cosine similarity (in f64).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut d, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        d += *x as f64 * *y as f64;
        na += *x as f64 * *x as f64;
        nb += *y as f64 * *y as f64;
    }
    if na == 0.0 && nb == 0.0 {
        return 1.0;
    }
    d / (na.sqrt() * nb.sqrt())
}

/// Copies bytes into a 64-byte aligned buffer and returns it (keep it alive).
pub struct Aligned {
    blocks: Vec<[u64; 8]>,
    len: usize,
}

impl Aligned {
    pub fn new(b: &[u8]) -> Aligned {
        let mut blocks = vec![[0u64; 8]; b.len().div_ceil(64) + 1];
        // Find a 64-aligned start inside the allocation.
        let base = blocks.as_mut_ptr() as usize;
        let skip = (64 - base % 64) % 64;
        assert!(skip.is_multiple_of(8));
        let mut a = Aligned {
            blocks,
            len: b.len(),
        };
        a.bytes_mut_at(skip).copy_from_slice(b);
        a
    }
    fn skip(&self) -> usize {
        (64 - self.blocks.as_ptr() as usize % 64) % 64
    }
    fn bytes_mut_at(&mut self, skip: usize) -> &mut [u8] {
        let len = self.len;
        let all: &mut [u8] = bytemuck_bytes_mut(&mut self.blocks);
        &mut all[skip..skip + len]
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let skip = self.skip();
        self.bytes_mut_at(skip)
    }
    pub fn bytes(&self) -> &[u8] {
        let all: &[u8] = bytemuck_bytes(&self.blocks);
        &all[self.skip()..self.skip() + self.len]
    }
}

fn bytemuck_bytes(b: &[[u64; 8]]) -> &[u8] {
    // SAFETY: [u64; 8] is 64 bytes of plain data; viewing it as bytes is always valid.
    unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<u8>(), b.len() * 64) }
}
fn bytemuck_bytes_mut(b: &mut [[u64; 8]]) -> &mut [u8] {
    // SAFETY: as above; any byte pattern is a valid u64.
    unsafe { std::slice::from_raw_parts_mut(b.as_mut_ptr().cast::<u8>(), b.len() * 64) }
}
