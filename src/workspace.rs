//! Caller-owned scratch memory for [`crate::Model::run`].
//!
//! A [`Workspace`] is a byte buffer: borrowed from the caller (a `static` array
//! on firmware, any `&mut [u8]`) or, with the `std` feature, allocated once by
//! [`Workspace::new`]. `run` carves it into the regions of a [`Plan`] and never
//! allocates. `Model::workspace_len(max_seq, batch)` gives the exact size needed
//! for inputs up to that shape (64 bytes of it are slack for aligning an
//! arbitrary buffer).
//!
//! A multi-threaded run (`Model::run_with`) splits the work into row chunks.
//! Every region is either partitioned by token rows (hidden states, q|k|v,
//! context, FFN activations, embeddings, the quantized activations with their
//! scales and zero points, all `[T][..]`) or read-only while it is shared (q|k|v
//! during attention); only the attention scratch (scores and the mask bias) is
//! per chunk, so a plan for `c` chunks holds `c` copies of it
//! ([`Plan::with_threads`], [`chunks_for_threads`],
//! `Model::workspace_len_threads`).
//!
//! A multi-threaded run of at most [`COLUMN_SPLIT_ROWS`] token rows splits its
//! linear layers by output columns instead (every thread reads only its share
//! of each weight matrix): each part writes `[rows][its columns]` into its own
//! stretch of the `cols` region, which is then copied into place.

use crate::cast;
use crate::format::{HeadKind, ModelConfig, ALIGN};

/// Rows the attention kernel may score at once (scratch is `ATTN_ROWS * seq` floats).
pub const ATTN_ROWS: usize = 8;

/// Most chunks one phase of a run is split into (the per-chunk attention
/// scratch is planned for at most this many).
pub const MAX_CHUNKS: usize = 64;

/// Most token rows (`batch * seq`) for which a multi-threaded run splits its
/// linear layers by output columns rather than by rows: with few rows, a row
/// split has every thread stream every weight matrix for a handful of rows
/// each, while a column split has each thread read its own part of the
/// weights once.
pub const COLUMN_SPLIT_ROWS: usize = 128;

/// Chunks per thread in a multi-threaded run. Threads take the next unclaimed
/// chunk, so with several chunks each a thread that the operating system
/// pauses (a busy machine) holds up at most one small chunk while the others
/// take over the rest.
pub const CHUNKS_PER_THREAD: usize = 4;

/// Chunks (and attention scratch copies) for a run on `threads` threads:
/// 1 for one thread, else `threads * CHUNKS_PER_THREAD` up to [`MAX_CHUNKS`].
pub fn chunks_for_threads(threads: usize) -> usize {
    if threads <= 1 {
        1
    } else {
        threads.saturating_mul(CHUNKS_PER_THREAD).min(MAX_CHUNKS)
    }
}

/// Caller-owned scratch memory. One per concurrent inference; reusable across
/// runs and across models (each run checks the size it needs).
pub struct Workspace<'a> {
    buf: Buf<'a>,
}

enum Buf<'a> {
    Borrowed(&'a mut [u8]),
    #[cfg(feature = "std")]
    Owned(std::vec::Vec<Block>),
}

/// 64 aligned bytes: the unit of owned workspaces.
#[cfg(feature = "std")]
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; 64]);

