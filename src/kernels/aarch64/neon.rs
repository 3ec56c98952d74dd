//! NEON kernels without the dot product: `quantize_i8_4x4_neon` and
//! `gemm_i8_i8_2x16c4_neon`.
//!
//! # The GEMM, first as pseudo-code
//!
//! ```text
//! for each n-block nb (16 outputs: [k_groups][16 rows][4 k] bytes)
//!   for each tile of 2 token rows
//!     for each pair of k-groups (g, g+1)            (8 inputs)
//!       a_g[i] = a[i][4g..4g+4] repeated 4 times    (ld1r, both rows, both groups)
//!       for each j of 4 (4 weight rows x 4 k per q-register)
//!         w_g[j], w_g+1[j]                          (2 q-registers, used by both rows)
//!         for each row i
//!           p  = smull(w_g[j].lo, a_g[i]) + smlal(w_g+1[j].lo, a_g+1[i])   (i16x8)
//!           acc[i][2j] += pairwise(p)               (sadalp into i32x4)
//!           and the same for the high halves (smull2 / smlal2) into acc[i][2j+1]
//!     per row: addp the accumulator pairs -> 16 i32 sums, then the epilogue
//! ```
//!
//! Each i16 lane holds two products of the same output row (one per k-group):
//! `|a * w| <= 128 * 127 = 16256`, so the sum of two is at most 32512 and fits
//! i16 exactly; `sadalp` widens adjacent pairs into the i32 accumulators. Every
//! step is an exact integer operation, so the i32 sums equal the scalar ones.
//! Accumulator `2j` holds, per lane, (row 4j, k 0-1), (row 4j, k 2-3),
//! (row 4j+1, k 0-1), (row 4j+1, k 2-3); `addp` of accumulators `2j` and `2j+1`
//! gives rows `4j..4j+4` in order.
//!
//! Register use is what decides this loop's speed on a Cortex-A72 (one
//! 128-bit integer multiply per cycle): 16 accumulators, 4 broadcasts, 2
//! weights and the products fit the 32 registers only if each weight pair is
//! loaded just before its use and the broadcasts stay opaque to the compiler
//! (see `opaque`). Loading all 8 weight registers of the two k-groups first,
//! as this loop used to, spilled accumulators to the stack and extracted the
//! weights' high halves with `ext`: `llvm-mca -mcpu=cortex-a72` on the
//! compiled loops gives 47 cycles per 256 MACs before, 32.1 now (the
//! multiply pipe's 32); a model, not a measurement (no Arm hardware here).
//!
//! The float epilogue is the scalar one lane-wise (`scvtf`, separate `fmul`,
//! `fmul`, `fadd`; Rust never contracts them into `fmla`), with `Activate` /
//! `Tanh` on 4 lanes from `neon_float` (tails per element with the scalar
//! reference, same bits).
//!
//! # Quantization
//!
//! As [`crate::kernels::scalar::quantize_row`]: `fminnm` / `fmaxnm` (these
//! ignore a NaN operand exactly like `f32::min` / `f32::max`), the scalar code
//! for scale and zero point, then `fmul`, `fmul`, `frintn` (round half to
//! even), `fadd zp`, `fcvtzs` (exact on integers; NaN gives 0 like the scalar
//! `as i8`), an integer clamp to -128..=127 and saturating narrows.

use crate::format::{Q8_K_GROUP, Q8_N_BLOCK};
use crate::kernels::{
    check_gemm_q8, quant_params, quantize_value, Epilogue, Kernels, QMatrix, Tier,
};
use core::arch::aarch64::*;

/// Token rows per GEMM tile.
const MR: usize = 2;

/// Proof that the CPU supports NEON (always true on aarch64 targets that
/// Rust supports with `std`; checked anyway through `target_feature`).
#[derive(Debug, Clone, Copy)]
pub struct NeonKernels(());

