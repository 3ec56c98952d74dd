//! NEON float kernels: the activations of the GEMM epilogue, LayerNorm and
//! attention, each the lane-wise image of the scalar reference
//! ([`crate::kernels::scalar`]) and bit-identical to it (and so to the x86
//! tiers).
//!
//! Every step is one IEEE f32 operation that the reference also performs, in
//! the same order: `fadd` / `fsub` / `fmul` / `fdiv` (never `fmla`: Rust does
//! not contract), `frintn` (round half to even), the x86 `minps` / `maxps`
//! rules of [`scalar::min_sel`] /
//! [`scalar::max_sel`] as a compare and a
//! `bsl` select (NEON's own `fmin` / `fminnm` treat NaN and `-0.0`
//! differently), and integer / bit operations on the exponent and the sign.
//! The reference's 8-lane sums are two q-registers (lanes 0-3 and 4-7) reduced
//! with the fixed [`scalar::reduce8`] tree.
//! Element tails that are lane-wise in the reference (activations, the
//! columns of `p V`, the softmax normalization) use the scalar functions
//! directly, which give the same bits. See `docs/kernels.md`.

use crate::format::Activation;
use crate::kernels::scalar::{
    self, ERF_ALPHA, ERF_BETA, EXP_HI, EXP_LO, EXP_P, GELU_A, GELU_C, LN2_HI, LN2_LO, LOG2E,
    TANH_P, TANH_SMALL,
};
use crate::kernels::{check_gemm_f32, gemm_f32_blocks, AttentionArgs, Epilogue};
use core::arch::aarch64::*;

/// `if a < b { a } else { b }` lane-wise.
///
/// # Safety
///
/// NEON must be available.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn min_sel(a: float32x4_t, b: float32x4_t) -> float32x4_t {
    vbslq_f32(vcltq_f32(a, b), a, b)
}

/// `if a > b { a } else { b }` lane-wise.
///
/// # Safety
///
/// NEON must be available.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn max_sel(a: float32x4_t, b: float32x4_t) -> float32x4_t {
    vbslq_f32(vcgtq_f32(a, b), a, b)
}

/// `e^x` lane-wise, as [`scalar::exp`].
///
/// # Safety
///
/// NEON must be available.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn exp(x: float32x4_t) -> float32x4_t {
    // SAFETY: NEON is available (our contract).
    let c = unsafe { max_sel(vdupq_n_f32(EXP_LO), min_sel(vdupq_n_f32(EXP_HI), x)) };
    let n = vrndnq_f32(vmulq_f32(c, vdupq_n_f32(LOG2E)));
    let r = vsubq_f32(c, vmulq_f32(n, vdupq_n_f32(LN2_HI)));
    let r = vsubq_f32(r, vmulq_f32(n, vdupq_n_f32(LN2_LO)));
    let z = vmulq_f32(r, r);
    let mut p = vdupq_n_f32(EXP_P[0]);
    for &k in &EXP_P[1..] {
        p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(k));
    }
    let p = vaddq_f32(vaddq_f32(vmulq_f32(p, z), r), vdupq_n_f32(1.0));
    // n is an integer in -126..=127 (or NaN: then p is NaN and stays NaN).
    let e = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
    // Lanes below EXP_LO return +0.0: their scale is zeroed before the
    // product, as on AVX2 (where forming the subnormal `p * 2^-126` costs a
    // microcode assist); p is positive there, so the product is +0.0.
    let under = vcltq_f32(x, vdupq_n_f32(EXP_LO));
    let scale = vbicq_u32(vreinterpretq_u32_s32(vshlq_n_s32::<23>(e)), under);
    vmulq_f32(p, vreinterpretq_f32_u32(scale))
}

