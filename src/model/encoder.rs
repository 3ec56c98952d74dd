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

use super::chunks::{AttnChunk, Dims, Exec, RowChunk};
use super::{embeddings, Input, Model, Trace};
use crate::format::RoleKind;
use crate::kernels::{AttentionArgs, Epilogue};
use crate::workspace::{Plan, Regions};

/// Embeddings, then every layer call. Alternates row phases (everything but
/// attention) and attention phases; see [`super::chunks`]. On a serial run
/// the kernels are called in the same order as the plain loop
/// (embeddings, then per layer: q|k|v, attention, output, LayerNorm, FFN, FFN
/// output, LayerNorm), and `trace` sees every tensor whole.
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
    exec.rows(r, t, d, trace, &|c, trace| {
        embeddings::forward(m, input, c, trace);
        if calls > 0 {
            qkv(m, layer_of(0), c, d, trace);
        }
    });
    for call in 0..calls {
        let layer = layer_of(call);
        if cls_only && call + 1 == calls && s > 1 {
            cls_layer(m, input, r, plan, layer, d);
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
        exec.rows(r, t, d, trace, &|c, trace| {
            layer_tail(m, layer, call, c, d, trace);
            if call + 1 < calls {
                qkv(m, layer_of(call + 1), c, d, trace);
            }
        });
    }
}

/// Layer call `layer` for the first token of every sequence only, on the
/// calling thread (the q|k|v projection of every token is already done):
/// attention for query row 0, then [`layer_tail`]'s steps on those rows, read
/// and written in place at a stride of one sequence.
fn cls_layer(
    m: &Model<'_>,
    input: &Input<'_>,
    r: &mut Regions<'_>,
    plan: &Plan,
    layer: u32,
    d: Dims,
) {
    let cfg = m.config();
    let (b, s) = (input.batch, input.seq);
    let (t, ld) = (b * s, s * d.h);
    let Regions {
        h,
        qkv,
        ctx,
        ffn,
        scores,
        mask,
        qs,
        ..
    } = r;
    let qkv_all: &[f32] = &qkv[..t * 3 * d.a];
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
    let w = |k: RoleKind| m.layer_tensor(k, layer);
    let no_trace = &mut |_: Trace, _: &[f32]| {};
    let h = &mut h[..t * d.h];
    let ffn = &mut ffn[..b * d.i];
    let layer_norm = |h: &mut [f32], g: RoleKind, bt: RoleKind| {
        let (g, bt) = (m.f32s(&w(g)), m.f32s(&w(bt)));
        for bi in 0..b {
            (m.kernels.layer_norm)(&mut h[bi * ld..bi * ld + d.h], g, bt, cfg.layer_norm_eps);
        }
    };
    m.linear(
        &ctx[..b * d.a],
        d.a,
        b,
        (&w(RoleKind::AttnOutWeight), &w(RoleKind::AttnOutBias)),
        qs,
        h,
        ld,
        Epilogue::Accumulate,
        no_trace,
    );
    layer_norm(h, RoleKind::AttnLnGamma, RoleKind::AttnLnBeta);
    m.linear(
        h,
        ld,
        b,
        (&w(RoleKind::FfnWeight), &w(RoleKind::FfnBias)),
        qs,
        ffn,
        d.i,
        Epilogue::Activate(cfg.activation),
        no_trace,
    );
    m.linear(
        ffn,
        d.i,
        b,
        (&w(RoleKind::FfnOutWeight), &w(RoleKind::FfnOutBias)),
        qs,
        h,
        ld,
        Epilogue::Accumulate,
        no_trace,
    );
    layer_norm(h, RoleKind::OutLnGamma, RoleKind::OutLnBeta);
}

/// The fused q|k|v projection of `layer` for the chunk's rows.
fn qkv(
    m: &Model<'_>,
    layer: u32,
    c: &mut RowChunk<'_>,
    d: Dims,
    trace: &mut dyn FnMut(Trace, &[f32]),
) {
    let w = |k: RoleKind| m.layer_tensor(k, layer);
    let rows = c.rows();
    m.linear(
        &c.h[..rows * d.h],
        d.h,
        rows,
        (&w(RoleKind::QkvWeight), &w(RoleKind::QkvBias)),
        &mut c.qs,
        c.qkv,
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

/// The rest of layer call `call` for the chunk's rows: attention output
/// projection with the residual add, LayerNorm, FFN, FFN output with the
/// residual add, LayerNorm.
fn layer_tail(
    m: &Model<'_>,
    layer: u32,
    call: usize,
    c: &mut RowChunk<'_>,
    d: Dims,
    trace: &mut dyn FnMut(Trace, &[f32]),
) {
    let cfg = m.config();
    let rows = c.rows();
    let w = |k: RoleKind| m.layer_tensor(k, layer);
    let (h, ffn) = (&mut c.h[..rows * d.h], &mut c.ffn[..rows * d.i]);
    m.linear(
        &c.ctx[..rows * d.a],
        d.a,
        rows,
        (&w(RoleKind::AttnOutWeight), &w(RoleKind::AttnOutBias)),
        &mut c.qs,
        h,
        d.h,
        Epilogue::Accumulate,
        trace,
    );
    let (g1, b1) = (
        m.f32s(&w(RoleKind::AttnLnGamma)),
        m.f32s(&w(RoleKind::AttnLnBeta)),
    );
    for row in h.chunks_exact_mut(d.h) {
        (m.kernels.layer_norm)(row, g1, b1, cfg.layer_norm_eps);
    }
    if call == 0 {
        trace(Trace::FirstAttentionOutput, h);
    }
    m.linear(
        h,
        d.h,
        rows,
        (&w(RoleKind::FfnWeight), &w(RoleKind::FfnBias)),
        &mut c.qs,
        ffn,
        d.i,
        Epilogue::Activate(cfg.activation),
        trace,
    );
    if call == 0 {
        trace(Trace::FirstFfnActivation, ffn);
    }
    m.linear(
        ffn,
        d.i,
        rows,
        (&w(RoleKind::FfnOutWeight), &w(RoleKind::FfnOutBias)),
        &mut c.qs,
        h,
        d.h,
        Epilogue::Accumulate,
        trace,
    );
    let (g2, b2) = (
        m.f32s(&w(RoleKind::OutLnGamma)),
        m.f32s(&w(RoleKind::OutLnBeta)),
    );
    for row in h.chunks_exact_mut(d.h) {
        (m.kernels.layer_norm)(row, g2, b2, cfg.layer_norm_eps);
    }
    trace(Trace::HiddenState(call + 1), h);
}
