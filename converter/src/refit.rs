//! Least-squares reconstruction of a linear layer after some of its inputs are pruned
//! (Kwon et al., 2022, "A Fast Post-Training Pruning Framework for Transformers"; the
//! same update as Optimal Brain Surgeon / SparseGPT for a whole block of inputs).
//!
//! A linear `y = W x + b` loses inputs when heads (the attention output's input is the
//! concatenated head contexts) or FFN neurons (the FFN output's input is the activated
//! neurons) are pruned. With the augmented input `z = [x; 1]`, `Wa = [W b]` and the
//! second moments `G = E[z z^T]` measured on the *unpruned* model, the kept columns
//! `S` (the kept inputs and the bias) that reproduce `y` best in the least-squares
//! sense are
//!
//! ```text
//! Wa'_S = Wa G[:, S] (G[S, S] + lambda D)^-1
//! ```
//!
//! where `D` is the identity on the kept inputs (0 on the bias) and `lambda` a small
//! damping relative to the mean diagonal ([`DAMPING`]). Mean replacement (folding the
//! removed inputs' mean contribution into the bias) is the special case where only the
//! bias is refitted. Everything is computed in f64.

use anyhow::{bail, Result};

/// Relative damping: `lambda = DAMPING * mean(diag G[K, K])`. The second moments come
/// from a few thousand calibration rows and the activated FFN neurons are strongly
/// correlated, so `G[K, K]` can be nearly singular; 1e-2 keeps the solve well
/// conditioned (the refit weights stay of the size of the originals) while changing the
/// fit by about a percent of the input energy (the usual choice of OBS-style methods,
/// e.g. GPTQ's 1%). Other values were not measured on SST-2 (`prune_curve --damping`).
pub const DAMPING: f64 = 1e-2;

/// Rows buffered before they are folded into the moment matrix (a blocked `Z^T Z`).
const BLOCK: usize = 64;

/// Second moments `sum z z^T` of augmented inputs `z = [x; 1]` of one linear layer.
#[derive(Debug, Clone)]
pub struct Moments {
    k: usize,
    /// `(k + 1) x (k + 1)` sums, upper triangle (the lower one is filled by [`Self::finish`]).
    g: Vec<f64>,
    rows: usize,
    /// Buffered rows, transposed: `buf[i * BLOCK + r]`.
    buf: Vec<f64>,
    pending: usize,
}

impl Moments {
    /// Empty moments for inputs of size `k`.
    pub fn new(k: usize) -> Self {
        Moments {
            k,
            g: vec![0.0; (k + 1) * (k + 1)],
            rows: 0,
            buf: vec![0.0; (k + 1) * BLOCK],
            pending: 0,
        }
    }

    /// Input size.
    pub fn inputs(&self) -> usize {
        self.k
    }

    /// Rows observed.
    pub fn rows(&self) -> usize {
        self.rows + self.pending
    }

    /// Adds one input row `x` (`k` values).
    pub fn add(&mut self, x: &[f32]) {
        assert_eq!(x.len(), self.k, "input row of the wrong size");
        let r = self.pending;
        for (i, &v) in x.iter().enumerate() {
            self.buf[i * BLOCK + r] = v as f64;
        }
        self.buf[self.k * BLOCK + r] = 1.0;
        self.pending += 1;
        if self.pending == BLOCK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let n = self.k + 1;
        let p = self.pending;
        if p == 0 {
            return;
        }
        for i in 0..n {
            let a = &self.buf[i * BLOCK..i * BLOCK + p];
            if a.iter().all(|&v| v == 0.0) {
                continue;
            }
            for j in i..n {
                let b = &self.buf[j * BLOCK..j * BLOCK + p];
                self.g[i * n + j] += dot(a, b);
            }
        }
        self.rows += p;
        self.pending = 0;
    }

    /// The mean second-moment matrix `E[z z^T]`, `(k + 1) x (k + 1)`, row-major,
    /// the last row/column being the mean input (and 1).
    pub fn finish(mut self) -> Result<Vec<f64>> {
        self.flush();
        if self.rows == 0 {
            bail!("no calibration rows for a least-squares refit");
        }
        let n = self.k + 1;
        let inv = 1.0 / self.rows as f64;
        for i in 0..n {
            for j in i..n {
                let v = self.g[i * n + j] * inv;
                self.g[i * n + j] = v;
                self.g[j * n + i] = v;
            }
        }
        Ok(self.g)
    }
}

