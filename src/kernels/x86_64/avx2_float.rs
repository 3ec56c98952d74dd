//! AVX2 float kernels: the activations of the GEMM epilogue, LayerNorm and
//! attention, each the lane-wise image of the scalar reference
//! ([`crate::kernels::scalar`]) and bit-identical to it.
//!
//! Every step is one IEEE f32 operation that the reference also performs, in
//! the same order: `vaddps` / `vsubps` / `vmulps` / `vdivps` (no FMA),
//! `vroundps` (round half to even), `vminps(a, b)` = `if a < b { a } else { b }`
//! ([`scalar::min_sel`](crate::kernels::scalar::min_sel)), `vmaxps(a, b)` ([`scalar::max_sel`](crate::kernels::scalar::max_sel)), ordered
//! compares with blends, and integer / bit operations on the exponent and the
//! sign. Sums use 8 lanes (lane `l` takes elements `8t + l` in order, the last
//! chunk padded with `+0.0`) and the fixed [`scalar::reduce8`](crate::kernels::scalar::reduce8) tree, which
//! [`hsum`] and [`hsum8x8`] evaluate with shuffles. See `docs/kernels.md`.

use crate::format::Activation;
use crate::kernels::scalar::{
    ERF_ALPHA, ERF_BETA, EXP_HI, EXP_LO, EXP_P, GELU_A, GELU_C, LN2_HI, LN2_LO, LOG2E, TANH_P,
    TANH_SMALL,
};
use crate::kernels::{check_gemm_f32, AttentionArgs, Epilogue};
use core::arch::x86_64::*;

/// `e^x` lane-wise, as [`scalar::exp`](crate::kernels::scalar::exp).
///
/// # Safety
///
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn exp(x: __m256) -> __m256 {
    let c = _mm256_max_ps(
        _mm256_set1_ps(EXP_LO),
        _mm256_min_ps(_mm256_set1_ps(EXP_HI), x),
    );
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        c,
        _mm256_set1_ps(LOG2E),
    ));
    let r = _mm256_sub_ps(c, _mm256_mul_ps(n, _mm256_set1_ps(LN2_HI)));
    let r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(LN2_LO)));
    let z = _mm256_mul_ps(r, r);
    let mut p = _mm256_set1_ps(EXP_P[0]);
    for &k in &EXP_P[1..] {
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(k));
    }
    let p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, z), r), _mm256_set1_ps(1.0));
    // n is an integer in -126..=127 (or NaN: then p is NaN and stays NaN).
    let e = _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127));
    // Lanes below EXP_LO return +0.0. Zeroing their scale rather than their
    // product gives the same +0.0 (p is positive there) and never forms the
    // subnormal `p * 2^-126` (p < 1 at c = EXP_LO), which costs x86 a
    // microcode assist per instruction: a GELU pass over values where most
    // lanes underflow ran about 2x slower than over small values.
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(EXP_LO));
    let scale = _mm256_andnot_ps(under, _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e)));
    _mm256_mul_ps(p, scale)
}

/// `tanh(x)` lane-wise, as [`scalar::tanh`](crate::kernels::scalar::tanh).
///
/// # Safety
///
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn tanh(x: __m256) -> __m256 {
    let sign = _mm256_set1_ps(-0.0);
    let one = _mm256_set1_ps(1.0);
    let ax = _mm256_andnot_ps(sign, x);
    // SAFETY: AVX2 is available (our contract).
    let e = unsafe { exp(_mm256_add_ps(ax, ax)) };
    let big = _mm256_sub_ps(
        one,
        _mm256_div_ps(_mm256_set1_ps(2.0), _mm256_add_ps(e, one)),
    );
    let big = _mm256_or_ps(big, _mm256_and_ps(x, sign));
    let s = _mm256_mul_ps(x, x);
    let mut p = _mm256_set1_ps(TANH_P[0]);
    for &k in &TANH_P[1..] {
        p = _mm256_add_ps(_mm256_mul_ps(p, s), _mm256_set1_ps(k));
    }
    let small = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, s), x), x);
    let is_small = _mm256_cmp_ps::<_CMP_LT_OQ>(ax, _mm256_set1_ps(TANH_SMALL));
    _mm256_blendv_ps(big, small, is_small)
}

/// `erf(x)` lane-wise, as [`scalar::erf`](crate::kernels::scalar::erf).
///
/// # Safety
///
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn erf(x: __m256) -> __m256 {
    let x = _mm256_max_ps(_mm256_set1_ps(-4.0), _mm256_min_ps(_mm256_set1_ps(4.0), x));
    let x2 = _mm256_mul_ps(x, x);
    let mut p = _mm256_set1_ps(ERF_ALPHA[0]);
    for &k in &ERF_ALPHA[1..] {
        p = _mm256_add_ps(_mm256_mul_ps(p, x2), _mm256_set1_ps(k));
    }
    let p = _mm256_mul_ps(x, p);
    let mut q = _mm256_set1_ps(ERF_BETA[0]);
    for &k in &ERF_BETA[1..] {
        q = _mm256_add_ps(_mm256_mul_ps(q, x2), _mm256_set1_ps(k));
    }
    _mm256_div_ps(p, q)
}

