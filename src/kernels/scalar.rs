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
    let (mut lo, mut hi) = (0.0f32, 0.0f32);
    for (v, s) in x.iter().zip(smooth) {
        let y = v * s;
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
    let (head, tail) = q.split_at_mut(x.len());
    for ((d, &v), &s) in head.iter_mut().zip(x).zip(smooth) {
        let r = round_half_even((v * s) * inv) + zp;
        *d = r.clamp(-128.0, 127.0) as i8;
    }
    tail.fill(0);
    (range / 255.0f32, zp as i32)
}

/// Round to nearest, ties to even (the IEEE default rounding mode).
#[inline]
pub fn round_half_even(v: f32) -> f32 {
    libm::rintf(v)
}

/// Reference [`super::QuantizeRowsFn`].
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
        Epilogue::Tanh => libm::tanhf(y),
    }
}

/// One activation value, as transformers computes it.
#[inline]
pub fn activate(x: f32, a: Activation) -> f32 {
    match a {
        // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
        Activation::GeluNew => {
            const C: f32 = 0.797_884_6; // sqrt(2/pi)
            0.5 * x * (1.0 + libm::tanhf(C * (x + 0.044715 * (x * x * x))))
        }
        // 0.5 * x * (1 + erf(x / sqrt(2)))
        Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * core::f32::consts::FRAC_1_SQRT_2)),
        Activation::Relu => x.max(0.0),
    }
}

/// Reference [`super::GemmQ8Fn`]: for each row `i` and output `r`,
/// `acc = sum_c a[i][c] * w[r][c] - a_zps[i] * w.row_sums[r]` (i32),
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
                    *acc_j += a4[0] as i32 * w4[0] as i32
                        + a4[1] as i32 * w4[1] as i32
                        + a4[2] as i32 * w4[2] as i32
                        + a4[3] as i32 * w4[3] as i32;
                }
            }
            let (sa, za) = (a_scales[i], a_zps[i]);
            for (j, &acc_j) in acc.iter().enumerate() {
                let r = nb * Q8_N_BLOCK + j;
                if r >= w.n {
                    break;
                }
                let acc_j = acc_j - za * w.row_sums[r];
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
/// with the biased variance.
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / libm::sqrtf(var + eps);
    for ((v, g), b) in x.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// Softmax of one row in place (max-subtracted).
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Reference [`super::AttentionFn`]: for each head `h` and query `i`,
/// `p = softmax((q_i . k_j) * scale + mask_bias[j])` over keys `j`, and
/// `ctx_i = sum_j p_j v_j`, written to `ctx[i][h*d .. (h+1)*d]`.
/// `scores` needs `seq` floats.
pub fn attention(args: &AttentionArgs<'_>, scores: &mut [f32], ctx: &mut [f32]) {
    let (s, d, a) = (args.seq, args.head_dim, args.heads * args.head_dim);
    let scores = &mut scores[..s];
    for h in 0..args.heads {
        for (r, i) in (args.q_begin..args.q_end).enumerate() {
            let q = &args.qkv[i * args.ld_qkv + h * d..i * args.ld_qkv + (h + 1) * d];
            for (j, sc) in scores.iter_mut().enumerate() {
                let k = &args.qkv[j * args.ld_qkv + a + h * d..j * args.ld_qkv + a + (h + 1) * d];
                *sc = dot_f32(q, k) * args.scale + args.mask_bias[j];
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
