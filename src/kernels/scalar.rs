//! The scalar reference kernels. These define the arithmetic: every other tier
//! must reproduce the integer parts bit for bit (see the module docs of
//! [`crate::kernels`] for the rounding rule).

use super::{AttentionArgs, Epilogue, QMatrix};
use crate::format::{Activation, Q8_K_GROUP, Q8_N_BLOCK};

/// Quantizes one row asymmetrically: returns `(scale, zero_point)` and writes
/// `q` (length `>= x.len()`, the rest zeroed). Each value is first multiplied by
/// its `smooth` factor. See the rounding rule in [`crate::kernels`].
#[inline]
pub fn quantize_row(x: &[f32], smooth: &[f32], q: &mut [i8]) -> (f32, i32) {
    quantize_values(x.len(), |c| x[c] * smooth[c], q)
}

/// The rule of [`quantize_row`] for the `n` values `value(0..n)` (called twice
/// per value, which must give the same bits both times).
#[inline(always)]
fn quantize_values(n: usize, value: impl Fn(usize) -> f32, q: &mut [i8]) -> (f32, i32) {
    let (mut lo, mut hi) = (0.0f32, 0.0f32);
    for c in 0..n {
        let y = value(c);
        lo = lo.min(y);
        hi = hi.max(y);
    }
    let range = hi - lo;
    if !(range > 0.0 && range.is_finite()) {
        q.fill(0);
        return (0.0, 0);
    }
    let inv = 255.0f32 / range;
    let zp = (round_half_even(-lo * inv) - 128.0).clamp(-128.0, 127.0);
    let (head, tail) = q.split_at_mut(n);
    for (c, d) in head.iter_mut().enumerate() {
        let r = round_half_even(value(c) * inv) + zp;
        *d = r.clamp(-128.0, 127.0) as i8;
    }
    tail.fill(0);
    (range / 255.0f32, zp as i32)
}

/// The second part of a row's two-part quantization ([`crate::format::DType::Q8R`]):
/// quantizes, by the rule of [`quantize_row`] (smoothing factors 1), the residual
/// `x[c] * smooth[c] - scale * (q[c] - zp)` that the first part `(q, scale, zp)`
/// (from [`quantize_row`] on the same `x` and `smooth`) leaves out, each value
/// computed as one f32 product of `x` and `smooth`, the exact integer
/// `q[c] - zp` converted to f32, one product with `scale` and one subtraction.
/// This scalar function is the only implementation every tier uses.
pub fn quantize_residual_row(
    x: &[f32],
    smooth: &[f32],
    first: (&[i8], f32, i32),
    out: &mut [i8],
) -> (f32, i32) {
    let (q, scale, zp) = first;
    let value = |c: usize| x[c] * smooth[c] - scale * ((q[c] as i32 - zp) as f32);
    quantize_values(x.len(), value, out)
}

/// [`quantize_residual_row`] for `m` rows (strides as in [`quantize_rows`]):
/// rows of `x`, their first parts in `q` / `scales` / `zps`, the second parts
/// into `q2` / `scales2` / `zps2`.
#[allow(clippy::too_many_arguments)]
pub fn quantize_residual_rows(
    x: &[f32],
    ldx: usize,
    m: usize,
    smooth: &[f32],
    first: (&[i8], &[f32], &[i32]),
    ldq: usize,
    q2: &mut [i8],
    scales2: &mut [f32],
    zps2: &mut [i32],
) {
    let k = smooth.len();
    let (q, scales, zps) = first;
    for i in 0..m {
        (scales2[i], zps2[i]) = quantize_residual_row(
            &x[i * ldx..i * ldx + k],
            smooth,
            (&q[i * ldq..i * ldq + k], scales[i], zps[i]),
            &mut q2[i * ldq..i * ldq + ldq],
        );
    }
}

