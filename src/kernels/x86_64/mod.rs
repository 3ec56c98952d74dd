//! x86-64 kernel tiers.
//!
//! * [`avx2`]: `quantize_rows` and `gemm_q8` with 256-bit AVX2 integer ops
//!   (`vpmaddubsw` with the sign trick, then `vpmaddwd` into i32); with
//!   `avx2_float`, the epilogue activations, `layer_norm` and `attention`.
//! * [`avx512vnni`]: `gemm_q8` with 512-bit `vpdpbusd`; reuses AVX2's
//!   `quantize_rows` (every AVX-512 CPU has AVX2, and the tier checks it).
//!
//! Both are bit-identical to [`crate::kernels::scalar`]; see the module docs of
//! [`crate::kernels`] for the arithmetic they reproduce.
//!
//! Run-time detection needs the `std` feature (`is_x86_feature_detected!`,
//! which also checks through XGETBV that the OS saves the AVX / AVX-512
//! register state). Without `std`, a tier is available only when the build
//! enables its features at compile time (`-C target-feature=+avx2`, or a
//! `target-cpu` that has them), like memchr without its `std` feature.

pub mod avx2;
pub(crate) mod avx2_float;
// The AVX-512 intrinsics and `target_feature`s are stable since Rust 1.89, above
// the crate's `rust-version` (1.85): building this tier needs 1.89.
#[allow(clippy::incompatible_msrv)]
pub mod avx512vnni;

use crate::kernels::{scalar, Epilogue};

/// Applies `ep` to `count` consecutive outputs at `out` whose pre-epilogue
/// values are `y[..count]`, one element at a time with the scalar epilogue
/// (the tails; the AVX-512 tier's `Activate` / `Tanh` epilogues).
///
/// # Safety
///
/// `out..out + count` must be valid for reads and writes and not aliased.
#[inline]
unsafe fn epilogue_lanes(out: *mut f32, y: &[f32], count: usize, ep: Epilogue) {
    for (l, &v) in y.iter().enumerate().take(count) {
        // SAFETY: `l < count`, and the caller guarantees `out..out + count`
        // is valid and unaliased.
        scalar::epilogue(unsafe { &mut *out.add(l) }, v, ep);
    }
}