impl<'a> Workspace<'a> {
    /// Uses `buf` as the workspace. Any alignment and length are accepted; `run`
    /// returns [`crate::RunError::WorkspaceTooSmall`] if it is not enough.
    pub fn from_bytes(buf: &'a mut [u8]) -> Workspace<'a> {
        Workspace {
            buf: Buf::Borrowed(buf),
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        match &self.buf {
            Buf::Borrowed(b) => b.len(),
            #[cfg(feature = "std")]
            Buf::Owned(v) => v.len() * 64,
        }
    }

    /// Whether the workspace has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The usable 64-byte aligned region as floats.
    pub(crate) fn floats(&mut self) -> &mut [f32] {
        match &mut self.buf {
            Buf::Borrowed(b) => cast::aligned_f32s_mut(b),
            #[cfg(feature = "std")]
            Buf::Owned(v) => {
                // SAFETY: `Block` is 64 plain bytes with no padding, so the vector's
                // storage is `v.len() * 64` initialized bytes; the byte slice
                // reborrows `v` mutably for the returned lifetime.
                let bytes = unsafe {
                    core::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 64)
                };
                cast::aligned_f32s_mut(bytes)
            }
        }
    }
}

#[cfg(feature = "std")]
impl Workspace<'static> {
    /// Allocates a zeroed, 64-byte aligned workspace of at least `len` bytes.
    pub fn new(len: usize) -> Workspace<'static> {
        Workspace {
            buf: Buf::Owned(std::vec![Block([0; 64]); len.div_ceil(64)]),
        }
    }
}

/// Region sizes (in `f32` units, each a multiple of 16) for one input shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Hidden states `[T][H]`.
    pub h: usize,
    /// Fused q|k|v `[T][3A]`.
    pub qkv: usize,
    /// Attention context `[T][A]`.
    pub ctx: usize,
    /// FFN activations `[T][I]`.
    pub ffn: usize,
    /// Embeddings / MLM transform `[T][E]`.
    pub emb: usize,
    /// Attention scores, `chunks` slices of `scores_chunk`.
    pub scores: usize,
    /// Mask bias, `chunks` slices of `mask_chunk` (`[S]` each).
    pub mask: usize,
    /// Attention scratch copies (1 for a single-threaded run).
    pub chunks: usize,
    /// Scores per chunk (`ATTN_ROWS * S`, rounded up to 16).
    pub scores_chunk: usize,
    /// Mask bias per chunk (`S`, rounded up to 16).
    pub mask_chunk: usize,
    /// Quantized activations `[T][ldq]` bytes (stored in floats).
    pub xq: usize,
    /// Activation scales `[T]`.
    pub xscales: usize,
    /// Activation zero points `[T]` (i32 stored in floats).
    pub xzps: usize,
    /// Head outputs.
    pub out: usize,
    /// Column-split scratch, `[min(T, COLUMN_SPLIT_ROWS)][max(3A, I, H)]`
    /// (multi-threaded plans only).
    pub cols: usize,
    /// Second parts of two-part quantized activations ([`crate::format::DType::Q8R`]
    /// matrices; this and the next four are 0 for a model without them):
    /// `[T][ldq]` bytes.
    pub xq2: usize,
    /// Their scales `[T]`.
    pub xscales2: usize,
    /// Their zero points `[T]`.
    pub xzps2: usize,
    /// The two parts' sum before a residual add, `[T][H]`.
    pub fine: usize,
    /// Zeros, the bias of the second part's GEMM (`[N]`, the most outputs of
    /// a `Q8R` matrix).
    pub zeros: usize,
    /// Row stride of the quantized activations, in bytes.
    pub ldq: usize,
}

fn r16(n: usize) -> Option<usize> {
    n.checked_add(15).map(|v| v & !15)
}

impl Plan {
    /// The plan for `batch` sequences of `seq` tokens, or `None` on overflow.
    pub fn new(cfg: &ModelConfig, batch: usize, seq: usize) -> Option<Plan> {
        Plan::with_threads(cfg, batch, seq, 1, 0)
    }

