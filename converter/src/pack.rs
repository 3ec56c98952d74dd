//! Lays an [`Albert`] out as a model file (see `docs/FORMAT.md`): chooses each
//! tensor's storage, packs int8 matrices for the kernels, and assembles the
//! header, section table, sections and checksums.

use crate::calibrate::{self, ActStats};
use crate::model::{Albert, Linear, Mat};
use crate::quantize::{self, QRows, QuantError, WeightPairs};
use albert_edge::format::{
    self, section, DType, ModelConfig, Role, RoleKind, SectionEntry, TensorEntry, Q8_K_GROUP,
    Q8_N_BLOCK,
};
use albert_edge::{HeadKind, Precision};
use anyhow::{ensure, Context, Result};

/// The result of packing.
#[derive(Clone)]
pub struct Packed {
    /// The complete file (every int8 matrix [`DType::Q8`]).
    pub bytes: Vec<u8>,
    /// Quantization error per int8 matrix (empty for f32 files).
    pub quant_errors: Vec<QuantError>,
    parts: Parts,
}

/// What [`Packed::with_two_parts`] re-assembles.
#[derive(Clone)]
struct Parts {
    cfg: ModelConfig,
    labels: Vec<String>,
    tokenizer: Option<Vec<u8>>,
    items: Vec<Item>,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("bytes", &self.bytes.len())
            .field("quant_errors", &self.quant_errors)
            .finish()
    }
}

/// The matrix kinds whose activations can be quantized in two parts
/// ([`DType::Q8R`]): every int8 matrix the runtime multiplies activations by
/// (not the word embeddings, which are looked up; the classifier stays f32).
pub const TWO_PART_KINDS: [RoleKind; 8] = [
    RoleKind::MappingInWeight,
    RoleKind::QkvWeight,
    RoleKind::AttnOutWeight,
    RoleKind::FfnWeight,
    RoleKind::FfnOutWeight,
    RoleKind::PoolerWeight,
    RoleKind::MlmDenseWeight,
    RoleKind::MlmDecoderWeight,
];

impl Packed {
    /// The same file with the int8 matrices of these kinds stored as
    /// [`DType::Q8R`] (two-part activations); the bytes of every tensor are
    /// unchanged, only their dtype in the tensor table.
    pub fn with_two_parts(&self, kinds: &[RoleKind]) -> Result<Vec<u8>> {
        let labels: Vec<&str> = self.parts.labels.iter().map(String::as_str).collect();
        let two = |k: RoleKind| kinds.contains(&k) && TWO_PART_KINDS.contains(&k);
        assemble(
            &self.parts.cfg,
            &labels,
            self.parts.tokenizer.as_deref(),
            &self.parts.items,
            &two,
        )
    }

    /// The kinds of [`TWO_PART_KINDS`] this file has int8 matrices of.
    pub fn int8_kinds(&self) -> Vec<RoleKind> {
        TWO_PART_KINDS
            .into_iter()
            .filter(|k| {
                self.parts
                    .items
                    .iter()
                    .any(|it| it.role.kind == *k && matches!(it.data, Data::Q8(_)))
            })
            .collect()
    }
}

#[derive(Clone)]
enum Data {
    F32(Vec<f32>),
    Q8(Vec<u8>),
}

#[derive(Clone)]
struct Item {
    role: Role,
    rows: usize,
    cols: usize,
    data: Data,
}

/// The runtime config for `m` at `precision`.
pub fn model_config(m: &Albert, precision: Precision) -> ModelConfig {
    let a = &m.arch;
    ModelConfig {
        vocab_size: a.vocab as u32,
        embedding_size: a.embedding as u32,
        hidden_size: a.hidden as u32,
        num_heads: a.heads as u32,
        head_dim: a.head_dim as u32,
        intermediate_size: a.intermediate as u32,
        num_layers: a.layers as u32,
        num_groups: a.groups as u32,
        inner_group_num: a.inner as u32,
        activation: a.activation,
        layer_norm_eps: a.eps,
        max_positions: a.max_positions as u32,
        type_vocab_size: a.type_vocab as u32,
        head: m.head,
        problem_type: m.problem_type,
        num_labels: match m.head {
            HeadKind::SequenceClassification | HeadKind::TokenClassification => {
                m.classifier.as_ref().map_or(0, |c| c.w.rows as u32)
            }
            HeadKind::QuestionAnswering => 2,
            _ => 0,
        },
        precision,
        has_pooler: m.pooler.is_some(),
    }
}

