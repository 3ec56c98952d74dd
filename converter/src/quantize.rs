//! Symmetric per-row int8 quantization of weight matrices.
//!
//! For each row `r`: `scale = max_c |w[r][c]| / 127` (f32) and
//! `q = round_half_even(w / scale)` clamped to `-127..=127`; an all-zero row
//! gets scale 0. This is the weight half of the arithmetic documented in
//! `albert_edge::kernels`.
//!
//! With [`WeightPairs::Bounded`] (opt-in) a matrix comes out *pair-bounded*
//! (`albert_edge::format::Q8_PAIR_BOUND`): in each row, the values of inputs `2j`
//! and `2j + 1` sum to at most 128 in magnitude, which lets the runtime's AVX2 GEMM
//! skip a sign step per multiply. Each row then gets the scale, among
//! [`BOUNDED_TOPS`], with the least error after bounding; an offending pair loses
//! the least it can (plain rounding) or the second-rounded weight is clamped and its
//! error handed on to the inputs not yet rounded (GPTQ).

use crate::calibrate::dot;
use crate::model::Mat;
use albert_edge::format::{q8_pair_bounded, Q8_PAIR_BOUND};

/// A quantized matrix, row-major `[n][k]` (packing for the kernels is `pack`'s job).
#[derive(Debug, Clone, PartialEq)]
pub struct QRows {
    /// Rows.
    pub n: usize,
    /// Columns.
    pub k: usize,
    /// `n * k` values in -127..=127.
    pub q: Vec<i8>,
    /// One scale per row.
    pub scales: Vec<f32>,
    /// Per-input-channel activation multiplier (`1/s_c` of the smoothing; 1 when none).
    pub smooth: Vec<f32>,
}

/// How much precision quantization cost one matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantError {
    /// The matrix (role name and layer).
    pub name: String,
    /// `||W - deq(Q)|| / ||W||` (Frobenius).
    pub relative_rms: f64,
    /// Largest `|W - deq(Q)|`.
    pub max_abs: f64,
}

/// Which int8 values a weight matrix may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightPairs {
    /// Any values in -127..=127 with the scale `max |w| / 127` (the most precise).
    #[default]
    Free,
    /// Pair-bounded (`albert_edge::format::Q8_PAIR_BOUND`): in each row the values
    /// of inputs `2j, 2j + 1` sum to at most 128 in magnitude, so the AVX2 GEMM
    /// can skip a sign step per multiply (about 15% faster end to end on x86
    /// without AVX-512 VNNI; no effect on other CPUs). Each row's scale is
    /// `max |w| / t` for the `t` in [`BOUNDED_TOPS`] with the least rounding
    /// error after bounding: coarser than `Free`.
    Bounded,
}

/// Largest int8 values tried for a row's largest weight under [`WeightPairs::Bounded`]
/// (at 64 no pair can exceed the bound).
pub const BOUNDED_TOPS: [f32; 9] = [127.0, 120.0, 112.0, 104.0, 96.0, 88.0, 80.0, 72.0, 64.0];