    /// The plan for a run split over `threads` threads: attention scratch for
    /// [`chunks_for_threads`]`(threads)` chunks, everything else as [`Plan::new`];
    /// `fine` is the most outputs of a [`crate::format::DType::Q8R`] matrix
    /// of the model (0 if it has none), which adds the regions they need.
    pub fn with_threads(
        cfg: &ModelConfig,
        batch: usize,
        seq: usize,
        threads: usize,
        fine: usize,
    ) -> Option<Plan> {
        let chunks = chunks_for_threads(threads);
        let scores_chunk = r16(seq.checked_mul(ATTN_ROWS)?)?;
        let mask_chunk = r16(seq)?;
        let t = batch.checked_mul(seq)?;
        let (e, h, a, i) = (
            cfg.embedding_size as usize,
            cfg.hidden_size as usize,
            cfg.attention_dim(),
            cfg.intermediate_size as usize,
        );
        let kmax = e.max(h).max(a).max(i);
        let ldq = kmax.checked_add(ALIGN - 1)? & !(ALIGN - 1);
        let l = cfg.num_labels as usize;
        let out = match cfg.head {
            HeadKind::Base => 0,
            HeadKind::SequenceClassification => r16(batch.checked_mul(l)?)?,
            HeadKind::TokenClassification => r16(t.checked_mul(l)?)?,
            HeadKind::QuestionAnswering => r16(t.checked_mul(2)?)?.checked_add(2 * r16(t)?)?,
            HeadKind::MaskedLm => r16(t.checked_mul(cfg.vocab_size as usize)?)?,
        };
        let pooled = if cfg.has_pooler {
            r16(batch.checked_mul(h)?)?
        } else {
            0
        };
        let cols = if threads > 1 {
            r16(t
                .min(COLUMN_SPLIT_ROWS)
                .checked_mul(a.checked_mul(3)?.max(i).max(h))?)?
        } else {
            0
        };
        Some(Plan {
            h: r16(t.checked_mul(h)?)?,
            qkv: r16(t.checked_mul(3 * a)?)?,
            ctx: r16(t.checked_mul(a)?)?,
            ffn: r16(t.checked_mul(i)?)?,
            emb: r16(t.checked_mul(e)?)?,
            scores: scores_chunk.checked_mul(chunks)?,
            mask: mask_chunk.checked_mul(chunks)?,
            chunks,
            scores_chunk,
            mask_chunk,
            xq: t.checked_mul(ldq)? / 4,
            xscales: r16(t)?,
            xzps: r16(t)?,
            out: out.checked_add(pooled)?,
            cols,
            xq2: if fine > 0 { t.checked_mul(ldq)? / 4 } else { 0 },
            xscales2: if fine > 0 { r16(t)? } else { 0 },
            xzps2: if fine > 0 { r16(t)? } else { 0 },
            fine: if fine > 0 { r16(t.checked_mul(h)?)? } else { 0 },
            zeros: r16(fine)?,
            ldq,
        })
    }

    /// Total floats.
    pub fn floats(&self) -> Option<usize> {
        [
            self.h,
            self.qkv,
            self.ctx,
            self.ffn,
            self.emb,
            self.scores,
            self.mask,
            self.xq,
            self.xscales,
            self.xzps,
            self.out,
            self.cols,
            self.xq2,
            self.xscales2,
            self.xzps2,
            self.fine,
            self.zeros,
        ]
        .iter()
        .try_fold(0usize, |acc, &v| acc.checked_add(v))
    }

    /// Workspace bytes needed, including slack to align any buffer.
    pub fn bytes(&self) -> Option<usize> {
        self.floats()?.checked_mul(4)?.checked_add(ALIGN)
    }
}

/// The regions of one run, split out of the workspace.
pub(crate) struct Regions<'w> {
    pub h: &'w mut [f32],
    pub qkv: &'w mut [f32],
    pub ctx: &'w mut [f32],
    pub ffn: &'w mut [f32],
    pub emb: &'w mut [f32],
    pub scores: &'w mut [f32],
    pub mask: &'w mut [f32],
    pub qs: QScratch<'w>,
    pub out: &'w mut [f32],
    pub cols: &'w mut [f32],
}

/// Scratch for quantized activations: `[T][ld]` values, one scale and zero point per row.
pub(crate) struct QScratch<'w> {
    pub q: &'w mut [i8],
    pub ld: usize,
    pub scales: &'w mut [f32],
    pub zps: &'w mut [i32],
    /// The second parts for a [`crate::format::DType::Q8R`] matrix, as `q`,
    /// `scales`, `zps` (empty for a model without such matrices).
    pub q2: &'w mut [i8],
    pub scales2: &'w mut [f32],
    pub zps2: &'w mut [i32],
    /// `[T][H]`: a `Q8R` result before its residual add.
    pub fine: &'w mut [f32],
    /// Zeros, shared by every chunk.
    pub zeros: &'w [f32],
}

