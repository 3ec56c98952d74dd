"""Sequence classifiers of every problem type against transformers' pipeline.

    python pipeline.py BIN_DIR WORK_DIR SPIECE_MODEL

For each of single-label (3 labels), multi-label (4 labels), regression (1 output)
and one output without a problem type: a random AlbertForSequenceClassification
(transformers 5, fp32) is saved with the given SentencePiece model, converted to
f32 and int8 files, and `albert-edge classify --json` is compared with what
`pipeline("text-classification")` makes of the model's logits (its `postprocess`,
which picks softmax, sigmoid or nothing from `problem_type` and the label count).
The model runs on the ids `albert-edge tokenize` gives: transformers 5's own
tokenizer is not the sentencepiece one on every text (e.g. "so-so"; see the
fixtures' README), and tokenizer.py checks ours against the sentencepiece one.
Pass: the f32 scores within 1e-5 of the pipeline's and the same top label; for
int8 files the same top label on every text whose top two scores differ by more
than 0.05. Also an AlbertForMultipleChoice model: `albert-edge choose` (each
pair run alone) against the model on the pairs padded into one batch, and the
softmax over the choices. Prints one line per model; exit status 1 on any failure.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from transformers import (
    AlbertConfig,
    AlbertForMultipleChoice,
    AlbertForSequenceClassification,
    AutoTokenizer,
    pipeline,
)

TEXTS = [
    "a fine film",
    "dull and long, and then some",
    "the best thing this year",
    "I want my money back.",
    "so-so",
]

CASES = [
    # name, problem_type, labels
    ("single", "single_label_classification", 3),
    ("multi", "multi_label_classification", 4),
    ("regression", "regression", 1),
    ("one-output", None, 1),
]


def saved(cls, d, spiece, tok, **config):
    """A small random `cls` model (its classifier scaled up: random heads give
    logits near 0), saved in `d` with the SentencePiece model."""
    cfg = AlbertConfig(
        vocab_size=tok.vocab_size,
        embedding_size=32,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=96,
        num_hidden_layers=2,
        **config,
    )
    model = cls(cfg).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(50.0)
    model.save_pretrained(d)
    shutil.copy(spiece, d / "spiece.model")
    return model


def main():
    bin_dir, work, spiece = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    # The tokenizer transformers makes of the SentencePiece model (its folder
    # needs the model type to pick the ALBERT conversion).
    tok_dir = work / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    shutil.copy(spiece, tok_dir / "spiece.model")
    (tok_dir / "config.json").write_text(json.dumps({"model_type": "albert"}))
    tok = AutoTokenizer.from_pretrained(tok_dir)
    # A model file that is only there for `albert-edge tokenize`.
    ids_dir = work / "ids-model"
    AlbertForSequenceClassification(
        AlbertConfig(vocab_size=tok.vocab_size, embedding_size=8, hidden_size=8,
                     num_attention_heads=1, intermediate_size=8, num_hidden_layers=1)
    ).save_pretrained(ids_dir)
    shutil.copy(spiece, ids_dir / "spiece.model")
    subprocess.run(
        [bin_dir / "albert-convert", ids_dir, "-o", work / "tokenizer.albert", "--precision", "f32", "-q"],
        check=True,
    )
    failed = False
    for name, problem, n in CASES:
        d = work / name
        model = saved(
            AlbertForSequenceClassification, d, spiece, tok, num_labels=n, problem_type=problem
        )
        pipe = pipeline("text-classification", model=model, tokenizer=tok)
        want = []
        for t in TEXTS:
            out = subprocess.run(
                [bin_dir / "albert-edge", "tokenize", work / "tokenizer.albert", t, "--json"],
                check=True,
                capture_output=True,
            ).stdout
            ids = torch.tensor([json.loads(out)["input_ids"]])
            with torch.no_grad():
                logits = model(input_ids=ids).logits
            scores = pipe.postprocess({"logits": logits}, top_k=None)
            want.append({s["label"]: s["score"] for s in scores})
        for precision in ["f32", "int8"]:
            f = work / f"{name}.{precision}.albert"
            subprocess.run(
                [bin_dir / "albert-convert", d, "-o", f, "--precision", precision, "-q"],
                check=True,
            )
            worst, label_ok = 0.0, True
            for t, w in zip(TEXTS, want):
                out = subprocess.run(
                    [bin_dir / "albert-edge", "classify", f, t, "--json"],
                    check=True,
                    capture_output=True,
                ).stdout
                got = json.loads(out)
                top = max(w, key=w.get)
                ranked = sorted(w.values(), reverse=True)
                clear = len(ranked) == 1 or ranked[0] - ranked[1] > 0.05
                if precision == "f32" or clear:
                    label_ok &= got["label"] == top
                worst = max(worst, max(abs(got["scores"][k] - v) for k, v in w.items()))
            ok = label_ok and (precision == "int8" or worst <= 1e-5)
            failed |= not ok
            print(
                f"{name:<11} {precision:<4} scores {got['function']:<7} "
                f"worst |score - pipeline| {worst:.2e}, top labels {'same' if label_ok else 'DIFFER'}"
                f"{'' if ok else '  FAIL'}"
            )
    failed |= multiple_choice(bin_dir, work, spiece, tok)
    sys.exit(1 if failed else 0)


def multiple_choice(bin_dir, work, spiece, tok):
    """AlbertForMultipleChoice: `albert-edge choose` (each pair alone) against the
    model's logits on the pairs padded into one [1, choices, seq] batch, and the
    softmax over them. Returns True on failure."""
    d = work / "multiple-choice"
    model = saved(AlbertForMultipleChoice, d, spiece, tok)
    prompt = "the film was"
    choices = ["a fine film", "dull and long", "so so, if you like that sort of thing"]
    ids, types = [], []
    for c in choices:
        out = subprocess.run(
            [bin_dir / "albert-edge", "tokenize", work / "tokenizer.albert", prompt, "--pair", c, "--json"],
            check=True,
            capture_output=True,
        ).stdout
        e = json.loads(out)
        ids.append(e["input_ids"])
        types.append(e["token_type_ids"])
    s = max(len(i) for i in ids)
    mask = [[1] * len(i) + [0] * (s - len(i)) for i in ids]
    pad = lambda rows: torch.tensor([[r + [0] * (s - len(r)) for r in rows]])
    with torch.no_grad():
        want = model(input_ids=pad(ids), token_type_ids=pad(types), attention_mask=torch.tensor([mask])).logits[0]
    want_p = torch.softmax(want, -1)
    failed = False
    for precision in ["f32", "int8"]:
        f = work / f"multiple-choice.{precision}.albert"
        subprocess.run(
            [bin_dir / "albert-convert", d, "-o", f, "--precision", precision, "-q"], check=True
        )
        args = [bin_dir / "albert-edge", "choose", f, prompt, "--json"]
        for c in choices:
            args += ["--choice", c]
        got = json.loads(subprocess.run(args, check=True, capture_output=True).stdout)
        worst = max(abs(a - b) for a, b in zip(got["scores"], want_p.tolist()))
        ranked = sorted(want_p.tolist(), reverse=True)
        clear = ranked[0] - ranked[1] > 0.05
        same = got["choice_id"] == int(want_p.argmax())
        ok = (same or (precision == "int8" and not clear)) and (precision == "int8" or worst <= 1e-5)
        failed |= not ok
        print(
            f"{'choice':<11} {precision:<4} scores softmax over choices, worst |score - transformers| "
            f"{worst:.2e}, best choice {'same' if same else 'differs'} "
            f"(transformers: {', '.join(f'{p:.3f}' for p in want_p.tolist())})"
            f"{'' if ok else '  FAIL'}"
        )
    return failed


if __name__ == "__main__":
    main()
