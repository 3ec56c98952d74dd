/*
 * c-classify: classify a sentence with an albert-edge model from C.
 *
 *   c-classify MODEL.albert "text" ["second text"]
 *
 * Loads the model (memory-mapped), tokenizes the text with the tokenizer
 * embedded in the model file, runs it in a workspace held in our own memory,
 * and prints the predicted label, the logits (%.9g: enough digits to
 * round-trip an f32 exactly) and the softmax probabilities.
 *
 * Exit codes: 0 ok, 1 an albert-edge error (message on stderr), 2 usage.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "albert_edge.h"

#define MAX_SEQ 128

static int fail(const char *what, albert_result r) {
  char detail[256];
  albert_last_error_message(detail, sizeof detail);
  fprintf(stderr, "c-classify: %s failed: error %u: %s\n", what, (unsigned)r, detail);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s MODEL.albert TEXT [PAIR]\n", argv[0]);
    return 2;
  }
  albert_model *model = NULL;
  albert_workspace *ws = NULL;
  void *ws_mem = NULL;
  int status = 1;
  albert_result r;

  if ((r = albert_model_open(argv[1], &model)) != ALBERT_OK) return fail("loading the model", r);

  albert_model_info info;
  if ((r = albert_model_get_info(model, &info)) != ALBERT_OK) { fail("albert_model_get_info", r); goto out; }
  size_t max_seq = info.max_positions < MAX_SEQ ? info.max_positions : MAX_SEQ;

  /* Tokenize. */
  uint32_t ids[MAX_SEQ], types[MAX_SEQ];
  size_t n = 0;
  r = albert_tokenize(model, argv[2], argc == 4 ? argv[3] : NULL, max_seq, ids, types, MAX_SEQ, &n);
  if (r != ALBERT_OK) { fail("tokenizing", r); goto out; }

  /* A workspace in our own (aligned) memory, sized for this sequence. */
  size_t ws_len = 0;
  if ((r = albert_model_workspace_len(model, n, 1, &ws_len)) != ALBERT_OK) { fail("albert_model_workspace_len", r); goto out; }
  ws_mem = aligned_alloc(ALBERT_MODEL_ALIGN, (ws_len + ALBERT_MODEL_ALIGN - 1) / ALBERT_MODEL_ALIGN * ALBERT_MODEL_ALIGN);
  if (!ws_mem) { fprintf(stderr, "c-classify: out of memory\n"); goto out; }
  if ((r = albert_workspace_from_buffer(ws_mem, ws_len, &ws)) != ALBERT_OK) { fail("albert_workspace_from_buffer", r); goto out; }

  /* Run (mask NULL = all ones). */
  if ((r = albert_run(model, ws, ids, NULL, types, 1, n)) != ALBERT_OK) { fail("running", r); goto out; }

  albert_output logits;
  if ((r = albert_workspace_output_by_name(ws, "logits", &logits)) != ALBERT_OK) { fail("reading logits", r); goto out; }
  if (logits.rank != 2 || logits.len == 0) { fprintf(stderr, "c-classify: not a sequence classifier\n"); goto out; }

  /* Scores as transformers' pipeline gives them for this model's problem type:
   * softmax (one class), a sigmoid per label (multi-label, or one output), or
   * the logits themselves (regression). */
  uint32_t problem = 0, function = 0;
  if ((r = albert_model_problem_type(model, &problem, &function)) != ALBERT_OK) { fail("albert_model_problem_type", r); goto out; }
  size_t best = 0;
  float mx = logits.data[0];
  for (size_t i = 1; i < logits.len; i++)
    if (logits.data[i] > mx) { mx = logits.data[i]; best = i; }
  double sum = 0;
  for (size_t i = 0; i < logits.len; i++) sum += exp((double)logits.data[i] - mx);

  char label[64];
  if (albert_model_label(model, best, label, sizeof label, NULL) != ALBERT_OK)
    snprintf(label, sizeof label, "LABEL_%zu", best);
  printf("tokens: %zu\n", n);
  printf("label: %s\n", label);
  printf("logits:");
  for (size_t i = 0; i < logits.len; i++) printf(" %.9g", (double)logits.data[i]);
  printf("\n%s:", function == 0 ? "probabilities" : function == 1 ? "scores (sigmoid)" : "scores");
  for (size_t i = 0; i < logits.len; i++) {
    char name[64];
    double x = (double)logits.data[i];
    double s = function == 0 ? exp(x - mx) / sum : function == 1 ? 1.0 / (1.0 + exp(-x)) : x;
    if (albert_model_label(model, i, name, sizeof name, NULL) != ALBERT_OK) snprintf(name, sizeof name, "LABEL_%zu", i);
    printf(" %s=%.4f", name, s);
  }
  printf("\n");
  status = 0;

out:
  albert_workspace_free(ws); /* before releasing its memory */
  free(ws_mem);
  albert_model_free(model);
  return status;
}