/// The activation `a` lane-wise, as [`scalar::activate`](crate::kernels::scalar::activate).
///
/// # Safety
///
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn activate(x: __m256, a: Activation) -> __m256 {
    let one = _mm256_set1_ps(1.0);
    match a {
        Activation::GeluNew => {
            let x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
            let u = _mm256_mul_ps(
                _mm256_set1_ps(GELU_C),
                _mm256_add_ps(x, _mm256_mul_ps(_mm256_set1_ps(GELU_A), x3)),
            );
            // SAFETY: AVX2 is available (our contract).
            let e = unsafe { exp(_mm256_mul_ps(u, _mm256_set1_ps(-2.0))) };
            _mm256_div_ps(x, _mm256_add_ps(one, e))
        }
        Activation::Gelu => {
            let z = _mm256_mul_ps(x, _mm256_set1_ps(core::f32::consts::FRAC_1_SQRT_2));
            // SAFETY: AVX2 is available (our contract).
            let e = unsafe { erf(z) };
            _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5), x), _mm256_add_ps(one, e))
        }
        Activation::Relu => _mm256_max_ps(x, _mm256_setzero_ps()),
    }
}

/// [`scalar::reduce8`](crate::kernels::scalar::reduce8) of the 8 lanes of `v`.
///
/// # Safety
///
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hsum(v: __m256) -> f32 {
    // s_k = v_k + v_{k+4}
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    // t = [s0 + s2, s1 + s3]
    let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)))
}

/// [`scalar::reduce8_max`](crate::kernels::scalar::reduce8_max) of the 8 lanes of `v`.
///
/// # Safety
///
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hmax(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let t = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(t, _mm_movehdup_ps(t)))
}

/// [`scalar::reduce8`](crate::kernels::scalar::reduce8) of each of 8 vectors at once: lane `t` of the result is
/// the reduction of `x[t]`, with exactly the same additions as [`hsum`].
///
/// # Safety
///
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hsum8x8(x: &[__m256; 8]) -> __m256 {
    // [P lanes k + P lanes k+4 | Q lanes k + Q lanes k+4]
    macro_rules! halves {
        ($p:expr, $q:expr) => {
            _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>($p, $q),
                _mm256_permute2f128_ps::<0x31>($p, $q),
            )
        };
    }
    // From [Ps | Qs] and [Rs | Ts]: [Pt0, Rt0, Pt1, Rt1 | Qt0, Tt0, Qt1, Tt1]
    // with t0 = s0 + s2, t1 = s1 + s3.
    macro_rules! pairs {
        ($a:expr, $b:expr) => {
            _mm256_add_ps(_mm256_unpacklo_ps($a, $b), _mm256_unpackhi_ps($a, $b))
        };
    }
    let u1 = pairs!(halves!(x[0], x[4]), halves!(x[1], x[5]));
    let u2 = pairs!(halves!(x[2], x[6]), halves!(x[3], x[7]));
    // [t0 of 0, 1, 2, 3 | 4, 5, 6, 7] + [t1 of ...]
    _mm256_add_ps(
        _mm256_shuffle_ps::<0x44>(u1, u2),
        _mm256_shuffle_ps::<0xEE>(u1, u2),
    )
}

/// `scalar::dot_f32`'s reduction of the 8 lanes of `v`:
/// `((v0 + v4) + (v1 + v5)) + ((v2 + v6) + (v3 + v7))`.
///
/// # Safety
///
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hsum_dot(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    // [s0 + s1, s2 + s3, ..]
    let t = _mm_hadd_ps(s, s);
    _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)))
}

/// [`crate::kernels::GemmF32Fn`] for AVX2, bit-identical to
/// [`scalar::gemm_f32`](crate::kernels::scalar::gemm_f32) (the same 8-lane
/// partial sums of `scalar::dot_f32`, its reduction tree, then its sequential
/// tail, bias and epilogue). Private to the crate: reachable only through
/// [`super::avx2::Avx2Kernels::kernels`].
///
/// Blocking: input rows in blocks whose `k` floats fill at most
/// [`F32_ROW_BLOCK_BYTES`] (kept in L2 while every output passes), within a
/// block tiles of [`F32_MR`] rows x [`F32_NO`] outputs (12 accumulators, the
/// weights in registers, the inputs straight from memory into `vmulps`), each
/// over the whole depth. An activation is applied afterwards in a pass over
/// each row's outputs (as `gemm_q8` does): in each tile's epilogue, its long
/// dependency chains stalled the next tile's loop.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_f32_avx2(
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
    // SAFETY: AVX2 is available (only reachable through its tables);
    // `check_gemm_f32` bounds every access `gemm_f32` makes.
    unsafe { gemm_f32(a, lda, m, w, n, k, bias, out, ldo, ep) }
}

/// Input rows per tile of the AVX2 `gemm_f32`.
const F32_MR: usize = 3;
/// Outputs per tile of the AVX2 `gemm_f32`.
const F32_NO: usize = 3;
/// Bytes of input rows per row block of the AVX2 `gemm_f32`: half of a 512 KiB
/// L2.
const F32_ROW_BLOCK_BYTES: usize = 256 * 1024;