crate::kernels::tier_constructors!(NeonKernels, "The CPU must support NEON (Advanced SIMD).");

impl NeonKernels {
    /// Whether NEON is available. It is part of the aarch64 baseline, so this
    /// is decided at compile time (`target_feature = "neon"`).
    #[inline]
    pub fn is_available() -> bool {
        cfg!(target_feature = "neon")
    }

    /// The kernel table: scalar, with `quantize_rows` and `gemm_q8` replaced.
    pub fn kernels(self) -> Kernels {
        Kernels {
            tier: Tier::Neon,
            quantize_rows: quantize_i8_4x4_neon,
            gemm_q8: gemm_i8_i8_2x16c4_neon,
            gemm_f32: super::neon_float::gemm_f32_neon,
            layer_norm: super::neon_float::layer_norm_neon,
            attention: super::neon_float::attention_neon,
            activate: activate_neon,
        }
    }
}

/// [`crate::kernels::QuantizeRowsFn`] for NEON. Private: reachable only
/// through [`NeonKernels::kernels`].
#[allow(clippy::too_many_arguments)]
fn quantize_i8_4x4_neon(
    x: &[f32],
    ldx: usize,
    m: usize,
    smooth: &[f32],
    q: &mut [i8],
    ldq: usize,
    scales: &mut [f32],
    zps: &mut [i32],
) {
    let k = smooth.len();
    assert!(
        ldq >= k.div_ceil(Q8_K_GROUP) * Q8_K_GROUP,
        "quantize_rows: ldq too small"
    );
    for i in 0..m {
        let xr = &x[i * ldx..i * ldx + k];
        let qr = &mut q[i * ldq..i * ldq + ldq];
        // SAFETY: NEON is available (only reachable through a `NeonKernels`).
        (scales[i], zps[i]) = unsafe { quantize_row(xr, smooth, qr) };
    }
}

/// One row: `x.len() == smooth.len() <= q.len()`.
///
/// # Safety
///
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(crate) unsafe fn quantize_row(x: &[f32], smooth: &[f32], q: &mut [i8]) -> (f32, i32) {
    let k = x.len();
    assert!(smooth.len() == k && q.len() >= k);
    let (xp, sp, qp) = (x.as_ptr(), smooth.as_ptr(), q.as_mut_ptr());
    let mut lo = vdupq_n_f32(0.0);
    let mut hi = vdupq_n_f32(0.0);
    let mut c = 0;
    while c + 4 <= k {
        // SAFETY: c + 4 <= k = x.len() = smooth.len().
        let y = unsafe { vmulq_f32(vld1q_f32(xp.add(c)), vld1q_f32(sp.add(c))) };
        lo = vminnmq_f32(lo, y);
        hi = vmaxnmq_f32(hi, y);
        c += 4;
    }
    let (mut lo, mut hi) = (
        vgetq_lane_f32::<0>(lo)
            .min(vgetq_lane_f32::<1>(lo))
            .min(vgetq_lane_f32::<2>(lo))
            .min(vgetq_lane_f32::<3>(lo)),
        vgetq_lane_f32::<0>(hi)
            .max(vgetq_lane_f32::<1>(hi))
            .max(vgetq_lane_f32::<2>(hi))
            .max(vgetq_lane_f32::<3>(hi)),
    );
    for (v, s) in x[c..].iter().zip(&smooth[c..]) {
        let y = v * s;
        lo = lo.min(y);
        hi = hi.max(y);
    }
    let Some((scale, inv, zp)) = quant_params(lo, hi) else {
        q.fill(0);
        return (0.0, 0);
    };
    let (invv, zpv) = (vdupq_n_f32(inv), vdupq_n_f32(zp));
    let (qmin, qmax) = (vdupq_n_s32(-128), vdupq_n_s32(127));
    macro_rules! four {
        ($c:expr) => {{
            // SAFETY: every use has $c + 4 <= k.
            let y = unsafe { vmulq_f32(vld1q_f32(xp.add($c)), vld1q_f32(sp.add($c))) };
            let r = vaddq_f32(vrndnq_f32(vmulq_f32(y, invv)), zpv);
            vminq_s32(vmaxq_s32(vcvtq_s32_f32(r), qmin), qmax)
        }};
    }
    let mut c = 0;
    while c + 16 <= k {
        let lo16 = vcombine_s16(vqmovn_s32(four!(c)), vqmovn_s32(four!(c + 4)));
        let hi16 = vcombine_s16(vqmovn_s32(four!(c + 8)), vqmovn_s32(four!(c + 12)));
        // SAFETY: c + 16 <= k <= q.len().
        unsafe { vst1q_s8(qp.add(c), vcombine_s8(vqmovn_s16(lo16), vqmovn_s16(hi16))) };
        c += 16;
    }
    while c + 4 <= k {
        let v = four!(c);
        let mut t = [0i32; 4];
        // SAFETY: a 4-lane array.
        unsafe { vst1q_s32(t.as_mut_ptr(), v) };
        for (l, &v) in t.iter().enumerate() {
            q[c + l] = v as i8; // already clamped
        }
        c += 4;
    }
    for ((d, &v), &s) in q[c..k].iter_mut().zip(&x[c..]).zip(&smooth[c..]) {
        *d = quantize_value(v, s, inv, zp);
    }
    q[k..].fill(0);
    (scale, zp as i32)
}