/// Quantizes every row of `m` (see [`WeightPairs`]).
pub fn quantize(m: &Mat, pairs: WeightPairs) -> QRows {
    let mut q = vec![0i8; m.rows * m.cols];
    let mut scales = vec![0f32; m.rows];
    let mut cand = vec![0i8; m.cols];
    let tops: &[f32] = match pairs {
        WeightPairs::Free => &[127.0],
        WeightPairs::Bounded => &BOUNDED_TOPS,
    };
    for r in 0..m.rows {
        let row = m.row(r);
        let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
        if amax == 0.0 || !amax.is_finite() {
            continue;
        }
        let mut best = f64::INFINITY;
        for &top in tops {
            let scale = amax / top;
            for (d, &v) in cand.iter_mut().zip(row) {
                *d = (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
            if pairs == WeightPairs::Bounded {
                for (qp, vp) in cand.chunks_exact_mut(2).zip(row.chunks_exact(2)) {
                    bound_pair(qp, vp[0] / scale, vp[1] / scale);
                }
            }
            let err: f64 = if tops.len() == 1 {
                0.0
            } else {
                cand.iter()
                    .zip(row)
                    .map(|(&c, &v)| {
                        let e = (v - c as f32 * scale) as f64;
                        e * e
                    })
                    .sum()
            };
            if err < best {
                best = err;
                scales[r] = scale;
                q[r * m.cols..(r + 1) * m.cols].copy_from_slice(&cand);
            }
        }
    }
    QRows {
        n: m.rows,
        k: m.cols,
        q,
        scales,
        smooth: vec![1.0; m.cols],
    }
}

/// Makes the rounded pair `q` (of the scaled values `v0`, `v1`) pair-bounded,
/// moving its magnitude down by the excess where that costs the least squared
/// error.
fn bound_pair(q: &mut [i8], v0: f32, v1: f32) {
    if q8_pair_bounded(q[0], q[1]) {
        return;
    }
    // Same signs (opposite signs are always bounded): take `excess` units of
    // magnitude off the two, split as `d` and `excess - d`.
    let (q0, q1) = (q[0] as i32, q[1] as i32);
    let sign = q0.signum();
    let excess = (q0 + q1).abs() - Q8_PAIR_BOUND;
    let cost = |d: i32| {
        let (a, b) = ((q0 - sign * d) as f32, (q1 - sign * (excess - d)) as f32);
        (v0 - a) * (v0 - a) + (v1 - b) * (v1 - b)
    };
    let d = (0..=excess)
        .filter(|&d| d <= q0.abs() && excess - d <= q1.abs())
        .min_by(|&a, &b| cost(a).total_cmp(&cost(b)))
        .unwrap_or(excess);
    q[0] = (q0 - sign * d) as i8;
    q[1] = (q1 - sign * (excess - d)) as i8;
}

/// GPTQ (Frantar et al., 2023): quantizes the columns of `m` one at a time and after
/// each column moves its rounding error onto the columns not yet quantized, weighted by
/// the inverse of `h = sum x x^T` (the inputs' second moments, `[k][k]`, only the upper
/// triangle is read), so that `deq(Q) x` stays close to `W x` on the calibration inputs
/// rather than each weight close to itself. Columns go in act order (largest input
/// energy `h[c][c]` first, while the most columns remain to absorb their error). Scales
/// are [`quantize`]'s (so the int8 arithmetic is unchanged); values pushed past the
/// range are clamped, and with [`WeightPairs::Bounded`] the second of each pair of
/// inputs `2j, 2j + 1` to be rounded is clamped to keep the pair bounded (its error
/// goes on to later columns like any rounding error). Falls back to [`quantize`] when
/// `h` is unusable (wrong size, not finite, or not positive definite after dampening).
pub fn quantize_gptq(m: &Mat, h: &[f64], pairs: WeightPairs) -> QRows {
    match Gptq::new(h, m.cols) {
        Some(g) => g.quantize(m, &vec![1.0; m.cols], pairs),
        None => quantize(m, pairs),
    }
}

/// The factorization GPTQ needs for one matrix's inputs, computed once and reused for
/// every input scaling: with `D = diag(s)`, the smoothed inputs `x / s` have second
/// moments `D^-1 H D^-1`, whose inverse's upper Cholesky factor is `U D` (the column
/// order and the dampening `λ I` are those of the unscaled `H`).
#[derive(Debug, Clone)]
pub struct Gptq {
    k: usize,
    /// Act order: position -> input channel.
    perm: Vec<usize>,
    /// Upper Cholesky factor of `(P H P^T + λI)^-1`, `[k][k]`.
    u: Vec<f32>,
}

impl Gptq {
    /// Factors `h` (`[k][k]`, upper triangle read); `None` when unusable.
    pub fn new(h: &[f64], k: usize) -> Option<Gptq> {
        if k == 0 || h.len() != k * k || h.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut perm: Vec<usize> = (0..k).collect();
        perm.sort_by(|&a, &b| h[b * k + b].total_cmp(&h[a * k + a]).then(a.cmp(&b)));
        let sym = |i: usize, j: usize| if i <= j { h[i * k + j] } else { h[j * k + i] };
        let mut hp = vec![0f64; k * k];
        for i in 0..k {
            for j in i..k {
                hp[i * k + j] = sym(perm[i], perm[j]);
            }
        }
        let u = gptq_factor(&hp, k)?;
        Some(Gptq { k, perm, u })
    }

    /// Rounds `m` (`[n][k]`), whose inputs are `x / s` (its column `c` already multiplied
    /// by `s[c]`). Falls back to [`quantize`] if `m` or `s` do not have `k` columns.
    pub fn quantize(&self, m: &Mat, s: &[f32], pairs: WeightPairs) -> QRows {
        let k = self.k;
        if m.cols != k || s.len() != k {
            return quantize(m, pairs);
        }
        let perm = &self.perm;
        // Position of each input in the rounding order.
        let mut pos = vec![0usize; k];
        for (i, &c) in perm.iter().enumerate() {
            pos[c] = i;
        }
        let sp: Vec<f32> = perm.iter().map(|&c| s[c]).collect();
        // The scales of plain rounding (for `Bounded`, each row's best).
        let mut out = quantize(m, pairs);
        // Rows are independent given `u`; process them in blocks so `u` is streamed once
        // per block rather than once per row.
        const BLOCK: usize = 16;
        let mut w = vec![0f32; BLOCK * k];
        let mut ui_s = vec![0f32; k];
        for r0 in (0..m.rows).step_by(BLOCK) {
            let rows = BLOCK.min(m.rows - r0);
            for b in 0..rows {
                let src = m.row(r0 + b);
                for (d, &p) in w[b * k..(b + 1) * k].iter_mut().zip(perm) {
                    *d = src[p];
                }
            }
            let mut err = [0f32; BLOCK];
            for i in 0..k {
                let c = perm[i];
                // The pair partner, when it has been rounded already.
                let partner =
                    Some(c ^ 1).filter(|&p| pairs == WeightPairs::Bounded && p < k && pos[p] < i);
                // Row `i` of `U D`.
                let ui = &self.u[i * k..(i + 1) * k];
                for ((d, &f), &sv) in ui_s[i..].iter_mut().zip(&ui[i..]).zip(&sp[i..]) {
                    *d = f * sv;
                }
                for b in 0..rows {
                    let scale = out.scales[r0 + b];
                    let v = w[b * k + i];
                    let mut q = if scale > 0.0 {
                        (v / scale).round_ties_even().clamp(-127.0, 127.0)
                    } else {
                        0.0
                    };
                    if let Some(p) = partner {
                        let other = out.q[(r0 + b) * k + p];
                        if !q8_pair_bounded(other, q as i8) {
                            q = ((Q8_PAIR_BOUND - (other as i32).abs()) as f32).copysign(q);
                        }
                    }
                    out.q[(r0 + b) * k + c] = q as i8;
                    err[b] = (v - q * scale) / ui_s[i];
                }
                for b in 0..rows {
                    let e = err[b];
                    if e != 0.0 {
                        for (x, &f) in w[b * k + i + 1..(b + 1) * k].iter_mut().zip(&ui_s[i + 1..])
                        {
                            *x -= e * f;
                        }
                    }
                }
            }
        }
        out
    }
}

/// The upper Cholesky factor `U` of `(h + λI)^-1` (`U^T U`), row-major `[k][k]` in f32,
/// with `λ` 1% of the mean diagonal; channels that never fired get a unit diagonal.
///
/// With `P` the order-reversing permutation and `P H P = L L^T`, `H^-1 = V^T V` for the
/// upper triangular `V = P L^-1 P`, which is therefore `U`: one Cholesky and one
/// triangular inverse, no explicit `H^-1`.
fn gptq_factor(h: &[f64], k: usize) -> Option<Vec<f32>> {
    if k == 0 || h.len() != k * k || h.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let sym = |i: usize, j: usize| if i <= j { h[i * k + j] } else { h[j * k + i] };
    let mean_diag = (0..k).map(|i| sym(i, i)).sum::<f64>() / k as f64;
    if mean_diag <= 0.0 {
        return None;
    }
    // a = P (H + λI) P.
    let mut a = vec![0f64; k * k];
    for i in 0..k {
        for j in 0..k {
            a[i * k + j] = sym(k - 1 - i, k - 1 - j);
        }
        let d = &mut a[i * k + i];
        if *d <= 0.0 {
            *d = 1.0;
        }
        *d += 0.01 * mean_diag;
    }
    cholesky_lower(&mut a, k)?;
    // Column j of L^-1 by forward substitution, stored as row j of `inv_t`.
    let mut inv_t = vec![0f64; k * k];
    for j in 0..k {
        let x = &mut inv_t[j * k..(j + 1) * k];
        for i in j..k {
            let s = if i == j { 1.0 } else { 0.0 } - dot(&a[i * k + j..i * k + i], &x[j..i]);
            x[i] = s / a[i * k + i];
        }
    }
    // U[i][j] = (L^-1)[k-1-i][k-1-j] = inv_t[k-1-j][k-1-i].
    let mut u = vec![0f32; k * k];
    for i in 0..k {
        for j in i..k {
            u[i * k + j] = inv_t[(k - 1 - j) * k + (k - 1 - i)] as f32;
        }
    }
    Some(u)
}

/// In-place Cholesky `a = L L^T`, `L` in the lower triangle; `None` if not positive definite.
fn cholesky_lower(a: &mut [f64], k: usize) -> Option<()> {
    for j in 0..k {
        let d = a[j * k + j] - dot(&a[j * k..j * k + j], &a[j * k..j * k + j]);
        if !(d.is_finite() && d > 0.0) {
            return None;
        }
        let d = d.sqrt();
        a[j * k + j] = d;
        for i in j + 1..k {
            let s = a[i * k + j] - dot(&a[i * k..i * k + j], &a[j * k..j * k + j]);
            a[i * k + j] = s / d;
        }
    }
    Some(())
}

/// Measures the error of `q` against the original `m` (undoing the smoothing:
/// the effective weight is `q * scale[r] * smooth[c]`).
pub fn error(name: String, m: &Mat, q: &QRows) -> QuantError {
    let (mut num, mut den, mut max_abs) = (0f64, 0f64, 0f64);
    for r in 0..m.rows {
        for c in 0..m.cols {
            let w = m.data[r * m.cols + c] as f64;
            let d = q.q[r * m.cols + c] as f64 * q.scales[r] as f64 * q.smooth[c] as f64;
            num += (w - d) * (w - d);
            den += w * w;
            max_abs = max_abs.max((w - d).abs());
        }
    }
    QuantError {
        name,
        relative_rms: if den > 0.0 { (num / den).sqrt() } else { 0.0 },
        max_abs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_use_their_own_scale_and_round_half_even() {
        let m = Mat {
            rows: 3,
            cols: 4,
            data: vec![
                1.0, -0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 254.0, 1.0, 3.0, -254.0,
            ],
        };
        let q = quantize(&m, WeightPairs::Free);
        assert_eq!(q.scales[0], 1.0 / 127.0);
        assert_eq!(&q.q[0..4], &[127, -64, 32, 0]); // -63.5 -> -64 (even), 31.75 -> 32
        assert_eq!(q.scales[1], 0.0);
        assert_eq!(&q.q[4..8], &[0, 0, 0, 0]);
        assert_eq!(q.scales[2], 2.0);
        assert_eq!(&q.q[8..12], &[127, 0, 2, -127]); // 0.5 -> 0, 1.5 -> 2
        let e = error("m".into(), &m, &q);
        assert!(e.max_abs <= 1.0 && e.relative_rms < 0.01);
    }

    fn lcg(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// Correlated inputs (a few shared factors plus noise) and their `sum x x^T`.
    fn inputs(k: usize, n: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut st = seed;
        let basis: Vec<Vec<f64>> = (0..4)
            .map(|_| (0..k).map(|_| lcg(&mut st)).collect())
            .collect();
        let xs: Vec<Vec<f64>> = (0..n)
            .map(|_| {
                let c: Vec<f64> = (0..4).map(|_| lcg(&mut st) * 3.0).collect();
                (0..k)
                    .map(|i| (0..4).map(|f| c[f] * basis[f][i]).sum::<f64>() + 0.3 * lcg(&mut st))
                    .collect()
            })
            .collect();
        let mut h = vec![0f64; k * k];
        for x in &xs {
            for i in 0..k {
                for j in 0..k {
                    h[i * k + j] += x[i] * x[j];
                }
            }
        }
        (xs, h)
    }

    #[test]
    fn gptq_factor_is_the_upper_cholesky_factor_of_the_inverse() {
        let k = 7;
        let (_, h) = inputs(k, 40, 3);
        let u = gptq_factor(&h, k).unwrap();
        // U^T U (H + λI) = I.
        let mean = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k as f64;
        for i in 0..k {
            for j in 0..k {
                let mut s = 0.0;
                for t in 0..k {
                    let utu: f64 = (0..k)
                        .map(|r| u[r * k + i] as f64 * u[r * k + t] as f64)
                        .sum();
                    let hd = h[t * k + j] + if t == j { 0.01 * mean } else { 0.0 };
                    s += utu * hd;
                }
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((s - want).abs() < 1e-4, "({i},{j}): {s}");
            }
            for j in 0..i {
                assert_eq!(u[i * k + j], 0.0);
            }
            assert!(u[i * k + i] > 0.0);
        }
    }

    #[test]
    fn gptq_lowers_the_output_error_on_its_inputs() {
        let (k, n) = (48, 10);
        let (xs, h) = inputs(k, 200, 9);
        let mut st = 5u64;
        let m = Mat {
            rows: n,
            cols: k,
            data: (0..n * k).map(|_| lcg(&mut st) as f32).collect(),
        };
        let out_err = |q: &QRows| {
            let mut e = 0.0;
            for x in &xs {
                for r in 0..n {
                    let mut d = 0.0;
                    for (c, &xc) in x.iter().enumerate().take(k) {
                        let deq = q.q[r * k + c] as f64 * q.scales[r] as f64;
                        d += (deq - m.data[r * k + c] as f64) * xc;
                    }
                    e += d * d;
                }
            }
            e
        };
        for pairs in [WeightPairs::Free, WeightPairs::Bounded] {
            let (rtn, gptq) = (quantize(&m, pairs), quantize_gptq(&m, &h, pairs));
            assert_eq!(
                rtn.scales, gptq.scales,
                "same scales, only the rounding differs"
            );
            assert!(gptq.q.iter().all(|&v| (-127..=127).contains(&v)));
            // Uniform weights: free rounding has unbounded pairs.
            let bounded = pairs == WeightPairs::Bounded;
            assert_eq!(pairs_bounded(&gptq), bounded, "{pairs:?}");
            assert_eq!(pairs_bounded(&rtn), bounded, "{pairs:?}");
            let (a, b) = (out_err(&rtn), out_err(&gptq));
            assert!(
                b < 0.7 * a,
                "{pairs:?}: GPTQ output error {b} vs round-to-nearest {a}"
            );
            // Unusable second moments fall back to round-to-nearest.
            assert_eq!(quantize_gptq(&m, &[f64::NAN; 4], pairs), rtn);
            assert_eq!(quantize_gptq(&m, &vec![0.0; k * k], pairs), rtn);
        }
    }

    fn pairs_bounded(q: &QRows) -> bool {
        q.q.chunks_exact(q.k)
            .all(|row| row.chunks_exact(2).all(|p| q8_pair_bounded(p[0], p[1])))
    }

    /// Uniform weights: many pairs would exceed the bound at the scale `max / 127`.
    #[test]
    fn rounding_keeps_every_pair_bounded_at_least_cost() {
        let (n, k) = (24, 65);
        let mut st = 11u64;
        let m = Mat {
            rows: n,
            cols: k,
            data: (0..n * k).map(|_| lcg(&mut st) as f32).collect(),
        };
        assert!(!pairs_bounded(&quantize(&m, WeightPairs::Free)));
        let q = quantize(&m, WeightPairs::Bounded);
        assert!(pairs_bounded(&q));
        // Each row's scale is one of the candidates, the best after bounding.
        for r in 0..n {
            let amax = m.row(r).iter().fold(0f32, |a, v| a.max(v.abs()));
            assert!(BOUNDED_TOPS.iter().any(|t| amax / t == q.scales[r]));
        }
        let mut changed = 0;
        for r in 0..n {
            let scale = q.scales[r];
            for j in 0..k / 2 {
                let (c0, c1) = (r * k + 2 * j, r * k + 2 * j + 1);
                let (v0, v1) = (m.data[c0] / scale, m.data[c1] / scale);
                let near = |v: f32| v.round_ties_even().clamp(-127.0, 127.0) as i32;
                let (g0, g1) = (q.q[c0] as i32, q.q[c1] as i32);
                if (near(v0), near(v1)) == (g0, g1) {
                    continue;
                }
                changed += 1;
                // Only unbounded pairs move, onto the bound, by the least squared
                // error among all bounded pairs of the same signs.
                assert!((near(v0) + near(v1)).abs() > Q8_PAIR_BOUND);
                assert_eq!((g0 + g1).abs(), Q8_PAIR_BOUND);
                let cost = |a: i32, b: i32| (v0 - a as f32).powi(2) + (v1 - b as f32).powi(2);
                let sign = near(v0).signum();
                let best = (0..=127)
                    .flat_map(|a| (0..=127).map(move |b| (a, b)))
                    .filter(|(a, b)| a + b <= Q8_PAIR_BOUND)
                    .map(|(a, b)| cost(sign * a, sign * b))
                    .fold(f32::INFINITY, f32::min);
                assert!(cost(g0, g1) <= best, "{v0} {v1} -> {g0} {g1}");
            }
        }
        assert!(changed > 0, "no pair needed bounding");
        // The odd last input has no partner and is rounded as is.
        for r in 0..n {
            let v = m.data[r * k + k - 1] / q.scales[r];
            assert_eq!(q.q[r * k + k - 1] as f32, v.round_ties_even());
        }
    }
}
