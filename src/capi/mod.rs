//! The C API (`include/albert_edge.h`), behind the `capi` feature.
//!
//! Conventions, after rustls-ffi (`librustls/src/`):
//!
//! * **Results.** Every fallible function returns an [`AlbertResult`]: stable
//!   numbers grouped by range (1xx caller errors, 2xx model file, 3xx run,
//!   4xx tokenizer, 9xx internal). Outputs go through out-parameters, which
//!   are written only on success unless documented otherwise.
//! * **Messages.** [`albert_result_message`] copies the fixed text of a code, and
//!   [`albert_last_error_message`] the detailed text of this thread's last
//!   failure, into a caller buffer (`snprintf`-style): nothing to free.
//! * **Handles.** `albert_model` and `albert_workspace` are opaque. C holds a
//!   `Box` for each (created by a constructor, released by the matching
//!   `_free`, which accepts NULL). A model made by `albert_model_from_bytes`
//!   additionally *borrows* the caller's bytes; `albert_workspace_from_buffer`
//!   borrows the caller's memory. Both contracts are stated in the header.
//! * **Guards.** Every entry point checks its pointers ([`AlbertResult::NullParameter`]),
//!   checks sizes before forming slices, and runs its body inside
//!   `catch_unwind`, so no panic crosses into C ([`AlbertResult::Panic`]).
//! * **Threads.** A model is immutable and `Sync`: any number of threads may
//!   use one model at once, each with its own workspace. A workspace is used
//!   by one thread at a time.
//! * **Allocation.** `albert_run` allocates nothing. Loading a model allocates
//!   its handle (and the copy, for `albert_model_from_bytes_copy` / `_read`);
//!   `albert_tokenize` allocates a scratch buffer for the call.

use crate::format::{HeadKind, LoadError};
use crate::tokenizer::{TokenizeError, Tokenizer, TokenizerError};
use crate::{Input, Model, RunError, Workspace};
use core::ffi::{c_char, CStr};
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::string::{String, ToString};

/// Result codes. The numbers are part of the ABI: never renumber, only add.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlbertResult {
    /// Success.
    Ok = 0,

    // 1xx: the caller's arguments.
    /// A required pointer argument is NULL.
    NullParameter = 100,
    /// An argument is out of its valid range (e.g. zero batch, overflowing size).
    InvalidArgument = 101,
    /// A caller buffer is too small; the needed size is reported where the
    /// function documents it.
    BufferTooSmall = 102,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 103,
    /// No output of that name or index, or no label of that index.
    NotFound = 104,
    /// The model file has no tokenizer section.
    NoTokenizer = 105,
    /// The workspace holds no outputs (no successful run yet).
    NoOutputs = 106,

    // 2xx: the model file (one per `LoadError` variant, plus the tokenizer section).
    /// Reading or mapping the file failed.
    Io = 200,
    /// The buffer ends before a structure it must contain.
    Truncated = 201,
    /// Not a model file.
    BadMagic = 202,
    /// Format version not supported by this runtime.
    UnsupportedVersion = 203,
    /// A section's CRC does not match (corruption).
    ChecksumMismatch = 204,
    /// The buffer is longer than the file it holds.
    TrailingBytes = 205,
    /// The bytes do not start 64-byte aligned (use `albert_model_from_bytes_copy`).
    Misaligned = 206,
    /// A structural problem in a section.
    BadSection = 207,
    /// A required section is missing.
    MissingSection = 208,
    /// An enumerated field has an unknown value.
    UnknownCode = 209,
    /// A dimension is zero or too large.
    DimensionOutOfRange = 210,
    /// Config fields contradict each other.
    Inconsistent = 211,
    /// An offset or size computation overflowed.
    Overflow = 212,
    /// A tensor entry is wrong.
    BadTensor = 213,
    /// A tensor required by the config is missing.
    MissingTensor = 214,
    /// Big-endian hosts are not supported.
    BigEndianHost = 215,
    /// The tokenizer section does not validate.
    BadTokenizer = 216,

    // 3xx: running the model (one per `RunError` variant).
    /// `batch` or `seq` is zero.
    EmptyInput = 300,
    /// An input's length is not `batch * seq`.
    ShapeMismatch = 301,
    /// A token id is not below the vocabulary size.
    TokenOutOfRange = 302,
    /// A token type id is not below the token-type table size.
    TokenTypeOutOfRange = 303,
    /// `seq` exceeds the model's position table.
    SequenceTooLong = 304,
    /// The workspace is smaller than this input needs.
    WorkspaceTooSmall = 305,

    // 4xx: tokenizing.
    /// `max_len` cannot hold the special tokens plus the kept text.
    MaxLenTooSmall = 400,
    /// The tokenizer scratch is too small for one word (not expected: the C API
    /// sizes it for the worst case).
    ScratchTooSmall = 401,
    /// A normalization rule longer than the tokenizer's look-ahead window
    /// matched (not expected with sentencepiece charsmaps).
    LookaheadExceeded = 402,

    // 9xx: internal.
    /// A panic was caught at the boundary (a bug: please report it).
    Panic = 900,
}