gemm_entry!(
    /// [`crate::kernels::GemmQ8Fn`] for NEON. Private: reachable only through
    /// [`NeonKernels::kernels`].
    gemm_i8_i8_2x16c4_neon,
    "neon",
    MR,
    |ap, rows, wblk, kg, lda| if rows == 2 {
        tile::<2>(ap, lda, wblk, kg)
    } else {
        let [r0] = tile::<1>(ap, lda, wblk, kg);
        [r0, r0]
    }
);

/// `tile(a, rows, w)` of [`gemm_blocks`]: the i32 sums of `rows` token rows
/// from `a` (row stride as given to the GEMM) times one packed n-block `w`.
pub(crate) type Tile<'a, const MR: usize> =
    dyn Fn(*const i8, usize, *const i8) -> [[int32x4_t; 4]; MR] + 'a;

/// The loops of the NEON int8 GEMMs (this tier's and the dot-product
/// tier's, which differ in `tile`): n-blocks of 16 outputs outermost, token
/// rows in tiles of up to `MR`, each tile's sums through [`store16`]. An
/// activation (GELU, tanh) is applied in a pass over each n-block's outputs
/// after its tiles rather than in every tile's epilogue, where its long
/// dependency chains (exp, division) would hold up the next tile's loads;
/// the operations and so the bits are the same.
///
/// # Safety
///
/// NEON; the arguments must pass [`check_gemm_q8`]; `tile` may be called
/// with any row `i < m` (`rows = min(m - i, MR)`) and n-block.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
pub(crate) unsafe fn gemm_blocks<const MR: usize>(
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
    tile: &Tile<'_, MR>,
) {
    let block = w.k_groups * Q8_N_BLOCK * Q8_K_GROUP;
    let outp = out.as_mut_ptr();
    let (tile_ep, act) = ep.split_activation();
    for nb in 0..w.n.div_ceil(Q8_N_BLOCK) {
        // SAFETY: nb < n_blocks; packed holds n_blocks * block bytes.
        let wblk = unsafe { w.packed.as_ptr().add(nb * block) };
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(MR);
            // SAFETY: row i exists.
            let acc = tile(unsafe { a.as_ptr().add(i * lda) }, rows, wblk);
            for (t, acc) in acc.iter().enumerate().take(rows) {
                let row = i + t;
                // SAFETY: row < m; the outputs of n-block nb in this row are in
                // bounds (check_gemm_q8).
                unsafe {
                    store16(
                        acc,
                        a_scales[row],
                        a_zps[row],
                        w,
                        nb,
                        bias,
                        outp.add(row * ldo),
                        tile_ep,
                    )
                };
            }
            i += rows;
        }
        if let Some(ep) = act {
            let (c0, c1) = (nb * Q8_N_BLOCK, ((nb + 1) * Q8_N_BLOCK).min(w.n));
            for row in 0..m {
                // SAFETY: outputs c0..c1 of row < m are in bounds
                // (check_gemm_q8) and hold the stored `y`; NEON is available.
                unsafe { activate_run(outp.add(row * ldo + c0), c1 - c0, ep) };
            }
        }
    }
}

