//! [`Model`]: a validated model file plus its kernel table, and [`Model::run`].
//!
//! The forward pass mirrors transformers' `modeling_albert.py` (v5.24.0; the
//! same computation as `docs/FORMAT.md` describes): embeddings, the factorized
//! projection E -> H, the shared layer(s) applied `num_layers` times with
//! transformers' group schedule, then the pooler and the task head. Each part
//! lives in its own file, named after the Hugging Face module it reproduces.

mod chunks;
mod columns;
mod embeddings;
mod encoder;
mod heads;
mod output;

pub use output::{Output, Outputs};

use crate::cast;
use crate::format::{self, DType, LoadError, ModelConfig, ParsedFile, Role, RoleKind, TensorEntry};
use crate::kernels::{Epilogue, Kernels, QMatrix};
use crate::workspace::{Plan, QScratch, Regions, Workspace};
use core::fmt;

/// Why a run failed. Every variant is a cheap check on the caller's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// `batch` or `seq` is zero.
    EmptyInput,
    /// A slice's length is not `batch * seq`.
    ShapeMismatch {
        /// Which input.
        input: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// A token id is not below the vocabulary size.
    TokenOutOfRange {
        /// Flat position in `input_ids`.
        position: usize,
        /// The id.
        id: u32,
        /// Vocabulary size.
        vocab_size: u32,
    },
    /// A token type id is not below the token-type table size.
    TokenTypeOutOfRange {
        /// Flat position in `token_type_ids`.
        position: usize,
        /// The id.
        id: u32,
        /// Token-type table size.
        type_vocab_size: u32,
    },
    /// `seq` exceeds the model's position table.
    SequenceTooLong {
        /// Requested length.
        seq: usize,
        /// Longest supported.
        max: usize,
    },
    /// The workspace is smaller than this input needs.
    WorkspaceTooSmall {
        /// Bytes needed (`Model::workspace_len(seq, batch)`).
        needed: usize,
        /// Bytes given.
        got: usize,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyInput => write!(f, "empty input: batch and sequence length must be at least 1"),
            Self::ShapeMismatch { input, expected, got } => write!(f, "{input} has {got} values, expected batch * seq = {expected}"),
            Self::TokenOutOfRange { position, id, vocab_size } => write!(f, "token id {id} at position {position} is out of range (vocabulary size {vocab_size})"),
            Self::TokenTypeOutOfRange { position, id, type_vocab_size } => {
                write!(f, "token type id {id} at position {position} is out of range (type vocabulary size {type_vocab_size})")
            }
            Self::SequenceTooLong { seq, max } => write!(f, "sequence length {seq} exceeds the model's maximum of {max}"),
            Self::WorkspaceTooSmall { needed, got } => write!(f, "workspace too small: this input needs {needed} bytes, the workspace has {got}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RunError {}

/// One batch of token ids. `attention_mask` (non-zero = attend) defaults to all
/// ones and `token_type_ids` to all zeros, like transformers.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Sequences in the batch.
    pub batch: usize,
    /// Tokens per sequence (padded).
    pub seq: usize,
    /// `[batch][seq]` token ids.
    pub input_ids: &'a [u32],
    /// `[batch][seq]` mask, or `None` for all ones.
    pub attention_mask: Option<&'a [u32]>,
    /// `[batch][seq]` token types, or `None` for all zeros.
    pub token_type_ids: Option<&'a [u32]>,
}

impl<'a> Input<'a> {
    /// One unpadded sequence.
    pub fn single(ids: &'a [u32]) -> Self {
        Input {
            batch: 1,
            seq: ids.len(),
            input_ids: ids,
            attention_mask: None,
            token_type_ids: None,
        }
    }
}

/// Intermediate tensors reported to [`Model::run_traced`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    /// Embeddings after their LayerNorm, `[T][E]`.
    Embeddings,
    /// `hidden_states.<i>` of transformers 5: 0 is the projection's output, then one
    /// entry per layer call, `[T][H]`.
    HiddenState(usize),
    /// The first layer call's attention block output (after `attention.LayerNorm`).
    FirstAttentionOutput,
    /// The first layer call's FFN activation output `[T][I]`.
    FirstFfnActivation,
    /// The input of a linear layer, just before it is (quantized and) multiplied:
    /// `rows` rows of `cols` values with row stride `ld`.
    LinearInput {
        /// The weight's role.
        role: format::Role,
        /// Rows.
        rows: usize,
        /// Values per row.
        cols: usize,
        /// Row stride.
        ld: usize,
    },
}

/// Where the model's bytes live.
enum Bytes<'a> {
    Borrowed(&'a [u8]),
    #[cfg(feature = "std")]
    Mapped(memmap2::Mmap),
    #[cfg(feature = "std")]
    Owned(std::vec::Vec<AlignedBlock>),
}

#[cfg(feature = "std")]
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct AlignedBlock([u8; 64]);

/// A weight matrix view.
#[derive(Clone, Copy)]
pub(crate) enum Matrix<'a> {
    F32 {
        w: &'a [f32],
        n: usize,
        k: usize,
    },
    /// An int8 matrix; `true` for two-part activations ([`DType::Q8R`]).
    Q8(QMatrix<'a>, bool),
}

/// The global (non-layer) tensors, located once at load.
#[derive(Clone)]
struct Globals {
    word: TensorEntry,
    pos: TensorEntry,
    ty: TensorEntry,
    emb_ln: (TensorEntry, TensorEntry),
    map_in: (TensorEntry, TensorEntry),
    pooler: Option<(TensorEntry, TensorEntry)>,
    classifier: Option<(TensorEntry, TensorEntry)>,
    mlm: Option<MlmEntries>,
}

#[derive(Clone)]
struct MlmEntries {
    dense: (TensorEntry, TensorEntry),
    ln: (TensorEntry, TensorEntry),
    bias: TensorEntry,
    decoder: TensorEntry,
}

/// A loaded model: validated bytes (borrowed, mapped or owned) and a kernel
/// table. Immutable and `Sync`: share one `Model` between threads, with one
/// [`Workspace`] per concurrent run.
pub struct Model<'a> {
    bytes: Bytes<'a>,
    file: ParsedFile,
    globals: Globals,
    kernels: Kernels,
    /// Most outputs of a [`DType::Q8R`] matrix (0: none), for the workspace plan.
    fine: usize,
    /// Views into `bytes` (see the SAFETY note in `from_storage`).
    tokenizer: Option<crate::tokenizer::Tokenizer<'static>>,
}