/// Round to nearest, ties to even (the IEEE default rounding mode): for
/// `|v| < 2^23`, `(|v| + 2^23) - 2^23` (the addition rounds away the fraction
/// in that mode; two plain f32 operations, no call), with `v`'s sign put back
/// (so `-0.3` gives `-0.0`); larger values, infinities and NaN are already
/// integral and pass unchanged. Equal to `libm::rintf` on every f32
/// (`round_half_even_matches_rintf`).
#[inline]
pub fn round_half_even(v: f32) -> f32 {
    const TWO23: f32 = 8_388_608.0;
    let a = abs(v);
    if a < TWO23 {
        let r = (a + TWO23) - TWO23;
        f32::from_bits(r.to_bits() | (v.to_bits() & 0x8000_0000))
    } else {
        v
    }
}

/// Reference [`super::QuantizeRowsFn`].
#[allow(clippy::too_many_arguments)]
pub fn quantize_rows(
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
    debug_assert!(ldq >= k.div_ceil(Q8_K_GROUP) * Q8_K_GROUP);
    for i in 0..m {
        (scales[i], zps[i]) = quantize_row(
            &x[i * ldx..i * ldx + k],
            smooth,
            &mut q[i * ldq..i * ldq + ldq],
        );
    }
}

/// Applies the epilogue to one output value.
#[inline]
pub fn epilogue(out: &mut f32, y: f32, ep: Epilogue) {
    *out = match ep {
        Epilogue::Store => y,
        Epilogue::Accumulate => *out + y,
        Epilogue::Activate(a) => activate(y, a),
        Epilogue::Tanh => tanh(y),
    }
}

/// Reference [`super::ActivateFn`]: `x[j] = ep(x[j])` for `Activate` and
/// `Tanh`; `Store` and `Accumulate` leave `x` unchanged.
pub fn activate_in_place(x: &mut [f32], ep: Epilogue) {
    if ep.is_activation() {
        for v in x {
            epilogue(v, *v, ep);
        }
    }
}

/// One activation value. These are the reference definitions (see
/// `docs/kernels.md`): every SIMD tier computes exactly the same bits.
#[inline]
pub fn activate(x: f32, a: Activation) -> f32 {
    match a {
        Activation::GeluNew => gelu_tanh(x),
        Activation::Gelu => gelu_erf(x),
        Activation::Relu => max_sel(x, 0.0),
    }
}

// ---------------------------------------------------------------------------
// Float building blocks shared by every tier.
//
// Each function below is a fixed sequence of single IEEE f32 operations
// (add, sub, mul, div, sqrt, round-to-nearest-even, compare/select, bit
// operations on the sign and exponent), never fused into an FMA, so that a
// SIMD tier evaluating the same sequence lane by lane gets the same bits.
// ---------------------------------------------------------------------------