/// [`crate::kernels::ActivateFn`] for NEON. Private: reachable only through
/// [`NeonKernels::kernels`].
fn activate_neon(x: &mut [f32], ep: Epilogue) {
    if ep.is_activation() {
        // SAFETY: NEON is available (only reachable through a `NeonKernels`
        // table); `x` is valid for `x.len()` reads and writes.
        unsafe { activate_run(x.as_mut_ptr(), x.len(), ep) }
    }
}

/// `out[j] = ep(out[j])` for `j < count` (`ep` an activation or tanh), 4
/// lanes at a time (the tail through [`super::neon_float::epilogue4`]'s
/// scalar lanes: the same bits).
///
/// # Safety
///
/// NEON; `out..out + count` valid for reads and writes.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn activate_run(out: *mut f32, count: usize, ep: Epilogue) {
    let mut c = 0;
    while c < count {
        let n = (count - c).min(4);
        // SAFETY: c + n <= count.
        unsafe {
            let o = out.add(c);
            let mut t = [0.0f32; 4];
            core::ptr::copy_nonoverlapping(o, t.as_mut_ptr(), n);
            super::neon_float::epilogue4(o, vld1q_f32(t.as_ptr()), n, ep);
        }
        c += 4;
    }
}

/// `v` through an empty `asm!`, so that the compiler cannot see that a
/// 4-byte broadcast's two halves are equal: it then multiplies the weights'
/// high halves with `smull2` / `smlal2` instead of first extracting each one
/// with `ext` (8 more vector operations per 2 k-groups).
///
/// # Safety
///
/// NEON.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn opaque(v: int8x16_t) -> int8x16_t {
    let mut v = v;
    // SAFETY: an empty instruction template (a comment naming the register):
    // nothing is executed, no memory, stack or flags are touched.
    unsafe {
        core::arch::asm!(
            "/* {v:v} */",
            v = inout(vreg) v,
            options(pure, nomem, nostack, preserves_flags)
        )
    };
    v
}

