/*
 * albert_edge.h: C API of the albert-edge runtime (int8 ALBERT inference).
 *
 * Hand-written; kept in sync with src/capi/mod.rs by tests/c_example.rs, which
 * compiles C programs against this header and the built library.
 *
 * Build the library (static and shared) with:
 *   cargo rustc --lib --release --no-default-features --features capi --crate-type staticlib
 *   cargo rustc --lib --release --no-default-features --features capi --crate-type cdylib
 * and link the static one with: -lalbert_edge -lpthread -ldl -lm
 *
 * Conventions
 * - Every fallible function returns an albert_result (0 = ALBERT_OK). Out
 *   parameters are written on success only, unless a function says otherwise.
 * - Messages: albert_result_message() (fixed text of a code) and
 *   albert_last_error_message() (detail of this thread's last failure) copy
 *   into your buffer, snprintf-style. Nothing to free.
 * - Handles are opaque. Each constructor has a matching _free that accepts NULL.
 * - No panic or unwind crosses this boundary: an internal bug is reported as
 *   ALBERT_PANIC.
 * - Threads: an albert_model is immutable and may be used by any number of
 *   threads at once; each concurrent inference needs its own albert_workspace.
 * - albert_run allocates nothing. Model constructors allocate the handle (and
 *   the copy, for _from_bytes_copy / _read); albert_tokenize allocates a
 *   scratch buffer for the call.
 */
#ifndef ALBERT_EDGE_H
#define ALBERT_EDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Result codes: stable numbers, grouped by range. Never renumbered. */
typedef uint32_t albert_result;
enum {
  ALBERT_OK = 0,

  /* 1xx: the caller's arguments */
  ALBERT_NULL_PARAMETER = 100,   /* a required pointer is NULL */
  ALBERT_INVALID_ARGUMENT = 101, /* a value is out of range (zero size, overflow, ...) */
  ALBERT_BUFFER_TOO_SMALL = 102, /* a caller buffer is too small */
  ALBERT_INVALID_UTF8 = 103,     /* a string is not valid UTF-8 */
  ALBERT_NOT_FOUND = 104,        /* no output / label with that name or index */
  ALBERT_NO_TOKENIZER = 105,     /* the model file has no tokenizer */
  ALBERT_NO_OUTPUTS = 106,       /* the workspace has no successful run */

  /* 2xx: the model file */
  ALBERT_IO = 200,
  ALBERT_TRUNCATED = 201,
  ALBERT_BAD_MAGIC = 202,
  ALBERT_UNSUPPORTED_VERSION = 203,
  ALBERT_CHECKSUM_MISMATCH = 204,
  ALBERT_TRAILING_BYTES = 205,
  ALBERT_MISALIGNED = 206, /* bytes not 64-byte aligned: use albert_model_from_bytes_copy */
  ALBERT_BAD_SECTION = 207,
  ALBERT_MISSING_SECTION = 208,
  ALBERT_UNKNOWN_CODE = 209,
  ALBERT_DIMENSION_OUT_OF_RANGE = 210,
  ALBERT_INCONSISTENT = 211,
  ALBERT_OVERFLOW = 212,
  ALBERT_BAD_TENSOR = 213,
  ALBERT_MISSING_TENSOR = 214,
  ALBERT_BIG_ENDIAN_HOST = 215,
  ALBERT_BAD_TOKENIZER = 216,

  /* 3xx: running */
  ALBERT_EMPTY_INPUT = 300,
  ALBERT_SHAPE_MISMATCH = 301,
  ALBERT_TOKEN_OUT_OF_RANGE = 302,
  ALBERT_TOKEN_TYPE_OUT_OF_RANGE = 303,
  ALBERT_SEQUENCE_TOO_LONG = 304,
  ALBERT_WORKSPACE_TOO_SMALL = 305,

  /* 4xx: tokenizing */
  ALBERT_MAX_LEN_TOO_SMALL = 400,
  ALBERT_SCRATCH_TOO_SMALL = 401,
  ALBERT_LOOKAHEAD_EXCEEDED = 402,

  /* 9xx: internal */
  ALBERT_PANIC = 900
};

/* Alignment that albert_model_from_bytes requires of the model bytes, and that
 * makes a caller workspace buffer waste nothing. */
#define ALBERT_MODEL_ALIGN 64

/* An immutable, validated model. Thread-safe to share. */
typedef struct albert_model albert_model;
/* Scratch memory for one inference at a time, plus its last outputs. */
typedef struct albert_workspace albert_workspace;

/* One output tensor. `data` points into the workspace: valid until the next
 * albert_run on it or albert_workspace_free. */
typedef struct albert_output {
  const char *name;   /* "logits", "last_hidden_state", "pooler_output", "start_logits", "end_logits" */
  size_t rank;        /* 1..3 */
  size_t shape[3];    /* outermost first; unused entries 0 */
  const float *data;  /* row-major */
  size_t len;         /* number of floats */
} albert_output;

typedef struct albert_model_info {
  uint32_t vocab_size;
  uint32_t hidden_size;
  uint32_t max_positions;   /* longest sequence */
  uint32_t type_vocab_size;
  uint32_t num_labels;      /* label names available (0 if none) */
  uint32_t head;            /* 0 base, 1 seq. classification, 2 token classification, 3 QA, 4 masked LM */
  uint32_t has_tokenizer;   /* 1 if albert_tokenize works */
  uint32_t int8;            /* 1 for int8 weights, 0 for f32 */
} albert_model_info;