impl AlbertResult {
    /// The fixed message for this code.
    pub fn message(self) -> &'static str {
        use AlbertResult as R;
        match self {
            R::Ok => "success",
            R::NullParameter => "a required pointer argument is NULL",
            R::InvalidArgument => "an argument is out of range",
            R::BufferTooSmall => "a caller-provided buffer is too small",
            R::InvalidUtf8 => "a string argument is not valid UTF-8",
            R::NotFound => "no such output or label",
            R::NoTokenizer => "the model file has no tokenizer",
            R::NoOutputs => "the workspace holds no outputs (no successful run yet)",
            R::Io => "cannot read the model file",
            R::Truncated => "model file is truncated",
            R::BadMagic => "not an albert-edge model file",
            R::UnsupportedVersion => "model file format version not supported",
            R::ChecksumMismatch => "model file is corrupted (checksum mismatch)",
            R::TrailingBytes => "model buffer has trailing bytes",
            R::Misaligned => "model bytes must start 64-byte aligned",
            R::BadSection => "invalid section in the model file",
            R::MissingSection => "model file lacks a required section",
            R::UnknownCode => "unknown enumerated value in the model file",
            R::DimensionOutOfRange => "model dimension out of range",
            R::Inconsistent => "inconsistent model config",
            R::Overflow => "model file offsets or sizes overflow",
            R::BadTensor => "invalid tensor entry in the model file",
            R::MissingTensor => "model file lacks a required tensor",
            R::BigEndianHost => "big-endian hosts are not supported",
            R::BadTokenizer => "invalid tokenizer section in the model file",
            R::EmptyInput => "batch and sequence length must be at least 1",
            R::ShapeMismatch => "input length is not batch * seq",
            R::TokenOutOfRange => "token id out of the vocabulary",
            R::TokenTypeOutOfRange => "token type id out of range",
            R::SequenceTooLong => "sequence longer than the model's maximum",
            R::WorkspaceTooSmall => "workspace too small for this input",
            R::MaxLenTooSmall => "max_len too small for the special tokens",
            R::ScratchTooSmall => "tokenizer scratch too small",
            R::LookaheadExceeded => {
                "a normalization rule exceeds the tokenizer's look-ahead window"
            }
            R::Panic => "internal error: a panic was caught at the C boundary",
        }
    }

    /// Every code, for tests and bindings.
    pub const ALL: [AlbertResult; 35] = {
        use AlbertResult as R;
        [
            R::Ok,
            R::NullParameter,
            R::InvalidArgument,
            R::BufferTooSmall,
            R::InvalidUtf8,
            R::NotFound,
            R::NoTokenizer,
            R::NoOutputs,
            R::Io,
            R::Truncated,
            R::BadMagic,
            R::UnsupportedVersion,
            R::ChecksumMismatch,
            R::TrailingBytes,
            R::Misaligned,
            R::BadSection,
            R::MissingSection,
            R::UnknownCode,
            R::DimensionOutOfRange,
            R::Inconsistent,
            R::Overflow,
            R::BadTensor,
            R::MissingTensor,
            R::BigEndianHost,
            R::BadTokenizer,
            R::EmptyInput,
            R::ShapeMismatch,
            R::TokenOutOfRange,
            R::TokenTypeOutOfRange,
            R::SequenceTooLong,
            R::WorkspaceTooSmall,
            R::MaxLenTooSmall,
            R::ScratchTooSmall,
            R::LookaheadExceeded,
            R::Panic,
        ]
    };

    fn from_u32(v: u32) -> Option<AlbertResult> {
        Self::ALL.iter().copied().find(|r| *r as u32 == v)
    }
}

impl From<&LoadError> for AlbertResult {
    fn from(e: &LoadError) -> Self {
        use AlbertResult as R;
        match e {
            LoadError::Truncated { .. } => R::Truncated,
            LoadError::BadMagic => R::BadMagic,
            LoadError::UnsupportedVersion { .. } => R::UnsupportedVersion,
            LoadError::ChecksumMismatch { .. } => R::ChecksumMismatch,
            LoadError::TrailingBytes { .. } => R::TrailingBytes,
            LoadError::Misaligned { .. } => R::Misaligned,
            LoadError::BadSection { .. } => R::BadSection,
            LoadError::MissingSection(_) => R::MissingSection,
            LoadError::UnknownCode { .. } => R::UnknownCode,
            LoadError::DimensionOutOfRange { .. } => R::DimensionOutOfRange,
            LoadError::Inconsistent(_) => R::Inconsistent,
            LoadError::Overflow => R::Overflow,
            LoadError::BadTensor { .. } => R::BadTensor,
            LoadError::MissingTensor { .. } => R::MissingTensor,
            LoadError::BigEndianHost => R::BigEndianHost,
            LoadError::Io(_) => R::Io,
            LoadError::Tokenizer(_) => R::BadTokenizer,
        }
    }
}

impl From<&RunError> for AlbertResult {
    fn from(e: &RunError) -> Self {
        use AlbertResult as R;
        match e {
            RunError::EmptyInput => R::EmptyInput,
            RunError::ShapeMismatch { .. } => R::ShapeMismatch,
            RunError::TokenOutOfRange { .. } => R::TokenOutOfRange,
            RunError::TokenTypeOutOfRange { .. } => R::TokenTypeOutOfRange,
            RunError::SequenceTooLong { .. } => R::SequenceTooLong,
            RunError::WorkspaceTooSmall { .. } => R::WorkspaceTooSmall,
        }
    }
}

// ---------------------------------------------------------------------------
// Error detail: one message per thread, copied out on request.

std::thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `msg` as this thread's last error and returns `code`.
fn fail(code: AlbertResult, msg: impl core::fmt::Display) -> AlbertResult {
    let text = msg.to_string();
    // `try_with` fails only while the thread is being torn down; the code still goes back.
    let _ = LAST_ERROR.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            *s = text;
        }
    });
    code
}