/// `tanh(x)` lane-wise, as [`scalar::tanh`].
///
/// # Safety
///
/// NEON must be available.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn tanh(x: float32x4_t) -> float32x4_t {
    let one = vdupq_n_f32(1.0);
    let ax = vabsq_f32(x);
    // SAFETY: NEON is available (our contract).
    let e = unsafe { exp(vaddq_f32(ax, ax)) };
    let big = vsubq_f32(one, vdivq_f32(vdupq_n_f32(2.0), vaddq_f32(e, one)));
    let sign = vandq_u32(vreinterpretq_u32_f32(x), vdupq_n_u32(0x8000_0000));
    let big = vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(big), sign));
    let s = vmulq_f32(x, x);
    let mut p = vdupq_n_f32(TANH_P[0]);
    for &k in &TANH_P[1..] {
        p = vaddq_f32(vmulq_f32(p, s), vdupq_n_f32(k));
    }
    let small = vaddq_f32(vmulq_f32(vmulq_f32(p, s), x), x);
    vbslq_f32(vcltq_f32(ax, vdupq_n_f32(TANH_SMALL)), small, big)
}

/// `erf(x)` lane-wise, as [`scalar::erf`].
///
/// # Safety
///
/// NEON must be available.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn erf(x: float32x4_t) -> float32x4_t {
    // SAFETY: NEON is available (our contract).
    let x = unsafe { max_sel(vdupq_n_f32(-4.0), min_sel(vdupq_n_f32(4.0), x)) };
    let x2 = vmulq_f32(x, x);
    let mut p = vdupq_n_f32(ERF_ALPHA[0]);
    for &k in &ERF_ALPHA[1..] {
        p = vaddq_f32(vmulq_f32(p, x2), vdupq_n_f32(k));
    }
    let p = vmulq_f32(x, p);
    let mut q = vdupq_n_f32(ERF_BETA[0]);
    for &k in &ERF_BETA[1..] {
        q = vaddq_f32(vmulq_f32(q, x2), vdupq_n_f32(k));
    }
    vdivq_f32(p, q)
}

/// The activation `a` lane-wise, as [`scalar::activate`].
///
/// # Safety
///
/// NEON must be available.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn activate(x: float32x4_t, a: Activation) -> float32x4_t {
    let one = vdupq_n_f32(1.0);
    match a {
        Activation::GeluNew => {
            let x3 = vmulq_f32(vmulq_f32(x, x), x);
            let u = vmulq_f32(
                vdupq_n_f32(GELU_C),
                vaddq_f32(x, vmulq_f32(vdupq_n_f32(GELU_A), x3)),
            );
            // SAFETY: NEON is available (our contract).
            let e = unsafe { exp(vmulq_f32(u, vdupq_n_f32(-2.0))) };
            vdivq_f32(x, vaddq_f32(one, e))
        }
        Activation::Gelu => {
            let z = vmulq_f32(x, vdupq_n_f32(core::f32::consts::FRAC_1_SQRT_2));
            // SAFETY: NEON is available (our contract).
            let e = unsafe { erf(z) };
            vmulq_f32(vmulq_f32(vdupq_n_f32(0.5), x), vaddq_f32(one, e))
        }
        // SAFETY: NEON is available (our contract).
        Activation::Relu => unsafe { max_sel(x, vdupq_n_f32(0.0)) },
    }
}

/// Applies `ep` to `count` (1..=4) consecutive outputs at `o` whose
/// pre-epilogue values are the first `count` lanes of `y`: 4 lanes at once
/// with the vector functions when `count` is 4, else lane by lane with the
/// scalar epilogue (the same results).
///
/// # Safety
///
/// NEON; `o .. o + count` readable, writable and not aliased.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn epilogue4(o: *mut f32, y: float32x4_t, count: usize, ep: Epilogue) {
    match ep {
        // SAFETY: 4 outputs at `o` are writable (our contract).
        Epilogue::Store if count == 4 => unsafe { vst1q_f32(o, y) },
        // SAFETY: 4 outputs at `o` are readable and writable.
        Epilogue::Accumulate if count == 4 => unsafe { vst1q_f32(o, vaddq_f32(vld1q_f32(o), y)) },
        // SAFETY: 4 outputs at `o` are writable; NEON is available.
        Epilogue::Activate(a) if count == 4 => unsafe { vst1q_f32(o, activate(y, a)) },
        // SAFETY: as above.
        Epilogue::Tanh if count == 4 => unsafe { vst1q_f32(o, tanh(y)) },
        _ => {
            let mut t = [0.0f32; 4];
            // SAFETY: a 4-float array.
            unsafe { vst1q_f32(t.as_mut_ptr(), y) };
            // SAFETY: `count` outputs at `o` are writable (our contract).
            unsafe { super::epilogue_lanes(o, &t, count, ep) };
        }
    }
}

