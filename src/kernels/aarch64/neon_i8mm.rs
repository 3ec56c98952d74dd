//! NEON int8 matrix-multiply kernel: `gemm_i8_i8_4x16c8_i8mm` (and NEON's
//! other kernels).
//!
//! # The GEMM, first as pseudo-code
//!
//! ```text
//! for each n-block nb (16 outputs: [k_groups][16 rows][4 k] bytes)
//!   for each tile of 4 token rows (two row pairs)
//!     acc[p][j][h] = 0                (16 x i32x4: each a 2 x 2 block of sums)
//!     for each pair of k-groups g, g + 1 (8 inputs)
//!       a[p] = [row 2p: 8 bytes | row 2p + 1: 8 bytes]        (2 q-registers)
//!       for j in 0..4
//!         lo, hi = zip1 / zip2 (.4s) of group g's and group g + 1's
//!                  rows 4j..4j+4      (outputs 4j, 4j+1 / 4j+2, 4j+3, 8 k each)
//!         acc[p][j][0] = smmla(acc[p][j][0], a[p], lo)
//!         acc[p][j][1] = smmla(acc[p][j][1], a[p], hi)
//!     an odd last k-group: the same with zeros for group g + 1 and for the
//!     activations' upper 4 bytes
//!     back to rows (zip1 / zip2 .2d), epilogue (shared with the NEON tier)
//! ```
//!
//! `smmla vd.4s, vn.16b, vm.16b` (Armv8.6 `FEAT_I8MM`) treats `vn` as a
//! 2 x 8 matrix of signed bytes (two token rows' 8 activations), `vm` as
//! another (two outputs' 8 weights) and adds `vn * vm^T`, a 2 x 2 block of
//! exact i32 dot products, to `vd`: 32 MACs per instruction, twice `sdot`'s
//! 16. The file's weight layout (4 inputs of 16 outputs per k-group, made for
//! `sdot` and `vpmaddubsw`) gives each output's 8 inputs in two k-groups, so
//! one `zip1` / `zip2` pair rearranges four outputs for two `smmla`s, and each
//! rearranged weight register serves both row pairs of the tile: per 8 inputs
//! x 16 outputs x 4 rows, 16 `smmla` and 8 `zip` against the `sdot` tile's 32
//! `sdot`. 16 accumulators + 2 activation registers + the loaded and zipped
//! weights fit the 32 registers.
//!
//! The sums are the exact i32 dot products in some order (signed x signed, no
//! offset), so the results are bit-identical to the scalar reference, like
//! every tier's. Stable Rust has no `smmla` intrinsic, so it is a one-line
//! `asm!` that the register allocator sees as pure.

use crate::kernels::{check_gemm_q8, Epilogue, Kernels, QMatrix, Tier};
use core::arch::aarch64::*;
use core::arch::asm;

/// Token rows per tile (two row pairs).
const MR: usize = 4;

extension_tier!(
    /// Proof that the CPU supports NEON and the int8 matrix-multiply
    /// extension (`FEAT_I8MM`: `smmla`; Cortex-A510/A710/X2, Neoverse V1/N2
    /// and later).
    NeonI8mmKernels,
    "i8mm",
    Tier::NeonI8mm,
    gemm_i8_i8_4x16c8_i8mm,
    "The CPU must support NEON and the int8 matrix-multiply extension (FEAT_I8MM)."
);

gemm_entry!(
    /// [`crate::kernels::GemmQ8Fn`] with `smmla`. Private: reachable only
    /// through [`NeonI8mmKernels::kernels`].
    gemm_i8_i8_4x16c8_i8mm,
    "neon,i8mm",
    MR,
    |ap, rows, wblk, kg, lda| match rows {
        4 => tile::<4>(ap, lda, wblk, kg),
        3 => tile::<3>(ap, lda, wblk, kg),
        2 => tile::<2>(ap, lda, wblk, kg),
        _ => tile::<1>(ap, lda, wblk, kg),
    }
);