/// Dot product with four independent accumulators (vectorizes without reassociation).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        s[0] += x[0] * y[0];
        s[1] += x[1] * y[1];
        s[2] += x[2] * y[2];
        s[3] += x[3] * y[3];
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in ra.iter().zip(rb) {
        t += x * y;
    }
    t
}

/// In-place Cholesky factorization `A = L L^T` of a symmetric positive definite
/// `n x n` matrix (row-major; the lower triangle receives `L`).
fn cholesky(a: &mut [f64], n: usize) -> Result<()> {
    for j in 0..n {
        let d = {
            let row = &a[j * n..j * n + j];
            a[j * n + j] - dot(row, row)
        };
        if d.is_nan() || d <= 0.0 {
            bail!("least-squares refit: the damped second-moment matrix is not positive definite");
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let (top, bottom) = a.split_at_mut(i * n);
            let lj = &top[j * n..j * n + j];
            let row_i = &mut bottom[..n];
            row_i[j] = (row_i[j] - dot(&row_i[..j], lj)) / d;
        }
    }
    Ok(())
}

/// Solves `L L^T x = b` in place (`L` from [`cholesky`]).
fn solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let s = dot(&l[i * n..i * n + i], &b[..i]);
        b[i] = (b[i] - s) / l[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for j in i + 1..n {
            s -= l[j * n + i] * b[j];
        }
        b[i] = s / l[i * n + i];
    }
}

/// The factorized system of one keep set: `L` of `G[S, S] + lambda D` and `G[S, :]`.
struct System {
    s: Vec<usize>,
    l: Vec<f64>,
    gs: Vec<f64>,
}

fn system(g: &[f64], k: usize, keep: &[usize], damping: f64) -> Result<System> {
    let n = k + 1;
    if g.len() != n * n {
        bail!("second-moment matrix of the wrong size");
    }
    if keep.iter().any(|&c| c >= k) || keep.windows(2).any(|w| w[0] >= w[1]) {
        bail!("kept inputs must be distinct, sorted and below {k}");
    }
    let mut s = keep.to_vec();
    s.push(k);
    let m = s.len();
    let mean_diag = if keep.is_empty() {
        0.0
    } else {
        keep.iter().map(|&c| g[c * n + c]).sum::<f64>() / keep.len() as f64
    };
    let lambda = damping * mean_diag;
    let mut a = vec![0f64; m * m];
    for (p, &i) in s.iter().enumerate() {
        for (q, &j) in s.iter().enumerate() {
            a[p * m + q] = g[i * n + j];
        }
        if i < k {
            // A feature that never fired (all-zero row) still gets a positive pivot.
            a[p * m + p] += lambda.max(f64::MIN_POSITIVE);
        }
    }
    cholesky(&mut a, m)?;
    let mut gs = Vec::with_capacity(m * n);
    for &i in &s {
        gs.extend_from_slice(&g[i * n..(i + 1) * n]);
    }
    Ok(System { s, l: a, gs })
}

/// Refits `w` (`[out][k]`, row-major) and `b` (`[out]`) to the kept inputs `keep`
/// (sorted) given the mean second moments `g` from [`Moments::finish`]. On return the
/// columns not in `keep` are zero and the kept columns and bias reproduce the original
/// output in the least-squares sense over the calibration rows.
pub fn refit(
    w: &mut [f32],
    b: &mut [f32],
    k: usize,
    g: &[f64],
    keep: &[usize],
    damping: f64,
) -> Result<()> {
    if w.len() != b.len() * k {
        bail!("weight and bias sizes do not match");
    }
    let sys = system(g, k, keep, damping)?;
    let m = sys.s.len();
    let mut wa = vec![0f64; k + 1];
    let mut c = vec![0f64; m];
    for (o, bo) in b.iter_mut().enumerate() {
        let row = &mut w[o * k..(o + 1) * k];
        for (d, &v) in wa.iter_mut().zip(row.iter()) {
            *d = v as f64;
        }
        wa[k] = *bo as f64;
        for (p, cp) in c.iter_mut().enumerate() {
            *cp = dot(&wa, &sys.gs[p * (k + 1)..(p + 1) * (k + 1)]);
        }
        solve(&sys.l, m, &mut c);
        row.fill(0.0);
        for (p, &i) in sys.s[..m - 1].iter().enumerate() {
            row[i] = c[p] as f32;
        }
        *bo = c[m - 1] as f32;
    }
    Ok(())
}