/// `if a < b { a } else { b }`: the x86 `minps(a, b)` rule (returns `b`
/// when either is NaN), reproduced on NEON with a compare and a select.
#[inline(always)]
pub fn min_sel(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

/// `if a > b { a } else { b }`: the x86 `maxps(a, b)` rule.
#[inline(always)]
pub fn max_sel(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// Below this, [`exp`] returns `+0.0` (`exp(EXP_LO)` is about `2^-126`).
pub const EXP_LO: f32 = -87.336_55;
/// Above this, [`exp`] returns `exp(EXP_HI)` (about `1.65e38`, finite).
pub const EXP_HI: f32 = 88.0;
/// `log2(e)`.
pub const LOG2E: f32 = core::f32::consts::LOG2_E;
/// `ln 2` split in two: a short high part (`n * LN2_HI` is exact for
/// `|n| <= 127`) and the remainder.
pub const LN2_HI: f32 = 0.693_359_4; // = 0.693359375 exactly
/// See [`LN2_HI`].
pub const LN2_LO: f32 = -2.121_944_4e-4;
/// The polynomial of [`exp`] on `[-ln2/2, ln2/2]`, highest degree first.
pub const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    5e-1,
];

/// `e^x`: Cody-Waite range reduction `x = n ln2 + r`, a degree-7 polynomial in
/// `r`, then a multiply by `2^n` built from its exponent bits.
///
/// `x < EXP_LO` gives `+0.0`, `x > EXP_HI` gives `exp(EXP_HI)`, NaN gives NaN.
/// About 1 ulp from the correctly rounded value (see `docs/kernels.md`).
#[inline]
pub fn exp(x: f32) -> f32 {
    // The operand order of the clamp lets NaN through (min_sel(a, NaN) = NaN).
    let c = max_sel(EXP_LO, min_sel(EXP_HI, x));
    let n = round_half_even(c * LOG2E);
    let r = c - n * LN2_HI;
    let r = r - n * LN2_LO;
    let z = r * r;
    let mut p = EXP_P[0];
    for &k in &EXP_P[1..] {
        p = p * r + k;
    }
    let p = p * z + r + 1.0;
    // n is an integer in -126..=127 here (or NaN, where any scale keeps p NaN).
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    // Below EXP_LO the result is +0.0: the scale is zeroed rather than the
    // product selected away, so that no subnormal `p * 2^-126` is formed (p is
    // positive, so `p * 0.0` is +0.0). The SIMD tiers do the same.
    let scale = if x < EXP_LO { 0.0 } else { scale };
    p * scale
}

/// The odd polynomial of [`tanh`] for `|x| < 0.625`, highest degree first.
pub const TANH_P: [f32; 5] = [
    -5.704_988_7e-3,
    2.063_909e-2,
    -5.373_971_6e-2,
    1.333_144_2e-1,
    -3.333_328e-1,
];

/// `|x| < TANH_SMALL` uses the polynomial, the rest `1 - 2 / (e^{2|x|} + 1)`.
pub const TANH_SMALL: f32 = 0.625;

/// `|x|` (clears the sign bit; NaN stays NaN).
#[inline(always)]
pub fn abs(x: f32) -> f32 {
    f32::from_bits(x.to_bits() & 0x7fff_ffff)
}

/// `tanh(x)`: for `|x| < 0.625`, `x + x^3 P(x^2)`; otherwise
/// `sign(x) * (1 - 2 / (exp(2|x|) + 1))` with [`exp`]. Odd, within a few ulp
/// of libm, saturates to exactly `+-1` for `|x| > 9.01`, NaN gives NaN.
#[inline]
pub fn tanh(x: f32) -> f32 {
    let ax = abs(x);
    let e = exp(ax + ax);
    let big = 1.0 - 2.0 / (e + 1.0);
    let big = f32::from_bits(big.to_bits() | (x.to_bits() & 0x8000_0000));
    let s = x * x;
    let mut p = TANH_P[0];
    for &k in &TANH_P[1..] {
        p = p * s + k;
    }
    let small = p * s * x + x;
    if ax < TANH_SMALL {
        small
    } else {
        big
    }
}

/// `sqrt(2 / pi)`.
pub const GELU_C: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh GELU.
pub const GELU_A: f32 = 0.044_715;

/// The tanh GELU (`gelu_new`): `0.5 x (1 + tanh(u))` with
/// `u = sqrt(2/pi) (x + 0.044715 x^3)`, computed as the equal
/// `x / (1 + exp(-2u))` (no cancellation for negative `x`).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    let x3 = x * x * x;
    let u = GELU_C * (x + GELU_A * x3);
    let e = exp(u * -2.0);
    x / (1.0 + e)
}

/// Numerator coefficients of [`erf`] (odd polynomial), highest degree first.
pub const ERF_ALPHA: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906_3e-4,
    -2.954_600_1e-3,
    -1.609_603_3e-2,
];
/// Denominator coefficients of [`erf`] (even polynomial), highest degree first.
pub const ERF_BETA: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329_2e-3,
    -1.426_474e-2,
];

/// `erf(x)`: `x` clamped to `[-4, 4]`, then the rational approximation
/// `x P(x^2) / Q(x^2)` (degrees 13 / 8). NaN gives NaN.
#[inline]
pub fn erf(x: f32) -> f32 {
    let x = max_sel(-4.0, min_sel(4.0, x));
    let x2 = x * x;
    let mut p = ERF_ALPHA[0];
    for &k in &ERF_ALPHA[1..] {
        p = p * x2 + k;
    }
    let p = x * p;
    let mut q = ERF_BETA[0];
    for &k in &ERF_BETA[1..] {
        q = q * x2 + k;
    }
    p / q
}

