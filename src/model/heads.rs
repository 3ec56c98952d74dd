//! `AlbertModel`'s pooler and the task heads (transformers v5.24.0
//! `modeling_albert.py`: `AlbertModel.forward`, `AlbertFor*.forward`,
//! `AlbertMLMHead`).

use super::{Input, Model, Outputs};
use crate::format::HeadKind;
use crate::kernels::Epilogue;
use crate::workspace::Regions;

pub(super) fn forward<'w>(
    m: &Model<'_>,
    input: &Input<'_>,
    r: Regions<'w>,
    trace: &mut dyn FnMut(super::Trace, &[f32]),
) -> Outputs<'w> {
    let cfg = *m.config();
    let (b, s) = (input.batch, input.seq);
    let t = b * s;
    let (e, h) = (cfg.embedding_size as usize, cfg.hidden_size as usize);
    let l = cfg.num_labels as usize;
    let Regions {
        h: hs,
        emb,
        mut qs,
        out,
        ..
    } = r;
    let hs: &'w [f32] = &hs[..t * h];
    let pooled_len = if cfg.has_pooler { b * h } else { 0 };
    let (pooled, out) = out.split_at_mut(pooled_len);
    // pooler_output = tanh(Linear(h[:, 0]))
    if let Some(p) = &m.globals.pooler {
        m.linear(
            hs,
            s * h,
            b,
            (&p.0, &p.1),
            &mut qs,
            pooled,
            h,
            Epilogue::Tanh,
            trace,
        );
    }
    let pooled: &'w [f32] = pooled;
    let mut o = Outputs::new();
    match cfg.head {
        HeadKind::Base => {
            o.push("last_hidden_state", &[b, s, h], hs);
            if cfg.has_pooler {
                o.push("pooler_output", &[b, h], pooled);
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
            o.push("logits", &[b, l], &out[..b * l]);
        }
        HeadKind::TokenClassification => {
            let c = m.globals.classifier.as_ref().expect("validated at load");
            m.linear(
                hs,
                h,
                t,
                (&c.0, &c.1),
                &mut qs,
                out,
                l,
                Epilogue::Store,
                trace,
            );
            o.push("logits", &[b, s, l], &out[..t * l]);
        }
        HeadKind::QuestionAnswering => {
            let c = m.globals.classifier.as_ref().expect("validated at load");
            let t16 = t.next_multiple_of(16);
            let (x, rest) = out.split_at_mut((2 * t).next_multiple_of(16));
            m.linear(
                hs,
                h,
                t,
                (&c.0, &c.1),
                &mut qs,
                x,
                2,
                Epilogue::Store,
                trace,
            );
            let (start, rest) = rest.split_at_mut(t16);
            let end = &mut rest[..t];
            for i in 0..t {
                start[i] = x[2 * i];
                end[i] = x[2 * i + 1];
            }
            o.push("start_logits", &[b, s], &start[..t]);
            o.push("end_logits", &[b, s], end);
        }
        HeadKind::MaskedLm => {
            // t = LayerNorm(act(dense(h))); logits = t W_word^T + bias
            let mlm = m.globals.mlm.as_ref().expect("validated at load");
            m.linear(
                hs,
                h,
                t,
                (&mlm.dense.0, &mlm.dense.1),
                &mut qs,
                emb,
                e,
                Epilogue::Activate(cfg.activation),
                trace,
            );
            let (g, bt) = (m.f32s(&mlm.ln.0), m.f32s(&mlm.ln.1));
            for row in emb[..t * e].chunks_exact_mut(e) {
                (m.kernels.layer_norm)(row, g, bt, cfg.layer_norm_eps);
            }
            let v = cfg.vocab_size as usize;
            m.linear(
                &emb[..t * e],
                e,
                t,
                (&mlm.decoder, &mlm.bias),
                &mut qs,
                out,
                v,
                Epilogue::Store,
                trace,
            );
            o.push("logits", &[b, s, v], &out[..t * v]);
        }
    }
    o
}
