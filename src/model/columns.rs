//! Linear layers split by output columns, for multi-threaded runs of few
//! rows ([`super::chunks::Exec::split_columns`]).
//!
//! A row split gives every thread a share of the token rows and the *whole*
//! weight matrix, so a run on `c` row chunks reads every weight `c` times;
//! where the weights do not fit in a cache the threads share (a Raspberry Pi
//! has 1 MiB of L2 and no L3), that multiplies the memory traffic. Here each
//! thread computes every row for its own range of outputs and so reads only
//! its part of the matrix. One linear layer is two phases:
//!
//! 1. [`gemm`]: each column part ([`Exec::columns`]) computes `y = x W^T + b`
//!    (or `act(y)`) for all rows of its outputs into its own stretch of the
//!    `cols` scratch, from activations quantized beforehand;
//! 2. [`post`]: rows split between the threads, each row's parts are copied
//!    into place (or added, for a residual: the [`Epilogue::Accumulate`]
//!    kernels compute `out + y` with the same `y`), then the row-local steps
//!    that follow run on it: LayerNorm, and quantizing the row for the next
//!    linear layer.
//!
//! Every value is computed by the same kernel arithmetic from the same inputs
//! as in [`Model::linear`] and the row-split pass, so the results are
//! bit-identical (the kernels compute each output independently of the others
//! in the call; `tests/threads.rs`).

use super::chunks::{row_ranges, take_rows, Exec};
use super::{Matrix, Model};
use crate::format::{TensorEntry, Q8_K_GROUP, Q8_N_BLOCK};
use crate::kernels::{Epilogue, QMatrix};
use crate::workspace::{QScratch, MAX_CHUNKS};

/// Quantizes `rows` rows of `x` for the int8 matrix `w` (nothing for an f32
/// one), rows split between the threads.
pub(super) fn quantize(
    m: &Model<'_>,
    exec: Exec<'_>,
    x: &[f32],
    ldx: usize,
    rows: usize,
    w: &TensorEntry,
    qs: &mut QScratch<'_>,
) {
    let Matrix::Q8(q, two) = m.matrix(w) else {
        return;
    };
    let mut items: [Option<(usize, QScratch<'_>)>; MAX_CHUNKS] = [const { None }; MAX_CHUNKS];
    for (range, item) in split_q(qs, rows, exec.threads()).zip(items.iter_mut()) {
        *item = Some(range);
    }
    exec.for_each(&mut items, &|item| {
        if let Some((begin, p)) = item.as_mut().filter(|(_, p)| !p.scales.is_empty()) {
            let count = p.scales.len();
            m.quantize(&x[*begin * ldx..], ldx, count, &q, two, p);
        }
    });
}

/// The first `rows` rows of `qs` in up to `parts` ranges: `(first row, rows)`.
fn split_q<'q>(
    qs: &'q mut QScratch<'_>,
    rows: usize,
    parts: usize,
) -> impl Iterator<Item = (usize, QScratch<'q>)> {
    // The column split keeps a two-part result in its `cols` scratch, not `fine`.
    let mut qs = qs.reborrow();
    row_ranges(rows, parts).map(move |(begin, end)| (begin, qs.take_front(end - begin, 0)))
}

/// Phase 1: `ep(x W^T + b)` for `rows` rows into `scratch`, laid out part by
/// part (`[rows][part width]` each, [`Exec::column_parts`] order). An int8
/// `W` reads the rows [`quantize`]d into `qs`, an f32 one reads `x`. `ep` is
/// [`Epilogue::Store`] or an activation. Returns the number of outputs.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
    m: &Model<'_>,
    exec: Exec<'_>,
    x: &[f32],
    ldx: usize,
    rows: usize,
    w: (&TensorEntry, &TensorEntry),
    qs: &QScratch<'_>,
    ep: Epilogue,
    scratch: &mut [f32],
) -> usize {
    debug_assert!(ep != Epilogue::Accumulate);
    let bias = m.f32s(w.1);
    let matrix = m.matrix(w.0);
    let n = w.0.rows as usize;
    if rows == 0 || n == 0 {
        return n;
    }
    exec.columns(n, rows, scratch, &|p| {
        let (begin, end) = (p.begin, p.end);
        let width = end - begin;
        let bias = &bias[begin..end];
        match &matrix {
            Matrix::F32 { w, k, .. } => {
                let w = &w[begin * k..end * k];
                (m.kernels.gemm_f32)(x, ldx, rows, w, width, *k, bias, p.out, width, ep)
            }
            Matrix::Q8(q, two) => {
                let block = q.k_groups * Q8_K_GROUP * Q8_N_BLOCK;
                let part = QMatrix {
                    n: width,
                    packed: &q.packed[begin / Q8_N_BLOCK * block..],
                    scales: &q.scales[begin..],
                    row_sums: &q.row_sums[begin..],
                    ..*q
                };
                m.gemm_q8(qs, &mut [], rows, &part, *two, bias, p.out, width, ep)
            }
        }
    });
    n
}

