//! Activation statistics for int8 conversion.
//!
//! Trained transformers (and our fixtures, deliberately) have a few hidden
//! channels whose activations are tens of times larger than the rest. With one
//! scale per token, those channels would eat the int8 range. Following
//! SmoothQuant (Xiao et al., 2023), the converter moves that range into the
//! weights: for each int8 matrix input channel `c`,
//! `s_c = max|x_c|^a / max_r |W[r][c]|^(1-a)`, the stored weights are `W[:, c] * s_c`
//! and the runtime multiplies activations by `1 / s_c` before quantizing them
//! (the matrix's `smooth` vector). The product is unchanged in exact arithmetic.
//! The strength `a` is chosen per matrix (`pack`): each candidate is rounded and its
//! int8 output error measured, with the runtime's own activation rounding, on a
//! sample of the recorded input rows ([`ActStats::rows`]).
//!
//! The same pass accumulates each linear layer's input second moments
//! `sum x x^T` (over every application of the shared block), with which the
//! converter rounds the int8 weights by GPTQ (Frantar et al., 2023; see
//! `quantize::quantize_gptq`) instead of to nearest: the int8 values then keep
//! `W x` close on real inputs rather than each weight close to itself.
//!
//! `max|x_c|` comes from running the f32 model: on calibration sentences when
//! the user gives them, otherwise on synthetic token sequences (random ids,
//! several lengths, both token types), which already expose the structural
//! outlier channels.

use crate::model::Albert;
use crate::pack;
use albert_edge::{Input, Model, Precision, Trace};
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;

/// Per-channel `max |x|` of each linear layer's input, keyed by the weight's role code.
#[derive(Debug, Clone, Default)]
pub struct ActStats {
    /// Role code -> per-input-channel maximum absolute value.
    pub max_abs: BTreeMap<u32, Vec<f32>>,
    /// Role code -> (per-input-channel sum, rows observed), for the mean input.
    pub sum: BTreeMap<u32, (Vec<f64>, usize)>,
    /// Role code -> (`sum x x^T` over observed input rows, upper triangle of `[k][k]`,
    /// rows observed), for GPTQ rounding ([`crate::quantize::quantize_gptq`]). At most
    /// [`MAX_XTX_ROWS`] rows per role are accumulated.
    pub xtx: BTreeMap<u32, (Vec<f64>, usize)>,
    /// Role code -> (a uniform sample of at most [`MAX_SAMPLE_ROWS`] observed input rows,
    /// row-major `[rows][k]`, rows observed so far), on which the converter measures the
    /// int8 output error of each smoothing candidate.
    pub rows: BTreeMap<u32, (Vec<f32>, usize)>,
    /// Sequences observed.
    pub sequences: usize,
}

/// Input rows per linear layer kept (reservoir sampling over every application of the
/// layer) to measure the int8 output error.
pub const MAX_SAMPLE_ROWS: usize = 256;

/// Input rows per linear layer that feed its second-moment matrix (enough for a
/// well-conditioned estimate, bounded cost on long calibration files).
pub const MAX_XTX_ROWS: usize = 4096;

/// One calibration sequence: ids and token types.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Token ids, `[CLS] ... [SEP]`.
    pub ids: Vec<u32>,
    /// Token types.
    pub types: Vec<u32>,
}

impl Sample {
    /// The sample as a batch-1 runtime input (no padding, so no mask).
    pub fn input(&self) -> Input<'_> {
        Input {
            batch: 1,
            seq: self.ids.len(),
            input_ids: &self.ids,
            attention_mask: None,
            token_type_ids: Some(&self.types),
        }
    }
}

/// Deterministic synthetic sequences: `[CLS]`/`[SEP]` (ids 2 and 3, ALBERT's
/// convention; clamped to the vocabulary) around random ids: eight sequences of
/// lengths 8 to 128 (capped by the position table), every other one a pair whose
/// second half has token type 1.
pub fn synthetic(vocab: usize, max_positions: usize, type_vocab: usize) -> Vec<Sample> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (cls, sep) = (2u32.min(vocab as u32 - 1), 3u32.min(vocab as u32 - 1));
    let lo = 5.min(vocab - 1) as u64;
    let span = (vocab as u64 - lo).max(1);
    let mut out = Vec::new();
    let lens = [8usize, 24, 64, 128, 16, 48, 96, 32];
    for (k, &len) in lens.iter().enumerate() {
        // A position table of one entry only fits `[CLS]`.
        let len = len.min(max_positions).max(1);
        let mut ids = vec![cls];
        for _ in 0..len.saturating_sub(2) {
            ids.push((lo + next() % span) as u32);
        }
        if len >= 2 {
            ids.push(sep);
        }
        let mut types = vec![0u32; len];
        if k % 2 == 1 && type_vocab > 1 {
            for t in types.iter_mut().skip(len / 2) {
                *t = 1;
            }
        }
        out.push(Sample { ids, types });
    }
    out
}