/// [`scalar::dot_f32`]'s reduction of its 8 partial sums `lo` (lanes 0-3)
/// and `hi` (4-7): `((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7))`.
///
/// # Safety
///
/// NEON must be available.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn hsum_dot(lo: float32x4_t, hi: float32x4_t) -> f32 {
    let s = vaddq_f32(lo, hi);
    // [s0 + s1, s2 + s3, ..]
    let t = vpaddq_f32(s, s);
    vpadds_f32(vget_low_f32(t))
}

/// [`crate::kernels::GemmF32Fn`] for NEON, bit-identical to
/// [`scalar::gemm_f32`] (the same 8-lane partial sums of `scalar::dot_f32`,
/// kept as two 4-lane halves, its reduction tree, then its sequential tail,
/// bias and epilogue; separate multiplies and adds, never `fmla`). Private
/// to the crate: reachable only through the NEON tables.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_f32_neon(
    a: &[f32],
    lda: usize,
    m: usize,
    w: &[f32],
    n: usize,
    k: usize,
    bias: &[f32],
    out: &mut [f32],
    ldo: usize,
    ep: Epilogue,
) {
    if !check_gemm_f32(a, lda, m, w, n, k, bias, out, ldo) {
        return;
    }
    gemm_f32_blocks(
        a,
        lda,
        m,
        w,
        n,
        k,
        bias,
        out,
        ldo,
        ep,
        &mut |out, i, rows, r| {
            // SAFETY: NEON is available (only reachable through its tables);
            // `check_gemm_f32` bounds every access, and `gemm_f32_blocks` passes
            // rows i..i + rows <= m and outputs r..r + 4 <= n.
            unsafe {
                if rows == 2 {
                    block_f32::<2>(a, lda, i, w, k, r, bias, out, ldo, ep)
                } else {
                    block_f32::<1>(a, lda, i, w, k, r, bias, out, ldo, ep)
                }
            }
        },
    );
}