/// The loops of [`gemm_f32_avx2`].
///
/// # Safety
///
/// AVX2; the arguments pass [`check_gemm_f32`].
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn gemm_f32(
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
    let (tile_ep, act) = ep.split_activation();
    let block_rows = (F32_ROW_BLOCK_BYTES / (4 * k.max(1)) / F32_MR * F32_MR).clamp(F32_MR, 255);
    let mut i0 = 0;
    while i0 < m {
        let i1 = (i0 + block_rows).min(m);
        let mut r = 0;
        while r < n {
            let o = (n - r).min(F32_NO);
            let mut i = i0;
            while i < i1 {
                let rows = (i1 - i).min(F32_MR);
                // SAFETY: rows i..i + rows <= m and outputs r..r + o <= n
                // (our contract: check_gemm_f32 bounds them); AVX2.
                unsafe { tile_dispatch(rows, o, a, lda, i, w, k, r, bias, out, ldo, tile_ep) }
                i += rows;
            }
            r += o;
        }
        i0 = i1;
    }
    if let Some(ep) = act {
        for row in 0..m {
            let o = &mut out[row * ldo..row * ldo + n];
            // SAFETY: AVX2; `o` holds the row's n stored outputs.
            unsafe { super::avx2::activate_run(o.as_mut_ptr(), n, ep) };
        }
    }
}

/// [`tile_f32`] for `rows <= F32_MR` rows and `o <= F32_NO` outputs.
///
/// # Safety
///
/// As [`tile_f32`] with `R = rows`, `O = o`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_dispatch(
    rows: usize,
    o: usize,
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
    macro_rules! arms {
        ($($r:literal, $o:literal);*) => {
            match (rows, o) {
                // SAFETY: our contract with R = rows, O = o.
                $(($r, $o) => unsafe { tile_f32::<$r, $o>(a, lda, i, w, k, r, bias, out, ldo, ep) },)*
                _ => unreachable!("gemm_f32 tile {rows} x {o}"),
            }
        };
    }
    arms!(3, 3; 3, 2; 3, 1; 2, 3; 2, 2; 2, 1; 1, 3; 1, 2; 1, 1)
}

/// Outputs `r..r + O` of input rows `i..i + R`: 8-lane partial sums over the
/// whole chunks of `k`, `scalar::dot_f32`'s reduction tree, its sequential
/// tail, the bias and the epilogue (`Store` or `Accumulate`).
///
/// # Safety
///
/// AVX2; `i + R <= m` and `r + O <= n` within the bounds asserted by
/// [`gemm_f32_avx2`].
// The innermost loops index the weight vectors and sums together.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_f32<const R: usize, const O: usize>(
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
    let mut acc = [[_mm256_setzero_ps(); O]; R];
    let mut c = 0;
    while c < full {
        // SAFETY: rows i..i + R of `a` and rows r..r + O of `w` hold k floats
        // and c + 8 <= k (our contract).
        unsafe {
            let mut wv = [_mm256_setzero_ps(); O];
            for t in 0..O {
                wv[t] = _mm256_loadu_ps(wp.add((r + t) * k + c));
            }
            for q in 0..R {
                let xv = _mm256_loadu_ps(ap.add((i + q) * lda + c));
                for t in 0..O {
                    acc[q][t] = _mm256_add_ps(acc[q][t], _mm256_mul_ps(xv, wv[t]));
                }
            }
        }
        c += 8;
    }
    for (q, acc) in acc.iter().enumerate() {
        let x = &a[(i + q) * lda..(i + q) * lda + k];
        let mut y = [0.0f32; 16];
        for (t, acc) in acc.iter().enumerate() {
            let wr = &w[(r + t) * k..(r + t + 1) * k];
            // SAFETY: AVX2 is available.
            let mut s = unsafe { hsum_dot(*acc) };
            for (xv, wv) in x[full..].iter().zip(&wr[full..]) {
                s += xv * wv;
            }
            y[t] = s + bias[r + t];
        }
        let o = &mut out[(i + q) * ldo + r..(i + q) * ldo + r + O];
        // SAFETY: AVX2 is available; `o` holds the O outputs.
        unsafe { super::epilogue16_avx2(o.as_mut_ptr(), &y, O, ep) };
    }
}