/// The least-squares objective of one linear layer under its input moments: scores
/// keep sets by the mean squared output error `E ||Wa z - Wa'_S z||^2` left after
/// refitting the kept inputs `S` ([`refit`] minimizes it; with the damping, up to a
/// small bias). With `P = Wa G` (computed once), the error is
/// `tr(Wa G Wa^T) - tr(P[:, S] A^-1 P[:, S]^T)`, `A` the damped `G[S, S]`.
pub struct Objective<'a> {
    g: &'a [f64],
    k: usize,
    /// `P = Wa G`, `[out][k + 1]`.
    p: Vec<f64>,
    full: f64,
}

impl<'a> Objective<'a> {
    /// For `w` (`[out][k]`) and `b` under the mean moments `g` ([`Moments::finish`]).
    pub fn new(w: &[f32], b: &[f32], k: usize, g: &'a [f64]) -> Result<Self> {
        let n = k + 1;
        if g.len() != n * n || w.len() != b.len() * k {
            bail!("least-squares objective: sizes do not match");
        }
        let mut p = vec![0f64; b.len() * n];
        let mut wa = vec![0f64; n];
        let mut full = 0f64;
        for (o, &bo) in b.iter().enumerate() {
            for (d, &v) in wa.iter_mut().zip(&w[o * k..(o + 1) * k]) {
                *d = v as f64;
            }
            wa[k] = bo as f64;
            let po = &mut p[o * n..(o + 1) * n];
            for (i, pv) in po.iter_mut().enumerate() {
                *pv = dot(&g[i * n..(i + 1) * n], &wa);
            }
            full += dot(&wa, po);
        }
        Ok(Objective { g, k, p, full })
    }

    /// Mean squared output error of the refit that keeps the inputs `keep` (sorted).
    pub fn residual(&self, keep: &[usize], damping: f64) -> Result<f64> {
        let sys = system(self.g, self.k, keep, damping)?;
        let n = self.k + 1;
        let m = sys.s.len();
        let mut c = vec![0f64; m];
        let mut explained = 0f64;
        for po in self.p.chunks_exact(n) {
            for (cp, &i) in c.iter_mut().zip(&sys.s) {
                *cp = po[i];
            }
            // Forward substitution only: ||L^-1 c||^2 = c^T A^-1 c.
            for i in 0..m {
                let s = dot(&sys.l[i * m..i * m + i], &c[..i]);
                c[i] = (c[i] - s) / sys.l[i * m + i];
            }
            explained += dot(&c, &c);
        }
        Ok((self.full - explained).max(0.0))
    }
}

/// Optimal Brain Surgeon saliency of every input of `w` (`[out][k]`) and `b` under the
/// mean moments `g`: `sum_o Wa[o][j]^2 / [A^-1]_jj` with `A` the damped `G` (every
/// input and the bias kept), the output error that removing input `j` alone leaves
/// once the others (and the bias) are refitted. Unlike `E[x_j^2] ||W[:, j]||^2`, it
/// is small for an input the others can stand in for.
pub fn obs_saliency(w: &[f32], b: &[f32], k: usize, g: &[f64], damping: f64) -> Result<Vec<f64>> {
    if w.len() != b.len() * k {
        bail!("weight and bias sizes do not match");
    }
    let all: Vec<usize> = (0..k).collect();
    let sys = system(g, k, &all, damping)?;
    let n = k + 1;
    // diag(A^-1)_j = ||L^-1 e_j||^2: solve L y = e_j (y is zero above j).
    let mut inv_diag = vec![0f64; k];
    let mut y = vec![0f64; n];
    for (j, d) in inv_diag.iter_mut().enumerate() {
        y[..j].fill(0.0);
        y[j] = 1.0 / sys.l[j * n + j];
        for i in j + 1..n {
            let s = dot(&sys.l[i * n + j..i * n + i], &y[j..i]);
            y[i] = -s / sys.l[i * n + i];
        }
        *d = dot(&y[j..], &y[j..]);
    }
    let mut sal = vec![0f64; k];
    for o in 0..b.len() {
        for (s, &v) in sal.iter_mut().zip(&w[o * k..(o + 1) * k]) {
            *s += (v as f64) * (v as f64);
        }
    }
    for (s, d) in sal.iter_mut().zip(&inv_diag) {
        *s /= d;
    }
    Ok(sal)
}
