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
//! `neon_float` holds the tiers' float kernels (epilogue activations,
//! `gemm_f32`, `layer_norm`, `attention`). Every tier is bit-identical to
//! [`crate::kernels::scalar`].

/// Defines a NEON tier's [`crate::kernels::GemmQ8Fn`] entry `$entry`
/// (private: reachable only through the tier's kernel table, so its target
/// features are available) and its driver `gemm`: the bounds checked once by
/// `check_gemm_q8`, then [`neon::gemm_blocks`] with tiles of up to `$mr` rows,
/// each the expression `$tile` over `$ap` (the tile's first row), `$rows`
/// (`1..=$mr`), `$wblk` (the n-block's packed weights), `$kg` (k-groups) and
/// `$lda` (row stride), evaluated in an `unsafe` block of the driver, whose
/// contract it may rely on: rows `0..$rows` at `$ap` have `$kg * 4` readable
/// bytes, the block at `$wblk` `$kg * 64`, and `$features` are available.
macro_rules! gemm_entry {
    ($(#[$doc:meta])* $entry:ident, $features:literal, $mr:expr,
     |$ap:ident, $rows:ident, $wblk:ident, $kg:ident, $lda:ident| $tile:expr) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        fn $entry(
            a: &[i8],
            lda: usize,
            a_scales: &[f32],
            a_zps: &[i32],
            m: usize,
            w: &QMatrix<'_>,
            bias: &[f32],
            out: &mut [f32],
            ldo: usize,
            ep: Epilogue,
        ) {
            check_gemm_q8(a, lda, a_scales, a_zps, m, w, bias, out, ldo);
            // SAFETY: the tier's features are available (this function is
            // only reachable through its kernel table) and `check_gemm_q8`
            // proved every access in bounds.
            unsafe { gemm(a, lda, a_scales, a_zps, m, w, bias, out, ldo, ep) }
        }

        /// The n-block and row-tile loops ([`super::neon::gemm_blocks`] with
        /// this tier's tile).
        ///
        /// # Safety
        ///
        /// The tier's target features; the arguments must pass
        /// [`check_gemm_q8`].
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $features)]
        unsafe fn gemm(
            a: &[i8],
            lda: usize,
            a_scales: &[f32],
            a_zps: &[i32],
            m: usize,
            w: &QMatrix<'_>,
            bias: &[f32],
            out: &mut [f32],
            ldo: usize,
            ep: Epilogue,
        ) {
            let ($kg, $lda) = (w.k_groups, lda);
            let tile = |$ap: *const i8, $rows: usize, $wblk: *const i8| {
                // SAFETY: (gemm_blocks' contract) rows 0..rows at `ap` have
                // kg * 4 readable bytes, the block at `wblk` kg * 64; the
                // tier's features are available (this function's contract).
                unsafe { $tile }
            };
            // SAFETY: NEON is available and the arguments pass
            // check_gemm_q8 (our contract).
            unsafe {
                super::neon::gemm_blocks::<{ $mr }>(
                    a, lda, a_scales, a_zps, m, w, bias, out, ldo, ep, &tile,
                )
            }
        }
    };
}

/// Declares a NEON tier that adds one extension, `$feature`, and replaces
/// only `gemm_q8` (with `$gemm`): its proof type `$ty` (the constructors,
/// detection at run time with `std`, otherwise the compile-time
/// `target_feature`) and its kernel table, NEON's with that entry.
macro_rules! extension_tier {
    ($(#[$doc:meta])* $ty:ident, $feature:tt, $tier:expr, $gemm:ident, $safety:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $ty(());

        crate::kernels::tier_constructors!($ty, $safety);

        impl $ty {
            /// Whether this CPU has the extension: run-time detection with
            /// `std`, otherwise the compile-time `target_feature`.
            #[inline]
            pub fn is_available() -> bool {
                #[cfg(feature = "std")]
                {
                    std::arch::is_aarch64_feature_detected!($feature)
                }
                #[cfg(not(feature = "std"))]
                {
                    cfg!(target_feature = $feature)
                }
            }

            /// The kernel table: NEON's, with this tier's `gemm_q8`.
            pub fn kernels(self) -> Kernels {
                // SAFETY: this tier's requirement includes NEON.
                let neon = unsafe { super::neon::NeonKernels::new_unchecked() }.kernels();
                Kernels {
                    tier: $tier,
                    gemm_q8: $gemm,
                    ..neon
                }
            }
        }
    };
}

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
