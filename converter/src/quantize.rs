//! Symmetric per-row int8 quantization of weight matrices.
//!
//! For each row `r`: `scale = max_c |w[r][c]| / 127` (f32) and
//! `q = round_half_even(w / scale)` clamped to `-127..=127`; an all-zero row
//! gets scale 0. This is the weight half of the arithmetic documented in
//! `albert_edge::kernels`.

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
}