/// The exact GELU: `0.5 x (1 + erf(x / sqrt 2))` with [`erf`].
#[inline]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// The fixed reduction of 8 lanes used by every float sum (dot products,
/// softmax, LayerNorm): `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
#[inline(always)]
pub fn reduce8(a: &[f32; 8]) -> f32 {
    let s = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

/// [`reduce8`] with [`max_sel`] in place of `+`.
#[inline(always)]
pub fn reduce8_max(a: &[f32; 8]) -> f32 {
    let s = [
        max_sel(a[0], a[4]),
        max_sel(a[1], a[5]),
        max_sel(a[2], a[6]),
        max_sel(a[3], a[7]),
    ];
    max_sel(max_sel(s[0], s[2]), max_sel(s[1], s[3]))
}

/// Lane `l` of the zero-padded 8-lane layout: `x[c + l]`, or `pad` past the end.
#[inline(always)]
fn lane(x: &[f32], c: usize, l: usize, pad: f32) -> f32 {
    x.get(c + l).copied().unwrap_or(pad)
}

/// The 8-lane dot product of attention: `x` and `y` zero-padded to a multiple
/// of 8, lane `l` sums `x[8t + l] * y[8t + l]` over `t` in order (from `+0.0`),
/// then [`reduce8`].
#[inline]
pub fn dot8(x: &[f32], y: &[f32]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = [0.0f32; 8];
    let mut c = 0;
    while c < x.len() {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += lane(x, c, l, 0.0) * lane(y, c, l, 0.0);
        }
        c += 8;
    }
    reduce8(&acc)
}

/// 8-lane sum of `x` (zero-padded), reduced with [`reduce8`].
#[inline]
pub fn sum8(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut c = 0;
    while c < x.len() {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += lane(x, c, l, 0.0);
        }
        c += 8;
    }
    reduce8(&acc)
}

/// Reference [`super::GemmQ8Fn`]: for each row `i` and output `r`,
/// `acc = sum_c a[i][c] * w[r][c] - a_zps[i] * w.row_sums[r]` (i32, wrapping),
/// `y = acc as f32 * (a_scales[i] * w.scales[r]) + bias[r]`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_q8(
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
    let kg = w.k_groups;
    let block = kg * Q8_N_BLOCK * Q8_K_GROUP;
    for nb in 0..w.n.div_ceil(Q8_N_BLOCK) {
        let wblk = &w.packed[nb * block..(nb + 1) * block];
        for i in 0..m {
            let row = &a[i * lda..i * lda + kg * Q8_K_GROUP];
            let mut acc = [0i32; Q8_N_BLOCK];
            for (g, a4) in row.chunks_exact(Q8_K_GROUP).enumerate() {
                let wg = &wblk[g * Q8_N_BLOCK * Q8_K_GROUP..(g + 1) * Q8_N_BLOCK * Q8_K_GROUP];
                for (j, acc_j) in acc.iter_mut().enumerate() {
                    let w4 = &wg[j * Q8_K_GROUP..(j + 1) * Q8_K_GROUP];
                    // Four products always fit; the running sum wraps (i32
                    // two's complement), which every tier reproduces whatever its
                    // summation order.
                    *acc_j = acc_j.wrapping_add(
                        a4[0] as i32 * w4[0] as i32
                            + a4[1] as i32 * w4[1] as i32
                            + a4[2] as i32 * w4[2] as i32
                            + a4[3] as i32 * w4[3] as i32,
                    );
                }
            }
            let (sa, za) = (a_scales[i], a_zps[i]);
            for (j, &acc_j) in acc.iter().enumerate() {
                let r = nb * Q8_N_BLOCK + j;
                if r >= w.n {
                    break;
                }
                let acc_j = acc_j.wrapping_sub(za.wrapping_mul(w.row_sums[r]));
                let y = acc_j as f32 * (sa * w.scales[r]) + bias[r];
                epilogue(&mut out[i * ldo + r], y, ep);
            }
        }
    }
}