/// Outputs `r..r + 4` of input rows `i..i + R`: 8-lane partial sums (two
/// 4-lane halves) over the whole chunks of `k`, `scalar::dot_f32`'s
/// reduction tree, its sequential tail, the bias and the epilogue.
///
/// # Safety
///
/// NEON; `i + R <= m` and `r + 4 <= n` within the bounds asserted by
/// [`gemm_f32_neon`].
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
#[inline]
unsafe fn block_f32<const R: usize>(
    a: &[f32],
    lda: usize,
    i: usize,
    w: &[f32],
    k: usize,
    r: usize,
    bias: &[f32],
    out: &mut [f32],
    ldo: usize,
    ep: Epilogue,
) {
    let full = k / 8 * 8;
    let (ap, wp) = (a.as_ptr(), w.as_ptr());
    let mut acc = [[[vdupq_n_f32(0.0); 2]; 4]; R];
    let mut c = 0;
    while c < full {
        // SAFETY: rows i..i + R of `a` and rows r..r + 4 of `w` hold k floats
        // and c + 8 <= k (our contract).
        unsafe {
            let mut wv = [[vdupq_n_f32(0.0); 2]; 4];
            for (t, wv) in wv.iter_mut().enumerate() {
                *wv = load8(wp.add((r + t) * k + c));
            }
            for (q, acc) in acc.iter_mut().enumerate() {
                let xv = load8(ap.add((i + q) * lda + c));
                for (acc, wv) in acc.iter_mut().zip(&wv) {
                    acc[0] = vaddq_f32(acc[0], vmulq_f32(xv[0], wv[0]));
                    acc[1] = vaddq_f32(acc[1], vmulq_f32(xv[1], wv[1]));
                }
            }
        }
        c += 8;
    }
    for (q, acc) in acc.iter().enumerate() {
        let x = &a[(i + q) * lda..(i + q) * lda + k];
        let mut y = [0.0f32; 4];
        for (t, acc) in acc.iter().enumerate() {
            let wr = &w[(r + t) * k..(r + t + 1) * k];
            // SAFETY: NEON is available.
            let mut s = unsafe { hsum_dot(acc[0], acc[1]) };
            for (xv, wv) in x[full..].iter().zip(&wr[full..]) {
                s += xv * wv;
            }
            y[t] = s + bias[r + t];
        }
        let o = &mut out[(i + q) * ldo + r..(i + q) * ldo + r + 4];
        // SAFETY: NEON is available; `o` holds the 4 outputs; `y` is 4 floats.
        unsafe { epilogue4(o.as_mut_ptr(), vld1q_f32(y.as_ptr()), 4, ep) };
    }
}

/// [`scalar::reduce8`] of the 8 lanes `lo` (0-3) and `hi` (4-7).
///
/// # Safety
///
/// NEON must be available.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn hsum(lo: float32x4_t, hi: float32x4_t) -> f32 {
    let s = vaddq_f32(lo, hi);
    let t = vadd_f32(vget_low_f32(s), vget_high_f32(s));
    vpadds_f32(t)
}

/// [`scalar::reduce8_max`] of the 8 lanes `lo` (0-3) and `hi` (4-7).
///
/// # Safety
///
/// NEON must be available.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn hmax(lo: float32x4_t, hi: float32x4_t) -> f32 {
    // SAFETY: NEON is available (our contract).
    let s = unsafe { max_sel(lo, hi) };
    let (s0, s1, s2, s3) = (
        vgetq_lane_f32::<0>(s),
        vgetq_lane_f32::<1>(s),
        vgetq_lane_f32::<2>(s),
        vgetq_lane_f32::<3>(s),
    );
    scalar::max_sel(scalar::max_sel(s0, s2), scalar::max_sel(s1, s3))
}

/// [`scalar::reduce8`] of 4 vectors of 8 lanes at once (`x[t] = (lo, hi)`):
/// lane `t` of the result is the reduction of `x[t]`, with the same additions
/// as [`hsum`].
///
/// # Safety
///
/// NEON must be available.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn hsum4x8(x: &[[float32x4_t; 2]; 4]) -> float32x4_t {
    // s_k = lane k + lane k + 4
    let s = [
        vaddq_f32(x[0][0], x[0][1]),
        vaddq_f32(x[1][0], x[1][1]),
        vaddq_f32(x[2][0], x[2][1]),
        vaddq_f32(x[3][0], x[3][1]),
    ];
    // [a0 + a2, a1 + a3, b0 + b2, b1 + b3]
    macro_rules! pair {
        ($a:expr, $b:expr) => {{
            let (a, b) = (vreinterpretq_f64_f32($a), vreinterpretq_f64_f32($b));
            vaddq_f32(
                vreinterpretq_f32_f64(vzip1q_f64(a, b)),
                vreinterpretq_f32_f64(vzip2q_f64(a, b)),
            )
        }};
    }
    vpaddq_f32(pair!(s[0], s[1]), pair!(s[2], s[3]))
}

