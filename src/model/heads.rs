//! `AlbertModel`'s pooler and the task heads (transformers v5.24.0
//! `modeling_albert.py`: `AlbertModel.forward`, `AlbertFor*.forward`,
//! `AlbertMLMHead`).

use super::chunks::{Dims, Exec, RowChunk};
use super::{Input, Model, Outputs, Trace};
use crate::format::HeadKind;
use crate::kernels::Epilogue;
use crate::workspace::Regions;

/// The pooler (calling thread), then the head: a row phase for the
/// token-level heads (token classification, question answering, masked LM:
/// every output row depends on its token row alone), the calling thread for
/// sequence classification.
pub(super) fn forward<'w>(
    m: &Model<'_>,
    input: &Input<'_>,
    mut r: Regions<'w>,
    exec: Exec<'_>,
    trace: &mut dyn FnMut(Trace, &[f32]),
) -> Outputs<'w> {
    let cfg = *m.config();
    let (b, s) = (input.batch, input.seq);
    let t = b * s;
    let (e, h) = (cfg.embedding_size as usize, cfg.hidden_size as usize);
    let l = cfg.num_labels as usize;
    let v = cfg.vocab_size as usize;
    let pooled_len = if cfg.has_pooler { b * h } else { 0 };
    // pooler_output = tanh(Linear(h[:, 0]))
    if let Some(p) = &m.globals.pooler {
        m.linear(
            &r.h[..t * h],
            s * h,
            b,
            (&p.0, &p.1),
            &mut r.qs,
            &mut r.out[..pooled_len],
            h,
            Epilogue::Tanh,
            trace,
        );
    }
    let o = match cfg.head {
        HeadKind::TokenClassification => l,
        HeadKind::QuestionAnswering => 2,
        HeadKind::MaskedLm => v,
        HeadKind::Base | HeadKind::SequenceClassification => 0,
    };
    if o > 0 {
        let d = Dims {
            h,
            a: cfg.attention_dim(),
            i: cfg.intermediate_size as usize,
            e,
            o,
            out_at: pooled_len,
        };
        exec.rows(&mut r, t, d, trace, &|c, trace| token_head(m, c, d, trace));
    }
    let Regions {
        h: hs, mut qs, out, ..
    } = r;
    let hs: &'w [f32] = &hs[..t * h];
    let (pooled, out) = out.split_at_mut(pooled_len);
    let pooled: &'w [f32] = pooled;
    let mut outs = Outputs::new();
    match cfg.head {
        HeadKind::Base => {
            outs.push("last_hidden_state", &[b, s, h], hs);
            if cfg.has_pooler {
                outs.push("pooler_output", &[b, h], pooled);
            }
        }
        HeadKind::SequenceClassification => {
            let c = m.globals.classifier.as_ref().expect("validated at load");
            m.linear(
                pooled,
                h,
                b,
                (&c.0, &c.1),
                &mut qs,
                out,
                l,
                Epilogue::Store,
                trace,
            );
            outs.push("logits", &[b, l], &out[..b * l]);
        }
        HeadKind::TokenClassification => {
            outs.push("logits", &[b, s, l], &out[..t * l]);
        }
        HeadKind::QuestionAnswering => {
            let t16 = t.next_multiple_of(16);
            let (x, rest) = out.split_at_mut((2 * t).next_multiple_of(16));
            let (start, rest) = rest.split_at_mut(t16);
            let end = &mut rest[..t];
            for i in 0..t {
                start[i] = x[2 * i];
                end[i] = x[2 * i + 1];
            }
            outs.push("start_logits", &[b, s], &start[..t]);
            outs.push("end_logits", &[b, s], end);
        }
        HeadKind::MaskedLm => {
            outs.push("logits", &[b, s, v], &out[..t * v]);
        }
    }
    outs
}

/// The row-local part of a token-level head for the chunk's rows, into `c.out`.
fn token_head(m: &Model<'_>, c: &mut RowChunk<'_>, d: Dims, trace: &mut dyn FnMut(Trace, &[f32])) {
    let cfg = m.config();
    let rows = c.rows();
    let hs = &c.h[..rows * d.h];
    match cfg.head {
        HeadKind::TokenClassification | HeadKind::QuestionAnswering => {
            let w = m.globals.classifier.as_ref().expect("validated at load");
            m.linear(
                hs,
                d.h,
                rows,
                (&w.0, &w.1),
                &mut c.qs,
                c.out,
                d.o,
                Epilogue::Store,
                trace,
            );
        }
        HeadKind::MaskedLm => {
            // t = LayerNorm(act(dense(h))); logits = t W_word^T + bias
            let mlm = m.globals.mlm.as_ref().expect("validated at load");
            let emb = &mut c.emb[..rows * d.e];
            m.linear(
                hs,
                d.h,
                rows,
                (&mlm.dense.0, &mlm.dense.1),
                &mut c.qs,
                emb,
                d.e,
                Epilogue::Activate(cfg.activation),
                trace,
            );
            let (g, bt) = (m.f32s(&mlm.ln.0), m.f32s(&mlm.ln.1));
            for row in emb.chunks_exact_mut(d.e) {
                (m.kernels.layer_norm)(row, g, bt, cfg.layer_norm_eps);
            }
            m.linear(
                emb,
                d.e,
                rows,
                (&mlm.decoder, &mlm.bias),
                &mut c.qs,
                c.out,
                d.o,
                Epilogue::Store,
                trace,
            );
        }
        HeadKind::Base | HeadKind::SequenceClassification => {}
    }
}