/// Packs row-major int8 rows into the kernel layout of [`format::q8_layout`].
pub fn pack_q8(q: &QRows) -> Vec<u8> {
    let lay = format::q8_layout(q.n, q.k).expect("matrix size fits usize");
    let mut out = vec![0u8; lay.total_len];
    for r in 0..q.n {
        let mut sum = 0i32;
        for c in 0..q.k {
            let v = q.q[r * q.k + c];
            sum += v as i32;
            let idx = ((r / Q8_N_BLOCK * lay.k_groups + c / Q8_K_GROUP) * Q8_N_BLOCK
                + r % Q8_N_BLOCK)
                * Q8_K_GROUP
                + c % Q8_K_GROUP;
            out[idx] = v as u8;
        }
        out[lay.scales_offset + r * 4..lay.scales_offset + r * 4 + 4]
            .copy_from_slice(&q.scales[r].to_le_bytes());
        out[lay.row_sums_offset + r * 4..lay.row_sums_offset + r * 4 + 4]
            .copy_from_slice(&sum.to_le_bytes());
    }
    for (c, f) in q.smooth.iter().enumerate() {
        out[lay.smooth_offset + c * 4..lay.smooth_offset + c * 4 + 4]
            .copy_from_slice(&f.to_le_bytes());
    }
    out
}

/// Packs `m` into a model file. `tokenizer` is the tokenizer section, if any.
/// `stats` (activation ranges from [`crate::calibrate`]) enables input smoothing
/// of the int8 matrices; without it every smoothing factor is 1.
pub fn pack(
    m: &Albert,
    precision: Precision,
    tokenizer: Option<&[u8]>,
    stats: Option<&ActStats>,
) -> Result<Packed> {
    pack_with(m, precision, tokenizer, stats, WeightPairs::Free)
}

