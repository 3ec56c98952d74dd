/*
 * FFI misuse tests for the albert-edge C API: NULL pointers, short buffers,
 * wrong sizes, bad strings and corrupted models must give error codes, never
 * a crash. Run by tests/c_example.rs as: capi_misuse MODEL.albert
 * Prints one line per check; exits 0 when all pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "albert_edge.h"

static int failures = 0, checks = 0;

#define EXPECT(expr, code)                                                                 \
  do {                                                                                     \
    albert_result got_ = (expr);                                                           \
    checks++;                                                                              \
    if (got_ != (albert_result)(code)) {                                                   \
      char m_[256];                                                                        \
      albert_last_error_message(m_, sizeof m_);                                            \
      printf("FAIL line %d: %s -> %u, expected %s (%u); last error: %s\n", __LINE__,       \
             #expr, (unsigned)got_, #code, (unsigned)(code), m_);                          \
      failures++;                                                                          \
    }                                                                                      \
  } while (0)

#define CHECK(cond)                                                           \
  do {                                                                        \
    checks++;                                                                 \
    if (!(cond)) {                                                            \
      printf("FAIL line %d: %s\n", __LINE__, #cond);                          \
      failures++;                                                             \
    }                                                                         \
  } while (0)

static unsigned char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  /* 64-byte aligned, plus room for a misaligned copy at +1. */
  size_t cap = ((size_t)n + 1 + 63) / 64 * 64;
  unsigned char *b = aligned_alloc(64, cap);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
  fclose(f);
  *len = (size_t)n;
  return b;
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: capi_misuse MODEL.albert\n"); return 2; }
  albert_model *m = NULL, *m2 = (albert_model *)0x1;
  albert_workspace *ws = NULL;
  size_t n = 0, len = 0;
  char buf[256];

  /* Library-level functions. */
  CHECK(albert_version() != NULL && strlen(albert_version()) > 0);
  CHECK(albert_result_message(ALBERT_OK, buf, sizeof buf) == strlen("success") && strcmp(buf, "success") == 0);
  CHECK(albert_result_message(ALBERT_NULL_PARAMETER, NULL, 0) > 0);
  CHECK(albert_result_message(ALBERT_WORKSPACE_TOO_SMALL, buf, 1) > 0 && buf[0] == 0);
  CHECK(albert_result_message(424242, buf, sizeof buf) > 0);

  /* NULL handles and out-pointers. */
  EXPECT(albert_model_open(NULL, &m), ALBERT_NULL_PARAMETER);
  EXPECT(albert_model_open(argv[1], NULL), ALBERT_NULL_PARAMETER);
  EXPECT(albert_model_read(NULL, &m), ALBERT_NULL_PARAMETER);
  EXPECT(albert_model_from_bytes(NULL, 10, &m), ALBERT_NULL_PARAMETER);
  EXPECT(albert_model_from_bytes_copy(NULL, 10, &m), ALBERT_NULL_PARAMETER);
  EXPECT(albert_model_get_info(NULL, NULL), ALBERT_NULL_PARAMETER);
  EXPECT(albert_model_workspace_len(NULL, 8, 1, &n), ALBERT_NULL_PARAMETER);
  EXPECT(albert_model_label_count(NULL, &n), ALBERT_NULL_PARAMETER);
  EXPECT(albert_model_label(NULL, 0, buf, sizeof buf, NULL), ALBERT_NULL_PARAMETER);
  EXPECT(albert_workspace_new(100, NULL), ALBERT_NULL_PARAMETER);
  EXPECT(albert_workspace_from_buffer(NULL, 100, &ws), ALBERT_NULL_PARAMETER);
  EXPECT(albert_workspace_len(NULL, &n), ALBERT_NULL_PARAMETER);
  EXPECT(albert_run(NULL, NULL, NULL, NULL, NULL, 1, 1), ALBERT_NULL_PARAMETER);
  EXPECT(albert_tokenize(NULL, "x", NULL, 0, NULL, NULL, 0, &n), ALBERT_NULL_PARAMETER);
  EXPECT(albert_workspace_output_count(NULL, &n), ALBERT_NULL_PARAMETER);
  EXPECT(albert_workspace_output(NULL, 0, NULL), ALBERT_NULL_PARAMETER);
  EXPECT(albert_workspace_output_by_name(NULL, "logits", NULL), ALBERT_NULL_PARAMETER);
  EXPECT(albert_workspace_copy_output(NULL, "logits", NULL, 0, NULL), ALBERT_NULL_PARAMETER);
  albert_last_error_message(buf, sizeof buf);
  CHECK(strstr(buf, "NULL") != NULL);
  albert_model_free(NULL);
  albert_workspace_free(NULL);

  /* Missing file, bad UTF-8 path. */
  EXPECT(albert_model_open("/nonexistent/model.albert", &m), ALBERT_IO);
  EXPECT(albert_model_read("/nonexistent/model.albert", &m), ALBERT_IO);
  EXPECT(albert_model_open("\xff\xfe", &m), ALBERT_INVALID_UTF8);
  CHECK(m == NULL);

  /* Corrupted, truncated and misaligned models. */
  unsigned char *bytes = read_file(argv[1], &len);
  CHECK(bytes != NULL && len > 4096);
  if (!bytes) return 1;
  EXPECT(albert_model_from_bytes(bytes, 0, &m), ALBERT_TRUNCATED);
  EXPECT(albert_model_from_bytes(bytes, 100, &m), ALBERT_TRUNCATED);
  EXPECT(albert_model_from_bytes_copy(bytes, len - 64, &m), ALBERT_TRUNCATED);
  memmove(bytes + 1, bytes, len);
  EXPECT(albert_model_from_bytes(bytes + 1, len, &m), ALBERT_MISALIGNED);
  EXPECT(albert_model_from_bytes_copy(bytes + 1, len, &m2), ALBERT_OK); /* the copy is aligned */
  albert_model_free(m2);
  m2 = NULL;
  memmove(bytes, bytes + 1, len);
  bytes[0] ^= 0xff;
  EXPECT(albert_model_from_bytes(bytes, len, &m), ALBERT_BAD_MAGIC);
  bytes[0] ^= 0xff;
  bytes[20] ^= 0x5a; /* inside the CRC-protected header */
  albert_result r = albert_model_from_bytes(bytes, len, &m);
  CHECK(r >= 200 && r < 300);
  printf("corrupted header -> %u\n", (unsigned)r);
  bytes[20] ^= 0x5a;
  bytes[len / 2] ^= 0x01; /* in the weights */
  r = albert_model_from_bytes(bytes, len, &m);
  CHECK(r >= 200 && r < 300);
  printf("corrupted middle -> %u\n", (unsigned)r);
  bytes[len / 2] ^= 0x01;
  CHECK(m == NULL);

  /* The real model, borrowed in place. */
  EXPECT(albert_model_from_bytes(bytes, len, &m), ALBERT_OK);
  if (!m) return 1;
  albert_model_info info;
  EXPECT(albert_model_get_info(m, &info), ALBERT_OK);
  EXPECT(albert_model_get_info(m, NULL), ALBERT_NULL_PARAMETER);
  uint32_t problem = 9, function = 9;
  EXPECT(albert_model_problem_type(m, &problem, &function), ALBERT_OK);
  CHECK(problem == 0 && function == (info.num_labels == 1 ? 1u : 0u)); /* single-label */
  EXPECT(albert_model_problem_type(m, NULL, &function), ALBERT_NULL_PARAMETER);
  EXPECT(albert_model_problem_type(NULL, &problem, &function), ALBERT_NULL_PARAMETER);
  EXPECT(albert_model_workspace_len(m, 0, 1, &n), ALBERT_INVALID_ARGUMENT);
  EXPECT(albert_model_workspace_len(m, 8, 0, &n), ALBERT_INVALID_ARGUMENT);
  EXPECT(albert_model_workspace_len(m, (size_t)-1 / 2, (size_t)-1 / 2, &n), ALBERT_INVALID_ARGUMENT);
  EXPECT(albert_model_workspace_len(m, 8, 1, NULL), ALBERT_NULL_PARAMETER);

  /* Labels. */
  size_t labels = 0;
  EXPECT(albert_model_label_count(m, &labels), ALBERT_OK);
  CHECK(labels == info.num_labels);
  if (labels > 0) {
    EXPECT(albert_model_label(m, 0, buf, sizeof buf, &n), ALBERT_OK);
    CHECK(n == strlen(buf));
    EXPECT(albert_model_label(m, 0, buf, 1, &n), ALBERT_BUFFER_TOO_SMALL);
    CHECK(n > 0);
    EXPECT(albert_model_label(m, 0, buf, 0, NULL), ALBERT_BUFFER_TOO_SMALL);
  }
  EXPECT(albert_model_label(m, labels, buf, sizeof buf, &n), ALBERT_NOT_FOUND);
  EXPECT(albert_model_label(m, (size_t)-1, buf, sizeof buf, &n), ALBERT_NOT_FOUND);

  /* Tokenizer misuse. */
  uint32_t ids[64], types[64];
  if (info.has_tokenizer) {
    EXPECT(albert_tokenize(m, "a fine film", NULL, 0, ids, types, 64, &n), ALBERT_OK);
    CHECK(n >= 3);
    size_t full = n;
    EXPECT(albert_tokenize(m, "a fine film", NULL, 0, ids, types, 2, &n), ALBERT_BUFFER_TOO_SMALL);
    CHECK(n == full);
    EXPECT(albert_tokenize(m, "a fine film", NULL, 0, ids, types, 0, &n), ALBERT_BUFFER_TOO_SMALL);
    EXPECT(albert_tokenize(m, "a fine film", "and a pair", 1, ids, types, 64, &n), ALBERT_MAX_LEN_TOO_SMALL);
    EXPECT(albert_tokenize(m, "a fine film", NULL, 0, ids, ids, 64, &n), ALBERT_INVALID_ARGUMENT);
    EXPECT(albert_tokenize(m, "bad \xc3\x28 utf8", NULL, 0, ids, types, 64, &n), ALBERT_INVALID_UTF8);
    EXPECT(albert_tokenize(m, "x", "bad \xff", 0, ids, types, 64, &n), ALBERT_INVALID_UTF8);
    EXPECT(albert_tokenize(m, "x", NULL, 0, ids, types, 64, NULL), ALBERT_NULL_PARAMETER);
    EXPECT(albert_tokenize(m, "", NULL, 0, ids, types, 64, &n), ALBERT_OK);
    CHECK(n == 2);
  } else {
    EXPECT(albert_tokenize(m, "x", NULL, 0, ids, types, 64, &n), ALBERT_NO_TOKENIZER);
  }

  /* Workspaces and runs with wrong sizes. */
  size_t need = 0;
  EXPECT(albert_model_workspace_len(m, 8, 1, &need), ALBERT_OK);
  EXPECT(albert_workspace_new(0, &ws), ALBERT_INVALID_ARGUMENT);
  EXPECT(albert_workspace_new((size_t)-1, &ws), ALBERT_INVALID_ARGUMENT);
  for (int i = 0; i < 64; i++) { ids[i] = 5 + i % 8; types[i] = 0; }
  ids[0] = 2;
  ids[7] = 3;
  /* workspace_len is the exact requirement for a buffer at any alignment. */
  unsigned char *small = aligned_alloc(64, need + 64);
  EXPECT(albert_workspace_from_buffer(small, need - 65, &ws), ALBERT_OK);
  EXPECT(albert_run(m, ws, ids, NULL, NULL, 1, 8), ALBERT_WORKSPACE_TOO_SMALL);
  albert_last_error_message(buf, sizeof buf);
  printf("too-small workspace message: %s\n", buf);
  albert_workspace_free(ws);
  /* One byte short fails from any start; the exact size works from any start. */
  EXPECT(albert_workspace_from_buffer(small + 1, need - 1, &ws), ALBERT_OK);
  EXPECT(albert_run(m, ws, ids, NULL, NULL, 1, 8), ALBERT_WORKSPACE_TOO_SMALL);
  albert_workspace_free(ws);
  EXPECT(albert_workspace_from_buffer(small + 1, need, &ws), ALBERT_OK);
  EXPECT(albert_run(m, ws, ids, NULL, NULL, 1, 8), ALBERT_OK);
  albert_workspace_free(ws);
  EXPECT(albert_workspace_from_buffer(small, need - 65, &ws), ALBERT_OK);
  EXPECT(albert_run(m, ws, ids, NULL, NULL, 1, 8), ALBERT_WORKSPACE_TOO_SMALL);
  EXPECT(albert_workspace_output_count(ws, &n), ALBERT_OK);
  CHECK(n == 0);
  albert_output o;
  EXPECT(albert_workspace_output(ws, 0, &o), ALBERT_NO_OUTPUTS);
  albert_workspace_free(ws);
  free(small);
  ws = NULL;

  EXPECT(albert_workspace_new(need, &ws), ALBERT_OK);
  EXPECT(albert_workspace_len(ws, &n), ALBERT_OK);
  CHECK(n >= need);
  EXPECT(albert_run(m, ws, NULL, NULL, NULL, 1, 8), ALBERT_NULL_PARAMETER);
  EXPECT(albert_run(m, NULL, ids, NULL, NULL, 1, 8), ALBERT_NULL_PARAMETER);
  EXPECT(albert_run(m, ws, ids, NULL, NULL, 0, 8), ALBERT_EMPTY_INPUT);
  EXPECT(albert_run(m, ws, ids, NULL, NULL, 1, 0), ALBERT_EMPTY_INPUT);
  EXPECT(albert_run(m, ws, ids, NULL, NULL, (size_t)-1, 2), ALBERT_INVALID_ARGUMENT);
  EXPECT(albert_run(m, ws, ids, NULL, NULL, 2, 8), ALBERT_WORKSPACE_TOO_SMALL); /* sized for batch 1 */
  EXPECT(albert_run(m, ws, ids, NULL, NULL, 1, info.max_positions + 1), ALBERT_SEQUENCE_TOO_LONG);
  ids[3] = info.vocab_size;
  EXPECT(albert_run(m, ws, ids, NULL, NULL, 1, 8), ALBERT_TOKEN_OUT_OF_RANGE);
  albert_last_error_message(buf, sizeof buf);
  printf("out-of-vocabulary message: %s\n", buf);
  CHECK(strstr(buf, "position 3") != NULL);
  ids[3] = 7;
  types[2] = info.type_vocab_size;
  EXPECT(albert_run(m, ws, ids, NULL, types, 1, 8), ALBERT_TOKEN_TYPE_OUT_OF_RANGE);
  types[2] = 0;

  /* A good run, then output access misuse. */
  uint32_t mask[8] = {1, 1, 1, 1, 1, 1, 0, 0};
  EXPECT(albert_run(m, ws, ids, mask, types, 1, 8), ALBERT_OK);
  EXPECT(albert_workspace_output_count(ws, &n), ALBERT_OK);
  CHECK(n >= 1);
  EXPECT(albert_workspace_output(ws, 0, &o), ALBERT_OK);
  CHECK(o.data != NULL && o.len > 0 && o.rank >= 1 && o.rank <= 3);
  size_t prod = 1;
  for (size_t i = 0; i < o.rank; i++) prod *= o.shape[i];
  CHECK(prod == o.len);
  EXPECT(albert_workspace_output(ws, 5, &o), ALBERT_NOT_FOUND);
  EXPECT(albert_workspace_output_by_name(ws, "no_such_output", &o), ALBERT_NOT_FOUND);
  EXPECT(albert_workspace_output_by_name(ws, NULL, &o), ALBERT_NULL_PARAMETER);
  albert_output first;
  EXPECT(albert_workspace_output(ws, 0, &first), ALBERT_OK);
  EXPECT(albert_workspace_output_by_name(ws, first.name, &o), ALBERT_OK);
  CHECK(o.data == first.data && o.len == first.len);
  float dst[4096];
  EXPECT(albert_workspace_copy_output(ws, first.name, dst, 0, &n), ALBERT_BUFFER_TOO_SMALL);
  CHECK(n == first.len);
  if (first.len <= 4096) {
    EXPECT(albert_workspace_copy_output(ws, first.name, dst, 4096, &n), ALBERT_OK);
    CHECK(memcmp(dst, first.data, first.len * sizeof(float)) == 0);
  }
  /* A failed run clears the outputs. */
  EXPECT(albert_run(m, ws, ids, NULL, NULL, 1, 0), ALBERT_EMPTY_INPUT);
  EXPECT(albert_workspace_output(ws, 0, &o), ALBERT_NO_OUTPUTS);

  /* The workspace outlives the model; the model outlives nothing else. */
  EXPECT(albert_run(m, ws, ids, NULL, NULL, 1, 8), ALBERT_OK);
  albert_model_free(m);
  EXPECT(albert_workspace_output(ws, 0, &o), ALBERT_OK);
  albert_workspace_free(ws);
  free(bytes);

  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
