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

use super::{Input, Model, Trace};
use crate::format::RoleKind;
use crate::kernels::{AttentionArgs, Epilogue};
use crate::workspace::Regions;

pub(super) fn forward(
    m: &Model<'_>,
    input: &Input<'_>,
    r: &mut Regions<'_>,
    trace: &mut dyn FnMut(Trace, &[f32]),
) {
    let cfg = *m.config();
    let (b, s) = (input.batch, input.seq);
    let t = b * s;
    let (h, a, i) = (
        cfg.hidden_size as usize,
        cfg.attention_dim(),
        cfg.intermediate_size as usize,
    );
    let scale = libm::pow(cfg.head_dim as f64, -0.5) as f32;
    let mut call = 0usize;
    for step in 0..cfg.num_layers {
        let group = cfg.group_of_step(step);
        for inner in 0..cfg.inner_group_num {
            let layer = group * cfg.inner_group_num + inner;
            let w = |k: RoleKind| m.layer_tensor(k, layer);
            let (qkv_w, qkv_b) = (w(RoleKind::QkvWeight), w(RoleKind::QkvBias));
            m.linear(
                &r.h[..t * h],
                h,
                t,
                (&qkv_w, &qkv_b),
                &mut r.qs,
                r.qkv,
                3 * a,
                Epilogue::Store,
                trace,
            );
            for bi in 0..b {
                let mask = &mut r.mask[..s];
                for (j, mb) in mask.iter_mut().enumerate() {
                    let keep = input.attention_mask.is_none_or(|am| am[bi * s + j] != 0);
                    *mb = if keep { 0.0 } else { f32::MIN };
                }
                let args = AttentionArgs {
                    qkv: &r.qkv[bi * s * 3 * a..(bi + 1) * s * 3 * a],
                    ld_qkv: 3 * a,
                    seq: s,
                    q_begin: 0,
                    q_end: s,
                    heads: cfg.num_heads as usize,
                    head_dim: cfg.head_dim as usize,
                    scale,
                    mask_bias: mask,
                    ld_ctx: a,
                };
                (m.kernels.attention)(&args, r.scores, &mut r.ctx[bi * s * a..(bi + 1) * s * a]);
            }
            let (o_w, o_b) = (w(RoleKind::AttnOutWeight), w(RoleKind::AttnOutBias));
            m.linear(
                &r.ctx[..t * a],
                a,
                t,
                (&o_w, &o_b),
                &mut r.qs,
                r.h,
                h,
                Epilogue::Accumulate,
                trace,
            );
            let (g1, b1) = (
                m.f32s(&w(RoleKind::AttnLnGamma)),
                m.f32s(&w(RoleKind::AttnLnBeta)),
            );
            for row in r.h[..t * h].chunks_exact_mut(h) {
                (m.kernels.layer_norm)(row, g1, b1, cfg.layer_norm_eps);
            }
            if call == 0 {
                trace(Trace::FirstAttentionOutput, &r.h[..t * h]);
            }
            let (f_w, f_b) = (w(RoleKind::FfnWeight), w(RoleKind::FfnBias));
            m.linear(
                &r.h[..t * h],
                h,
                t,
                (&f_w, &f_b),
                &mut r.qs,
                r.ffn,
                i,
                Epilogue::Activate(cfg.activation),
                trace,
            );
            if call == 0 {
                trace(Trace::FirstFfnActivation, &r.ffn[..t * i]);
            }
            let (fo_w, fo_b) = (w(RoleKind::FfnOutWeight), w(RoleKind::FfnOutBias));
            m.linear(
                &r.ffn[..t * i],
                i,
                t,
                (&fo_w, &fo_b),
                &mut r.qs,
                r.h,
                h,
                Epilogue::Accumulate,
                trace,
            );
            let (g2, b2) = (
                m.f32s(&w(RoleKind::OutLnGamma)),
                m.f32s(&w(RoleKind::OutLnBeta)),
            );
            for row in r.h[..t * h].chunks_exact_mut(h) {
                (m.kernels.layer_norm)(row, g2, b2, cfg.layer_norm_eps);
            }
            call += 1;
            trace(Trace::HiddenState(call), &r.h[..t * h]);
        }
    }
}