/// Records the fixed message of `code` and returns it.
fn fail_plain(code: AlbertResult) -> AlbertResult {
    fail(code, code.message())
}

/// Copies `msg` into `buf` (`len` bytes) like `snprintf`: at most `len - 1`
/// bytes, cut at a UTF-8 boundary, then a NUL. Returns `msg.len()`.
///
/// # Safety
/// `buf` is NULL or valid for writes of `len` bytes.
unsafe fn write_message(msg: &str, buf: *mut c_char, len: usize) -> usize {
    if buf.is_null() || len == 0 {
        return msg.len();
    }
    let mut n = msg.len().min(len - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: the caller guarantees `buf` is valid for `len` bytes, `n < len`,
    // and `buf` cannot overlap `msg` (a Rust string owned by this library).
    let out = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), n + 1) };
    out[..n].copy_from_slice(&msg.as_bytes()[..n]);
    out[n] = 0;
    msg.len()
}

/// Runs `f`, turning a panic into [`AlbertResult::Panic`].
fn guard(f: impl FnOnce() -> AlbertResult) -> AlbertResult {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => fail_plain(AlbertResult::Panic),
    }
}

/// Returns `NullParameter` (recording which argument) when a pointer is NULL.
macro_rules! check_null {
    ($($p:ident),+) => {
        $(
            if $p.is_null() {
                return fail(
                    AlbertResult::NullParameter,
                    concat!("argument `", stringify!($p), "` is NULL"),
                );
            }
        )+
    };
}

// ---------------------------------------------------------------------------
// Handles.

/// An opaque, immutable model (C: `albert_model`). Created by the
/// `albert_model_*` constructors; released by [`albert_model_free`].
pub struct AlbertModel {
    /// A validated view of the tokenizer section, when the file has one. It
    /// borrows `model`'s bytes; declared first so it is dropped first.
    tokenizer: Option<Tokenizer<'static>>,
    model: Model<'static>,
}

impl AlbertModel {
    fn new(model: Model<'static>) -> Result<AlbertModel, (AlbertResult, String)> {
        let tokenizer = match model.tokenizer_section() {
            None => None,
            Some(section) => {
                let (ptr, len) = (section.as_ptr(), section.len());
                // SAFETY: the section lies inside the model's bytes, which do not
                // move for the model's whole life (caller memory, a mapping, or a
                // heap buffer whose address is independent of the `Model` value),
                // and the tokenizer is stored beside the model and dropped first;
                // it is never handed out with a longer lifetime than `&self`.
                let bytes: &'static [u8] = unsafe { core::slice::from_raw_parts(ptr, len) };
                match Tokenizer::from_section(bytes) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        let e: TokenizerError = e;
                        return Err((
                            AlbertResult::BadTokenizer,
                            std::format!("invalid tokenizer section: {e}"),
                        ));
                    }
                }
            }
        };
        Ok(AlbertModel { tokenizer, model })
    }

    fn tokenizer(&self) -> Option<&Tokenizer<'_>> {
        self.tokenizer.as_ref()
    }
}

/// The output of a run, remembered by the workspace that holds its values.
#[derive(Clone, Copy)]
struct StoredOutput {
    name: &'static CStr,
    shape: [usize; 3],
    rank: usize,
    data: *const f32,
    len: usize,
}

/// An opaque workspace (C: `albert_workspace`): scratch memory for one run at
/// a time, plus the outputs of its last successful run. Released by
/// [`albert_workspace_free`].
pub struct AlbertWorkspace {
    ws: Workspace<'static>,
    /// Valid until the next `albert_run` on this workspace or its release:
    /// the pointers point into `ws`'s buffer.
    outputs: [Option<StoredOutput>; 2],
}

/// Shape and values of one output (C: `albert_output`). `data` points into the
/// workspace and stays valid until the next run on it or its release.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AlbertOutput {
    /// transformers' output name, NUL-terminated, static.
    pub name: *const c_char,
    /// Number of dimensions (1 to 3).
    pub rank: usize,
    /// Dimensions, outermost first; unused entries are 0.
    pub shape: [usize; 3],
    /// Row-major values.
    pub data: *const f32,
    /// Number of values (the product of the dimensions).
    pub len: usize,
}

/// A few facts about a model (C: `albert_model_info`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct AlbertModelInfo {
    /// Vocabulary size (token ids must be below it).
    pub vocab_size: u32,
    /// Hidden size.
    pub hidden_size: u32,
    /// Longest sequence (position table size).
    pub max_positions: u32,
    /// Token-type table size.
    pub type_vocab_size: u32,
    /// Number of labels of the classification head (0 for none).
    pub num_labels: u32,
    /// Head: 0 base, 1 sequence classification, 2 token classification,
    /// 3 question answering, 4 masked LM.
    pub head: u32,
    /// 1 when the file embeds a tokenizer.
    pub has_tokenizer: u32,
    /// 1 for int8 weights, 0 for f32.
    pub int8: u32,
}

