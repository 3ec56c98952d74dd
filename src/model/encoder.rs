//! `AlbertTransformer` / `AlbertLayerGroup` / `AlbertLayer` / `AlbertAttention`
//! (transformers v5.24.0 `modeling_albert.py`). Post-LayerNorm blocks:
//!
//! ```text
//! a = LayerNorm(h + dense(attention(h)))          attention.LayerNorm
//! h = LayerNorm(a + ffn_output(act(ffn(a))))      full_layer_layer_norm
//! ```
//!
//! Both residual adds are fused into the GEMM epilogue (`Epilogue::Accumulate`
//! into the buffer that holds `h`), and LayerNorm then runs in place.

use super::chunks::{AttnChunk, Dims, Exec};
use super::{columns, embeddings, Input, Matrix, Model, Trace};
use crate::format::RoleKind;
use crate::kernels::{AttentionArgs, Epilogue};
use crate::workspace::{Plan, QScratch, Regions};

/// Embeddings, then every layer call. Alternates row phases (everything but
/// attention) and attention phases; see [`super::chunks`]. On a serial run
/// the kernels are called in the same order as the plain loop
/// (embeddings, then per layer: q|k|v, attention, output, LayerNorm, FFN, FFN
/// output, LayerNorm), and `trace` sees every tensor whole. A multi-threaded
/// run of few rows ([`Exec::split_columns`]) splits each linear layer by
/// output columns instead of the layer's row work by rows.
///
/// With `cls_only`, the last layer call computes only what the first token of
/// each sequence needs (keys and values of every token, then attention, FFN
/// and LayerNorms for that one row): the sequence-classification head reads
/// nothing else. Every value it computes is bit-identical to the full pass
/// (the kernels treat rows independently); the other rows of the last hidden
/// state are left stale, so callers that look at them must not ask for it.
pub(super) fn forward(
    m: &Model<'_>,
    input: &Input<'_>,
    r: &mut Regions<'_>,
    plan: &Plan,
    exec: Exec<'_>,
    cls_only: bool,
    trace: &mut dyn FnMut(Trace, &[f32]),
) {
    let cfg = *m.config();
    let (b, s) = (input.batch, input.seq);
    let t = b * s;
    let d = Dims {
        h: cfg.hidden_size as usize,
        a: cfg.attention_dim(),
        i: cfg.intermediate_size as usize,
        e: cfg.embedding_size as usize,
        o: 0,
        out_at: 0,
    };
    let calls = cfg.num_layers as usize * cfg.inner_group_num as usize;
    let layer_of = |call: usize| {
        let inner = cfg.inner_group_num as usize;
        let group = cfg.group_of_step((call / inner) as u32);
        group * cfg.inner_group_num + (call % inner) as u32
    };
    let columns = exec.split_columns(t);
    exec.rows(r, t, d, trace, &|c, trace| {
        embeddings::forward(m, input, c, trace);
        if calls > 0 {
            let rows = c.rows();
            let h = &c.h[..rows * d.h];
            let w = m.layer_tensor(RoleKind::QkvWeight, layer_of(0));
            if columns {
                if let Matrix::Q8(q, two) = m.matrix(&w) {
                    m.quantize(h, d.h, rows, &q, two, &mut c.qs);
                }
            } else {
                qkv(m, layer_of(0), rows, h, c.qkv, &mut c.qs, d, trace);
            }
        }
    });
    if calls > 0 && columns {
        let Regions {
            h, qkv, qs, cols, ..
        } = r;
        qkv_columns(m, exec, layer_of(0), t, &h[..t * d.h], qkv, qs, cols, d);
    }
    for call in 0..calls {
        let layer = layer_of(call);
        if cls_only && call + 1 == calls && s > 1 {
            cls_layer(m, input, r, plan, exec, layer, call, d);
            break;
        }
        let Regions {
            qkv: qkv_all,
            ctx,
            scores,
            mask,
            ..
        } = r;
        let qkv_all: &[f32] = &qkv_all[..t * 3 * d.a];
        exec.attention(
            ctx,
            scores,
            mask,
            (plan.scores_chunk, plan.mask_chunk),
            b,
            s,
            d.a,
            &|c| attention(m, input, qkv_all, c, d),
        );
        let next = (call + 1 < calls).then(|| layer_of(call + 1));
        if columns {
            let Regions {
                h,
                qkv: qkv_all,
                ctx,
                ffn,
                qs,
                cols,
                ..
            } = r;
            let (h, ffn) = (&mut h[..t * d.h], &mut ffn[..t * d.i]);
            let ctx = &ctx[..t * d.a];
            tail_columns(m, exec, layer, next, t, ctx, h, d.h, ffn, qs, cols, d);
            if let Some(next) = next {
                qkv_columns(m, exec, next, t, h, qkv_all, qs, cols, d);
            }
            continue;
        }
        exec.rows(r, t, d, trace, &|c, trace| {
            let rows = c.rows();
            let (h, ffn) = (&mut c.h[..rows * d.h], &mut c.ffn[..rows * d.i]);
            let ctx = &c.ctx[..rows * d.a];
            layer_tail(m, layer, call, rows, ctx, h, d.h, ffn, &mut c.qs, d, trace);
            if let Some(next) = next {
                qkv(m, next, rows, h, c.qkv, &mut c.qs, d, trace);
            }
        });
    }
}