/// Dot product with 8 independent partial sums (vectorizes well).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Reference [`super::GemmF32Fn`]: `out[i][r] = ep(dot(a[i], w[r]) + bias[r])`.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32(
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
    for i in 0..m {
        let x = &a[i * lda..i * lda + k];
        for r in 0..n {
            let y = dot_f32(x, &w[r * k..(r + 1) * k]) + bias[r];
            epilogue(&mut out[i * ldo + r], y, ep);
        }
    }
}

/// Reference [`super::LayerNormFn`]: `(x - mean) / sqrt(var + eps) * gamma + beta`
/// with the biased variance. `mean = sum8(x) / n`; `var` is the 8-lane sum
/// (zero-padded, [`reduce8`]) of `(x - mean) * (x - mean)` divided by `n`;
/// `inv = 1 / sqrt(var + eps)`; then `((x - mean) * inv) * gamma + beta`.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let (mean, inv) = layer_norm_stats(x, eps);
    for ((v, g), b) in x.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// The `(mean, 1 / sqrt(var + eps))` of [`layer_norm`].
#[inline]
pub fn layer_norm_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = sum8(x) / n;
    let mut acc = [0.0f32; 8];
    let mut c = 0;
    while c < x.len() {
        for (l, a) in acc.iter_mut().enumerate() {
            let d = match x.get(c + l) {
                Some(&v) => (v - mean) * (v - mean),
                None => 0.0,
            };
            *a += d;
        }
        c += 8;
    }
    let var = reduce8(&acc) / n;
    (mean, 1.0 / libm::sqrtf(var + eps))
}

/// Softmax of one row in place: `m` = the 8-lane [`max_sel`] of the row
/// (padded with `-inf`, [`reduce8_max`]), `e_j = exp(x_j - m)` with [`exp`],
/// `s` = [`sum8`] of the `e_j`, then `p_j = e_j * (1 / s)`.
pub fn softmax(x: &mut [f32]) {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut c = 0;
    while c < x.len() {
        for (l, a) in acc.iter_mut().enumerate() {
            *a = max_sel(*a, lane(x, c, l, f32::NEG_INFINITY));
        }
        c += 8;
    }
    let max = reduce8_max(&acc);
    for v in x.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / sum8(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Reference [`super::AttentionFn`]: for each head `h` and query `i` in
/// `q_begin..q_end`, `p = softmax(dot8(q_i, k_j) * scale + mask_bias[j])` over
/// keys `j` ([`dot8`], [`softmax`]), and `ctx_i[c] = sum_j p_j v_j[c]` summed
/// over `j` in order from `+0.0` (one multiply and one add per term), written
/// to `ctx[i - q_begin][h*d .. (h+1)*d]`. `scores` needs `seq` floats.
pub fn attention(args: &AttentionArgs<'_>, scores: &mut [f32], ctx: &mut [f32]) {
    let (s, d, a) = (args.seq, args.head_dim, args.heads * args.head_dim);
    let scores = &mut scores[..s];
    for h in 0..args.heads {
        for (r, i) in (args.q_begin..args.q_end).enumerate() {
            let q = &args.qkv[i * args.ld_qkv + h * d..i * args.ld_qkv + (h + 1) * d];
            for (j, sc) in scores.iter_mut().enumerate() {
                let k = &args.qkv[j * args.ld_qkv + a + h * d..j * args.ld_qkv + a + (h + 1) * d];
                *sc = dot8(q, k) * args.scale + args.mask_bias[j];
            }
            softmax(scores);
            let out = &mut ctx[r * args.ld_ctx + h * d..r * args.ld_ctx + (h + 1) * d];
            out.fill(0.0);
            for (j, &p) in scores.iter().enumerate() {
                let v = &args.qkv
                    [j * args.ld_qkv + 2 * a + h * d..j * args.ld_qkv + 2 * a + (h + 1) * d];
                for (o, &vv) in out.iter_mut().zip(v) {
                    *o += p * vv;
                }
            }
        }
    }
}