/// 8 floats from `p`, the lanes `>= n` replaced by `pad` (`n <= 8`).
///
/// # Safety
///
/// NEON; `p .. p + min(n, 8)` readable.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load8_partial(p: *const f32, n: usize, pad: f32) -> [float32x4_t; 2] {
    let mut t = [pad; 8];
    for (l, t) in t.iter_mut().enumerate().take(n) {
        // SAFETY: l < n, readable (our contract).
        *t = unsafe { *p.add(l) };
    }
    // SAFETY: an 8-float array.
    unsafe { [vld1q_f32(t.as_ptr()), vld1q_f32(t.as_ptr().add(4))] }
}

/// 8 floats from `p`.
///
/// # Safety
///
/// NEON; `p .. p + 8` readable.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load8(p: *const f32) -> [float32x4_t; 2] {
    // SAFETY: 8 readable floats (our contract).
    unsafe { [vld1q_f32(p), vld1q_f32(p.add(4))] }
}

/// [`crate::kernels::LayerNormFn`] for NEON. Private to the crate: reachable
/// only through the NEON tables.
pub(crate) fn layer_norm_neon(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    assert!(
        gamma.len() >= x.len() && beta.len() >= x.len(),
        "layer_norm: gamma / beta too short"
    );
    // SAFETY: NEON is available (only reachable through a NEON table), and
    // gamma / beta hold at least x.len() values (just checked).
    unsafe { layer_norm(x, gamma, beta, eps) }
}

/// # Safety
///
/// NEON; `gamma` and `beta` at least as long as `x`.
#[target_feature(enable = "neon")]
unsafe fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let k = x.len();
    let (full, rem) = (k / 8 * 8, k % 8);
    let xp = x.as_mut_ptr();
    let zero = vdupq_n_f32(0.0);
    let n = k as f32;
    // SAFETY: (whole block) every full chunk has c + 8 <= k; the partial
    // loads read x[full..k]; gamma / beta are at least k long; NEON is
    // available.
    unsafe {
        let (mut lo, mut hi) = (zero, zero);
        let mut c = 0;
        while c < full {
            let v = load8(xp.add(c));
            lo = vaddq_f32(lo, v[0]);
            hi = vaddq_f32(hi, v[1]);
            c += 8;
        }
        if rem > 0 {
            let v = load8_partial(xp.add(full), rem, 0.0);
            lo = vaddq_f32(lo, v[0]);
            hi = vaddq_f32(hi, v[1]);
        }
        let mean = hsum(lo, hi) / n;
        let meanv = vdupq_n_f32(mean);
        let (mut lo, mut hi) = (zero, zero);
        let mut c = 0;
        while c < full {
            let v = load8(xp.add(c));
            let (d0, d1) = (vsubq_f32(v[0], meanv), vsubq_f32(v[1], meanv));
            lo = vaddq_f32(lo, vmulq_f32(d0, d0));
            hi = vaddq_f32(hi, vmulq_f32(d1, d1));
            c += 8;
        }
        if rem > 0 {
            let mut t = [0.0f32; 8];
            for (l, t) in t.iter_mut().enumerate().take(rem) {
                let d = *xp.add(full + l) - mean;
                *t = d * d;
            }
            lo = vaddq_f32(lo, vld1q_f32(t.as_ptr()));
            hi = vaddq_f32(hi, vld1q_f32(t.as_ptr().add(4)));
        }
        let var = hsum(lo, hi) / n;
        let inv = 1.0 / libm::sqrtf(var + eps);
        let invv = vdupq_n_f32(inv);
        let (gp, bp) = (gamma.as_ptr(), beta.as_ptr());
        let mut c = 0;
        while c + 4 <= k {
            let v = vmulq_f32(vsubq_f32(vld1q_f32(xp.add(c)), meanv), invv);
            let v = vaddq_f32(vmulq_f32(v, vld1q_f32(gp.add(c))), vld1q_f32(bp.add(c)));
            vst1q_f32(xp.add(c), v);
            c += 4;
        }
        for c in c..k {
            *xp.add(c) = (*xp.add(c) - mean) * inv * *gp.add(c) + *bp.add(c);
        }
    }
}

