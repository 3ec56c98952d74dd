//! albert-convert: Hugging Face / ONNX ALBERT checkpoints to albert-edge model files.
//!
//! The stages are pure functions over in-memory types; the CLI only connects them:
//! `load::{safetensors, onnx}` -> [`names::interpret`] -> (`prune`, `vocab`) ->
//! [`pack::pack`] (with [`quantize`]) -> [`write::write_atomic`].
#![deny(missing_docs)]

pub mod calibrate;
pub mod config;
pub mod convert;
pub mod corpus;
pub mod load;
pub mod model;
pub mod names;
pub mod pack;
pub mod prune;
pub mod quantize;
pub mod refit;
pub mod spm;
#[cfg(feature = "onnx")]
pub mod verify;
pub mod vocab;
pub mod write;