/* ---- library ---------------------------------------------------------- */

/* Version string such as "0.1.0" (static; do not free). */
const char *albert_version(void);

/* Copies the fixed message of `code` into buf (at most len-1 bytes + NUL; buf
 * may be NULL if len is 0). Returns the full message length. */
size_t albert_result_message(albert_result code, char *buf, size_t len);

/* Copies the detailed message of this thread's last failed call (e.g. "token
 * id 9000 at position 3 is out of range (vocabulary size 8000)"), like
 * albert_result_message. Returns its full length (0 if none). */
size_t albert_last_error_message(char *buf, size_t len);

/* ---- models ----------------------------------------------------------- */

/* Validates a model in your memory and uses it in place (no copy). `bytes`
 * must be 64-byte aligned and stay alive and unchanged until
 * albert_model_free. */
albert_result albert_model_from_bytes(const uint8_t *bytes, size_t len, albert_model **out);

/* Copies the bytes (any alignment) into library memory, then validates. */
albert_result albert_model_from_bytes_copy(const uint8_t *bytes, size_t len, albert_model **out);

/* Memory-maps the file (UTF-8 path). Do not modify the file in place while the
 * model lives (replacing it by rename is fine). */
albert_result albert_model_open(const char *path, albert_model **out);

/* Reads the file into library memory. */
albert_result albert_model_read(const char *path, albert_model **out);

/* Releases a model; NULL is ignored. Workspaces and their outputs stay valid. */
void albert_model_free(albert_model *model);

albert_result albert_model_get_info(const albert_model *model, albert_model_info *out);

/* What a sequence classifier's logits mean and how they become scores, as
 * transformers' text-classification pipeline applies them (config.json's
 * problem_type): *problem_type 0 single-label, 1 multi-label, 2 regression,
 * 3 multiple choice (AlbertForMultipleChoice; 0 for other heads);
 * *score_function 0 softmax, 1 sigmoid per label (multi-label models and
 * single-output ones), 2 none (the logits are the scores), 3 softmax over the
 * rows: run one (prompt, choice) pair per row, each row's one logit scores it. */
albert_result albert_model_problem_type(const albert_model *model, uint32_t *problem_type,
                                        uint32_t *score_function);

/* Exact workspace bytes for up to `batch` sequences of up to `max_seq` tokens. */
albert_result albert_model_workspace_len(const albert_model *model, size_t max_seq, size_t batch,
                                         size_t *out_len);

albert_result albert_model_label_count(const albert_model *model, size_t *out_count);

/* Copies label `index` (NUL-terminated) into buf. *out_len (may be NULL) gets
 * its length without the NUL, also on ALBERT_BUFFER_TOO_SMALL. */
albert_result albert_model_label(const albert_model *model, size_t index, char *buf, size_t len,
                                 size_t *out_len);

/* ---- workspaces ------------------------------------------------------- */

/* Allocates a workspace of `len` bytes (from albert_model_workspace_len). */
albert_result albert_workspace_new(size_t len, albert_workspace **out);

/* Uses your memory (any alignment, ALBERT_MODEL_ALIGN preferred) as the
 * workspace; keep it alive and untouched until albert_workspace_free. */
albert_result albert_workspace_from_buffer(void *buf, size_t len, albert_workspace **out);

albert_result albert_workspace_len(const albert_workspace *ws, size_t *out_len);

/* Releases a workspace; NULL is ignored. Its output pointers become invalid. */
void albert_workspace_free(albert_workspace *ws);

/* ---- tokenizing and running ------------------------------------------- */

/* Encodes "[CLS] text [SEP]" or "[CLS] text [SEP] pair [SEP]" (pair may be
 * NULL) with the model's tokenizer into ids / type_ids (capacity entries
 * each). max_len truncates like transformers' truncation=True (0: none).
 * *out_len: tokens written; on ALBERT_BUFFER_TOO_SMALL, tokens needed. */
albert_result albert_tokenize(const albert_model *model, const char *text, const char *pair,
                              size_t max_len, uint32_t *ids, uint32_t *type_ids, size_t capacity,
                              size_t *out_len);

/* Runs `batch` sequences of `seq` tokens ([batch][seq] row-major arrays).
 * attention_mask may be NULL (all ones), token_type_ids NULL (all zeros).
 * Outputs stay in `ws` until its next run. Allocates nothing. */
albert_result albert_run(const albert_model *model, albert_workspace *ws, const uint32_t *input_ids,
                         const uint32_t *attention_mask, const uint32_t *token_type_ids,
                         size_t batch, size_t seq);

albert_result albert_workspace_output_count(const albert_workspace *ws, size_t *out_count);

/* Output `index` of the last run, in transformers' order. */
albert_result albert_workspace_output(const albert_workspace *ws, size_t index, albert_output *out);

albert_result albert_workspace_output_by_name(const albert_workspace *ws, const char *name,
                                              albert_output *out);

/* Copies the values of output `name` into dst (dst_len floats). *out_len (may
 * be NULL) gets the number of values, also on ALBERT_BUFFER_TOO_SMALL. */
albert_result albert_workspace_copy_output(const albert_workspace *ws, const char *name, float *dst,
                                           size_t dst_len, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif /* ALBERT_EDGE_H */