/// What [`post`] does to each row after placing it.
pub(super) struct Post<'a> {
    /// Add the parts to the row (a residual) instead of copying them.
    pub accumulate: bool,
    /// LayerNorm `(gamma, beta)` over the row's `n` values.
    pub layer_norm: Option<(&'a [f32], &'a [f32])>,
    /// Quantize the rows into `qs` for this matrix (when it is int8).
    pub quantize_for: Option<&'a TensorEntry>,
}

/// Phase 2: places the `n` outputs of `rows` rows from `scratch` (as
/// [`gemm`] left them) into `out` (row stride `ldo`), then applies `post`,
/// rows split between the threads.
#[allow(clippy::too_many_arguments)]
pub(super) fn post(
    m: &Model<'_>,
    exec: Exec<'_>,
    rows: usize,
    n: usize,
    scratch: &[f32],
    out: &mut [f32],
    ldo: usize,
    post: &Post<'_>,
    qs: &mut QScratch<'_>,
) {
    let eps = m.config().layer_norm_eps;
    let q8 = post.quantize_for.and_then(|w| match m.matrix(w) {
        Matrix::Q8(q, two) => Some((q, two)),
        Matrix::F32 { .. } => None,
    });
    let parts = exec.threads();
    let mut items: [Option<(usize, &mut [f32], QScratch<'_>)>; MAX_CHUNKS] =
        [const { None }; MAX_CHUNKS];
    let mut rest = out;
    let ranges = row_ranges(rows, parts).zip(split_q(qs, rows, parts));
    for (((begin, end), (_, q)), item) in ranges.zip(items.iter_mut()) {
        let len = ((end - begin) * ldo).min(rest.len());
        *item = Some((begin, take_rows(&mut rest, len), q));
    }
    exec.for_each(&mut items, &|item| {
        let Some((first, out, q)) = item.as_mut().filter(|(_, o, _)| !o.is_empty()) else {
            return;
        };
        let mut from = 0;
        for (begin, end) in exec.column_parts(n) {
            let width = end - begin;
            for (i, dst) in out.chunks_mut(ldo).enumerate() {
                let src = &scratch[from + (*first + i) * width..][..width];
                let dst = &mut dst[begin..end];
                if post.accumulate {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d += *s;
                    }
                } else {
                    dst.copy_from_slice(src);
                }
            }
            from += rows * width;
        }
        if let Some((gamma, beta)) = post.layer_norm {
            for row in out.chunks_mut(ldo) {
                (m.kernels.layer_norm)(&mut row[..n], gamma, beta, eps);
            }
        }
        if let Some((w, two)) = &q8 {
            let count = q.scales.len();
            m.quantize(out, ldo, count, w, *two, q);
        }
    });
}
