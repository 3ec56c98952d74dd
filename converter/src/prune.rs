//! Structured pruning of the shared block(s): attention heads and FFN neurons.
//!
//! ALBERT applies each stored layer many times, so a head or neuron removed
//! from it is removed from every application; importance is therefore scored
//! over all applications. Scores come from the weights alone
//! ([`weight_importance`]) or, better, from activations on calibration text
//! ([`activation_importance`]):
//!
//! * head `h` of a layer: the mean over tokens and applications of
//!   `||W_dense[:, h] ctx_h||`, exactly what the head writes into the residual;
//!   from weights alone, `||W_v[h]|| * ||W_dense[:, h]||`;
//! * FFN neuron `n`: `mean |act_n|` times `||W_out[:, n]||`; from weights alone,
//!   `||W_ffn[n]|| * ||W_out[:, n]||`.
//!
//! With calibration, the same pass measures the input moments of the attention output
//! and FFN output ([`activation_calibration`]), and [`apply_compensated`] refits those
//! two linears by least squares to the inputs they keep ([`crate::refit`]).
//!
//! Pruned models keep the file format and kernels: dimensions just shrink.

use crate::calibrate::Sample;
use crate::model::{Albert, Linear, Mat};
use crate::pack;
use albert_edge::format::{Role, RoleKind};
use albert_edge::{Model, Precision, Trace};
use anyhow::{anyhow, bail, Result};

/// Importance scores per stored layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    /// `[layer][head]`.
    pub heads: Vec<Vec<f64>>,
    /// `[layer][neuron]`.
    pub neurons: Vec<Vec<f64>>,
}

fn col_norm(w: &Mat, c0: usize, c1: usize) -> f64 {
    let mut s = 0f64;
    for r in 0..w.rows {
        for c in c0..c1 {
            let v = w.data[r * w.cols + c] as f64;
            s += v * v;
        }
    }
    s.sqrt()
}

fn row_norm(w: &Mat, r0: usize, r1: usize) -> f64 {
    w.data[r0 * w.cols..r1 * w.cols]
        .iter()
        .map(|v| (*v as f64) * (*v as f64))
        .sum::<f64>()
        .sqrt()
}

/// Scores from the weights alone.
pub fn weight_importance(m: &Albert) -> Importance {
    let d = m.arch.head_dim;
    let mut heads = Vec::new();
    let mut neurons = Vec::new();
    for l in &m.layers {
        heads.push(
            (0..m.arch.heads)
                .map(|h| {
                    row_norm(&l.value.w, h * d, (h + 1) * d)
                        * col_norm(&l.dense.w, h * d, (h + 1) * d)
                })
                .collect(),
        );
        neurons.push(
            (0..m.arch.intermediate)
                .map(|n| row_norm(&l.ffn.w, n, n + 1) * col_norm(&l.ffn_output.w, n, n + 1))
                .collect(),
        );
    }
    Importance { heads, neurons }
}

/// Scores from activations on `samples` (run through the f32 model).
pub fn activation_importance(
    m: &Albert,
    samples: &[Sample],
    progress: impl FnMut(usize),
) -> Result<Importance> {
    Ok(activation_calibration(m, samples, 0, progress)?.0)
}

/// Second moments of the inputs of the two linears whose inputs pruning removes, in
/// one stored layer (unpruned model; see [`crate::refit`]).
#[derive(Debug, Clone)]
pub struct LayerMoments {
    /// `E[z z^T]` of the attention output dense's augmented input (the concatenated
    /// head contexts, then 1).
    pub dense: Vec<f64>,
    /// The same for the FFN output's input (the activated neurons, then 1).
    pub ffn_out: Vec<f64>,
}

/// Input rows per linear (spread evenly over every sentence and application of the
/// shared block) that feed [`LayerMoments`]: enough for a well-conditioned estimate
/// of an albert-base FFN (3072 inputs), at a bounded cost on long calibration files.
pub const MOMENT_ROWS: usize = 8192;

