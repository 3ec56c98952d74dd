//! aarch64 kernel tiers.
//!
//! * [`neon`]: `quantize_rows` and `gemm_q8` with baseline NEON (no dot
//!   product: `smull` / `smlal` into i16, then `sadalp` into i32), the
//!   Cortex-A72 (Raspberry Pi 4) path. NEON is part of the aarch64 baseline,
//!   so this tier is always available.
//! * [`neon_dot`]: `gemm_q8` with the `sdot` instruction (Armv8.2 dot product,
//!   Cortex-A55/A76 and later; detected at run time with `std`, else from
//!   `target_feature = "dotprod"`), and NEON's `quantize_rows`. Stable Rust has
//!   no `sdot` intrinsic, so it is emitted with `asm!`.
//! * [`neon_i8mm`]: `gemm_q8` with the `smmla` instruction (Armv8.6 int8
//!   matrix multiply, Cortex-A510/A710/X2, Neoverse V1/N2 and later; detected
//!   the same way, `target_feature = "i8mm"`), emitted with `asm!` too; NEON's
//!   other kernels.
//!
//! `neon_float` holds both tiers' float kernels (epilogue activations,
//! `gemm_f32`, `layer_norm`, `attention`). Every tier is bit-identical to
//! [`crate::kernels::scalar`].

pub mod neon;
pub mod neon_dot;
pub(crate) mod neon_float;
pub mod neon_i8mm;

use crate::kernels::{scalar, Epilogue};

/// Applies `ep` to `count` consecutive outputs at `out` whose pre-epilogue
/// values are `y[..count]`, one element at a time with the scalar epilogue.
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