/// Runs the f32 model on `samples` and records the input range of every linear layer.
pub fn collect(
    m: &Albert,
    samples: &[Sample],
    mut progress: impl FnMut(usize),
) -> Result<ActStats> {
    let packed = pack::pack(m, Precision::F32, None, None)?;
    let model = Model::from_vec(&packed.bytes).map_err(|e| anyhow!("internal: {e}"))?;
    let mut stats = ActStats::default();
    let longest = samples.iter().map(|s| s.ids.len()).max().unwrap_or(1);
    let mut ws = model.new_workspace(longest, 1);
    // Deterministic reservoir sampling (xorshift64).
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut xt: Vec<f64> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let input = s.input();
        model
            .run_traced(&mut ws, &input, &mut |t, x| {
                if let Trace::LinearInput {
                    role,
                    rows,
                    cols,
                    ld,
                } = t
                {
                    let acc = stats
                        .max_abs
                        .entry(role.code())
                        .or_insert_with(|| vec![0.0; cols]);
                    let sum = stats
                        .sum
                        .entry(role.code())
                        .or_insert_with(|| (vec![0.0; cols], 0));
                    for r in 0..rows {
                        for ((a, s), v) in acc
                            .iter_mut()
                            .zip(sum.0.iter_mut())
                            .zip(&x[r * ld..r * ld + cols])
                        {
                            *a = a.max(v.abs());
                            *s += *v as f64;
                        }
                    }
                    sum.1 += rows;
                    let sample = stats
                        .rows
                        .entry(role.code())
                        .or_insert_with(|| (Vec::new(), 0));
                    for r in 0..rows {
                        let x = &x[r * ld..r * ld + cols];
                        let seen = sample.1;
                        sample.1 += 1;
                        if seen < MAX_SAMPLE_ROWS {
                            sample.0.extend_from_slice(x);
                            continue;
                        }
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let j = (rng % (seen as u64 + 1)) as usize;
                        if j < MAX_SAMPLE_ROWS {
                            sample.0[j * cols..(j + 1) * cols].copy_from_slice(x);
                        }
                    }
                    let xtx = stats
                        .xtx
                        .entry(role.code())
                        .or_insert_with(|| (vec![0.0; cols * cols], 0));
                    let take = rows.min(MAX_XTX_ROWS.saturating_sub(xtx.1));
                    accumulate_xtx(&mut xtx.0, x, take, cols, ld, &mut xt);
                    xtx.1 += take;
                }
            })
            .map_err(|e| anyhow!("calibration run failed: {e}"))?;
        stats.sequences += 1;
        progress(i + 1);
    }
    Ok(stats)
}

/// Adds `sum_r x_r x_r^T` over the `rows` rows of `x` (`cols` values each, row stride
/// `ld`) to the upper triangle of `h` (`[cols][cols]`). Rows go in blocks of 64,
/// transposed into `xt` (scratch), so `h` is streamed once per block, not once per row.
pub fn accumulate_xtx(
    h: &mut [f64],
    x: &[f32],
    rows: usize,
    cols: usize,
    ld: usize,
    xt: &mut Vec<f64>,
) {
    const B: usize = 64;
    for r0 in (0..rows).step_by(B) {
        let nb = B.min(rows - r0);
        xt.clear();
        xt.resize(cols * nb, 0.0);
        for r in 0..nb {
            let x = &x[(r0 + r) * ld..(r0 + r) * ld + cols];
            for (c, &v) in x.iter().enumerate() {
                xt[c * nb + r] = v as f64;
            }
        }
        for i in 0..cols {
            let xi = &xt[i * nb..(i + 1) * nb];
            if xi.iter().all(|&v| v == 0.0) {
                continue;
            }
            for (j, hv) in h[i * cols + i..(i + 1) * cols].iter_mut().enumerate() {
                *hv += dot(xi, &xt[(i + j) * nb..(i + j + 1) * nb]);
            }
        }
    }
}