/// The mask of lanes `l < rem` (`rem` in `1..8`) for `vmaskmovps`.
///
/// # Safety
///
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tail_mask(rem: usize) -> __m256i {
    let r = rem as i32;
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(r),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// [`crate::kernels::LayerNormFn`] for AVX2. Private to the crate: reachable
/// only through [`super::avx2::Avx2Kernels::kernels`].
pub(crate) fn layer_norm_avx2(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    assert!(
        gamma.len() >= x.len() && beta.len() >= x.len(),
        "layer_norm: gamma / beta too short"
    );
    // SAFETY: AVX2 is available (only reachable through an AVX2 table), and
    // gamma / beta hold at least x.len() values (just checked).
    unsafe { layer_norm(x, gamma, beta, eps) }
}

/// # Safety
///
/// AVX2; `gamma` and `beta` at least as long as `x`.
#[target_feature(enable = "avx2")]
unsafe fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let k = x.len();
    let (full, rem) = (k / 8 * 8, k % 8);
    let xp = x.as_mut_ptr();
    let mut acc = _mm256_setzero_ps();
    let mut c = 0;
    while c < full {
        // SAFETY: c + 8 <= k.
        acc = _mm256_add_ps(acc, unsafe { _mm256_loadu_ps(xp.add(c)) });
        c += 8;
    }
    // SAFETY: AVX2 is available; masked lanes are not accessed.
    let mask = unsafe { tail_mask(rem.max(1)) };
    if rem > 0 {
        // SAFETY: the masked load reads only x[full..k].
        acc = _mm256_add_ps(acc, unsafe { _mm256_maskload_ps(xp.add(full), mask) });
    }
    let n = k as f32;
    // SAFETY: AVX2 is available.
    let mean = unsafe { hsum(acc) } / n;
    let meanv = _mm256_set1_ps(mean);
    let mut acc = _mm256_setzero_ps();
    let mut c = 0;
    while c < full {
        // SAFETY: c + 8 <= k.
        let d = _mm256_sub_ps(unsafe { _mm256_loadu_ps(xp.add(c)) }, meanv);
        acc = _mm256_add_ps(acc, _mm256_mul_ps(d, d));
        c += 8;
    }
    if rem > 0 {
        // SAFETY: the masked load reads only x[full..k].
        let d = _mm256_sub_ps(unsafe { _mm256_maskload_ps(xp.add(full), mask) }, meanv);
        // Padding lanes add +0.0, as in the reference.
        let d2 = _mm256_and_ps(_mm256_mul_ps(d, d), _mm256_castsi256_ps(mask));
        acc = _mm256_add_ps(acc, d2);
    }
    // SAFETY: AVX2 is available.
    let var = unsafe { hsum(acc) } / n;
    let inv = 1.0 / libm::sqrtf(var + eps);
    let invv = _mm256_set1_ps(inv);
    let (gp, bp) = (gamma.as_ptr(), beta.as_ptr());
    let mut c = 0;
    while c < full {
        // SAFETY: c + 8 <= k <= gamma.len(), beta.len().
        unsafe {
            let v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xp.add(c)), meanv), invv);
            let v = _mm256_add_ps(
                _mm256_mul_ps(v, _mm256_loadu_ps(gp.add(c))),
                _mm256_loadu_ps(bp.add(c)),
            );
            _mm256_storeu_ps(xp.add(c), v);
        }
        c += 8;
    }
    for ((v, g), b) in x[full..].iter_mut().zip(&gamma[full..]).zip(&beta[full..]) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// [`crate::kernels::AttentionFn`] for AVX2. Private to the crate: reachable
/// only through [`super::avx2::Avx2Kernels::kernels`].
pub(crate) fn attention_avx2(args: &AttentionArgs<'_>, scores: &mut [f32], ctx: &mut [f32]) {
    if !crate::kernels::check_attention(args, scores, ctx) {
        return;
    }
    // SAFETY: AVX2 is available (only reachable through an AVX2 table) and
    // `check_attention` proved every access in bounds.
    unsafe { attention(args, scores, ctx) }
}

/// The shape of one attention call, shared by its helpers.
struct Geo {
    /// Keys.
    s: usize,
    /// Row stride of `qkv`.
    ld: usize,
    /// `head_dim` rounded down to a multiple of 8, and the rest.
    full: usize,
    rem: usize,
    /// Lanes `< rem` (all lanes when `rem == 0`, unused then).
    dmask: __m256i,
    scale: f32,
}

/// # Safety
///
/// AVX2; the arguments passed `check_attention` and it returned `true`.
///
/// Query rows go two at a time when `scores` has room for two rows of scores
/// (the workspace gives every chunk `ATTN_ROWS` rows): each key and value row
/// loaded then serves both queries. Every score and output is still the
/// reference's sum, term for term, so one or two rows at a time give the same
/// bits.
#[target_feature(enable = "avx2")]
unsafe fn attention(args: &AttentionArgs<'_>, scores: &mut [f32], ctx: &mut [f32]) {
    let (s, d, a, ld) = (
        args.seq,
        args.head_dim,
        args.heads * args.head_dim,
        args.ld_qkv,
    );
    let (full, rem) = (d / 8 * 8, d % 8);
    let g = Geo {
        s,
        ld,
        full,
        rem,
        // SAFETY: AVX2 is available.
        dmask: unsafe { tail_mask(rem.max(1)) },
        scale: args.scale,
    };
    let pairs = scores.len() >= 2 * s;
    let quads = scores.len() >= 4 * s;
    let qkv = args.qkv.as_ptr();
    let mask = args.mask_bias.as_ptr();
    let sc = scores.as_mut_ptr();
    let cp = ctx.as_mut_ptr();
    for h in 0..args.heads {
        let mut i = args.q_begin;
        while i < args.q_end {
            let r = i - args.q_begin;
            // SAFETY: (whole block) `check_attention` proved rows 0..s of
            // `qkv` hold 3 * A values (row stride ld), `mask_bias` s values,
            // `scores` s values (2 * s when `pairs`), and `ctx` rows
            // 0..q_end - q_begin hold A values (stride ld_ctx); the pointers
            // below address head h's columns h*d .. h*d + d of query rows i
            // (and i + 1 < q_end), of the keys (offset A) and values (2A).
            unsafe {
                let q0 = qkv.add(i * ld + h * d);
                let kb = qkv.add(a + h * d);
                let vb = qkv.add(2 * a + h * d);
                let out0 = cp.add(r * args.ld_ctx + h * d);
                if quads && i + 3 < args.q_end {
                    let qs = [q0, q0.add(ld), q0.add(2 * ld), q0.add(3 * ld)];
                    let scs = [sc, sc.add(s), sc.add(2 * s), sc.add(3 * s)];
                    scores4(&g, qs, kb, mask, scs);
                    for &x in &scs {
                        softmax(x, s);
                    }
                    let lc = args.ld_ctx;
                    let outs = [out0, out0.add(lc), out0.add(2 * lc), out0.add(3 * lc)];
                    values4(&g, scs, vb, outs);
                    i += 4;
                } else if pairs && i + 1 < args.q_end {
                    let sc1 = sc.add(s);
                    scores2(&g, q0, q0.add(ld), kb, mask, sc, sc1);
                    softmax(sc, s);
                    softmax(sc1, s);
                    values2(&g, sc, sc1, vb, out0, out0.add(args.ld_ctx));
                    i += 2;
                } else {
                    scores1(&g, q0, kb, mask, sc);
                    softmax(sc, s);
                    values1(&g, sc, vb, out0);
                    i += 1;
                }
            }
        }
    }
}