impl fmt::Debug for Model<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.file.config)
            .field("kernels", &self.kernels)
            .finish()
    }
}

impl<'a> Model<'a> {
    /// Validates `bytes` (see [`format::parse`]) and views them without copying.
    /// The buffer must start 64-byte aligned (an mmap, or a `static` wrapped in
    /// `#[repr(align(64))]`); otherwise [`LoadError::Misaligned`].
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Model<'a>, LoadError> {
        Self::from_storage(Bytes::Borrowed(bytes))
    }

    fn from_storage(bytes: Bytes<'a>) -> Result<Model<'a>, LoadError> {
        if cfg!(target_endian = "big") {
            return Err(LoadError::BigEndianHost);
        }
        let b = bytes_of(&bytes);
        let file = format::parse(b)?;
        let req = |k: RoleKind| {
            file.find(b, Role::global(k))
                .ok_or(LoadError::MissingTensor {
                    role: k.name(),
                    layer: 0,
                })
        };
        let opt = |k: RoleKind| file.find(b, Role::global(k));
        let pair = |w: RoleKind, bias: RoleKind| -> Result<(TensorEntry, TensorEntry), LoadError> {
            Ok((req(w)?, req(bias)?))
        };
        let cfg = file.config;
        let globals = Globals {
            word: req(RoleKind::WordEmbeddings)?,
            pos: req(RoleKind::PositionEmbeddings)?,
            ty: req(RoleKind::TokenTypeEmbeddings)?,
            emb_ln: pair(RoleKind::EmbeddingsLnGamma, RoleKind::EmbeddingsLnBeta)?,
            map_in: pair(RoleKind::MappingInWeight, RoleKind::MappingInBias)?,
            pooler: if cfg.has_pooler {
                Some(pair(RoleKind::PoolerWeight, RoleKind::PoolerBias)?)
            } else {
                None
            },
            classifier: opt(RoleKind::ClassifierWeight)
                .map(|w| {
                    pair(RoleKind::ClassifierWeight, RoleKind::ClassifierBias).map(|p| (w, p.1))
                })
                .transpose()?,
            mlm: if cfg.head == format::HeadKind::MaskedLm {
                Some(MlmEntries {
                    dense: pair(RoleKind::MlmDenseWeight, RoleKind::MlmDenseBias)?,
                    ln: pair(RoleKind::MlmLnGamma, RoleKind::MlmLnBeta)?,
                    bias: req(RoleKind::MlmBias)?,
                    decoder: opt(RoleKind::MlmDecoderWeight)
                        .unwrap_or(req(RoleKind::WordEmbeddings)?),
                })
            } else {
                None
            },
        };
        let tokenizer = match file.tokenizer.clone() {
            Some(r) => {
                // SAFETY: the view points into `bytes`, which is stored in the same
                // `Model` and never moves or changes while it lives (a borrowed
                // slice, an mmap, or a heap buffer that is never reallocated); the
                // tokenizer is only handed out re-borrowed for `&self`.
                let section = unsafe { cast::extend_lifetime(&b[r]) };
                let tok = crate::tokenizer::Tokenizer::from_section(section)
                    .map_err(LoadError::Tokenizer)?;
                if tok.vocab_size() != cfg.vocab_size as usize {
                    return Err(LoadError::BadSection {
                        section: "tokenizer",
                        reason: "vocabulary size differs from the config",
                    });
                }
                Some(tok)
            }
            None => None,
        };
        let fine = (0..file.tensor_count)
            .map(|i| file.tensor(b, i))
            .filter(|t| t.dtype == DType::Q8R)
            .map(|t| t.rows as usize)
            .max()
            .unwrap_or(0);
        Ok(Model {
            bytes,
            file,
            globals,
            kernels: Kernels::detect(),
            fine,
            tokenizer,
        })
    }

    /// The model configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.file.config
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        bytes_of(&self.bytes)
    }

    /// The kernel table in use.
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    /// Replaces the kernel table (e.g. to force a tier in tests and benches).
    pub fn set_kernels(&mut self, k: Kernels) {
        self.kernels = k;
    }

    /// Label names of the classification heads, in index order.
    pub fn labels(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.file.label_count).filter_map(move |i| self.file.label(self.bytes(), i))
    }

    /// Label `i`.
    pub fn label(&self, i: usize) -> Option<&str> {
        self.file.label(self.bytes(), i)
    }

    /// The tokenizer, when the file has one (validated once, at load).
    pub fn tokenizer(&self) -> Option<crate::tokenizer::Tokenizer<'_>> {
        self.tokenizer
    }

    /// The raw tokenizer section, when the file has one.
    pub fn tokenizer_section(&self) -> Option<&[u8]> {
        self.file.tokenizer.clone().map(|r| &self.bytes()[r])
    }

    /// Whether every int8 matrix of the file is pair-bounded
    /// ([`format::Q8_PAIR_BOUND`]; checked at load). True for f32 files.
    pub fn pairs_bounded(&self) -> bool {
        self.file.q8_pairs_bounded
    }

    /// Every tensor entry in the file (for `info` and tools).
    pub fn tensors(&self) -> impl Iterator<Item = TensorEntry> + '_ {
        (0..self.file.tensor_count).map(move |i| self.file.tensor(self.bytes(), i))
    }

    /// Number of weights (parameters) stored, counting each shared weight once.
    pub fn parameter_count(&self) -> u64 {
        self.tensors().map(|t| t.rows as u64 * t.cols as u64).sum()
    }

    /// Exact workspace bytes for up to `batch` sequences of up to `max_seq` tokens.
    /// Returns `usize::MAX` if the size overflows.
    pub fn workspace_len(&self, max_seq: usize, batch: usize) -> usize {
        self.workspace_len_threads(max_seq, batch, 1)
    }

    /// Exact workspace bytes for [`Model::run_with`] on a pool of `threads`
    /// threads: [`Model::workspace_len`] plus more copies of the attention
    /// scratch (`8 * max_seq` floats and `max_seq` for the mask, rounded up;
    /// one per chunk, see [`crate::workspace::chunks_for_threads`]) and the
    /// column-split scratch (`min(batch * max_seq, COLUMN_SPLIT_ROWS)` rows of
    /// the widest layer output). Equal to `workspace_len` for 0 or 1 thread.
    /// Returns `usize::MAX` if the size overflows.
    pub fn workspace_len_threads(&self, max_seq: usize, batch: usize, threads: usize) -> usize {
        Plan::with_threads(self.config(), batch, max_seq, threads, self.fine)
            .and_then(|p| p.bytes())
            .unwrap_or(usize::MAX)
    }

    /// Allocates a workspace for up to `batch` sequences of `max_seq` tokens.
    #[cfg(feature = "std")]
    pub fn new_workspace(&self, max_seq: usize, batch: usize) -> Workspace<'static> {
        Workspace::new(self.workspace_len(max_seq, batch))
    }

    /// Allocates a workspace for [`Model::run_with`] on a pool of `threads`
    /// threads (see [`Model::workspace_len_threads`]).
    #[cfg(feature = "std")]
    pub fn new_workspace_threads(
        &self,
        max_seq: usize,
        batch: usize,
        threads: usize,
    ) -> Workspace<'static> {
        Workspace::new(self.workspace_len_threads(max_seq, batch, threads))
    }

    fn f32s(&self, t: &TensorEntry) -> &[f32] {
        cast::f32s(&self.bytes()[t.range.clone()]).unwrap_or(&[])
    }

    fn matrix(&self, t: &TensorEntry) -> Matrix<'_> {
        let (n, k) = (t.rows as usize, t.cols as usize);
        match t.dtype {
            DType::F32 => Matrix::F32 {
                w: self.f32s(t),
                n,
                k,
            },
            DType::Q8 | DType::Q8R => {
                let lay = format::q8_layout(n, k)
                    .unwrap_or(format::q8_layout(0, 0).expect("empty layout"));
                let b = &self.bytes()[t.range.clone()];
                let q = QMatrix {
                    n,
                    k,
                    k_groups: lay.k_groups,
                    packed: cast::i8s(&b[..lay.packed_len]),
                    scales: cast::f32s(&b[lay.scales_offset..lay.row_sums_offset]).unwrap_or(&[]),
                    row_sums: cast::i32s(&b[lay.row_sums_offset..lay.smooth_offset]).unwrap_or(&[]),
                    smooth: cast::f32s(&b[lay.smooth_offset..lay.smooth_offset + 4 * k])
                        .unwrap_or(&[]),
                    pairs_bounded: self.file.q8_pairs_bounded,
                };
                Matrix::Q8(q, t.dtype == DType::Q8R)
            }
        }
    }

    fn layer_tensor(&self, kind: RoleKind, layer: u32) -> TensorEntry {
        // Presence was checked at load for every stored layer.
        self.file
            .find(self.bytes(), Role::layer(kind, layer))
            .expect("validated at load")
    }

    /// `out[i] = ep(x[i] W^T + b)` for `m` rows of `x` (row stride `ldx`),
    /// quantizing `x` per row first when `W` is int8.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        x: &[f32],
        ldx: usize,
        m: usize,
        w: (&TensorEntry, &TensorEntry),
        qs: &mut QScratch<'_>,
        out: &mut [f32],
        ldo: usize,
        ep: Epilogue,
        trace: &mut dyn FnMut(Trace, &[f32]),
    ) {
        trace(
            Trace::LinearInput {
                role: w.0.role,
                rows: m,
                cols: w.0.cols as usize,
                ld: ldx,
            },
            x,
        );
        let bias = self.f32s(w.1);
        match self.matrix(w.0) {
            Matrix::F32 { w, n, k } => {
                (self.kernels.gemm_f32)(x, ldx, m, w, n, k, bias, out, ldo, ep)
            }
            Matrix::Q8(q, two) => {
                self.quantize(x, ldx, m, &q, two, qs);
                // `fine` is lent out beside the read-only rest of `qs`.
                let fine = core::mem::take(&mut qs.fine);
                self.gemm_q8(qs, fine, m, &q, two, bias, out, ldo, ep);
                qs.fine = fine;
            }
        }
    }

    /// Quantizes `m` rows of `x` (row stride `ldx`) for the int8 matrix `q`
    /// into `qs`: one int8 part per row, and with `two` ([`DType::Q8R`]) the
    /// second part, the quantized residual of the first.
    pub(crate) fn quantize(
        &self,
        x: &[f32],
        ldx: usize,
        m: usize,
        q: &QMatrix<'_>,
        two: bool,
        qs: &mut QScratch<'_>,
    ) {
        (self.kernels.quantize_rows)(x, ldx, m, q.smooth, qs.q, qs.ld, qs.scales, qs.zps);
        if two {
            crate::kernels::scalar::quantize_residual_rows(
                x,
                ldx,
                m,
                q.smooth,
                (qs.q, qs.scales, qs.zps),
                qs.ld,
                qs.q2,
                qs.scales2,
                qs.zps2,
            );
        }
    }

    /// `out[i] = ep(y[i])` for the `m` rows quantized in `qs` ([`Model::quantize`])
    /// times `q` (possibly a range of its outputs, with `bias` to match). With
    /// `two`, `y = y1 + y2`: `y1` from the first parts with the bias, `y2` from
    /// the second parts with a zero bias, added in f32 before the epilogue
    /// (an activation then runs as the kernels' `activate`; a residual add
    /// goes through `fine`, which must then hold `m * q.n` values).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_q8(
        &self,
        qs: &QScratch<'_>,
        fine: &mut [f32],
        m: usize,
        q: &QMatrix<'_>,
        two: bool,
        bias: &[f32],
        out: &mut [f32],
        ldo: usize,
        ep: Epilogue,
    ) {
        let k = &self.kernels;
        if !two {
            (k.gemm_q8)(qs.q, qs.ld, qs.scales, qs.zps, m, q, bias, out, ldo, ep);
            return;
        }
        let n = q.n;
        let zeros = &qs.zeros[..n];
        let (y, ldy) = if ep == Epilogue::Accumulate {
            (&mut fine[..m * n], n)
        } else {
            (&mut *out, ldo)
        };
        (k.gemm_q8)(
            qs.q,
            qs.ld,
            qs.scales,
            qs.zps,
            m,
            q,
            bias,
            y,
            ldy,
            Epilogue::Store,
        );
        let acc = Epilogue::Accumulate;
        (k.gemm_q8)(qs.q2, qs.ld, qs.scales2, qs.zps2, m, q, zeros, y, ldy, acc);
        if ep == Epilogue::Store {
            return;
        }
        for i in 0..m {
            let dst = &mut out[i * ldo..i * ldo + n];
            if ep == Epilogue::Accumulate {
                for (d, v) in dst.iter_mut().zip(&fine[i * n..(i + 1) * n]) {
                    *d += *v;
                }
            } else {
                (k.activate)(dst, ep);
            }
        }
    }

    /// Runs the model on `input`, using only `ws` for scratch and outputs.
    /// Performs no heap allocation. The outputs borrow the workspace.
    pub fn run<'w>(
        &self,
        ws: &'w mut Workspace<'_>,
        input: &Input<'_>,
    ) -> Result<Outputs<'w>, RunError> {
        self.run_exec(ws, input, chunks::Exec::serial(), true, &mut |_, _| {})
    }

    /// Like [`Model::run`], and reports intermediate tensors to `trace`.
    ///
    /// It computes every row of every layer, where [`Model::run`] skips what no
    /// output reads (for sequence classification, all but the first token of
    /// each sequence in the last layer); the outputs are bit-identical.
    pub fn run_traced<'w>(
        &self,
        ws: &'w mut Workspace<'_>,
        input: &Input<'_>,
        trace: &mut dyn FnMut(Trace, &[f32]),
    ) -> Result<Outputs<'w>, RunError> {
        self.run_exec(ws, input, chunks::Exec::serial(), false, trace)
    }

    /// Like [`Model::run`], with the work split over the threads of `pool`.
    ///
    /// The outputs are bit-identical to [`Model::run`]'s for any number of
    /// threads (every value is computed by the same kernel call on the same
    /// inputs; only which thread makes the call changes). Performs no heap
    /// allocation and spawns no thread; `pool` can be shared by several
    /// models and workspaces (concurrent runs on one pool take turns phase by
    /// phase). `ws` needs [`Model::workspace_len_threads`]`(seq, batch,
    /// pool.threads())` bytes: each thread needs its own attention scratch.
    ///
    /// Attention is split by query rows. Runs of up to
    /// [`crate::workspace::COLUMN_SPLIT_ROWS`] token rows split each linear
    /// layer by output columns (each thread reads only its share of the
    /// weights; about ten synchronizations per layer); longer runs split the
    /// row-local work by token rows (two synchronizations per layer). The
    /// pooler and the sequence-level heads run on the calling thread.
    ///
    /// # Panics
    ///
    /// Only if a kernel panics on a worker thread (a bug; the pool stays
    /// usable), after the other threads have finished.
    #[cfg(feature = "std")]
    pub fn run_with<'w>(
        &self,
        pool: &crate::pool::ThreadPool,
        ws: &'w mut Workspace<'_>,
        input: &Input<'_>,
    ) -> Result<Outputs<'w>, RunError> {
        let exec = chunks::Exec {
            pool: Some(pool),
            _lifetime: core::marker::PhantomData,
        };
        self.run_exec(ws, input, exec, true, &mut |_, _| {})
    }

    fn run_exec<'w>(
        &self,
        ws: &'w mut Workspace<'_>,
        input: &Input<'_>,
        exec: chunks::Exec<'_>,
        untraced: bool,
        trace: &mut dyn FnMut(Trace, &[f32]),
    ) -> Result<Outputs<'w>, RunError> {
        self.check_input(input)?;
        let plan = Plan::with_threads(
            self.config(),
            input.batch,
            input.seq,
            exec.threads(),
            self.fine,
        )
        .ok_or(RunError::WorkspaceTooSmall {
            needed: usize::MAX,
            got: ws.len(),
        })?;
        let needed = plan.bytes().unwrap_or(usize::MAX);
        let got = ws.len();
        // `workspace_len` is the exact requirement for a buffer at any alignment
        // (it includes the slack for aligning it), so it is checked as such.
        if got < needed {
            return Err(RunError::WorkspaceTooSmall { needed, got });
        }
        let floats = ws.floats();
        let mut r =
            Regions::split(floats, &plan).ok_or(RunError::WorkspaceTooSmall { needed, got })?;
        // Sequence classification reads only the first token's final hidden
        // state; skip the rest of the last layer unless a trace watches it.
        let cls_only = untraced && self.config().head == format::HeadKind::SequenceClassification;
        encoder::forward(self, input, &mut r, &plan, exec, cls_only, trace);
        Ok(heads::forward(self, input, r, exec, trace))
    }

    fn check_input(&self, input: &Input<'_>) -> Result<(), RunError> {
        let cfg = self.config();
        if input.batch == 0 || input.seq == 0 {
            return Err(RunError::EmptyInput);
        }
        let t = input
            .batch
            .checked_mul(input.seq)
            .ok_or(RunError::ShapeMismatch {
                input: "input_ids",
                expected: usize::MAX,
                got: input.input_ids.len(),
            })?;
        let check_len = |name: &'static str, len: usize| {
            if len == t {
                Ok(())
            } else {
                Err(RunError::ShapeMismatch {
                    input: name,
                    expected: t,
                    got: len,
                })
            }
        };
        check_len("input_ids", input.input_ids.len())?;
        if let Some(m) = input.attention_mask {
            check_len("attention_mask", m.len())?;
        }
        if let Some(tt) = input.token_type_ids {
            check_len("token_type_ids", tt.len())?;
            if let Some((position, &id)) = tt
                .iter()
                .enumerate()
                .find(|(_, &v)| v >= cfg.type_vocab_size)
            {
                return Err(RunError::TokenTypeOutOfRange {
                    position,
                    id,
                    type_vocab_size: cfg.type_vocab_size,
                });
            }
        }
        if input.seq > cfg.max_positions as usize {
            return Err(RunError::SequenceTooLong {
                seq: input.seq,
                max: cfg.max_positions as usize,
            });
        }
        if let Some((position, &id)) = input
            .input_ids
            .iter()
            .enumerate()
            .find(|(_, &v)| v >= cfg.vocab_size)
        {
            return Err(RunError::TokenOutOfRange {
                position,
                id,
                vocab_size: cfg.vocab_size,
            });
        }
        Ok(())
    }
}

