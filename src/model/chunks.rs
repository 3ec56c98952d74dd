//! Splitting one run into row chunks, for [`super::Model::run_with`].
//!
//! Everything in ALBERT except attention is row-local: the embeddings, every
//! linear layer (activations are quantized per token row), the residual adds
//! and LayerNorm compute token row `i` from row `i` alone. A run therefore
//! alternates two kinds of phases, each split into chunks that share no
//! output:
//!
//! * a **row phase** ([`RowChunk`]): a contiguous range of token rows of every
//!   row-indexed region (`h`, `qkv`, `ctx`, `ffn`, `emb` and the quantization
//!   scratch). One chunk runs a whole stretch of row-local work (e.g. attention
//!   output projection, LayerNorm, FFN, LayerNorm, the next layer's q|k|v) with
//!   no synchronization in between.
//! * an **attention phase** ([`AttnChunk`]): a range of query rows. All chunks
//!   read the whole `qkv` (finished by the previous row phase) and each writes
//!   its own rows of `ctx`, using its own slice of the attention scratch.
//!
//! Each output element is computed by the same kernel call on the same inputs
//! whatever the chunking, provided the kernels compute each row independently
//! of the other rows passed with it (true of every tier; checked by
//! `tests/threads.rs`), so results are bit-identical for any thread count.
//! Attention chunk boundaries are also kept at multiples of
//! [`ATTN_ROWS`] query rows within a sequence, so a kernel that scores query
//! rows in blocks sees the same blocks.
//!
//! Short inputs (at most [`COLUMN_SPLIT_ROWS`] token rows) split each linear
//! layer by output columns instead ([`Exec::columns`], [`ColPart`]): every
//! part computes all rows for a range of outputs, a whole number of packed
//! weight blocks, into its own scratch, which is then copied into place. The
//! kernels compute every output from its own weight row, so this too is
//! bit-identical.

use super::Trace;
use crate::format::Q8_N_BLOCK;
use crate::workspace::{
    chunks_for_threads, QScratch, Regions, ATTN_ROWS, COLUMN_SPLIT_ROWS, MAX_CHUNKS,
};

/// Fewest rows a row chunk gets when there are more chunks than threads (so
/// GEMM kernels still see whole row tiles).
const MIN_CHUNK_ROWS: usize = 8;

/// Row strides of the row-indexed regions.
#[derive(Clone, Copy)]
pub(super) struct Dims {
    pub h: usize,
    pub a: usize,
    pub i: usize,
    pub e: usize,
    /// Row stride of the token-level head output (0: no output rows).
    pub o: usize,
    /// Where the token-level head output starts in the `out` region.
    pub out_at: usize,
}

/// Rows `begin..end` (flat token indices) of every row-indexed region.
pub(super) struct RowChunk<'w> {
    pub begin: usize,
    pub end: usize,
    pub h: &'w mut [f32],
    pub qkv: &'w mut [f32],
    pub ctx: &'w mut [f32],
    pub ffn: &'w mut [f32],
    pub emb: &'w mut [f32],
    /// Token-level head output rows (empty unless `Dims::o > 0`).
    pub out: &'w mut [f32],
    pub qs: QScratch<'w>,
}

impl RowChunk<'_> {
    /// Rows in the chunk.
    pub fn rows(&self) -> usize {
        self.end - self.begin
    }
}

/// Query rows `begin..end` (flat token indices) of the attention output, with
/// this chunk's attention scratch.
pub(super) struct AttnChunk<'w> {
    pub begin: usize,
    pub end: usize,
    pub ctx: &'w mut [f32],
    pub scores: &'w mut [f32],
    pub mask: &'w mut [f32],
}

/// Output columns `begin..end` of one linear layer over `rows` rows, and the
/// part's scratch `out` (`[rows][end - begin]`).
pub(super) struct ColPart<'w> {
    pub begin: usize,
    pub end: usize,
    pub out: &'w mut [f32],
}

/// The work of one row chunk; the trace is the caller's on a single-threaded
/// run and a no-op otherwise.
pub(super) type RowFn<'f> = dyn Fn(&mut RowChunk<'_>, &mut dyn FnMut(Trace, &[f32])) + Sync + 'f;

/// How a run executes its phases: on the calling thread only, or spread over a
/// thread pool.
#[derive(Clone, Copy)]
pub(super) struct Exec<'p> {
    #[cfg(feature = "std")]
    pub pool: Option<&'p crate::pool::ThreadPool>,
    pub _lifetime: core::marker::PhantomData<&'p ()>,
}