/// `sc[j] = dot8(q, k_j) * scale + mask[j]` for every key `j`, 8 keys at a time.
///
/// # Safety
///
/// AVX2; `q .. + d` readable, key `j`'s `d` values readable at `kb + j * ld`
/// for `j < s`, `mask .. + s` readable, `sc .. + s` writable.
#[target_feature(enable = "avx2")]
unsafe fn scores1(g: &Geo, q: *const f32, kb: *const f32, mask: *const f32, sc: *mut f32) {
    let (s, ld, full, rem, dmask) = (g.s, g.ld, g.full, g.rem, g.dmask);
    let scale = _mm256_set1_ps(g.scale);
    // SAFETY: (whole block) every access is within the ranges of our
    // contract; the masked loads touch only lanes < rem.
    unsafe {
        let mut j = 0;
        while j + 8 <= s {
            let mut acc = [_mm256_setzero_ps(); 8];
            let mut c = 0;
            while c < full {
                let qv = _mm256_loadu_ps(q.add(c));
                for (t, acc) in acc.iter_mut().enumerate() {
                    let kv = _mm256_loadu_ps(kb.add((j + t) * ld + c));
                    *acc = _mm256_add_ps(*acc, _mm256_mul_ps(qv, kv));
                }
                c += 8;
            }
            if rem > 0 {
                let qv = _mm256_maskload_ps(q.add(full), dmask);
                for (t, acc) in acc.iter_mut().enumerate() {
                    let kv = _mm256_maskload_ps(kb.add((j + t) * ld + full), dmask);
                    *acc = _mm256_add_ps(*acc, _mm256_mul_ps(qv, kv));
                }
            }
            let dots = hsum8x8(&acc);
            let v = _mm256_add_ps(_mm256_mul_ps(dots, scale), _mm256_loadu_ps(mask.add(j)));
            _mm256_storeu_ps(sc.add(j), v);
            j += 8;
        }
        while j < s {
            let acc = dot_tail(g, q, kb.add(j * ld));
            *sc.add(j) = hsum(acc) * g.scale + *mask.add(j);
            j += 1;
        }
    }
}

/// [`scores1`] for two query rows at once (4 keys at a time), into `sc0` and
/// `sc1`.
///
/// # Safety
///
/// [`scores1`]'s contract for each of `(q0, sc0)` and `(q1, sc1)`.
#[target_feature(enable = "avx2")]
unsafe fn scores2(
    g: &Geo,
    q0: *const f32,
    q1: *const f32,
    kb: *const f32,
    mask: *const f32,
    sc0: *mut f32,
    sc1: *mut f32,
) {
    let (s, ld, full, rem, dmask) = (g.s, g.ld, g.full, g.rem, g.dmask);
    let scale = _mm256_set1_ps(g.scale);
    // SAFETY: (whole block) every access is within the ranges of our
    // contract; the masked loads touch only lanes < rem.
    unsafe {
        let mut j = 0;
        while j + 4 <= s {
            // acc[t]: query 0 with key j + t; acc[4 + t]: query 1.
            let mut acc = [_mm256_setzero_ps(); 8];
            let mut c = 0;
            while c < full {
                let x0 = _mm256_loadu_ps(q0.add(c));
                let x1 = _mm256_loadu_ps(q1.add(c));
                for t in 0..4 {
                    let kv = _mm256_loadu_ps(kb.add((j + t) * ld + c));
                    acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(x0, kv));
                    acc[4 + t] = _mm256_add_ps(acc[4 + t], _mm256_mul_ps(x1, kv));
                }
                c += 8;
            }
            if rem > 0 {
                let x0 = _mm256_maskload_ps(q0.add(full), dmask);
                let x1 = _mm256_maskload_ps(q1.add(full), dmask);
                for t in 0..4 {
                    let kv = _mm256_maskload_ps(kb.add((j + t) * ld + full), dmask);
                    acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(x0, kv));
                    acc[4 + t] = _mm256_add_ps(acc[4 + t], _mm256_mul_ps(x1, kv));
                }
            }
            let dots = hsum8x8(&acc);
            let m4 = _mm_loadu_ps(mask.add(j));
            let v = _mm256_add_ps(_mm256_mul_ps(dots, scale), _mm256_set_m128(m4, m4));
            _mm_storeu_ps(sc0.add(j), _mm256_castps256_ps128(v));
            _mm_storeu_ps(sc1.add(j), _mm256_extractf128_ps::<1>(v));
            j += 4;
        }
        while j < s {
            let k = kb.add(j * ld);
            *sc0.add(j) = hsum(dot_tail(g, q0, k)) * g.scale + *mask.add(j);
            *sc1.add(j) = hsum(dot_tail(g, q1, k)) * g.scale + *mask.add(j);
            j += 1;
        }
    }
}