fn output_name(name: &'static str) -> &'static CStr {
    match name {
        "logits" => c"logits",
        "last_hidden_state" => c"last_hidden_state",
        "pooler_output" => c"pooler_output",
        "start_logits" => c"start_logits",
        "end_logits" => c"end_logits",
        _ => c"output",
    }
}

// ---------------------------------------------------------------------------
// Library.

/// The library version, a static NUL-terminated string such as `"0.1.0"`.
#[no_mangle]
pub extern "C" fn albert_version() -> *const c_char {
    const V: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    V.as_ptr()
}

/// Copies the fixed message of `code` into `buf` (`snprintf`-style: at most
/// `len - 1` bytes and a NUL; `buf` may be NULL when `len` is 0). Returns the
/// full message length. Unknown codes get "unknown result code".
///
/// # Safety
/// `buf` is NULL or valid for writes of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn albert_result_message(code: u32, buf: *mut c_char, len: usize) -> usize {
    catch_unwind(|| {
        let msg = AlbertResult::from_u32(code).map_or("unknown result code", AlbertResult::message);
        // SAFETY: forwarded from this function's contract.
        unsafe { write_message(msg, buf, len) }
    })
    .unwrap_or(0)
}

/// Copies the detailed message of this thread's last failed call into `buf`
/// (`snprintf`-style). Returns its full length (0 when no call has failed on
/// this thread). Successful calls do not clear it.
///
/// # Safety
/// `buf` is NULL or valid for writes of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn albert_last_error_message(buf: *mut c_char, len: usize) -> usize {
    catch_unwind(|| {
        LAST_ERROR
            .try_with(|s| match s.try_borrow() {
                // SAFETY: forwarded from this function's contract.
                Ok(s) => unsafe { write_message(&s, buf, len) },
                Err(_) => 0,
            })
            .unwrap_or(0)
    })
    .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// Models.

fn finish_load(
    loaded: Result<Model<'static>, LoadError>,
    out: *mut *mut AlbertModel,
) -> AlbertResult {
    let model = match loaded {
        Ok(m) => m,
        Err(e) => return fail(AlbertResult::from(&e), &e),
    };
    match AlbertModel::new(model) {
        Ok(m) => {
            // SAFETY: `out` was checked non-NULL by the caller of this helper and
            // is valid for a pointer write by the entry point's contract.
            unsafe { out.write(Box::into_raw(Box::new(m))) };
            AlbertResult::Ok
        }
        Err((code, msg)) => fail(code, msg),
    }
}

/// Validates a model held in caller memory and views it in place (no copy).
/// `bytes` must start 64-byte aligned (otherwise `ALBERT_MISALIGNED`), and
/// the caller keeps them alive and unchanged until `albert_model_free`.
///
/// # Safety
/// `bytes` is valid for reads of `len` bytes for the model's whole life and
/// not written meanwhile; `out` is valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn albert_model_from_bytes(
    bytes: *const u8,
    len: usize,
    out: *mut *mut AlbertModel,
) -> AlbertResult {
    guard(|| {
        check_null!(bytes, out);
        // SAFETY: the caller guarantees `bytes` is readable for `len` bytes and
        // stays alive and unchanged until the model is freed, which is what the
        // `'static` view stands for here (the handle never outlives that).
        let b: &'static [u8] = unsafe { core::slice::from_raw_parts(bytes, len) };
        finish_load(Model::from_bytes(b), out)
    })
}

/// Copies a model from caller memory (any alignment) into an aligned buffer
/// owned by the library, then validates it. The caller may release `bytes`
/// as soon as this returns.
///
/// # Safety
/// `bytes` is valid for reads of `len` bytes during the call; `out` is valid
/// for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn albert_model_from_bytes_copy(
    bytes: *const u8,
    len: usize,
    out: *mut *mut AlbertModel,
) -> AlbertResult {
    guard(|| {
        check_null!(bytes, out);
        // SAFETY: the caller guarantees `bytes` is readable for `len` bytes during
        // this call; the slice does not escape it (it is copied).
        let b = unsafe { core::slice::from_raw_parts(bytes, len) };
        finish_load(Model::from_vec(b), out)
    })
}

fn path_arg(path: *const c_char) -> Result<&'static str, AlbertResult> {
    // SAFETY: the entry points require `path` to be a NUL-terminated string,
    // valid during the call; the returned borrow is used only within it.
    let c = unsafe { CStr::from_ptr(path) };
    c.to_str()
        .map_err(|_| fail(AlbertResult::InvalidUtf8, "`path` is not valid UTF-8"))
}

/// Memory-maps and validates the model file at `path` (UTF-8, NUL-terminated).
/// The file must not be modified in place while the model is alive
/// (replacing it by rename is fine); use `albert_model_read` otherwise.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn albert_model_open(
    path: *const c_char,
    out: *mut *mut AlbertModel,
) -> AlbertResult {
    guard(|| {
        check_null!(path, out);
        match path_arg(path) {
            Ok(p) => finish_load(Model::open(p), out),
            Err(code) => code,
        }
    })
}

/// Reads the model file at `path` into library-owned memory and validates it.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn albert_model_read(
    path: *const c_char,
    out: *mut *mut AlbertModel,
) -> AlbertResult {
    guard(|| {
        check_null!(path, out);
        match path_arg(path) {
            Ok(p) => finish_load(Model::read(p), out),
            Err(code) => code,
        }
    })
}

/// Releases a model. NULL is accepted and ignored. Workspaces and their
/// outputs stay valid; the bytes given to `albert_model_from_bytes` may be
/// released afterwards.
///
/// # Safety
/// `model` is NULL or a handle from an `albert_model_*` constructor, not yet
/// freed, and not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn albert_model_free(model: *mut AlbertModel) {
    let _ = catch_unwind(|| {
        if !model.is_null() {
            // SAFETY: by contract `model` came from `Box::into_raw` in
            // `finish_load` and is released exactly once, here.
            drop(unsafe { Box::from_raw(model) });
        }
    });
}