/// `R` rows x 16 outputs: i32 sums over all `kg` k-groups, as 4 vectors of
/// 4 consecutive outputs.
///
/// # Safety
///
/// NEON; `a + r * lda .. + kg * 4` readable for `r < R`; `w .. w + kg * 64`
/// readable.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn tile<const R: usize>(
    a: *const i8,
    lda: usize,
    w: *const i8,
    kg: usize,
) -> [[int32x4_t; 4]; R] {
    let mut acc = [[vdupq_n_s32(0); 8]; R];
    let mut g = 0;
    while g + 2 <= kg {
        let mut av = [[vdupq_n_s8(0); 2]; R];
        for (r, av) in av.iter_mut().enumerate() {
            // SAFETY: r < R, g + 1 < kg: 8 readable bytes at a + r * lda + g * 4.
            *av = unsafe {
                let p = a.add(r * lda + g * 4) as *const i32;
                [
                    opaque(vreinterpretq_s8_s32(vld1q_dup_s32(p))),
                    opaque(vreinterpretq_s8_s32(vld1q_dup_s32(p.add(1)))),
                ]
            };
        }
        for j in 0..4 {
            // SAFETY: g + 1 < kg: 2 * 64 readable bytes at w + g * 64.
            let (w0, w1) = unsafe {
                let p = w.add(g * 64 + j * 16);
                (vld1q_s8(p), vld1q_s8(p.add(64)))
            };
            for (acc, &[a0, a1]) in acc.iter_mut().zip(&av) {
                let lo = vmlal_s8(
                    vmull_s8(vget_low_s8(w0), vget_low_s8(a0)),
                    vget_low_s8(w1),
                    vget_low_s8(a1),
                );
                let hi = vmlal_high_s8(vmull_high_s8(w0, a0), w1, a1);
                acc[2 * j] = vpadalq_s16(acc[2 * j], lo);
                acc[2 * j + 1] = vpadalq_s16(acc[2 * j + 1], hi);
            }
        }
        g += 2;
    }
    if g < kg {
        // SAFETY: g < kg: 64 readable bytes at w + g * 64.
        let w0 = unsafe {
            let p = w.add(g * 64);
            [
                vld1q_s8(p),
                vld1q_s8(p.add(16)),
                vld1q_s8(p.add(32)),
                vld1q_s8(p.add(48)),
            ]
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: r < R, g < kg: 4 readable bytes.
            let a0 = unsafe {
                vreinterpretq_s8_s32(vld1q_dup_s32(a.add(r * lda + g * 4) as *const i32))
            };
            for j in 0..4 {
                acc[2 * j] = vpadalq_s16(acc[2 * j], vmull_s8(vget_low_s8(w0[j]), vget_low_s8(a0)));
                acc[2 * j + 1] = vpadalq_s16(acc[2 * j + 1], vmull_high_s8(w0[j], a0));
            }
        }
    }
    let mut sums = [[vdupq_n_s32(0); 4]; R];
    for (s, acc) in sums.iter_mut().zip(&acc) {
        for j in 0..4 {
            s[j] = vpaddq_s32(acc[2 * j], acc[2 * j + 1]);
        }
    }
    sums
}

/// The epilogue of one row's 16 outputs of n-block `nb` (4 vectors of 4).
///
/// # Safety
///
/// NEON; `out + nb * 16 .. out + min(n, nb * 16 + 16)` writable; the weight
/// vectors hold `ceil(n / 16) * 16` values; `bias` holds `n`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn store16(
    acc: &[int32x4_t; 4],
    sa: f32,
    za: i32,
    w: &QMatrix<'_>,
    nb: usize,
    bias: &[f32],
    out: *mut f32,
    ep: Epilogue,
) {
    for (j, &acc) in acc.iter().enumerate() {
        let r0 = nb * Q8_N_BLOCK + j * 4;
        if r0 >= w.n {
            break;
        }
        let count = (w.n - r0).min(4);
        // SAFETY: r0 + 4 <= the padded length of scales and row sums.
        let (rs, sw) = unsafe {
            (
                vld1q_s32(w.row_sums.as_ptr().add(r0)),
                vld1q_f32(w.scales.as_ptr().add(r0)),
            )
        };
        let acc = vsubq_s32(acc, vmulq_n_s32(rs, za));
        let s = vmulq_f32(vdupq_n_f32(sa), sw);
        let y = vmulq_f32(vcvtq_f32_s32(acc), s);
        let b = if count == 4 {
            // SAFETY: r0 + 4 <= n <= bias.len().
            unsafe { vld1q_f32(bias.as_ptr().add(r0)) }
        } else {
            let mut t = [0.0f32; 4];
            t[..count].copy_from_slice(&bias[r0..r0 + count]);
            // SAFETY: a 4-float array.
            unsafe { vld1q_f32(t.as_ptr()) }
        };
        let y = vaddq_f32(y, b);
        // SAFETY: out + r0 .. + count is writable (our contract); NEON is
        // available.
        unsafe { super::neon_float::epilogue4(out.add(r0), y, count, ep) };
    }
}