/// [`scores1`] for four query rows at once (2 keys at a time): each key row
/// read serves four queries, halving the key traffic of [`scores2`] (at 128
/// keys a head's keys no longer fit L1).
///
/// # Safety
///
/// [`scores1`]'s contract for each `(q[r], sc[r])`.
#[target_feature(enable = "avx2")]
unsafe fn scores4(
    g: &Geo,
    q: [*const f32; 4],
    kb: *const f32,
    mask: *const f32,
    sc: [*mut f32; 4],
) {
    let (s, ld, full, rem, dmask) = (g.s, g.ld, g.full, g.rem, g.dmask);
    let scale = _mm256_set1_ps(g.scale);
    // SAFETY: (whole block) every access is within the ranges of our
    // contract; the masked loads touch only lanes < rem.
    unsafe {
        let mut j = 0;
        while j + 2 <= s {
            // acc[2r + t]: query r with key j + t.
            let mut acc = [_mm256_setzero_ps(); 8];
            let (k0, k1) = (kb.add(j * ld), kb.add((j + 1) * ld));
            let mut c = 0;
            while c < full {
                let (v0, v1) = (_mm256_loadu_ps(k0.add(c)), _mm256_loadu_ps(k1.add(c)));
                for r in 0..4 {
                    let x = _mm256_loadu_ps(q[r].add(c));
                    acc[2 * r] = _mm256_add_ps(acc[2 * r], _mm256_mul_ps(x, v0));
                    acc[2 * r + 1] = _mm256_add_ps(acc[2 * r + 1], _mm256_mul_ps(x, v1));
                }
                c += 8;
            }
            if rem > 0 {
                let v0 = _mm256_maskload_ps(k0.add(full), dmask);
                let v1 = _mm256_maskload_ps(k1.add(full), dmask);
                for r in 0..4 {
                    let x = _mm256_maskload_ps(q[r].add(full), dmask);
                    acc[2 * r] = _mm256_add_ps(acc[2 * r], _mm256_mul_ps(x, v0));
                    acc[2 * r + 1] = _mm256_add_ps(acc[2 * r + 1], _mm256_mul_ps(x, v1));
                }
            }
            let dots = hsum8x8(&acc);
            // [mask j, mask j + 1] in every lane pair.
            let m2 = _mm256_castpd_ps(_mm256_set1_pd((mask.add(j) as *const f64).read_unaligned()));
            let v = _mm256_add_ps(_mm256_mul_ps(dots, scale), m2);
            let v = _mm256_castps_pd(v);
            let (lo, hi) = (_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
            _mm_storel_pd(sc[0].add(j) as *mut f64, lo);
            _mm_storeh_pd(sc[1].add(j) as *mut f64, lo);
            _mm_storel_pd(sc[2].add(j) as *mut f64, hi);
            _mm_storeh_pd(sc[3].add(j) as *mut f64, hi);
            j += 2;
        }
        if j < s {
            let k = kb.add(j * ld);
            for r in 0..4 {
                *sc[r].add(j) = hsum(dot_tail(g, q[r], k)) * g.scale + *mask.add(j);
            }
        }
    }
}

/// [`values1`] for four rows of probabilities at once (16 columns per pass):
/// each value row read serves four rows, halving the value traffic of
/// [`values2`].
///
/// # Safety
///
/// [`values1`]'s contract for each `(p[r], out[r])`.
#[target_feature(enable = "avx2")]
unsafe fn values4(g: &Geo, p: [*mut f32; 4], vb: *const f32, out: [*mut f32; 4]) {
    let (s, ld, full, rem, dmask) = (g.s, g.ld, g.full, g.rem, g.dmask);
    // SAFETY: (whole block) every access is within the ranges of our
    // contract; the masked loads and stores touch only lanes < rem.
    unsafe {
        // Keys in blocks of VALUE_BLOCK, every column block of a key block
        // before the next: the rows of `qkv` are a multiple of 1 KiB apart at
        // the usual widths (9 KiB for a hidden size of 768), so a head's value
        // lines fall in a quarter of the L1 sets and a pass over all keys
        // per column block evicted them before the next pass. Each output
        // still sums its terms in key order (the partial sum waits in `out`),
        // so the bits are unchanged.
        let mut j0 = 0;
        while j0 < s {
            let j1 = (j0 + VALUE_BLOCK).min(s);
            let first = j0 == 0;
            let mut c = 0;
            while c + 16 <= full {
                // acc[2r + t]: row r, columns c + 8t ..
                let mut acc = [_mm256_setzero_ps(); 8];
                if !first {
                    for r in 0..4 {
                        acc[2 * r] = _mm256_loadu_ps(out[r].add(c));
                        acc[2 * r + 1] = _mm256_loadu_ps(out[r].add(c + 8));
                    }
                }
                for j in j0..j1 {
                    let v = vb.add(j * ld + c);
                    let (v0, v1) = (_mm256_loadu_ps(v), _mm256_loadu_ps(v.add(8)));
                    for r in 0..4 {
                        let a = _mm256_set1_ps(*p[r].add(j));
                        acc[2 * r] = _mm256_add_ps(acc[2 * r], _mm256_mul_ps(a, v0));
                        acc[2 * r + 1] = _mm256_add_ps(acc[2 * r + 1], _mm256_mul_ps(a, v1));
                    }
                }
                for r in 0..4 {
                    _mm256_storeu_ps(out[r].add(c), acc[2 * r]);
                    _mm256_storeu_ps(out[r].add(c + 8), acc[2 * r + 1]);
                }
                c += 16;
            }
            // What is left: at most one 8-column block and the masked tail.
            while c < full || (c == full && rem > 0) {
                let tail = c == full;
                let mut acc = [_mm256_setzero_ps(); 4];
                if !first {
                    for (r, acc) in acc.iter_mut().enumerate() {
                        *acc = if tail {
                            _mm256_maskload_ps(out[r].add(c), dmask)
                        } else {
                            _mm256_loadu_ps(out[r].add(c))
                        };
                    }
                }
                for j in j0..j1 {
                    let vv = if tail {
                        _mm256_maskload_ps(vb.add(j * ld + c), dmask)
                    } else {
                        _mm256_loadu_ps(vb.add(j * ld + c))
                    };
                    for r in 0..4 {
                        let a = _mm256_set1_ps(*p[r].add(j));
                        acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(a, vv));
                    }
                }
                for r in 0..4 {
                    if tail {
                        _mm256_maskstore_ps(out[r].add(c), dmask, acc[r]);
                    } else {
                        _mm256_storeu_ps(out[r].add(c), acc[r]);
                    }
                }
                if tail {
                    break;
                }
                c += 8;
            }
            j0 = j1;
        }
    }
}

