//! # albert-edge
//!
//! Runs ALBERT models converted by `albert-convert` into one compact `.albert`
//! file: validated once at load, then used in place (memory-mapped, in flash,
//! or in any 64-byte aligned buffer), with no heap allocation during inference.
//!
//! ```no_run
//! # #[cfg(feature = "std")] {
//! use albert_edge::{Input, Model};
//! let model = Model::open("models/sst2-tiny.albert")?;
//! let mut ws = model.new_workspace(128, 1);
//! let ids = [2, 48, 13, 3];
//! let out = model.run(&mut ws, &Input::single(&ids))?;
//! println!("{:?}", out.get("logits").map(|o| o.data));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crate is `no_std` without its default `std` feature; the core needs
//! neither `std` nor an allocator.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod aligned;
#[cfg(feature = "capi")]
pub mod capi;
mod cast;
pub mod format;
pub mod kernels;
mod model;
#[cfg(feature = "std")]
pub mod pool;
pub mod tokenizer;
pub mod workspace;

pub use format::{
    Activation, HeadKind, LoadError, ModelConfig, Precision, ProblemType, ScoreFunction,
};
pub use kernels::{Kernels, Tier};
pub use model::{Input, Model, Output, Outputs, RunError, Trace};
#[cfg(feature = "std")]
pub use pool::ThreadPool;
pub use workspace::Workspace;