/// Borrows the model behind a checked non-NULL handle.
///
/// # Safety
/// `model` is a live handle from an `albert_model_*` constructor.
unsafe fn model_ref<'m>(model: *const AlbertModel) -> &'m AlbertModel {
    // SAFETY: forwarded from this function's contract; the model is immutable.
    unsafe { &*model }
}

/// Fills `out` with facts about the model.
///
/// # Safety
/// `model` is a live model handle; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn albert_model_get_info(
    model: *const AlbertModel,
    out: *mut AlbertModelInfo,
) -> AlbertResult {
    guard(|| {
        check_null!(model, out);
        // SAFETY: checked non-NULL; live by contract.
        let m = unsafe { model_ref(model) };
        let c = m.model.config();
        let info = AlbertModelInfo {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            max_positions: c.max_positions,
            type_vocab_size: c.type_vocab_size,
            num_labels: m.model.labels().count() as u32,
            head: match c.head {
                HeadKind::Base => 0,
                HeadKind::SequenceClassification => 1,
                HeadKind::TokenClassification => 2,
                HeadKind::QuestionAnswering => 3,
                HeadKind::MaskedLm => 4,
            },
            has_tokenizer: m.tokenizer.is_some() as u32,
            int8: (c.precision == crate::Precision::Int8) as u32,
        };
        // SAFETY: checked non-NULL; valid for a write by contract.
        unsafe { out.write(info) };
        AlbertResult::Ok
    })
}

/// What a sequence classifier's logits mean and how they become scores (as
/// transformers' text-classification pipeline applies them):
/// `*problem_type` 0 single-label, 1 multi-label, 2 regression, 3 multiple
/// choice (0 for other heads); `*score_function` 0 softmax, 1 sigmoid per
/// label, 2 none, 3 softmax over the rows (the choices of one question).
///
/// # Safety
/// `model` is a live model handle; `problem_type` and `score_function` are
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn albert_model_problem_type(
    model: *const AlbertModel,
    problem_type: *mut u32,
    score_function: *mut u32,
) -> AlbertResult {
    guard(|| {
        check_null!(model, problem_type, score_function);
        // SAFETY: checked non-NULL; live by contract.
        let c = unsafe { model_ref(model) }.model.config();
        let f = match c.score_function() {
            crate::ScoreFunction::Softmax => 0,
            crate::ScoreFunction::Sigmoid => 1,
            crate::ScoreFunction::Identity => 2,
            crate::ScoreFunction::ChoiceSoftmax => 3,
        };
        // SAFETY: checked non-NULL; valid for writes by contract.
        unsafe {
            problem_type.write(c.problem_type as u32);
            score_function.write(f);
        }
        AlbertResult::Ok
    })
}

/// Exact workspace bytes for up to `batch` sequences of up to `max_seq`
/// tokens, written to `*out_len`. `ALBERT_INVALID_ARGUMENT` when the size
/// overflows or a dimension is 0.
///
/// # Safety
/// `model` is a live model handle; `out_len` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn albert_model_workspace_len(
    model: *const AlbertModel,
    max_seq: usize,
    batch: usize,
    out_len: *mut usize,
) -> AlbertResult {
    guard(|| {
        check_null!(model, out_len);
        if max_seq == 0 || batch == 0 {
            return fail(
                AlbertResult::InvalidArgument,
                "max_seq and batch must be at least 1",
            );
        }
        // SAFETY: checked non-NULL; live by contract.
        let m = unsafe { model_ref(model) };
        let n = m.model.workspace_len(max_seq, batch);
        if n == usize::MAX {
            return fail(AlbertResult::InvalidArgument, "workspace size overflows");
        }
        // SAFETY: checked non-NULL; valid for a write by contract.
        unsafe { out_len.write(n) };
        AlbertResult::Ok
    })
}

/// Number of labels, in `*out_count`.
///
/// # Safety
/// `model` is a live model handle; `out_count` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn albert_model_label_count(
    model: *const AlbertModel,
    out_count: *mut usize,
) -> AlbertResult {
    guard(|| {
        check_null!(model, out_count);
        // SAFETY: checked non-NULL; live by contract.
        let m = unsafe { model_ref(model) };
        // SAFETY: checked non-NULL; valid for a write by contract.
        unsafe { out_count.write(m.model.labels().count()) };
        AlbertResult::Ok
    })
}

/// Copies label `index` into `buf` (NUL-terminated) and its length (without
/// the NUL) into `*out_len` (may be NULL). `ALBERT_NOT_FOUND` for a bad index;
/// `ALBERT_BUFFER_TOO_SMALL` when `len` cannot hold the name and its NUL (then
/// `*out_len` still receives the needed length and nothing is written).
///
/// # Safety
/// `model` is a live model handle; `buf` is valid for `len` bytes; `out_len`
/// is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn albert_model_label(
    model: *const AlbertModel,
    index: usize,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> AlbertResult {
    guard(|| {
        check_null!(model, buf);
        // SAFETY: checked non-NULL; live by contract.
        let m = unsafe { model_ref(model) };
        let Some(label) = m.model.label(index) else {
            return fail(AlbertResult::NotFound, std::format!("no label {index}"));
        };
        if !out_len.is_null() {
            // SAFETY: checked non-NULL; valid for a write by contract.
            unsafe { out_len.write(label.len()) };
        }
        if label.len() >= len {
            return fail(
                AlbertResult::BufferTooSmall,
                std::format!(
                    "label {index} needs {} bytes with its NUL, buffer has {len}",
                    label.len() + 1
                ),
            );
        }
        // SAFETY: `buf` is valid for `len` bytes by contract and `len` exceeds the
        // label length, so it holds the label and the NUL.
        unsafe { write_message(label, buf, len) };
        AlbertResult::Ok
    })
}