impl<'w> QScratch<'w> {
    /// The same scratch, borrowed for a shorter time.
    pub fn reborrow(&mut self) -> QScratch<'_> {
        QScratch {
            q: &mut *self.q,
            ld: self.ld,
            scales: &mut *self.scales,
            zps: &mut *self.zps,
            q2: &mut *self.q2,
            scales2: &mut *self.scales2,
            zps2: &mut *self.zps2,
            fine: &mut *self.fine,
            zeros: self.zeros,
        }
    }

    /// Splits the next `rows` rows off the front of every per-row part (`n`
    /// values per row of `fine`).
    pub fn take_front(&mut self, rows: usize, h: usize) -> QScratch<'w> {
        fn take<'a, T>(s: &mut &'a mut [T], n: usize) -> &'a mut [T] {
            let all = core::mem::take(s);
            let (head, tail) = all.split_at_mut(n.min(all.len()));
            *s = tail;
            head
        }
        let ld = self.ld;
        let second = !self.scales2.is_empty();
        QScratch {
            q: take(&mut self.q, rows * ld),
            ld,
            scales: take(&mut self.scales, rows),
            zps: take(&mut self.zps, rows),
            q2: take(&mut self.q2, if second { rows * ld } else { 0 }),
            scales2: take(&mut self.scales2, if second { rows } else { 0 }),
            zps2: take(&mut self.zps2, if second { rows } else { 0 }),
            fine: take(&mut self.fine, if second { rows * h } else { 0 }),
            zeros: self.zeros,
        }
    }
}

impl<'w> Regions<'w> {
    /// Splits `floats` according to `plan`; `None` if it is too small.
    pub fn split(floats: &'w mut [f32], plan: &Plan) -> Option<Regions<'w>> {
        if floats.len() < plan.floats()? {
            return None;
        }
        let (h, rest) = floats.split_at_mut(plan.h);
        let (qkv, rest) = rest.split_at_mut(plan.qkv);
        let (ctx, rest) = rest.split_at_mut(plan.ctx);
        let (ffn, rest) = rest.split_at_mut(plan.ffn);
        let (emb, rest) = rest.split_at_mut(plan.emb);
        let (scores, rest) = rest.split_at_mut(plan.scores);
        let (mask, rest) = rest.split_at_mut(plan.mask);
        let (xq, rest) = rest.split_at_mut(plan.xq);
        let (xscales, rest) = rest.split_at_mut(plan.xscales);
        let (xzps, rest) = rest.split_at_mut(plan.xzps);
        let (out, rest) = rest.split_at_mut(plan.out);
        let (cols, rest) = rest.split_at_mut(plan.cols);
        let (xq2, rest) = rest.split_at_mut(plan.xq2);
        let (xscales2, rest) = rest.split_at_mut(plan.xscales2);
        let (xzps2, rest) = rest.split_at_mut(plan.xzps2);
        let (fine, rest) = rest.split_at_mut(plan.fine);
        let (zeros, _) = rest.split_at_mut(plan.zeros);
        zeros.fill(0.0);
        let qs = QScratch {
            q: cast::f32s_as_i8s_mut(xq),
            ld: plan.ldq,
            scales: xscales,
            zps: cast::f32s_as_i32s_mut(xzps),
            q2: cast::f32s_as_i8s_mut(xq2),
            scales2: xscales2,
            zps2: cast::f32s_as_i32s_mut(xzps2),
            fine,
            zeros,
        };
        Some(Regions {
            h,
            qkv,
            ctx,
            ffn,
            emb,
            scores,
            mask,
            qs,
            out,
            cols,
        })
    }
}