/// [`pack`] with a choice of int8 weight values ([`WeightPairs`]; ignored for f32).
pub fn pack_with(
    m: &Albert,
    precision: Precision,
    tokenizer: Option<&[u8]>,
    stats: Option<&ActStats>,
    pairs: WeightPairs,
) -> Result<Packed> {
    let cfg = model_config(m, precision);
    cfg.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut items: Vec<Item> = Vec::new();
    let mut errors = Vec::new();
    let int8 = precision == Precision::Int8;
    let mut deltas: Vec<(Role, Vec<f64>)> = Vec::new();
    let mut matrix = |items: &mut Vec<Item>, role: Role, w: &Mat, quantize: bool| {
        if quantize {
            let q = quantize_role(w, role, stats, pairs);
            let name = if role.kind.is_layer() {
                format!("{} [layer {}]", role.kind.name(), role.layer)
            } else {
                role.kind.name().to_string()
            };
            errors.push(quantize::error(name, w, &q));
            // Bias correction (Nagel et al., 2019): remove the expected output shift
            // (deq(Q) - W) E[x] that quantization adds, using the calibration mean.
            if let Some(mean) = stats.and_then(|st| st.mean(role.code())) {
                let mut d = vec![0f64; w.rows];
                for (r, d) in d.iter_mut().enumerate() {
                    for (c, &m) in mean.iter().enumerate().take(w.cols) {
                        let deq =
                            q.q[r * w.cols + c] as f64 * q.scales[r] as f64 * q.smooth[c] as f64;
                        *d += (deq - w.data[r * w.cols + c] as f64) * m;
                    }
                }
                deltas.push((role, d));
            }
            items.push(Item {
                role,
                rows: w.rows,
                cols: w.cols,
                data: Data::Q8(pack_q8(&q)),
            });
        } else {
            items.push(Item {
                role,
                rows: w.rows,
                cols: w.cols,
                data: Data::F32(w.data.clone()),
            });
        }
    };
    let vector = |items: &mut Vec<Item>, role: Role, v: &[f32]| {
        items.push(Item {
            role,
            rows: 1,
            cols: v.len(),
            data: Data::F32(v.to_vec()),
        })
    };
    let g = Role::global;
    matrix(&mut items, g(RoleKind::WordEmbeddings), &m.word, int8);
    matrix(
        &mut items,
        g(RoleKind::PositionEmbeddings),
        &m.position,
        false,
    );
    matrix(
        &mut items,
        g(RoleKind::TokenTypeEmbeddings),
        &m.token_type,
        false,
    );
    vector(
        &mut items,
        g(RoleKind::EmbeddingsLnGamma),
        &m.emb_norm.gamma,
    );
    vector(&mut items, g(RoleKind::EmbeddingsLnBeta), &m.emb_norm.beta);
    matrix(
        &mut items,
        g(RoleKind::MappingInWeight),
        &m.mapping_in.w,
        int8,
    );
    vector(&mut items, g(RoleKind::MappingInBias), &m.mapping_in.b);
    for (i, l) in m.layers.iter().enumerate() {
        let r = |k| Role::layer(k, i as u32);
        let qkv = concat_rows(&[&l.query, &l.key, &l.value]);
        matrix(&mut items, r(RoleKind::QkvWeight), &qkv.w, int8);
        vector(&mut items, r(RoleKind::QkvBias), &qkv.b);
        matrix(&mut items, r(RoleKind::AttnOutWeight), &l.dense.w, int8);
        vector(&mut items, r(RoleKind::AttnOutBias), &l.dense.b);
        vector(&mut items, r(RoleKind::AttnLnGamma), &l.attn_norm.gamma);
        vector(&mut items, r(RoleKind::AttnLnBeta), &l.attn_norm.beta);
        matrix(&mut items, r(RoleKind::FfnWeight), &l.ffn.w, int8);
        vector(&mut items, r(RoleKind::FfnBias), &l.ffn.b);
        matrix(&mut items, r(RoleKind::FfnOutWeight), &l.ffn_output.w, int8);
        vector(&mut items, r(RoleKind::FfnOutBias), &l.ffn_output.b);
        vector(&mut items, r(RoleKind::OutLnGamma), &l.out_norm.gamma);
        vector(&mut items, r(RoleKind::OutLnBeta), &l.out_norm.beta);
    }
    if let Some(p) = &m.pooler {
        // int8 like the encoder: as f32 it was a fifth of an albert-base file
        // (H x H floats) and a stream of 2.4 MB per run for one row per
        // sequence; on the SST-2 classifiers int8 changes no dev prediction
        // (docs/accuracy.md). Its activations may take two parts.
        matrix(&mut items, g(RoleKind::PoolerWeight), &p.w, int8);
        vector(&mut items, g(RoleKind::PoolerBias), &p.b);
    }
    if let Some(c) = &m.classifier {
        // Tiny, and the last step before the answer: kept in f32.
        matrix(&mut items, g(RoleKind::ClassifierWeight), &c.w, false);
        vector(&mut items, g(RoleKind::ClassifierBias), &c.b);
    }
    if let Some(h) = &m.mlm {
        // Applied to every token like an encoder matrix: int8 too.
        matrix(&mut items, g(RoleKind::MlmDenseWeight), &h.dense.w, int8);
        vector(&mut items, g(RoleKind::MlmDenseBias), &h.dense.b);
        vector(&mut items, g(RoleKind::MlmLnGamma), &h.norm.gamma);
        vector(&mut items, g(RoleKind::MlmLnBeta), &h.norm.beta);
        vector(&mut items, g(RoleKind::MlmBias), &h.bias);
        if let Some(d) = &h.decoder {
            matrix(&mut items, g(RoleKind::MlmDecoderWeight), d, int8);
        }
    }
    // Apply the bias corrections to the matching bias vectors.
    for (role, d) in &deltas {
        let bias_kind = match role.kind {
            RoleKind::MappingInWeight => Some(RoleKind::MappingInBias),
            RoleKind::QkvWeight => Some(RoleKind::QkvBias),
            RoleKind::AttnOutWeight => Some(RoleKind::AttnOutBias),
            RoleKind::FfnWeight => Some(RoleKind::FfnBias),
            RoleKind::FfnOutWeight => Some(RoleKind::FfnOutBias),
            RoleKind::PoolerWeight => Some(RoleKind::PoolerBias),
            RoleKind::MlmDenseWeight => Some(RoleKind::MlmDenseBias),
            RoleKind::WordEmbeddings => Some(RoleKind::MlmBias),
            _ => None,
        };
        let target = bias_kind.and_then(|k| {
            items.iter_mut().find(|it| {
                it.role
                    == Role {
                        kind: k,
                        layer: role.layer,
                    }
            })
        });
        if let Some(Item {
            data: Data::F32(b), ..
        }) = target
        {
            for (bv, dv) in b.iter_mut().zip(d) {
                *bv = (*bv as f64 - dv) as f32;
            }
        }
    }
    items.sort_by_key(|it| it.role.code());
    for it in &items {
        let (r, c) = it.role.kind.shape(&cfg);
        ensure!(
            (r as usize, c as usize) == (it.rows, it.cols),
            "internal: tensor {} has shape {}x{}, config expects {r}x{c}",
            it.role.kind.name(),
            it.rows,
            it.cols
        );
    }
    let labels: Vec<&str> = m.labels.iter().map(String::as_str).collect();
    let bytes = assemble(&cfg, &labels, tokenizer, &items, &|_| false)
        .context("assembling the model file")?;
    Ok(Packed {
        bytes,
        quant_errors: errors,
        parts: Parts {
            cfg,
            labels: m.labels.clone(),
            tokenizer: tokenizer.map(<[u8]>::to_vec),
            items,
        },
    })
}