/// `sum a[i] b[i]` with four independent accumulators (vectorizable; the order of the
/// additions is fixed, so the result is deterministic).
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// SmoothQuant factors for one matrix `[n][k]` given its input maxima:
/// `s_c = sqrt(max|x_c| / max_r |w[r][c]|)`, 1 where either is zero, clamped to
/// `[1e-3, 1e3]`.
pub fn smoothing(w: &crate::model::Mat, x_max: &[f32]) -> Vec<f32> {
    smoothing_alpha(w, x_max, 0.5)
}

/// SmoothQuant factors with migration strength `alpha`:
/// `s_c = max|x_c|^alpha / max_r |w[r][c]|^(1 - alpha)`, 1 where either maximum is
/// zero, clamped to `[1e-3, 1e3]`. `alpha = 0.5` is [`smoothing`].
pub fn smoothing_alpha(w: &crate::model::Mat, x_max: &[f32], alpha: f32) -> Vec<f32> {
    let mut w_max = vec![0f32; w.cols];
    for r in 0..w.rows {
        for (m, v) in w_max.iter_mut().zip(w.row(r)) {
            *m = m.max(v.abs());
        }
    }
    w_max
        .iter()
        .zip(x_max)
        .map(|(&wm, &xm)| {
            if wm > 0.0 && xm > 0.0 {
                (xm.powf(alpha) / wm.powf(1.0 - alpha)).clamp(1e-3, 1e3)
            } else {
                1.0
            }
        })
        .collect()
}

impl ActStats {
    /// Mean input per channel of the linear layer with `role_code`.
    pub fn mean(&self, role_code: u32) -> Option<Vec<f64>> {
        let (s, n) = self.sum.get(&role_code)?;
        (*n > 0).then(|| s.iter().map(|v| v / *n as f64).collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn blocked_second_moments_match_the_row_by_row_sum() {
        // 150 rows (two full blocks and a partial one), stride larger than the width.
        let (rows, cols, ld) = (150usize, 7usize, 9usize);
        let x: Vec<f32> = (0..rows * ld)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let mut h = vec![0f64; cols * cols];
        let mut xt = Vec::new();
        super::accumulate_xtx(&mut h, &x, rows, cols, ld, &mut xt);
        for i in 0..cols {
            for j in 0..cols {
                let want: f64 = if j < i {
                    0.0
                } else {
                    (0..rows)
                        .map(|r| x[r * ld + i] as f64 * x[r * ld + j] as f64)
                        .sum()
                };
                let got = h[i * cols + j];
                assert!(
                    (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "({i},{j}) {got} {want}"
                );
            }
        }
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        for n in [0usize, 1, 3, 4, 5, 17] {
            let a: Vec<f64> = (0..n).map(|i| i as f64 * 0.5 - 1.0).collect();
            let b: Vec<f64> = (0..n).map(|i| 2.0 - i as f64 * 0.25).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((super::dot(&a, &b) - want).abs() < 1e-12, "{n}");
        }
    }

    #[test]
    fn smoothing_strength_moves_range_between_inputs_and_weights() {
        let w = crate::model::Mat {
            rows: 2,
            cols: 3,
            data: vec![1.0, 0.5, 0.0, -2.0, 0.25, 3.0],
        };
        let x_max = [16.0f32, 1.0, 0.0];
        // alpha 0.5 is `smoothing`: sqrt(16 / 2) and sqrt(1 / 0.5); channel 2 never fired.
        assert_eq!(
            super::smoothing(&w, &x_max),
            super::smoothing_alpha(&w, &x_max, 0.5)
        );
        let s = super::smoothing_alpha(&w, &x_max, 0.5);
        assert!((s[0] - 8f32.sqrt()).abs() < 1e-5 && (s[1] - 2f32.sqrt()).abs() < 1e-5);
        assert_eq!(s[2], 1.0);
        // alpha 1: the smoothed input maxima are all 1; alpha 0: the weight maxima are.
        let s1 = super::smoothing_alpha(&w, &x_max, 1.0);
        assert!((s1[0] - 16.0).abs() < 1e-4 && (s1[1] - 1.0).abs() < 1e-6);
        let s0 = super::smoothing_alpha(&w, &x_max, 0.0);
        assert!((s0[0] - 0.5).abs() < 1e-6 && (s0[1] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn synthetic_samples_fit_any_position_table() {
        for max_positions in [1usize, 2, 3, 9, 512] {
            let samples = super::synthetic(8000, max_positions, 2);
            assert!(!samples.is_empty());
            for s in &samples {
                assert!(
                    !s.ids.is_empty() && s.ids.len() <= max_positions,
                    "{max_positions}"
                );
                assert_eq!(s.ids.len(), s.types.len());
                assert_eq!(s.ids[0], 2);
            }
        }
    }
}