/// Keys per block of [`values4`].
const VALUE_BLOCK: usize = 16;

/// The 8 lane sums of `q . k` over `d` values (zero-padded), before the
/// reduction.
///
/// # Safety
///
/// AVX2; `d` values readable at `q` and at `k`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dot_tail(g: &Geo, q: *const f32, k: *const f32) -> __m256 {
    let mut acc = _mm256_setzero_ps();
    // SAFETY: (whole block) c + 8 <= full <= d; masked lanes < rem.
    unsafe {
        let mut c = 0;
        while c < g.full {
            let p = _mm256_mul_ps(_mm256_loadu_ps(q.add(c)), _mm256_loadu_ps(k.add(c)));
            acc = _mm256_add_ps(acc, p);
            c += 8;
        }
        if g.rem > 0 {
            let p = _mm256_mul_ps(
                _mm256_maskload_ps(q.add(g.full), g.dmask),
                _mm256_maskload_ps(k.add(g.full), g.dmask),
            );
            acc = _mm256_add_ps(acc, p);
        }
    }
    acc
}

/// `out[c] = sum_j p[j] * v_j[c]` (in key order from `+0.0`), 64 columns per
/// pass.
///
/// # Safety
///
/// AVX2; `p .. + s` readable, value `j`'s `d` values readable at `vb + j * ld`
/// for `j < s`, `out .. + d` writable.
#[target_feature(enable = "avx2")]
unsafe fn values1(g: &Geo, p: *const f32, vb: *const f32, out: *mut f32) {
    let (s, ld, full, rem, dmask) = (g.s, g.ld, g.full, g.rem, g.dmask);
    // SAFETY: (whole block) every access is within the ranges of our
    // contract; the masked loads and stores touch only lanes < rem.
    unsafe {
        let mut c = 0;
        while c + 64 <= full {
            let mut acc = [_mm256_setzero_ps(); 8];
            for j in 0..s {
                let pj = _mm256_set1_ps(*p.add(j));
                let v = vb.add(j * ld + c);
                for (t, acc) in acc.iter_mut().enumerate() {
                    let vv = _mm256_loadu_ps(v.add(8 * t));
                    *acc = _mm256_add_ps(*acc, _mm256_mul_ps(pj, vv));
                }
            }
            for (t, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(c + 8 * t), *acc);
            }
            c += 64;
        }
        while c < full {
            let mut acc = _mm256_setzero_ps();
            for j in 0..s {
                let pj = _mm256_set1_ps(*p.add(j));
                let vv = _mm256_loadu_ps(vb.add(j * ld + c));
                acc = _mm256_add_ps(acc, _mm256_mul_ps(pj, vv));
            }
            _mm256_storeu_ps(out.add(c), acc);
            c += 8;
        }
        if rem > 0 {
            let mut acc = _mm256_setzero_ps();
            for j in 0..s {
                let pj = _mm256_set1_ps(*p.add(j));
                let vv = _mm256_maskload_ps(vb.add(j * ld + full), dmask);
                acc = _mm256_add_ps(acc, _mm256_mul_ps(pj, vv));
            }
            _mm256_maskstore_ps(out.add(full), dmask, acc);
        }
    }
}

