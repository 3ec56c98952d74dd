//! Symmetric per-row int8 quantization of weight matrices.
//!
//! For each row `r`: `scale = max_c |w[r][c]| / 127` (f32) and
//! `q = round_half_even(w / scale)` clamped to `-127..=127`; an all-zero row
//! gets scale 0. This is the weight half of the arithmetic documented in
//! `albert_edge::kernels`.

use crate::calibrate::dot;
use crate::model::Mat;

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

/// Quantizes every row of `m`.
pub fn quantize(m: &Mat) -> QRows {
    let mut q = vec![0i8; m.rows * m.cols];
    let mut scales = vec![0f32; m.rows];
    for r in 0..m.rows {
        let row = m.row(r);
        let amax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
        if amax == 0.0 || !amax.is_finite() {
            continue;
        }
        let scale = amax / 127.0;
        scales[r] = scale;
        for (d, &v) in q[r * m.cols..(r + 1) * m.cols].iter_mut().zip(row) {
            *d = (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8;
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

/// GPTQ (Frantar et al., 2023): quantizes the columns of `m` one at a time and after
/// each column moves its rounding error onto the columns not yet quantized, weighted by
/// the inverse of `h = sum x x^T` (the inputs' second moments, `[k][k]`, only the upper
/// triangle is read), so that `deq(Q) x` stays close to `W x` on the calibration inputs
/// rather than each weight close to itself. Columns go in act order (largest input
/// energy `h[c][c]` first, while the most columns remain to absorb their error). Scales
/// are the same per-row `max|w| / 127` as [`quantize`] (so the int8 arithmetic is
/// unchanged); values pushed past the range are clamped. Falls back to [`quantize`] when
/// `h` is unusable (wrong size, not finite, or not positive definite after dampening).
pub fn quantize_gptq(m: &Mat, h: &[f64]) -> QRows {
    match Gptq::new(h, m.cols) {
        Some(g) => g.quantize(m, &vec![1.0; m.cols]),
        None => quantize(m),
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
    pub fn quantize(&self, m: &Mat, s: &[f32]) -> QRows {
        let k = self.k;
        if m.cols != k || s.len() != k {
            return quantize(m);
        }
        let perm = &self.perm;
        let sp: Vec<f32> = perm.iter().map(|&c| s[c]).collect();
        let mut out = quantize(m);
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
                // Row `i` of `U D`.
                let ui = &self.u[i * k..(i + 1) * k];
                for ((d, &f), &sv) in ui_s[i..].iter_mut().zip(&ui[i..]).zip(&sp[i..]) {
                    *d = f * sv;
                }
                for b in 0..rows {
                    let scale = out.scales[r0 + b];
                    let v = w[b * k + i];
                    let q = if scale > 0.0 {
                        (v / scale).round_ties_even().clamp(-127.0, 127.0)
                    } else {
                        0.0
                    };
                    out.q[(r0 + b) * k + perm[i]] = q as i8;
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
        if !(d > 0.0) || !d.is_finite() {
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
        let q = quantize(&m);
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
                    for c in 0..k {
                        let deq = q.q[r * k + c] as f64 * q.scales[r] as f64;
                        d += (deq - m.data[r * k + c] as f64) * x[c];
                    }
                    e += d * d;
                }
            }
            e
        };
        let (rtn, gptq) = (quantize(&m), quantize_gptq(&m, &h));
        assert_eq!(
            rtn.scales, gptq.scales,
            "same scales, only the rounding differs"
        );
        assert!(gptq.q.iter().all(|&v| (-127..=127).contains(&v)));
        let (a, b) = (out_err(&rtn), out_err(&gptq));
        assert!(b < 0.7 * a, "GPTQ output error {b} vs round-to-nearest {a}");
        // Unusable second moments fall back to round-to-nearest.
        assert_eq!(quantize_gptq(&m, &[f64::NAN; 4]), rtn);
        assert_eq!(quantize_gptq(&m, &vec![0.0; k * k]), rtn);
    }
}