/// `acc + a * b^T` for `a`, `b` 2 x 8 matrices of i8 (rows of 8 bytes) and
/// `acc` 2 x 2 of i32 (row-major lanes).
///
/// # Safety
///
/// The CPU must support the int8 matrix-multiply extension.
#[target_feature(enable = "neon,i8mm")]
#[inline]
unsafe fn smmla(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction the caller guarantees exists; no
    // memory, stack or flags are touched.
    unsafe {
        asm!(
            "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    acc
}

/// The tile's row pairs as `smmla` operands: register `p` holds rows `2p`
/// and `2p + 1`, 8 bytes each from `q + row * lda` (`HALF`: 4 bytes, the
/// upper 4 zero), zeros for rows `>= R`.
///
/// # Safety
///
/// NEON; for every row `< R`, 8 (`HALF`: 4) bytes readable at `q + row * lda`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn row_pairs<const R: usize, const HALF: bool>(
    q: *const i8,
    lda: usize,
) -> [int8x16_t; MR / 2] {
    let row = |r: usize| {
        if r >= R {
            return vdup_n_s8(0);
        }
        // SAFETY: r < R: the bytes of our contract are readable.
        unsafe {
            let q = q.add(r * lda);
            if HALF {
                let v = (q as *const u32).read_unaligned();
                vreinterpret_s8_u32(vset_lane_u32::<0>(v, vdup_n_u32(0)))
            } else {
                vld1_s8(q)
            }
        }
    };
    core::array::from_fn(|p| vcombine_s8(row(2 * p), row(2 * p + 1)))
}

/// `R <= MR` rows x 16 outputs over all `kg` k-groups, in the layout of the
/// other NEON tiles (per row, 4 vectors of 4 outputs; rows `>= R` zero).
///
/// # Safety
///
/// NEON + i8mm; `a + r * lda .. + kg * 4` readable for `r < R`;
/// `w .. w + kg * 64` readable.
#[target_feature(enable = "neon,i8mm")]
#[inline]
unsafe fn tile<const R: usize>(
    a: *const i8,
    lda: usize,
    w: *const i8,
    kg: usize,
) -> [[int32x4_t; 4]; MR] {
    // acc[p][j][h]: rows 2p, 2p + 1 x outputs 4j + 2h, 4j + 2h + 1.
    let mut acc = [[[vdupq_n_s32(0); 2]; 4]; MR / 2];
    // Row pairs that hold a real row.
    let pairs = R.div_ceil(2);
    // One step over 8 inputs: group g's weights `w0`, the next group's `w1`
    // (zeros past the end), the row pairs' activations `av`. (Macros, not
    // closures, so that everything stays inside this `#[target_feature]`
    // function and inlines.)
    macro_rules! step {
        ($w0:expr, $w1:expr, $av:expr) => {{
            let (w0, w1, av): ([int8x16_t; 4], [int8x16_t; 4], [int8x16_t; MR / 2]) =
                ($w0, $w1, $av);
            for j in 0..4 {
                let (s0, s1) = (vreinterpretq_s32_s8(w0[j]), vreinterpretq_s32_s8(w1[j]));
                let lo = vreinterpretq_s8_s32(vzip1q_s32(s0, s1));
                let hi = vreinterpretq_s8_s32(vzip2q_s32(s0, s1));
                for p in 0..pairs {
                    // SAFETY: i8mm is available (our contract).
                    unsafe {
                        acc[p][j][0] = smmla(acc[p][j][0], av[p], lo);
                        acc[p][j][1] = smmla(acc[p][j][1], av[p], hi);
                    }
                }
            }
        }};
    }
    // The 4 weight registers of k-group g (rows 4j..4j+4, 4 k each).
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
    while g + 2 <= kg {
        // SAFETY: rows < R have kg * 4 >= (g + 2) * 4 readable bytes.
        let av = unsafe { row_pairs::<R, false>(a.add(g * 4), lda) };
        step!(wload!(g), wload!(g + 1), av);
        g += 2;
    }
    if g < kg {
        // SAFETY: rows < R have kg * 4 = (g + 1) * 4 readable bytes.
        let av = unsafe { row_pairs::<R, true>(a.add(g * 4), lda) };
        step!(wload!(g), [vdupq_n_s8(0); 4], av);
    }
    // Back to rows: lanes [r0 n0, r0 n1, r1 n0, r1 n1] and [.. n2, .. n3].
    let mut out = [[vdupq_n_s32(0); 4]; MR];
    for p in 0..pairs {
        for j in 0..4 {
            let (lo, hi) = (
                vreinterpretq_s64_s32(acc[p][j][0]),
                vreinterpretq_s64_s32(acc[p][j][1]),
            );
            out[2 * p][j] = vreinterpretq_s32_s64(vzip1q_s64(lo, hi));
            out[2 * p + 1][j] = vreinterpretq_s32_s64(vzip2q_s64(lo, hi));
        }
    }
    out
}
