//! `AlbertEmbeddings` and the encoder's `embedding_hidden_mapping_in`
//! (transformers v5.24.0 `modeling_albert.py`: `AlbertEmbeddings.forward`,
//! `AlbertTransformer.forward`'s first line).

use super::chunks::RowChunk;
use super::{Input, Matrix, Model, Trace};
use crate::format::{Q8_K_GROUP, Q8_N_BLOCK};
use crate::kernels::Epilogue;

/// `e = LayerNorm(word[id] + token_type[tt] + position[s])` (summed in that
/// order), then `h = e W_in^T + b_in`, for the chunk's token rows. Position
/// ids are `0..seq` for every sequence.
pub(super) fn forward(
    m: &Model<'_>,
    input: &Input<'_>,
    c: &mut RowChunk<'_>,
    trace: &mut dyn FnMut(Trace, &[f32]),
) {
    let cfg = m.config();
    let e = cfg.embedding_size as usize;
    let h = cfg.hidden_size as usize;
    let rows = c.rows();
    let g = &m.globals;
    let word = m.matrix(&g.word);
    let pos = m.f32s(&g.pos);
    let ty = m.f32s(&g.ty);
    let (gamma, beta) = (m.f32s(&g.emb_ln.0), m.f32s(&g.emb_ln.1));
    for (i, row) in (c.begin..c.end).zip(c.emb.chunks_exact_mut(e)) {
        let id = input.input_ids[i] as usize;
        let tt = input.token_type_ids.map_or(0, |v| v[i] as usize);
        let s = i % input.seq;
        word_row(&word, id, row);
        for (c, v) in row.iter_mut().enumerate() {
            *v = (*v + ty[tt * e + c]) + pos[s * e + c];
        }
        (m.kernels.layer_norm)(row, gamma, beta, cfg.layer_norm_eps);
    }
    trace(Trace::Embeddings, &c.emb[..rows * e]);
    m.linear(
        &c.emb[..rows * e],
        e,
        rows,
        (&g.map_in.0, &g.map_in.1),
        &mut c.qs,
        c.h,
        h,
        Epilogue::Store,
        trace,
    );
    trace(Trace::HiddenState(0), &c.h[..rows * h]);
}

/// Writes row `id` of the word embeddings (dequantized when int8) into `out`.
pub(super) fn word_row(word: &Matrix<'_>, id: usize, out: &mut [f32]) {
    match word {
        Matrix::F32 { w, k, .. } => out.copy_from_slice(&w[id * k..(id + 1) * k]),
        Matrix::Q8(q, _) => {
            let scale = q.scales[id];
            let (nb, j) = (id / Q8_N_BLOCK, id % Q8_N_BLOCK);
            for (c, v) in out.iter_mut().enumerate() {
                let idx = ((nb * q.k_groups + c / Q8_K_GROUP) * Q8_N_BLOCK + j) * Q8_K_GROUP
                    + c % Q8_K_GROUP;
                *v = (q.packed[idx] as f32 * scale) * q.smooth[c];
            }
        }
    }
}