fn bytes_of<'s>(b: &'s Bytes<'_>) -> &'s [u8] {
    match b {
        Bytes::Borrowed(b) => b,
        #[cfg(feature = "std")]
        Bytes::Mapped(m) => m,
        #[cfg(feature = "std")]
        Bytes::Owned(v) => {
            // SAFETY: `AlignedBlock` is 64 plain bytes without padding, so the
            // vector holds `v.len() * 64` initialized bytes; the slice borrows `v`.
            unsafe { core::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len() * 64) }
        }
    }
}

#[cfg(feature = "std")]
impl Model<'static> {
    /// Memory-maps the file at `path` and validates it.
    ///
    /// Contract: the file is validated once, here, and then used in place; it
    /// is neither copied nor locked. So:
    ///
    /// * Replacing the file by rename (what `albert-convert` does: a temporary
    ///   file, then `rename`) is safe: this model keeps the old contents; open
    ///   the path again to get the new one.
    /// * Modifying the file in place while the model is alive is not
    ///   supported. Writes into it change what the runtime reads after
    ///   validation (wrong results); truncating it makes the next access to
    ///   the lost pages raise `SIGBUS`, which kills the process. Advisory locks
    ///   would not prevent either, so when another process may write the file
    ///   in place, use [`Model::read`] (a private copy) instead.
    ///
    /// Both cases are tested in `tests/faults.rs`.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Model<'static>, LoadError> {
        let f = std::fs::File::open(path).map_err(|_| LoadError::Io("cannot open the file"))?;
        // SAFETY: the map is read-only; the documented contract above is that the
        // file is not modified in place while mapped. Validation below reads it once.
        let map =
            unsafe { memmap2::Mmap::map(&f) }.map_err(|_| LoadError::Io("cannot map the file"))?;
        Self::from_storage(Bytes::Mapped(map))
    }

    /// Reads the file at `path` into an aligned heap buffer (a private copy).
    pub fn read(path: impl AsRef<std::path::Path>) -> Result<Model<'static>, LoadError> {
        let data = std::fs::read(path).map_err(|_| LoadError::Io("cannot read the file"))?;
        Self::from_vec(&data)
    }

    /// Copies `data` into an aligned buffer and validates it.
    pub fn from_vec(data: &[u8]) -> Result<Model<'static>, LoadError> {
        if !data.len().is_multiple_of(format::ALIGN) {
            // Valid files are a whole number of 64-byte blocks.
            return Err(LoadError::Truncated {
                needed: format::align_up(data.len() as u64).unwrap_or(u64::MAX),
                got: data.len() as u64,
            });
        }
        let mut blocks = std::vec![AlignedBlock([0; 64]); data.len() / 64];
        copy_into(&mut blocks, data);
        Self::from_storage(Bytes::Owned(blocks))
    }
}

#[cfg(feature = "std")]
fn copy_into(blocks: &mut [AlignedBlock], data: &[u8]) {
    for (b, chunk) in blocks.iter_mut().zip(data.chunks(64)) {
        b.0[..chunk.len()].copy_from_slice(chunk);
    }
}