/// Layer call `layer` for the first token of every sequence only (the q|k|v
/// projection of every token is already done): attention for query row 0 on
/// the calling thread, then [`layer_tail`]'s steps on those rows, read and
/// written in place at a stride of one sequence (split by output columns when
/// `exec` has several threads).
#[allow(clippy::too_many_arguments)]
fn cls_layer(
    m: &Model<'_>,
    input: &Input<'_>,
    r: &mut Regions<'_>,
    plan: &Plan,
    exec: Exec<'_>,
    layer: u32,
    call: usize,
    d: Dims,
) {
    let (b, s) = (input.batch, input.seq);
    let Regions {
        h,
        qkv,
        ctx,
        ffn,
        scores,
        mask,
        qs,
        cols,
        ..
    } = r;
    let qkv_all: &[f32] = &qkv[..b * s * 3 * d.a];
    for bi in 0..b {
        let mut c = AttnChunk {
            begin: bi * s,
            end: bi * s + 1,
            ctx: &mut ctx[bi * d.a..(bi + 1) * d.a],
            scores: &mut scores[..plan.scores_chunk],
            mask: &mut mask[..s],
        };
        attention(m, input, qkv_all, &mut c, d);
    }
    let (h, ffn) = (&mut h[..b * s * d.h], &mut ffn[..b * d.i]);
    let ctx = &ctx[..b * d.a];
    if exec.split_columns(b) {
        tail_columns(m, exec, layer, None, b, ctx, h, s * d.h, ffn, qs, cols, d);
    } else {
        let no_trace = &mut |_: Trace, _: &[f32]| {};
        layer_tail(m, layer, call, b, ctx, h, s * d.h, ffn, qs, d, no_trace);
    }
}

/// The fused q|k|v projection of `layer` for `rows` rows split by output
/// columns, from rows of `h` already quantized for it.
#[allow(clippy::too_many_arguments)]
fn qkv_columns(
    m: &Model<'_>,
    exec: Exec<'_>,
    layer: u32,
    rows: usize,
    h: &[f32],
    qkv: &mut [f32],
    qs: &mut QScratch<'_>,
    cols: &mut [f32],
    d: Dims,
) {
    let w = |k: RoleKind| m.layer_tensor(k, layer);
    let (wq, bq) = (w(RoleKind::QkvWeight), w(RoleKind::QkvBias));
    let n = columns::gemm(m, exec, h, d.h, rows, (&wq, &bq), qs, Epilogue::Store, cols);
    let place = columns::Post {
        accumulate: false,
        layer_norm: None,
        quantize_for: None,
    };
    columns::post(m, exec, rows, n, cols, qkv, 3 * d.a, &place, qs);
}

/// [`layer_tail`] with every linear layer split by output columns (see
/// [`columns`]), ending with `h` quantized for the q|k|v projection of layer
/// `next`.
#[allow(clippy::too_many_arguments)]
fn tail_columns(
    m: &Model<'_>,
    exec: Exec<'_>,
    layer: u32,
    next: Option<u32>,
    rows: usize,
    ctx: &[f32],
    h: &mut [f32],
    ld_h: usize,
    ffn: &mut [f32],
    qs: &mut QScratch<'_>,
    cols: &mut [f32],
    d: Dims,
) {
    let cfg = m.config();
    let w = |k: RoleKind| m.layer_tensor(k, layer);
    let (attn_out, attn_out_b) = (w(RoleKind::AttnOutWeight), w(RoleKind::AttnOutBias));
    let (ffn_in, ffn_in_b) = (w(RoleKind::FfnWeight), w(RoleKind::FfnBias));
    let (ffn_out, ffn_out_b) = (w(RoleKind::FfnOutWeight), w(RoleKind::FfnOutBias));
    let ln = |g: RoleKind, b: RoleKind| Some((m.f32s(&w(g)), m.f32s(&w(b))));
    let next_qkv = next.map(|l| m.layer_tensor(RoleKind::QkvWeight, l));
    let store = Epilogue::Store;
    columns::quantize(m, exec, ctx, d.a, rows, &attn_out, qs);
    let n = columns::gemm(
        m,
        exec,
        ctx,
        d.a,
        rows,
        (&attn_out, &attn_out_b),
        qs,
        store,
        cols,
    );
    let post = columns::Post {
        accumulate: true,
        layer_norm: ln(RoleKind::AttnLnGamma, RoleKind::AttnLnBeta),
        quantize_for: Some(&ffn_in),
    };
    columns::post(m, exec, rows, n, cols, h, ld_h, &post, qs);
    let act = Epilogue::Activate(cfg.activation);
    let n = columns::gemm(m, exec, h, ld_h, rows, (&ffn_in, &ffn_in_b), qs, act, cols);
    let post = columns::Post {
        accumulate: false,
        layer_norm: None,
        quantize_for: Some(&ffn_out),
    };
    columns::post(m, exec, rows, n, cols, ffn, d.i, &post, qs);
    let n = columns::gemm(
        m,
        exec,
        ffn,
        d.i,
        rows,
        (&ffn_out, &ffn_out_b),
        qs,
        store,
        cols,
    );
    let post = columns::Post {
        accumulate: true,
        layer_norm: ln(RoleKind::OutLnGamma, RoleKind::OutLnBeta),
        quantize_for: next_qkv.as_ref(),
    };
    columns::post(m, exec, rows, n, cols, h, ld_h, &post, qs);
}