impl Exec<'_> {
    /// The calling thread only.
    pub fn serial() -> Exec<'static> {
        Exec {
            #[cfg(feature = "std")]
            pool: None,
            _lifetime: core::marker::PhantomData,
        }
    }

    /// Threads taking part.
    pub fn threads(&self) -> usize {
        #[cfg(feature = "std")]
        if let Some(p) = self.pool {
            return p.threads();
        }
        1
    }

    /// Most chunks per phase (the attention scratch copies in the plan).
    pub fn chunks(&self) -> usize {
        chunks_for_threads(self.threads())
    }

    /// Runs `f` on every item, on the pool when there is one.
    pub fn for_each<T: Send>(&self, items: &mut [T], f: &(dyn Fn(&mut T) + Sync)) {
        #[cfg(feature = "std")]
        if let Some(p) = self.pool {
            p.for_each_mut(items, f);
            return;
        }
        items.iter_mut().for_each(f);
    }

    /// A row phase over the first `t` rows: `f` on one chunk of all rows with
    /// the caller's `trace` when serial, else on up to [`Exec::chunks`] chunks
    /// (at least one per thread, else at least [`MIN_CHUNK_ROWS`] rows each)
    /// in parallel without tracing.
    pub fn rows(
        &self,
        r: &mut Regions<'_>,
        t: usize,
        d: Dims,
        trace: &mut dyn FnMut(Trace, &[f32]),
        f: &RowFn<'_>,
    ) {
        let n = self
            .chunks()
            .min(t.div_ceil(MIN_CHUNK_ROWS).max(self.threads()))
            .min(t);
        let mut items = split_rows(r, t, n.max(1), d);
        if n <= 1 {
            if let Some(c) = items[0].as_mut() {
                f(c, trace);
            }
            return;
        }
        self.for_each(&mut items[..n], &|c| {
            if let Some(c) = c {
                f(c, &mut |_, _| {});
            }
        });
    }

    /// Whether a run of `t` token rows splits its linear layers by output
    /// columns ([`Exec::columns`]) rather than by rows.
    pub fn split_columns(&self, t: usize) -> bool {
        self.threads() > 1 && t <= COLUMN_SPLIT_ROWS
    }

    /// The column ranges [`Exec::columns`] splits `n` outputs into: up to
    /// [`Exec::chunks`] parts of whole [`Q8_N_BLOCK`]-column blocks.
    pub fn column_parts(&self, n: usize) -> impl Iterator<Item = (usize, usize)> {
        column_parts(n, self.chunks())
    }

    /// `f` on each part of [`Exec::column_parts`]`(n)` in parallel, each with
    /// its own `rows * (end - begin)` floats of `scratch`, in order.
    ///
    /// # Panics
    ///
    /// If `scratch` holds fewer than `rows * n` floats (a planning bug).
    pub fn columns(
        &self,
        n: usize,
        rows: usize,
        scratch: &mut [f32],
        f: &(dyn Fn(&mut ColPart<'_>) + Sync),
    ) {
        let mut items: [Option<ColPart<'_>>; MAX_CHUNKS] = [const { None }; MAX_CHUNKS];
        let mut rest = &mut scratch[..rows * n];
        let mut count = 0;
        for ((begin, end), item) in self.column_parts(n).zip(items.iter_mut()) {
            *item = Some(ColPart {
                begin,
                end,
                out: take_rows(&mut rest, rows * (end - begin)),
            });
            count += 1;
        }
        self.for_each(&mut items[..count], &|p| {
            if let Some(p) = p.as_mut().filter(|p| p.end > p.begin) {
                f(p);
            }
        });
    }

    /// An attention phase over `batch * seq` query rows: `f` on each chunk.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        ctx: &mut [f32],
        scores: &mut [f32],
        mask: &mut [f32],
        (scores_chunk, mask_chunk): (usize, usize),
        batch: usize,
        seq: usize,
        a: usize,
        f: &(dyn Fn(&mut AttnChunk<'_>) + Sync),
    ) {
        let t = batch * seq;
        let n = self.chunks().min(t).max(1);
        let mut items: [Option<AttnChunk<'_>>; MAX_CHUNKS] = [const { None }; MAX_CHUNKS];
        let (mut ctx, mut scores, mut mask) = (&mut ctx[..t * a], scores, mask);
        let mut begin = 0;
        for (c, item) in items.iter_mut().enumerate().take(n) {
            let end = if c + 1 == n {
                t
            } else {
                attn_boundary((c + 1) * t / n, seq)
            };
            let (cc, rest) = core::mem::take(&mut ctx).split_at_mut((end - begin) * a);
            ctx = rest;
            let (sc, rest) = core::mem::take(&mut scores).split_at_mut(scores_chunk);
            scores = rest;
            let (mk, rest) = core::mem::take(&mut mask).split_at_mut(mask_chunk);
            mask = rest;
            *item = Some(AttnChunk {
                begin,
                end,
                ctx: cc,
                scores: sc,
                mask: &mut mk[..seq],
            });
            begin = end;
        }
        if n == 1 {
            if let Some(c) = items[0].as_mut() {
                f(c);
            }
            return;
        }
        self.for_each(&mut items[..n], &|c| {
            if let Some(c) = c.as_mut().filter(|c| c.end > c.begin) {
                f(c);
            }
        });
    }
}

/// `b` moved down to a multiple of [`ATTN_ROWS`] within its sequence
/// (non-decreasing in `b`, so boundaries stay ordered).
fn attn_boundary(b: usize, seq: usize) -> usize {
    let (bi, q) = (b / seq, b % seq);
    bi * seq + (q - q % ATTN_ROWS)
}

/// Splits the first `t` rows of every row-indexed region into `n` chunks of
/// `t / n` or `t / n + 1` rows.
fn split_rows<'r>(
    r: &'r mut Regions<'_>,
    t: usize,
    n: usize,
    d: Dims,
) -> [Option<RowChunk<'r>>; MAX_CHUNKS] {
    let mut items: [Option<RowChunk<'r>>; MAX_CHUNKS] = [const { None }; MAX_CHUNKS];
    let mut h = &mut r.h[..t * d.h];
    let mut qkv = &mut r.qkv[..t * 3 * d.a];
    let mut ctx = &mut r.ctx[..t * d.a];
    let mut ffn = &mut r.ffn[..t * d.i];
    let mut emb = &mut r.emb[..t * d.e];
    let mut out = &mut r.out[d.out_at..d.out_at + t * d.o];
    let mut qs = r.qs.reborrow();
    let mut begin = 0;
    for (c, item) in items.iter_mut().enumerate().take(n.min(MAX_CHUNKS)) {
        let end = (c + 1) * t / n;
        let rows = end - begin;
        *item = Some(RowChunk {
            begin,
            end,
            h: take_rows(&mut h, rows * d.h),
            qkv: take_rows(&mut qkv, rows * 3 * d.a),
            ctx: take_rows(&mut ctx, rows * d.a),
            ffn: take_rows(&mut ffn, rows * d.i),
            emb: take_rows(&mut emb, rows * d.e),
            out: take_rows(&mut out, rows * d.o),
            qs: qs.take_front(rows, d.h),
        });
        begin = end;
    }
    items
}

/// `n` outputs split into at most `parts` ranges of whole [`Q8_N_BLOCK`]-column
/// blocks (the last one may end in a partial block), as even as blocks allow:
/// `(begin, end)` for each, none empty unless `n` is 0.
fn column_parts(n: usize, parts: usize) -> impl Iterator<Item = (usize, usize)> {
    let blocks = n.div_ceil(Q8_N_BLOCK);
    let parts = parts.min(blocks).clamp(1, MAX_CHUNKS);
    (0..parts).map(move |p| {
        let at = |p: usize| (p * blocks / parts * Q8_N_BLOCK).min(n);
        (at(p), at(p + 1))
    })
}

/// `rows` rows split into at most `parts` ranges of `rows / parts` or
/// `rows / parts + 1` rows: `(begin, end)` for each.
pub(super) fn row_ranges(rows: usize, parts: usize) -> impl Iterator<Item = (usize, usize)> {
    let parts = parts.clamp(1, MAX_CHUNKS).min(rows.max(1));
    (0..parts).map(move |p| (p * rows / parts, (p + 1) * rows / parts))
}

/// Splits the first `len` values off `*s`.
pub(super) fn take_rows<'r, T>(s: &mut &'r mut [T], len: usize) -> &'r mut [T] {
    let (head, tail) = core::mem::take(s).split_at_mut(len);
    *s = tail;
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_parts_tile_the_outputs_in_whole_blocks() {
        let sizes = [0, 1, 2, 15, 16, 17, 31, 32, 33, 48, 64, 100, 129, 200, 1100];
        for n in sizes {
            for parts in [0, 1, 2, 3, 4, 7, 8, 9, 16, MAX_CHUNKS, MAX_CHUNKS + 1] {
                let v: Vec<_> = column_parts(n, parts).collect();
                assert!(
                    !v.is_empty() && v.len() <= parts.max(1),
                    "n {n} parts {parts}"
                );
                assert_eq!(v[0].0, 0);
                assert_eq!(v.last().unwrap().1, n);
                for w in v.windows(2) {
                    assert_eq!(w[0].1, w[1].0);
                }
                for &(b, e) in &v {
                    assert_eq!(b % Q8_N_BLOCK, 0, "n {n} parts {parts}: {v:?}");
                    assert!(b < e || n == 0, "n {n} parts {parts}: {v:?}");
                }
                let blocks = n.div_ceil(Q8_N_BLOCK);
                let widest = v.iter().map(|(b, e)| e - b).max().unwrap();
                let fewest = parts.clamp(1, MAX_CHUNKS).min(blocks.max(1));
                assert!(widest <= blocks.div_ceil(fewest) * Q8_N_BLOCK);
            }
        }
    }

    #[test]
    fn row_ranges_tile_the_rows_evenly() {
        for rows in [0, 1, 2, 3, 7, 8, 9, 33, 64, 65, 100] {
            for parts in [0, 1, 2, 3, 4, 7, 8, 9, 16, MAX_CHUNKS, MAX_CHUNKS + 1] {
                let v: Vec<_> = row_ranges(rows, parts).collect();
                assert_eq!(v[0].0, 0);
                assert_eq!(v.last().unwrap().1, rows);
                for w in v.windows(2) {
                    assert_eq!(w[0].1, w[1].0);
                }
                let sizes: Vec<_> = v.iter().map(|(b, e)| e - b).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "rows {rows} parts {parts}: {v:?}");
            }
        }
    }
}
