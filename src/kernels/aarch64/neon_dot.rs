//! NEON dot-product kernel: `gemm_i8_i8_4x16c4_neondot` (and NEON's
//! quantization).
//!
//! # The GEMM, first as pseudo-code
//!
//! ```text
//! for each n-block nb (16 outputs: [k_groups][16 rows][4 k] bytes)
//!   for each tile of 4 token rows
//!     acc[i][0..4] = 0                           (16 x i32x4: 4 rows x 16 outputs)
//!     for each run of 4 k-groups (16 inputs)
//!       a[i] = a[i][16q..16q+16]                 (one q-register per row)
//!       for g in 0..4
//!         w[j] = rows 4j..4j+4 of group g        (4 q-registers, 4 rows x 4 k each)
//!         acc[i][j] = sdot(acc[i][j], w[j], a[i].4b[g])   (indexed by element g)
//!     the remaining k-groups one at a time (element 0 of a 4-byte broadcast)
//!     epilogue (shared with the NEON tier)
//! ```
//!
//! `sdot vd.4s, vn.16b, vm.4b[g]` adds to each i32 lane `l` the dot product of
//! bytes `4l..4l+4` of `vn` (one output row's 4 weights) and bytes `4g..4g+4`
//! of `vm` (the token's 4 activations): signed x signed, exact, no offset
//! needed. 16 accumulators + 4 weights + 4 activations use 24 of the 32
//! registers. Stable Rust has no `sdot` intrinsic, so each one is a one-line
//! `asm!` that the register allocator sees as pure.

use crate::kernels::{check_gemm_q8, Epilogue, Kernels, QMatrix, Tier};
use core::arch::aarch64::*;
use core::arch::asm;

/// Token rows per tile.
const MR: usize = 4;

extension_tier!(
    /// Proof that the CPU supports NEON and the dot-product extension
    /// (`FEAT_DotProd`: `sdot`; Cortex-A55/A76 and later).
    NeonDotKernels,
    "dotprod",
    Tier::NeonDot,
    gemm_i8_i8_4x16c4_neondot,
    "The CPU must support NEON and the dot-product extension."
);

gemm_entry!(
    /// [`crate::kernels::GemmQ8Fn`] with `sdot`. Private: reachable only
    /// through [`NeonDotKernels::kernels`].
    gemm_i8_i8_4x16c4_neondot,
    "neon,dotprod",
    MR,
    |ap, rows, wblk, kg, lda| match rows {
        4 => tile::<4>(ap, lda, wblk, kg),
        3 => widen(tile::<3>(ap, lda, wblk, kg)),
        2 => widen(tile::<2>(ap, lda, wblk, kg)),
        _ => widen(tile::<1>(ap, lda, wblk, kg)),
    }
);

/// Pads a smaller tile to `MR` rows (the extra rows unused).
#[inline(always)]
fn widen<const R: usize>(acc: [[int32x4_t; 4]; R]) -> [[int32x4_t; 4]; MR] {
    // SAFETY: `int32x4_t` is plain data; an all-zero value is valid.
    let mut out = [[unsafe { core::mem::zeroed::<int32x4_t>() }; 4]; MR];
    out[..R].copy_from_slice(&acc);
    out
}

/// `acc + sdot(w, a.4b[LANE])`, one instruction per lane index.
macro_rules! sdot_lane {
    ($name:ident, $lane:literal) => {
        /// `sdot acc.4s, w.16b, a.4b[lane]`.
        ///
        /// # Safety
        ///
        /// The CPU must support the dot-product extension.
        #[target_feature(enable = "neon,dotprod")]
        #[inline]
        unsafe fn $name(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
            let mut acc = acc;
            // SAFETY: a register-only instruction the caller guarantees exists;
            // no memory, stack or flags are touched.
            unsafe {
                asm!(
                    concat!("sdot {acc:v}.4s, {w:v}.16b, {a:v}.4b[", $lane, "]"),
                    acc = inout(vreg) acc,
                    w = in(vreg) w,
                    a = in(vreg) a,
                    options(pure, nomem, nostack, preserves_flags),
                )
            };
            acc
        }
    };
}
sdot_lane!(sdot0, "0");
sdot_lane!(sdot1, "1");
sdot_lane!(sdot2, "2");
sdot_lane!(sdot3, "3");

/// `R` rows x 16 outputs over all `kg` k-groups, as 4 vectors of 4 outputs.
///
/// # Safety
///
/// NEON + dotprod; `a + r * lda .. + kg * 4` readable for `r < R`;
/// `w .. w + kg * 64` readable.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn tile<const R: usize>(
    a: *const i8,
    lda: usize,
    w: *const i8,
    kg: usize,
) -> [[int32x4_t; 4]; R] {
    let mut acc = [[vdupq_n_s32(0); 4]; R];
    // Loads the 4 weight registers of k-group g.
    macro_rules! wload {
        ($g:expr) => {{
            // SAFETY: every use has $g < kg: 64 readable bytes.
            unsafe {
                let p = w.add($g * 64);
                [
                    vld1q_s8(p),
                    vld1q_s8(p.add(16)),
                    vld1q_s8(p.add(32)),
                    vld1q_s8(p.add(48)),
                ]
            }
        }};
    }
    let mut g = 0;
    while g + 4 <= kg {
        let mut av = [vdupq_n_s8(0); R];
        for (r, av) in av.iter_mut().enumerate() {
            // SAFETY: r < R, g + 3 < kg: 16 readable bytes.
            *av = unsafe { vld1q_s8(a.add(r * lda + g * 4)) };
        }
        let wv = wload!(g);
        for (acc, &av) in acc.iter_mut().zip(&av) {
            for j in 0..4 {
                // SAFETY: dotprod is available.
                acc[j] = unsafe { sdot0(acc[j], wv[j], av) };
            }
        }
        let wv = wload!(g + 1);
        for (acc, &av) in acc.iter_mut().zip(&av) {
            for j in 0..4 {
                // SAFETY: dotprod is available.
                acc[j] = unsafe { sdot1(acc[j], wv[j], av) };
            }
        }
        let wv = wload!(g + 2);
        for (acc, &av) in acc.iter_mut().zip(&av) {
            for j in 0..4 {
                // SAFETY: dotprod is available.
                acc[j] = unsafe { sdot2(acc[j], wv[j], av) };
            }
        }
        let wv = wload!(g + 3);
        for (acc, &av) in acc.iter_mut().zip(&av) {
            for j in 0..4 {
                // SAFETY: dotprod is available.
                acc[j] = unsafe { sdot3(acc[j], wv[j], av) };
            }
        }
        g += 4;
    }
    while g < kg {
        let wv = wload!(g);
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: r < R, g < kg: 4 readable bytes.
            let av = unsafe {
                vreinterpretq_s8_s32(vld1q_dup_s32(a.add(r * lda + g * 4) as *const i32))
            };
            for j in 0..4 {
                // SAFETY: dotprod is available.
                acc[j] = unsafe { sdot0(acc[j], wv[j], av) };
            }
        }
        g += 1;
    }
    acc
}