/// The fused q|k|v projection of `layer` for `rows` rows of `h`.
#[allow(clippy::too_many_arguments)]
fn qkv(
    m: &Model<'_>,
    layer: u32,
    rows: usize,
    h: &[f32],
    qkv: &mut [f32],
    qs: &mut QScratch<'_>,
    d: Dims,
    trace: &mut dyn FnMut(Trace, &[f32]),
) {
    let w = |k: RoleKind| m.layer_tensor(k, layer);
    m.linear(
        h,
        d.h,
        rows,
        (&w(RoleKind::QkvWeight), &w(RoleKind::QkvBias)),
        qs,
        qkv,
        3 * d.a,
        Epilogue::Store,
        trace,
    );
}

/// Attention for the chunk's query rows (each sequence of the batch it
/// touches), reading all of `qkv`.
fn attention(m: &Model<'_>, input: &Input<'_>, qkv: &[f32], c: &mut AttnChunk<'_>, d: Dims) {
    let cfg = m.config();
    let s = input.seq;
    let scale = libm::pow(cfg.head_dim as f64, -0.5) as f32;
    let mut row = c.begin;
    while row < c.end {
        let bi = row / s;
        let (q_begin, q_end) = (row - bi * s, c.end.min((bi + 1) * s) - bi * s);
        for (j, mb) in c.mask.iter_mut().enumerate() {
            let keep = input.attention_mask.is_none_or(|am| am[bi * s + j] != 0);
            *mb = if keep { 0.0 } else { f32::MIN };
        }
        let args = AttentionArgs {
            qkv: &qkv[bi * s * 3 * d.a..(bi + 1) * s * 3 * d.a],
            ld_qkv: 3 * d.a,
            seq: s,
            q_begin,
            q_end,
            heads: cfg.num_heads as usize,
            head_dim: cfg.head_dim as usize,
            scale,
            mask_bias: c.mask,
            ld_ctx: d.a,
        };
        let out = (row - c.begin) * d.a..(row - c.begin + q_end - q_begin) * d.a;
        (m.kernels.attention)(&args, c.scores, &mut c.ctx[out]);
        row += q_end - q_begin;
    }
}

/// The rest of layer call `call` for `rows` rows (`h` at row stride `ld_h`,
/// `ctx` and `ffn` packed): attention output projection with the residual
/// add, LayerNorm, FFN, FFN output with the residual add, LayerNorm.
#[allow(clippy::too_many_arguments)]
fn layer_tail(
    m: &Model<'_>,
    layer: u32,
    call: usize,
    rows: usize,
    ctx: &[f32],
    h: &mut [f32],
    ld_h: usize,
    ffn: &mut [f32],
    qs: &mut QScratch<'_>,
    d: Dims,
    trace: &mut dyn FnMut(Trace, &[f32]),
) {
    let cfg = m.config();
    let w = |k: RoleKind| m.layer_tensor(k, layer);
    let layer_norm = |h: &mut [f32], g: RoleKind, bt: RoleKind| {
        let (g, bt) = (m.f32s(&w(g)), m.f32s(&w(bt)));
        for r in 0..rows {
            (m.kernels.layer_norm)(&mut h[r * ld_h..r * ld_h + d.h], g, bt, cfg.layer_norm_eps);
        }
    };
    let (attn_out, ffn_in, ffn_out) = (
        (&w(RoleKind::AttnOutWeight), &w(RoleKind::AttnOutBias)),
        (&w(RoleKind::FfnWeight), &w(RoleKind::FfnBias)),
        (&w(RoleKind::FfnOutWeight), &w(RoleKind::FfnOutBias)),
    );
    let acc = Epilogue::Accumulate;
    m.linear(ctx, d.a, rows, attn_out, qs, h, ld_h, acc, trace);
    layer_norm(h, RoleKind::AttnLnGamma, RoleKind::AttnLnBeta);
    if call == 0 {
        trace(Trace::FirstAttentionOutput, h);
    }
    let act = Epilogue::Activate(cfg.activation);
    m.linear(h, ld_h, rows, ffn_in, qs, ffn, d.i, act, trace);
    if call == 0 {
        trace(Trace::FirstFfnActivation, ffn);
    }
    m.linear(ffn, d.i, rows, ffn_out, qs, h, ld_h, acc, trace);
    layer_norm(h, RoleKind::OutLnGamma, RoleKind::OutLnBeta);
    trace(Trace::HiddenState(call + 1), h);
}