// ---------------------------------------------------------------------------
// Workspaces.

fn new_workspace_handle(ws: Workspace<'static>) -> *mut AlbertWorkspace {
    Box::into_raw(Box::new(AlbertWorkspace {
        ws,
        outputs: [None, None],
    }))
}

/// Allocates a workspace of `len` bytes (from `albert_model_workspace_len`).
///
/// # Safety
/// `out` is valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn albert_workspace_new(
    len: usize,
    out: *mut *mut AlbertWorkspace,
) -> AlbertResult {
    guard(|| {
        check_null!(out);
        if len == 0 || len > isize::MAX as usize - 64 {
            return fail(
                AlbertResult::InvalidArgument,
                std::format!("bad workspace size {len}"),
            );
        }
        let ws = Workspace::new(len);
        // SAFETY: checked non-NULL; valid for a write by contract.
        unsafe { out.write(new_workspace_handle(ws)) };
        AlbertResult::Ok
    })
}

/// Uses `len` bytes of caller memory (any alignment; 64-byte aligned wastes
/// nothing) as a workspace. The caller keeps the memory alive, and does not
/// touch it, until `albert_workspace_free`. Only the small handle is allocated.
///
/// # Safety
/// `buf` is valid for reads and writes of `len` bytes until the workspace is
/// freed, and not accessed otherwise meanwhile; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn albert_workspace_from_buffer(
    buf: *mut u8,
    len: usize,
    out: *mut *mut AlbertWorkspace,
) -> AlbertResult {
    guard(|| {
        check_null!(buf, out);
        if len > isize::MAX as usize {
            return fail(
                AlbertResult::InvalidArgument,
                "workspace length exceeds isize::MAX",
            );
        }
        // SAFETY: the caller hands over exclusive use of `len` writable bytes
        // until the workspace is freed, which the `'static` borrow stands for
        // (the handle holding it is released by `albert_workspace_free`).
        let b: &'static mut [u8] = unsafe { core::slice::from_raw_parts_mut(buf, len) };
        // SAFETY: checked non-NULL; valid for a write by contract.
        unsafe { out.write(new_workspace_handle(Workspace::from_bytes(b))) };
        AlbertResult::Ok
    })
}

/// Size of the workspace in bytes, in `*out_len`.
///
/// # Safety
/// `ws` is a live workspace handle; `out_len` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn albert_workspace_len(
    ws: *const AlbertWorkspace,
    out_len: *mut usize,
) -> AlbertResult {
    guard(|| {
        check_null!(ws, out_len);
        // SAFETY: checked non-NULL; live by contract; only read.
        let w = unsafe { &*ws };
        // SAFETY: checked non-NULL; valid for a write by contract.
        unsafe { out_len.write(w.ws.len()) };
        AlbertResult::Ok
    })
}

/// Releases a workspace (and, for a library-allocated one, its memory). NULL
/// is accepted and ignored. Output pointers from it become invalid.
///
/// # Safety
/// `ws` is NULL or a live workspace handle not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn albert_workspace_free(ws: *mut AlbertWorkspace) {
    let _ = catch_unwind(|| {
        if !ws.is_null() {
            // SAFETY: by contract `ws` came from `Box::into_raw` in
            // `new_workspace_handle` and is released exactly once, here.
            drop(unsafe { Box::from_raw(ws) });
        }
    });
}

// ---------------------------------------------------------------------------
// Tokenizing and running.

/// Reads a NUL-terminated UTF-8 argument.
///
/// # Safety
/// `p` is a NUL-terminated string valid for `'s`.
unsafe fn str_arg<'s>(p: *const c_char, what: &'static str) -> Result<&'s str, AlbertResult> {
    // SAFETY: forwarded from this function's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| {
        fail(
            AlbertResult::InvalidUtf8,
            std::format!("`{what}` is not valid UTF-8"),
        )
    })
}