/// Smoothing strengths tried per matrix.
const ALPHAS: [f32; 5] = [0.4, 0.5, 0.6, 0.7, 0.8];

/// Quantizes one matrix. With calibration statistics: for each smoothing strength in
/// [`ALPHAS`], smooths and rounds by GPTQ, then measures the squared output error of the
/// int8 product (activations quantized exactly as the runtime does) against `W x` on
/// the sampled calibration rows, and keeps the best. Without: per-row round to nearest.
fn quantize_role(w: &Mat, role: Role, stats: Option<&ActStats>, pairs: WeightPairs) -> QRows {
    let code = role.code();
    let Some(x_max) = stats.and_then(|st| st.max_abs.get(&code)) else {
        return quantize::quantize(w, pairs);
    };
    let st = stats.expect("x_max came from stats");
    // One GPTQ factorization serves every smoothing candidate.
    let xtx = st.xtx.get(&code).filter(|(_, n)| *n > 0);
    let gptq = xtx.and_then(|(h, _)| quantize::Gptq::new(h, w.cols));
    let sample = st
        .rows
        .get(&code)
        .filter(|(r, _)| !r.is_empty() && r.len() % w.cols == 0);
    // `exact_factor`: GPTQ factored for the smoothed inputs themselves (the final
    // rounding); otherwise the shared factorization, rescaled (the candidates).
    let one = |alpha: f32, exact_factor: bool| {
        let s = calibrate::smoothing_alpha(w, x_max, alpha);
        let mut ws = w.clone();
        for r in 0..ws.rows {
            for (v, f) in ws.data[r * ws.cols..(r + 1) * ws.cols].iter_mut().zip(&s) {
                *v *= f;
            }
        }
        // GPTQ rounding against the smoothed inputs `x / s`.
        let mut q = match (&gptq, xtx) {
            (Some(_), Some((xtx, _))) if exact_factor => {
                let k = w.cols;
                let mut h = xtx.clone();
                for i in 0..k {
                    for j in i..k {
                        h[i * k + j] /= (s[i] as f64) * (s[j] as f64);
                    }
                }
                quantize::quantize_gptq(&ws, &h, pairs)
            }
            (Some(g), _) => g.quantize(&ws, &s, pairs),
            _ => quantize::quantize(&ws, pairs),
        };
        q.smooth = s.iter().map(|f| 1.0 / f).collect();
        q
    };
    let Some((rows, _)) = sample else {
        return one(0.5, true);
    };
    // `W x` for every sampled row, `[m][n]`.
    let exact: Vec<f64> = rows
        .chunks_exact(w.cols)
        .flat_map(|x| {
            (0..w.rows).map(move |r| {
                w.row(r)
                    .iter()
                    .zip(x)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
            })
        })
        .collect();
    let mut best = (f64::INFINITY, ALPHAS[0]);
    for a in ALPHAS {
        let e = output_error(&one(a, false), rows, &exact);
        if e < best.0 {
            best = (e, a);
        }
    }
    one(best.1, true)
}

