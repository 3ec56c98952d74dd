//! albert-edge runtime.
#![cfg_attr(not(feature = "std"), no_std)]
pub mod tokenizer;