/// [`crate::kernels::AttentionFn`] for NEON. Private to the crate: reachable
/// only through the NEON tables.
pub(crate) fn attention_neon(args: &AttentionArgs<'_>, scores: &mut [f32], ctx: &mut [f32]) {
    if !crate::kernels::check_attention(args, scores, ctx) {
        return;
    }
    // SAFETY: NEON is available (only reachable through a NEON table) and
    // `check_attention` proved every access in bounds.
    unsafe { attention(args, scores, ctx) }
}

/// # Safety
///
/// NEON; the arguments passed `check_attention` and it returned `true`.
#[target_feature(enable = "neon")]
unsafe fn attention(args: &AttentionArgs<'_>, scores: &mut [f32], ctx: &mut [f32]) {
    let (s, d, a, ld) = (
        args.seq,
        args.head_dim,
        args.heads * args.head_dim,
        args.ld_qkv,
    );
    let (full, rem) = (d / 8 * 8, d % 8);
    let qkv = args.qkv.as_ptr();
    let sc = scores.as_mut_ptr();
    let zero = vdupq_n_f32(0.0);
    for h in 0..args.heads {
        for (r, i) in (args.q_begin..args.q_end).enumerate() {
            // SAFETY: (whole block) `check_attention` proved rows 0..s of
            // `qkv` hold 3 * A values, `scores` and `mask_bias` s values and
            // `ctx` row r holds A values; every offset below is within those
            // (head h, columns h*d .. h*d + d of q / k / v); partial loads
            // read only the `rem` valid values. NEON is available.
            unsafe {
                let q = qkv.add(i * ld + h * d);
                let kb = qkv.add(a + h * d);
                let vb = qkv.add(2 * a + h * d);
                let qt = load8_partial(q.add(full), rem, 0.0);
                // Scores, 4 keys at a time.
                let mut j = 0;
                while j + 4 <= s {
                    let mut acc = [[zero; 2]; 4];
                    let mut c = 0;
                    while c < full {
                        let qv = load8(q.add(c));
                        for (t, acc) in acc.iter_mut().enumerate() {
                            let kv = load8(kb.add((j + t) * ld + c));
                            acc[0] = vaddq_f32(acc[0], vmulq_f32(qv[0], kv[0]));
                            acc[1] = vaddq_f32(acc[1], vmulq_f32(qv[1], kv[1]));
                        }
                        c += 8;
                    }
                    if rem > 0 {
                        for (t, acc) in acc.iter_mut().enumerate() {
                            let kv = load8_partial(kb.add((j + t) * ld + full), rem, 0.0);
                            acc[0] = vaddq_f32(acc[0], vmulq_f32(qt[0], kv[0]));
                            acc[1] = vaddq_f32(acc[1], vmulq_f32(qt[1], kv[1]));
                        }
                    }
                    let dots = hsum4x8(&acc);
                    let v = vaddq_f32(
                        vmulq_n_f32(dots, args.scale),
                        vld1q_f32(args.mask_bias.as_ptr().add(j)),
                    );
                    vst1q_f32(sc.add(j), v);
                    j += 4;
                }
                while j < s {
                    let (mut lo, mut hi) = (zero, zero);
                    let k = kb.add(j * ld);
                    let mut c = 0;
                    while c < full {
                        let (qv, kv) = (load8(q.add(c)), load8(k.add(c)));
                        lo = vaddq_f32(lo, vmulq_f32(qv[0], kv[0]));
                        hi = vaddq_f32(hi, vmulq_f32(qv[1], kv[1]));
                        c += 8;
                    }
                    if rem > 0 {
                        let kv = load8_partial(k.add(full), rem, 0.0);
                        lo = vaddq_f32(lo, vmulq_f32(qt[0], kv[0]));
                        hi = vaddq_f32(hi, vmulq_f32(qt[1], kv[1]));
                    }
                    *sc.add(j) = hsum(lo, hi) * args.scale + *args.mask_bias.get_unchecked(j);
                    j += 1;
                }
                softmax(sc, s);
                // ctx = sum_j p_j v_j: 16 columns per pass, then 4, then the
                // remaining columns one at a time (lane-wise: same bits).
                let out = ctx.as_mut_ptr().add(r * args.ld_ctx + h * d);
                let mut c = 0;
                while c + 16 <= d {
                    let mut acc = [zero; 4];
                    for j in 0..s {
                        let p = vdupq_n_f32(*sc.add(j));
                        let v = vb.add(j * ld + c);
                        for (t, acc) in acc.iter_mut().enumerate() {
                            *acc = vaddq_f32(*acc, vmulq_f32(p, vld1q_f32(v.add(4 * t))));
                        }
                    }
                    for (t, acc) in acc.iter().enumerate() {
                        vst1q_f32(out.add(c + 4 * t), *acc);
                    }
                    c += 16;
                }
                while c + 4 <= d {
                    let mut acc = zero;
                    for j in 0..s {
                        let p = vdupq_n_f32(*sc.add(j));
                        acc = vaddq_f32(acc, vmulq_f32(p, vld1q_f32(vb.add(j * ld + c))));
                    }
                    vst1q_f32(out.add(c), acc);
                    c += 4;
                }
                for c in c..d {
                    let mut acc = 0.0f32;
                    for j in 0..s {
                        acc += *sc.add(j) * *vb.add(j * ld + c);
                    }
                    *out.add(c) = acc;
                }
            }
        }
    }
}