/// `sum ||y_int8 - W x||^2` over the rows `x` of `xs` (`[m][k]`), given `exact = W x`
/// (`[m][n]`), with `y_int8` computed by the runtime's int8 arithmetic (per-token
/// activation quantization of `x * smooth`, i32 accumulation, then the f32 scaling).
fn output_error(q: &QRows, xs: &[f32], exact: &[f64]) -> f64 {
    let k = q.k;
    let kp = k.div_ceil(Q8_K_GROUP) * Q8_K_GROUP;
    let row_sums: Vec<i32> = (0..q.n)
        .map(|r| q.q[r * k..(r + 1) * k].iter().map(|&v| v as i32).sum())
        .collect();
    let mut qx = vec![0i8; kp];
    let mut total = 0f64;
    for (x, want) in xs.chunks_exact(k).zip(exact.chunks_exact(q.n)) {
        let (sx, zp) = albert_edge::kernels::scalar::quantize_row(x, &q.smooth, &mut qx);
        for (r, &want) in want.iter().enumerate() {
            let qw = &q.q[r * k..(r + 1) * k];
            let acc: i32 = qx[..k]
                .iter()
                .zip(qw)
                .map(|(&a, &b)| a as i32 * b as i32)
                .sum::<i32>()
                - zp * row_sums[r];
            let y = acc as f32 * (sx * q.scales[r]);
            total += (y as f64 - want).powi(2);
        }
    }
    total
}

fn concat_rows(parts: &[&Linear]) -> Linear {
    let cols = parts[0].w.cols;
    let mut data = Vec::new();
    let mut b = Vec::new();
    for p in parts {
        data.extend_from_slice(&p.w.data);
        b.extend_from_slice(&p.b);
    }
    Linear {
        w: Mat {
            rows: data.len() / cols,
            cols,
            data,
        },
        b,
    }
}

fn pad_to_align(out: &mut Vec<u8>) {
    let n = format::align_up(out.len() as u64).expect("file size fits u64") as usize;
    out.resize(n, 0);
}

