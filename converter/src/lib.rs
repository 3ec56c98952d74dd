//! albert-convert: Hugging Face / ONNX ALBERT checkpoints to albert-edge model files.
pub mod config;
pub mod load;
pub mod names;
pub mod spm;