/// [`values1`] for two rows of probabilities at once (32 columns per pass).
///
/// # Safety
///
/// [`values1`]'s contract for each of `(p0, out0)` and `(p1, out1)`.
#[target_feature(enable = "avx2")]
unsafe fn values2(
    g: &Geo,
    p0: *const f32,
    p1: *const f32,
    vb: *const f32,
    out0: *mut f32,
    out1: *mut f32,
) {
    let (s, ld, full, rem, dmask) = (g.s, g.ld, g.full, g.rem, g.dmask);
    // SAFETY: (whole block) every access is within the ranges of our
    // contract; the masked loads and stores touch only lanes < rem.
    unsafe {
        let mut c = 0;
        while c + 32 <= full {
            // acc[t]: row 0, columns c + 8t ..; acc[4 + t]: row 1.
            let mut acc = [_mm256_setzero_ps(); 8];
            for j in 0..s {
                let a0 = _mm256_set1_ps(*p0.add(j));
                let a1 = _mm256_set1_ps(*p1.add(j));
                let v = vb.add(j * ld + c);
                for t in 0..4 {
                    let vv = _mm256_loadu_ps(v.add(8 * t));
                    acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(a0, vv));
                    acc[4 + t] = _mm256_add_ps(acc[4 + t], _mm256_mul_ps(a1, vv));
                }
            }
            for t in 0..4 {
                _mm256_storeu_ps(out0.add(c + 8 * t), acc[t]);
                _mm256_storeu_ps(out1.add(c + 8 * t), acc[4 + t]);
            }
            c += 32;
        }
        while c < full {
            let (mut x0, mut x1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for j in 0..s {
                let vv = _mm256_loadu_ps(vb.add(j * ld + c));
                x0 = _mm256_add_ps(x0, _mm256_mul_ps(_mm256_set1_ps(*p0.add(j)), vv));
                x1 = _mm256_add_ps(x1, _mm256_mul_ps(_mm256_set1_ps(*p1.add(j)), vv));
            }
            _mm256_storeu_ps(out0.add(c), x0);
            _mm256_storeu_ps(out1.add(c), x1);
            c += 8;
        }
        if rem > 0 {
            let (mut x0, mut x1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for j in 0..s {
                let vv = _mm256_maskload_ps(vb.add(j * ld + full), dmask);
                x0 = _mm256_add_ps(x0, _mm256_mul_ps(_mm256_set1_ps(*p0.add(j)), vv));
                x1 = _mm256_add_ps(x1, _mm256_mul_ps(_mm256_set1_ps(*p1.add(j)), vv));
            }
            _mm256_maskstore_ps(out0.add(full), dmask, x0);
            _mm256_maskstore_ps(out1.add(full), dmask, x1);
        }
    }
}

/// [`scalar::softmax`](crate::kernels::scalar::softmax) of the `s` floats at `x`, in place.
///
/// # Safety
///
/// AVX2; `x .. x + s` valid for reads and writes, `s >= 1`.
#[target_feature(enable = "avx2")]
unsafe fn softmax(x: *mut f32, s: usize) {
    let (full, rem) = (s / 8 * 8, s % 8);
    let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
    // SAFETY: (whole block) every access is below x + s (full + 8 <= s in the
    // loops, masked lanes < rem for the tail); AVX2 is available.
    unsafe {
        let mask = tail_mask(rem.max(1));
        let mut m = neg_inf;
        let mut c = 0;
        while c < full {
            m = _mm256_max_ps(m, _mm256_loadu_ps(x.add(c)));
            c += 8;
        }
        if rem > 0 {
            let v = _mm256_maskload_ps(x.add(full), mask);
            m = _mm256_max_ps(m, _mm256_blendv_ps(neg_inf, v, _mm256_castsi256_ps(mask)));
        }
        let max = hmax(m);
        let maxv = _mm256_set1_ps(max);
        let mut acc = _mm256_setzero_ps();
        let mut c = 0;
        while c < full {
            let e = exp(_mm256_sub_ps(_mm256_loadu_ps(x.add(c)), maxv));
            _mm256_storeu_ps(x.add(c), e);
            acc = _mm256_add_ps(acc, e);
            c += 8;
        }
        if rem > 0 {
            let e = exp(_mm256_sub_ps(_mm256_maskload_ps(x.add(full), mask), maxv));
            _mm256_maskstore_ps(x.add(full), mask, e);
            acc = _mm256_add_ps(acc, _mm256_and_ps(e, _mm256_castsi256_ps(mask)));
        }
        let inv = 1.0 / hsum(acc);
        let invv = _mm256_set1_ps(inv);
        let mut c = 0;
        while c < full {
            _mm256_storeu_ps(x.add(c), _mm256_mul_ps(_mm256_loadu_ps(x.add(c)), invv));
            c += 8;
        }
        for c in full..s {
            *x.add(c) *= inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::scalar;

    /// The SIMD building blocks against the scalar ones on special values.
    #[test]
    fn exp_and_tanh_match_scalar_on_specials() {
        if !std::is_x86_feature_detected!("avx2") {
            return;
        }
        let xs = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            EXP_LO,
            EXP_LO - 1e-3,
            EXP_HI,
            100.0,
            -100.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN,
            f32::MAX,
            1e-40,
            0.624_999_9,
            0.625,
        ];
        for &x in &xs {
            let mut out = [0.0f32; 8];
            // SAFETY: AVX2 checked above; an 8-float array.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), exp(_mm256_set1_ps(x))) };
            assert_eq!(out[0].to_bits(), scalar::exp(x).to_bits(), "exp({x})");
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), tanh(_mm256_set1_ps(x))) };
            assert_eq!(out[0].to_bits(), scalar::tanh(x).to_bits(), "tanh({x})");
        }
    }
}