fn assemble(
    cfg: &ModelConfig,
    labels: &[&str],
    tokenizer: Option<&[u8]>,
    items: &[Item],
    two_parts: &dyn Fn(RoleKind) -> bool,
) -> Result<Vec<u8>> {
    let mut sections: Vec<(u32, Vec<u8>)> = vec![
        (section::CONFIG, cfg.to_bytes().to_vec()),
        (section::LABELS, format::labels_bytes(labels)),
    ];
    if let Some(t) = tokenizer {
        sections.push((section::TOKENIZER, t.to_vec()));
    }
    let nsec = sections.len() + 2;
    // Offsets of everything before the tensor data.
    let mut pos = format::HEADER_LEN + nsec * format::SECTION_ENTRY_LEN;
    let mut offsets = Vec::new();
    for (_, b) in &sections {
        pos = format::align_up(pos as u64).unwrap() as usize;
        offsets.push(pos);
        pos += b.len();
    }
    let table_len = 8 + items.len() * format::TENSOR_ENTRY_LEN;
    pos = format::align_up(pos as u64).unwrap() as usize;
    let table_off = pos;
    pos += table_len;
    let data_off = format::align_up(pos as u64).unwrap() as usize;
    // Tensor data.
    let mut data = Vec::new();
    let mut table = Vec::with_capacity(table_len);
    table.extend_from_slice(&(items.len() as u32).to_le_bytes());
    table.extend_from_slice(&0u32.to_le_bytes());
    for it in items {
        pad_to_align(&mut data);
        let (dtype, bytes): (DType, Vec<u8>) = match &it.data {
            Data::F32(v) => (DType::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::Q8(b) if two_parts(it.role.kind) => (DType::Q8R, b.clone()),
            Data::Q8(b) => (DType::Q8, b.clone()),
        };
        table.extend_from_slice(&TensorEntry::encode(
            it.role,
            dtype,
            it.rows as u32,
            it.cols as u32,
            (data_off + data.len()) as u64,
            bytes.len() as u64,
        ));
        data.extend_from_slice(&bytes);
    }
    pad_to_align(&mut data);
    sections.push((section::TENSOR_TABLE, table));
    offsets.push(table_off);
    sections.push((section::TENSOR_DATA, data));
    offsets.push(data_off);
    let file_len = data_off + sections.last().unwrap().1.len();
    let mut out = Vec::with_capacity(file_len);
    out.extend_from_slice(&format::header_bytes(file_len as u64, nsec as u32));
    for ((kind, b), off) in sections.iter().zip(&offsets) {
        let e = SectionEntry {
            kind: *kind,
            offset: *off as u64,
            len: b.len() as u64,
            crc32: crc32(b),
        };
        out.extend_from_slice(&e.to_bytes());
    }
    for ((_, b), off) in sections.iter().zip(&offsets) {
        out.resize(*off, 0);
        out.extend_from_slice(b);
    }
    ensure!(out.len() == file_len, "internal: file length mismatch");
    Ok(out)
}

/// CRC-32 (IEEE), as the runtime checks it.
pub fn crc32(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u64) -> f32 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn smoothing_search_beats_plain_rounding_on_outlier_inputs() {
        let (n, k, m) = (12usize, 32usize, 200usize);
        let mut st = 11u64;
        let w = Mat {
            rows: n,
            cols: k,
            data: (0..n * k).map(|_| lcg(&mut st)).collect(),
        };
        // Channel 3 is an outlier, as in trained transformers.
        let xs: Vec<f32> = (0..m * k)
            .map(|i| lcg(&mut st) * if i % k == 3 { 40.0 } else { 1.0 })
            .collect();
        let role = Role::layer(RoleKind::FfnOutWeight, 0);
        let mut stats = ActStats::default();
        let mut x_max = vec![0f32; k];
        for x in xs.chunks_exact(k) {
            for (a, v) in x_max.iter_mut().zip(x) {
                *a = a.max(v.abs());
            }
        }
        stats.max_abs.insert(role.code(), x_max);
        let mut h = vec![0f64; k * k];
        calibrate::accumulate_xtx(&mut h, &xs, m, k, k, &mut Vec::new());
        stats.xtx.insert(role.code(), (h, m));
        stats.rows.insert(role.code(), (xs.clone(), m));
        let wr = &w;
        let exact: Vec<f64> = xs
            .chunks_exact(k)
            .flat_map(|x| {
                (0..n).map(move |r| {
                    wr.row(r)
                        .iter()
                        .zip(x)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>()
                })
            })
            .collect();
        let q = quantize_role(&w, role, Some(&stats), WeightPairs::Free);
        assert!(q.q.iter().all(|&v| (-127..=127).contains(&v)));
        assert!(q.smooth.iter().all(|&f| f.is_finite() && f > 0.0));
        let plain = quantize::quantize(&w, WeightPairs::Free);
        let (ours, theirs) = (
            output_error(&q, &xs, &exact),
            output_error(&plain, &xs, &exact),
        );
        assert!(
            ours < 0.5 * theirs,
            "searched smoothing + GPTQ {ours} vs plain rounding {theirs}"
        );
        // Without statistics: plain rounding.
        assert_eq!(quantize_role(&w, role, None, WeightPairs::Free), plain);
    }
}