/// [`activation_importance`] and, when `moment_rows > 0`, the [`LayerMoments`] of every
/// stored layer from at most about `moment_rows` input rows each, in the same pass.
pub fn activation_calibration(
    m: &Albert,
    samples: &[Sample],
    moment_rows: usize,
    mut progress: impl FnMut(usize),
) -> Result<(Importance, Vec<LayerMoments>)> {
    let packed = pack::pack(m, Precision::F32, None, None)?;
    let model = Model::from_vec(&packed.bytes).map_err(|e| anyhow!("internal: {e}"))?;
    let (d, nh, ni) = (m.arch.head_dim, m.arch.heads, m.arch.intermediate);
    let mut ctx_norm = vec![vec![0f64; nh]; m.layers.len()];
    let mut act_abs = vec![vec![0f64; ni]; m.layers.len()];
    let mut rows = vec![0usize; m.layers.len()];
    let longest = samples.iter().map(|s| s.ids.len()).max().unwrap_or(1);
    let mut ws = model.new_workspace(longest, 1);
    // Every `stride`-th input row of each linear feeds the moments.
    let applications = m.arch.layers.div_ceil(m.layers.len().max(1));
    let total_rows: usize = samples.iter().map(|s| s.ids.len()).sum::<usize>() * applications;
    let stride = if moment_rows == 0 {
        0
    } else {
        total_rows.div_ceil(moment_rows).max(1)
    };
    let mut moments: Vec<(crate::refit::Moments, crate::refit::Moments)> = if stride > 0 {
        m.layers
            .iter()
            .map(|l| {
                (
                    crate::refit::Moments::new(l.dense.w.cols),
                    crate::refit::Moments::new(l.ffn_output.w.cols),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut seen = vec![(0usize, 0usize); m.layers.len()];
    // ||W_dense[:, h] c||^2 = c^T G_h c with the head's Gram matrix
    // G_h = W_dense[:, h]^T W_dense[:, h] (d x d): d^2 instead of H*d per token.
    let gram: Vec<Vec<Vec<f64>>> = m
        .layers
        .iter()
        .map(|l| {
            let w = &l.dense.w;
            (0..nh)
                .map(|h| {
                    let mut g = vec![0f64; d * d];
                    for o in 0..w.rows {
                        let wr = &w.row(o)[h * d..(h + 1) * d];
                        for a in 0..d {
                            let wa = wr[a] as f64;
                            for (b, gv) in g[a * d..(a + 1) * d].iter_mut().enumerate() {
                                *gv += wa * wr[b] as f64;
                            }
                        }
                    }
                    g
                })
                .collect()
        })
        .collect();
    for (i, s) in samples.iter().enumerate() {
        let input = s.input();
        model
            .run_traced(&mut ws, &input, &mut |t, x| {
                if let Trace::LinearInput {
                    role: Role { kind, layer },
                    rows: r,
                    cols,
                    ld,
                } = t
                {
                    let l = layer as usize;
                    match kind {
                        RoleKind::AttnOutWeight => {
                            // The head's exact contribution to the residual stream:
                            // || W_dense[:, h] ctx_h || per token.
                            for row in 0..r {
                                let x = &x[row * ld..row * ld + cols];
                                for (h, acc) in ctx_norm[l].iter_mut().enumerate() {
                                    let ctx = &x[h * d..(h + 1) * d];
                                    let g = &gram[l][h];
                                    let mut sq = 0f64;
                                    for (a, &ca) in ctx.iter().enumerate() {
                                        let gr = &g[a * d..(a + 1) * d];
                                        let y: f64 = gr
                                            .iter()
                                            .zip(ctx)
                                            .map(|(gv, &cb)| gv * cb as f64)
                                            .sum();
                                        sq += ca as f64 * y;
                                    }
                                    *acc += sq.max(0.0).sqrt();
                                }
                            }
                            rows[l] += r;
                            if stride > 0 {
                                for row in 0..r {
                                    if seen[l].0.is_multiple_of(stride) {
                                        moments[l].0.add(&x[row * ld..row * ld + cols]);
                                    }
                                    seen[l].0 += 1;
                                }
                            }
                        }
                        RoleKind::FfnOutWeight => {
                            for row in 0..r {
                                for (acc, v) in
                                    act_abs[l].iter_mut().zip(&x[row * ld..row * ld + cols])
                                {
                                    *acc += v.abs() as f64;
                                }
                            }
                            if stride > 0 {
                                for row in 0..r {
                                    if seen[l].1.is_multiple_of(stride) {
                                        moments[l].1.add(&x[row * ld..row * ld + cols]);
                                    }
                                    seen[l].1 += 1;
                                }
                            }
                        }
                        _ => {}
                    }
                }
            })
            .map_err(|e| anyhow!("calibration run failed: {e}"))?;
        progress(i + 1);
    }
    let mut out = Importance {
        heads: Vec::new(),
        neurons: Vec::new(),
    };
    for (l, layer) in m.layers.iter().enumerate() {
        let n = rows[l].max(1) as f64;
        out.heads
            .push((0..nh).map(|h| ctx_norm[l][h] / n).collect());
        out.neurons.push(
            (0..ni)
                .map(|j| act_abs[l][j] / n * col_norm(&layer.ffn_output.w, j, j + 1))
                .collect(),
        );
    }
    let moments = moments
        .into_iter()
        .map(|(d, f)| {
            Ok(LayerMoments {
                dense: d.finish()?,
                ffn_out: f.finish()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((out, moments))
}

/// Indices of the `keep` largest scores, in increasing index order.
pub fn top(scores: &[f64], keep: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(keep);
    idx.sort_unstable();
    idx
}

fn keep_rows(w: &Mat, rows: &[usize]) -> Mat {
    let mut data = Vec::with_capacity(rows.len() * w.cols);
    for &r in rows {
        data.extend_from_slice(w.row(r));
    }
    Mat {
        rows: rows.len(),
        cols: w.cols,
        data,
    }
}

fn keep_cols(w: &Mat, cols: &[usize]) -> Mat {
    let mut data = Vec::with_capacity(w.rows * cols.len());
    for r in 0..w.rows {
        let row = w.row(r);
        data.extend(cols.iter().map(|&c| row[c]));
    }
    Mat {
        rows: w.rows,
        cols: cols.len(),
        data,
    }
}

fn keep_linear_rows(l: &Linear, rows: &[usize]) -> Linear {
    Linear {
        w: keep_rows(&l.w, rows),
        b: rows.iter().map(|&r| l.b[r]).collect(),
    }
}

/// Keeps, in every stored layer `i`, the heads `keep[i]` (the same count in
/// every layer). Removes the heads' query/key/value rows and dense columns.
pub fn prune_heads(m: &mut Albert, keep: &[Vec<usize>]) -> Result<()> {
    let d = m.arch.head_dim;
    let n = keep.first().map_or(0, Vec::len);
    if keep.len() != m.layers.len() || keep.iter().any(|k| k.len() != n) {
        bail!(
            "head pruning must keep the same number of heads in each of the {} stored layers",
            m.layers.len()
        );
    }
    if n == 0 {
        bail!("cannot prune every attention head");
    }
    for (layer, heads) in m.layers.iter_mut().zip(keep) {
        if heads.iter().any(|&h| h >= m.arch.heads) || heads.windows(2).any(|w| w[0] >= w[1]) {
            bail!(
                "head indices must be distinct, sorted and below {}",
                m.arch.heads
            );
        }
        let rows: Vec<usize> = heads.iter().flat_map(|&h| h * d..(h + 1) * d).collect();
        layer.query = keep_linear_rows(&layer.query, &rows);
        layer.key = keep_linear_rows(&layer.key, &rows);
        layer.value = keep_linear_rows(&layer.value, &rows);
        layer.dense.w = keep_cols(&layer.dense.w, &rows);
    }
    m.arch.heads = n;
    Ok(())
}

/// Keeps, in every stored layer `i`, the FFN neurons `keep[i]` (same count everywhere).
pub fn prune_ffn(m: &mut Albert, keep: &[Vec<usize>]) -> Result<()> {
    let n = keep.first().map_or(0, Vec::len);
    if keep.len() != m.layers.len() || keep.iter().any(|k| k.len() != n) {
        bail!(
            "FFN pruning must keep the same number of neurons in each of the {} stored layers",
            m.layers.len()
        );
    }
    if n == 0 {
        bail!("cannot prune every FFN neuron");
    }
    for (layer, neurons) in m.layers.iter_mut().zip(keep) {
        if neurons.iter().any(|&j| j >= m.arch.intermediate)
            || neurons.windows(2).any(|w| w[0] >= w[1])
        {
            bail!(
                "neuron indices must be distinct, sorted and below {}",
                m.arch.intermediate
            );
        }
        layer.ffn = keep_linear_rows(&layer.ffn, neurons);
        layer.ffn_output.w = keep_cols(&layer.ffn_output.w, neurons);
    }
    m.arch.intermediate = n;
    Ok(())
}

/// Removes the `remove` least important heads and the `fraction` least
/// important FFN neurons of every stored layer.
pub fn apply(
    m: &mut Albert,
    imp: &Importance,
    remove_heads: usize,
    ffn_fraction: f64,
) -> Result<()> {
    if remove_heads >= m.arch.heads {
        bail!("cannot remove {remove_heads} of {} heads", m.arch.heads);
    }
    if !(0.0..1.0).contains(&ffn_fraction) {
        bail!("--prune-ffn must be in [0, 1)");
    }
    if remove_heads > 0 {
        let keep: Vec<Vec<usize>> = imp
            .heads
            .iter()
            .map(|s| top(s, m.arch.heads - remove_heads))
            .collect();
        prune_heads(m, &keep)?;
    }
    let drop = (m.arch.intermediate as f64 * ffn_fraction).round() as usize;
    if drop > 0 {
        let keep: Vec<Vec<usize>> = imp
            .neurons
            .iter()
            .map(|s| top(s, m.arch.intermediate - drop))
            .collect();
        prune_ffn(m, &keep)?;
    }
    Ok(())
}

/// Least-squares reconstruction for [`apply_compensated`].
#[derive(Debug, Clone, Copy)]
pub struct Refit<'a> {
    /// Moments of the unpruned model, one per stored layer ([`activation_calibration`]).
    pub moments: &'a [LayerMoments],
    /// Damping relative to the mean diagonal ([`crate::refit::DAMPING`]).
    pub damping: f64,
    /// Also choose what to remove by the refit's output error instead of by the
    /// importance scores: heads greedily, one at a time, by the attention output's
    /// residual error after the refit; FFN neurons by their OBS saliency
    /// ([`crate::refit::obs_saliency`]).
    pub select: bool,
}

/// Heads to keep in one layer: removes `remove` heads one at a time, each time the one
/// whose removal (with the refit of the others) leaves the smallest output error.
fn greedy_heads(
    dense: &Linear,
    heads: usize,
    d: usize,
    g: &[f64],
    remove: usize,
    damping: f64,
) -> Result<Vec<usize>> {
    let obj = crate::refit::Objective::new(&dense.w.data, &dense.b, dense.w.cols, g)?;
    let mut kept: Vec<usize> = (0..heads).collect();
    for _ in 0..remove {
        let mut best: Option<(f64, usize)> = None;
        for (i, _) in kept.iter().enumerate() {
            let cols: Vec<usize> = kept
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .flat_map(|(_, &h)| h * d..(h + 1) * d)
                .collect();
            let e = obj.residual(&cols, damping)?;
            if best.is_none_or(|(b, _)| e < b) {
                best = Some((e, i));
            }
        }
        if let Some((_, i)) = best {
            kept.remove(i);
        }
    }
    Ok(kept)
}

/// Like [`apply`]; with `refit`, the attention output dense and the FFN output are then
/// refitted by least squares to the kept inputs ([`crate::refit::refit`]), so each
/// reproduces its unpruned output as well as the kept inputs allow (this subsumes mean
/// replacement, which refits only the bias). `keep_heads` lists, for every stored
/// layer, the heads to keep (`None`: remove `remove_heads`, chosen by importance or, with
/// `refit.select`, by the refit's error).
pub fn apply_compensated(
    m: &mut Albert,
    imp: &Importance,
    keep_heads: Option<Vec<Vec<usize>>>,
    remove_heads: usize,
    ffn_fraction: f64,
    refit: Option<Refit<'_>>,
) -> Result<()> {
    if remove_heads >= m.arch.heads {
        bail!("cannot remove {remove_heads} of {} heads", m.arch.heads);
    }
    if !(0.0..1.0).contains(&ffn_fraction) {
        bail!("--prune-ffn must be in [0, 1)");
    }
    if let Some(r) = &refit {
        if r.moments.len() != m.layers.len() {
            bail!(
                "refit moments for {} layers, the model has {}",
                r.moments.len(),
                m.layers.len()
            );
        }
    }
    let d = m.arch.head_dim;
    let select = refit.filter(|r| r.select);
    let keep_heads = match keep_heads {
        Some(k) => Some(k),
        None if remove_heads > 0 => Some(match &select {
            Some(r) => m
                .layers
                .iter()
                .zip(r.moments)
                .map(|(l, mo)| {
                    greedy_heads(
                        &l.dense,
                        m.arch.heads,
                        d,
                        &mo.dense,
                        remove_heads,
                        r.damping,
                    )
                })
                .collect::<Result<Vec<_>>>()?,
            None => imp
                .heads
                .iter()
                .map(|s| top(s, m.arch.heads - remove_heads))
                .collect(),
        }),
        None => None,
    };
    let drop = (m.arch.intermediate as f64 * ffn_fraction).round() as usize;
    let keep_neurons: Option<Vec<Vec<usize>>> = if drop == 0 {
        None
    } else {
        let keep = m.arch.intermediate - drop;
        Some(match &select {
            Some(r) => m
                .layers
                .iter()
                .zip(r.moments)
                .map(|(l, mo)| {
                    let o = &l.ffn_output;
                    let s = crate::refit::obs_saliency(
                        &o.w.data,
                        &o.b,
                        o.w.cols,
                        &mo.ffn_out,
                        r.damping,
                    )?;
                    Ok(top(&s, keep))
                })
                .collect::<Result<Vec<_>>>()?,
            None => imp.neurons.iter().map(|s| top(s, keep)).collect(),
        })
    };
    if let Some(r) = &refit {
        for (l, (layer, mo)) in m.layers.iter_mut().zip(r.moments).enumerate() {
            if let Some(k) = &keep_heads {
                let cols: Vec<usize> = k[l].iter().flat_map(|&h| h * d..(h + 1) * d).collect();
                let lin = &mut layer.dense;
                crate::refit::refit(
                    &mut lin.w.data,
                    &mut lin.b,
                    lin.w.cols,
                    &mo.dense,
                    &cols,
                    r.damping,
                )?;
            }
            if let Some(k) = &keep_neurons {
                let lin = &mut layer.ffn_output;
                crate::refit::refit(
                    &mut lin.w.data,
                    &mut lin.b,
                    lin.w.cols,
                    &mo.ffn_out,
                    &k[l],
                    r.damping,
                )?;
            }
        }
    }
    if let Some(k) = &keep_heads {
        prune_heads(m, k)?;
    }
    if let Some(k) = &keep_neurons {
        prune_ffn(m, k)?;
    }
    Ok(())
}