/// Tokenizes `text` (and `pair`, may be NULL) with the model's embedded
/// tokenizer into `[CLS] text [SEP] (pair [SEP])`, writing `capacity` at most
/// token ids and token type ids. `max_len` truncates like transformers'
/// `truncation=True` (0: no truncation). On success `*out_len` is the number
/// of tokens; on `ALBERT_BUFFER_TOO_SMALL` it is the number needed (0 if it
/// could not be counted). Allocates a scratch buffer for the call.
///
/// # Safety
/// `model` is a live model handle; `text` (and `pair` when non-NULL) are
/// NUL-terminated strings; `ids` and `type_ids` are valid for `capacity`
/// `uint32_t` writes; `out_len` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn albert_tokenize(
    model: *const AlbertModel,
    text: *const c_char,
    pair: *const c_char,
    max_len: usize,
    ids: *mut u32,
    type_ids: *mut u32,
    capacity: usize,
    out_len: *mut usize,
) -> AlbertResult {
    guard(|| {
        check_null!(model, text, ids, type_ids, out_len);
        if capacity > isize::MAX as usize / 4 {
            return fail(AlbertResult::InvalidArgument, "capacity too large");
        }
        // SAFETY: checked non-NULL; live by contract.
        let m = unsafe { model_ref(model) };
        let Some(tok) = m.tokenizer() else {
            return fail_plain(AlbertResult::NoTokenizer);
        };
        // SAFETY: checked non-NULL; NUL-terminated by contract.
        let a = match unsafe { str_arg(text, "text") } {
            Ok(s) => s,
            Err(c) => return c,
        };
        let b = if pair.is_null() {
            None
        } else {
            // SAFETY: non-NULL; NUL-terminated by contract.
            match unsafe { str_arg(pair, "pair") } {
                Ok(s) => Some(s),
                Err(c) => return c,
            }
        };
        if ids.cast_const() == type_ids.cast_const() && capacity > 0 {
            return fail(
                AlbertResult::InvalidArgument,
                "`ids` and `type_ids` must not overlap",
            );
        }
        // SAFETY: both pointers are non-NULL and valid for `capacity` u32 writes by
        // contract; they are distinct (checked above) and, by contract, do not
        // overlap, so the two mutable slices are disjoint.
        let (ids_s, types_s) = unsafe {
            (
                core::slice::from_raw_parts_mut(ids, capacity),
                core::slice::from_raw_parts_mut(type_ids, capacity),
            )
        };
        let longest = a.len().max(b.map_or(0, str::len));
        let mut scratch = std::vec![0u8; tok.scratch_len(longest)];
        let max_len = (max_len != 0).then_some(max_len);
        let r = tok.encode_into(a, b, max_len, &mut scratch, ids_s, types_s);
        let (code, n) = match r {
            Ok(n) => (AlbertResult::Ok, n),
            Err(e @ TokenizeError::OutputTooSmall { needed }) => {
                (fail(AlbertResult::BufferTooSmall, e), needed)
            }
            Err(e @ TokenizeError::MaxLenTooSmall) => (fail(AlbertResult::MaxLenTooSmall, e), 0),
            Err(e @ TokenizeError::ScratchTooSmall) => (fail(AlbertResult::ScratchTooSmall, e), 0),
            Err(e @ TokenizeError::LookaheadExceeded) => {
                (fail(AlbertResult::LookaheadExceeded, e), 0)
            }
        };
        // SAFETY: checked non-NULL; valid for a write by contract.
        unsafe { out_len.write(n) };
        code
    })
}

/// Runs the model on `batch` sequences of `seq` tokens (`[batch][seq]`
/// row-major arrays). `attention_mask` (non-zero = attend) may be NULL for all
/// ones, `token_type_ids` NULL for all zeros. The outputs stay in `ws` (read
/// them with `albert_workspace_output*`) until the next run on it. Allocates
/// nothing; several threads may run one model at once with distinct workspaces.
///
/// # Safety
/// `model` is a live model handle; `ws` a live workspace handle not used by
/// another thread; each non-NULL array is valid for `batch * seq` reads.
#[no_mangle]
pub unsafe extern "C" fn albert_run(
    model: *const AlbertModel,
    ws: *mut AlbertWorkspace,
    input_ids: *const u32,
    attention_mask: *const u32,
    token_type_ids: *const u32,
    batch: usize,
    seq: usize,
) -> AlbertResult {
    guard(|| {
        check_null!(model, ws, input_ids);
        // SAFETY: checked non-NULL; live by contract.
        let m = unsafe { model_ref(model) };
        // SAFETY: checked non-NULL; live and exclusively ours by contract.
        let w = unsafe { &mut *ws };
        w.outputs = [None, None];
        if batch == 0 || seq == 0 {
            return fail_plain(AlbertResult::EmptyInput);
        }
        let Some(t) = batch
            .checked_mul(seq)
            .filter(|t| *t <= isize::MAX as usize / 4)
        else {
            return fail(AlbertResult::InvalidArgument, "batch * seq overflows");
        };
        // SAFETY: each non-NULL array pointer (this one and the two below) is
        // valid for `t` u32 reads by contract, and `t * 4` fits in isize (checked above).
        let ids = unsafe { core::slice::from_raw_parts(input_ids, t) };
        let mask = (!attention_mask.is_null())
            // SAFETY: see above.
            .then(|| unsafe { core::slice::from_raw_parts(attention_mask, t) });
        let types = (!token_type_ids.is_null())
            // SAFETY: see above.
            .then(|| unsafe { core::slice::from_raw_parts(token_type_ids, t) });
        let input = Input {
            batch,
            seq,
            input_ids: ids,
            attention_mask: mask,
            token_type_ids: types,
        };
        match m.model.run(&mut w.ws, &input) {
            Ok(outs) => {
                let mut stored = [None, None];
                for (slot, o) in stored.iter_mut().zip(outs.iter()) {
                    let mut shape = [0usize; 3];
                    let rank = o.shape().len().min(3);
                    shape[..rank].copy_from_slice(&o.shape()[..rank]);
                    *slot = Some(StoredOutput {
                        name: output_name(o.name),
                        shape,
                        rank,
                        data: o.data.as_ptr(),
                        len: o.data.len(),
                    });
                }
                w.outputs = stored;
                AlbertResult::Ok
            }
            Err(e) => fail(AlbertResult::from(&e), &e),
        }
    })
}

fn to_c(o: &StoredOutput) -> AlbertOutput {
    AlbertOutput {
        name: o.name.as_ptr(),
        rank: o.rank,
        shape: o.shape,
        data: o.data,
        len: o.len,
    }
}