/// [`scalar::softmax`] of the `s` floats at `x`, in place.
///
/// # Safety
///
/// NEON; `x .. x + s` valid for reads and writes, `s >= 1`.
#[target_feature(enable = "neon")]
unsafe fn softmax(x: *mut f32, s: usize) {
    let (full, rem) = (s / 8 * 8, s % 8);
    let neg_inf = vdupq_n_f32(f32::NEG_INFINITY);
    // SAFETY: (whole block) every access is below x + s (c + 8 <= s in the
    // full-chunk loops, the partial loads read the `rem` valid values); NEON
    // is available.
    unsafe {
        let (mut lo, mut hi) = (neg_inf, neg_inf);
        let mut c = 0;
        while c < full {
            let v = load8(x.add(c));
            lo = max_sel(lo, v[0]);
            hi = max_sel(hi, v[1]);
            c += 8;
        }
        if rem > 0 {
            let v = load8_partial(x.add(full), rem, f32::NEG_INFINITY);
            lo = max_sel(lo, v[0]);
            hi = max_sel(hi, v[1]);
        }
        let max = hmax(lo, hi);
        let maxv = vdupq_n_f32(max);
        let zero = vdupq_n_f32(0.0);
        let (mut lo, mut hi) = (zero, zero);
        let mut c = 0;
        while c < full {
            let v = load8(x.add(c));
            let e0 = exp(vsubq_f32(v[0], maxv));
            let e1 = exp(vsubq_f32(v[1], maxv));
            vst1q_f32(x.add(c), e0);
            vst1q_f32(x.add(c + 4), e1);
            lo = vaddq_f32(lo, e0);
            hi = vaddq_f32(hi, e1);
            c += 8;
        }
        if rem > 0 {
            for c in full..s {
                *x.add(c) = scalar::exp(*x.add(c) - max);
            }
            let v = load8_partial(x.add(full), rem, 0.0);
            lo = vaddq_f32(lo, v[0]);
            hi = vaddq_f32(hi, v[1]);
        }
        let inv = 1.0 / hsum(lo, hi);
        let mut c = 0;
        while c + 4 <= s {
            vst1q_f32(x.add(c), vmulq_n_f32(vld1q_f32(x.add(c)), inv));
            c += 4;
        }
        for c in c..s {
            *x.add(c) *= inv;
        }
    }
}