/// Number of outputs of the last successful run on `ws` (0 if none), in `*out_count`.
///
/// # Safety
/// `ws` is a live workspace handle; `out_count` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn albert_workspace_output_count(
    ws: *const AlbertWorkspace,
    out_count: *mut usize,
) -> AlbertResult {
    guard(|| {
        check_null!(ws, out_count);
        // SAFETY: checked non-NULL; live by contract; only read.
        let w = unsafe { &*ws };
        // SAFETY: checked non-NULL; valid for a write by contract.
        unsafe { out_count.write(w.outputs.iter().flatten().count()) };
        AlbertResult::Ok
    })
}

fn find_output(
    w: &AlbertWorkspace,
    pick: impl Fn(usize, &StoredOutput) -> bool,
) -> Result<StoredOutput, AlbertResult> {
    if w.outputs.iter().all(Option::is_none) {
        return Err(fail_plain(AlbertResult::NoOutputs));
    }
    w.outputs
        .iter()
        .flatten()
        .enumerate()
        .find(|(i, o)| pick(*i, o))
        .map(|(_, o)| *o)
        .ok_or_else(|| fail_plain(AlbertResult::NotFound))
}

/// Describes output `index` (0-based, transformers' order) of the last run.
///
/// # Safety
/// `ws` is a live workspace handle; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn albert_workspace_output(
    ws: *const AlbertWorkspace,
    index: usize,
    out: *mut AlbertOutput,
) -> AlbertResult {
    guard(|| {
        check_null!(ws, out);
        // SAFETY: checked non-NULL; live by contract; only read.
        let w = unsafe { &*ws };
        match find_output(w, |i, _| i == index) {
            Ok(o) => {
                // SAFETY: checked non-NULL; valid for a write by contract.
                unsafe { out.write(to_c(&o)) };
                AlbertResult::Ok
            }
            Err(c) => c,
        }
    })
}

/// Describes the output called `name` (e.g. `"logits"`) of the last run.
///
/// # Safety
/// `ws` is a live workspace handle; `name` a NUL-terminated string; `out` is
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn albert_workspace_output_by_name(
    ws: *const AlbertWorkspace,
    name: *const c_char,
    out: *mut AlbertOutput,
) -> AlbertResult {
    guard(|| {
        check_null!(ws, name, out);
        // SAFETY: checked non-NULL; live by contract; only read.
        let w = unsafe { &*ws };
        // SAFETY: checked non-NULL; NUL-terminated by contract.
        let wanted = unsafe { CStr::from_ptr(name) };
        match find_output(w, |_, o| o.name == wanted) {
            Ok(o) => {
                // SAFETY: checked non-NULL; valid for a write by contract.
                unsafe { out.write(to_c(&o)) };
                AlbertResult::Ok
            }
            Err(c) => c,
        }
    })
}

/// Copies the values of the output called `name` into `dst` (`dst_len`
/// floats). `*out_len` (may be NULL) receives the number of values; when
/// `dst_len` is smaller, nothing is copied and `ALBERT_BUFFER_TOO_SMALL` is
/// returned.
///
/// # Safety
/// `ws` is a live workspace handle; `name` a NUL-terminated string; `dst` is
/// valid for `dst_len` float writes; `out_len` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn albert_workspace_copy_output(
    ws: *const AlbertWorkspace,
    name: *const c_char,
    dst: *mut f32,
    dst_len: usize,
    out_len: *mut usize,
) -> AlbertResult {
    guard(|| {
        check_null!(ws, name, dst);
        // SAFETY: checked non-NULL; live by contract; only read.
        let w = unsafe { &*ws };
        // SAFETY: checked non-NULL; NUL-terminated by contract.
        let wanted = unsafe { CStr::from_ptr(name) };
        let o = match find_output(w, |_, o| o.name == wanted) {
            Ok(o) => o,
            Err(c) => return c,
        };
        if !out_len.is_null() {
            // SAFETY: checked non-NULL; valid for a write by contract.
            unsafe { out_len.write(o.len) };
        }
        if dst_len < o.len {
            return fail(
                AlbertResult::BufferTooSmall,
                std::format!("output needs {} floats, buffer has {dst_len}", o.len),
            );
        }
        // SAFETY: `o.data` points at `o.len` floats written by the last run into
        // this workspace's buffer, which nothing has touched since (runs need
        // `&mut` to the handle; reading it here is shared). `dst` is valid for
        // `dst_len >= o.len` writes by contract; a caller buffer is not part of
        // the workspace, so the ranges do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(o.data, dst, o.len) };
        AlbertResult::Ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_grouped_and_have_messages() {
        let mut seen = std::collections::HashSet::new();
        for r in AlbertResult::ALL {
            assert!(seen.insert(r as u32), "duplicate code {}", r as u32);
            assert_eq!(AlbertResult::from_u32(r as u32), Some(r));
            assert!(!r.message().is_empty());
        }
    }

    #[test]
    fn message_is_truncated_like_snprintf() {
        let mut buf = [0x55 as c_char; 8];
        // SAFETY: `buf` is valid for 8 bytes.
        let n = unsafe { albert_result_message(AlbertResult::Ok as u32, buf.as_mut_ptr(), 4) };
        assert_eq!(n, "success".len());
        // SAFETY: the function wrote a NUL within the first 4 bytes.
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
        assert_eq!(s.to_bytes(), b"suc");
        assert_eq!(buf[4], 0x55);
        // SAFETY: NULL with length 0 is allowed.
        assert_eq!(
            unsafe { albert_result_message(12345, core::ptr::null_mut(), 0) },
            19
        );
    }
}
