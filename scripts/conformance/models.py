"""Random-shape ALBERTs: transformers (PyTorch, fp32, eager attention) against
albert-convert + albert-edge, through safetensors and ONNX (both torch exporters).

    python models.py BIN_DIR WORK_DIR [--quick]

For every shape and head below: build the transformers model with random weights
(ckpt.py), save it, export it to ONNX (TorchScript exporter at opset 17, with eager and
with transformers' default scaled-dot-product attention; for one head per shape also at
opset 14, without a token_type_ids input, and with the dynamo exporter, eager and sdpa),
convert each source to an f32
and an int8 file, run five inputs (1, 7 and 33 tokens, a padded batch of 3 with segment B, and the longest the positions allow up to
200) with `albert-edge run`, and compare every output on the unpadded tokens. Fails
(exit 1) if an f32 file is off by more than 1e-4 relative to the output's largest
magnitude, if an int8 file's cosine similarity falls below 0.995, or if anything fails to
convert or run.
"""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import transformers

import ckpt

torch.set_num_threads(1)

SHAPES = {
    # name: (config, heads); the first head is also exported at opset 14 and with dynamo
    "h48-3heads-i100": (dict(embedding_size=16, hidden_size=48, num_attention_heads=3, intermediate_size=100,
                             num_hidden_layers=3, num_hidden_groups=3), ["seqcls7", "base", "qa"]),
    "h312-12heads-gelu": (dict(embedding_size=128, hidden_size=312, num_attention_heads=12, intermediate_size=1248,
                               num_hidden_layers=4, hidden_act="gelu"), ["tokcls3", "seqcls2", "mlm"]),
    "h40-5heads-inner3-relu": (dict(embedding_size=24, hidden_size=40, num_attention_heads=5, intermediate_size=72,
                                    num_hidden_layers=5, inner_group_num=3, hidden_act="relu"), ["seqcls1", "base"]),
    "h64-7layers-3groups": (dict(embedding_size=64, hidden_size=64, num_attention_heads=2, intermediate_size=200,
                                 num_hidden_layers=7, num_hidden_groups=3, inner_group_num=2,
                                 hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-5,
                                 max_position_embeddings=160, type_vocab_size=3), ["base", "seqcls2", "mlm"]),
    "h96-1head-e8-i17": (dict(embedding_size=8, hidden_size=96, num_attention_heads=1, intermediate_size=17,
                              num_hidden_layers=2), ["qa", "seqcls3", "tokcls3"]),
}
for act in ("gelu_fast", "gelu_accurate", "gelu_python", "gelu_python_tanh"):
    SHAPES["act-" + act] = (dict(embedding_size=32, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                                 num_hidden_layers=3, hidden_act=act), ["seqcls2"])

OUTPUTS = {"base": ["last_hidden_state", "pooler_output"], "qa": ["start_logits", "end_logits"]}
F32_REL = 1e-4
INT8_COS = 0.995
VOCAB = 8000


def build(cfg, head, seed):
    cls, extra = ckpt.HEADS[head]
    c = ckpt.config(VOCAB, architecture=cls, **cfg, **extra)
    w = ckpt.weights(c, head, seed)
    hf = transformers.AlbertConfig(**{k: v for k, v in c.items() if k not in ("model_type", "architectures")})
    hf._attn_implementation = "eager"
    model = getattr(transformers, cls)(hf).eval()
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()}, strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith("predictions.decoder") for k in missing), missing  # tied to the embeddings
    return c, w, model


def inputs(c, rng):
    P, T = c["max_position_embeddings"], c["type_vocab_size"]

    def make(lens, pair=False):
        B, S = len(lens), max(lens)
        ids, am, tt = (np.zeros((B, S), np.int64) for _ in range(3))
        for b, n in enumerate(lens):
            ids[b, :n] = rng.integers(5, c["vocab_size"], n)
            ids[b, 0], ids[b, n - 1] = 2, 3
            if n > 3:
                ids[b, rng.integers(1, n - 1)] = 4
            am[b, :n] = 1
            if pair and n > 4:
                ids[b, n // 2] = 3
                tt[b, n // 2 + 1:n] = min(1, T - 1)
                tt[b, n - 1] = T - 1
        return dict(input_ids=ids, attention_mask=am, token_type_ids=tt)

    return [("len1", make([1])), ("len7", make([7])), ("len33-pair", make([33], pair=True)),
            ("batch3-padded", make([5, 19, 12], pair=True)), ("long", make([min(P, 200)]))]


def export(model, path, names, example, tag):
    """`tag`: "onnx" (TorchScript exporter, opset 17), "onnx-opset14", "onnx-no-token-types"
    (inputs input_ids and attention_mask only) or "onnx-dynamo"; with "-sdpa", the model
    exported with transformers' default scaled-dot-product attention instead of eager."""
    if tag.endswith("-sdpa"):
        model.set_attn_implementation("sdpa")
        try:
            return export(model, path, names, example, tag[:-len("-sdpa")])
        finally:
            model.set_attn_implementation("eager")
    args = tuple(torch.from_numpy(example[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if tag == "onnx-no-token-types":
            class IdsAndMask(torch.nn.Module):  # an export without token_type_ids (type 0 built in)
                def __init__(self, m):
                    super().__init__()
                    self.m = m

                def forward(self, input_ids, attention_mask):
                    return self.m(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)

            dyn = {n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask")}
            torch.onnx.export(IdsAndMask(model).eval(), args[:2], str(path), input_names=["input_ids", "attention_mask"],
                              output_names=names, dynamic_axes=dyn, opset_version=17, dynamo=False)
        elif tag == "onnx-dynamo":
            b, s = torch.export.Dim("batch"), torch.export.Dim("seq")
            torch.onnx.export(model, args, str(path), input_names=["input_ids", "attention_mask", "token_type_ids"],
                              output_names=names, dynamo=True,
                              dynamic_shapes={k: {0: b, 1: s} for k in ("input_ids", "attention_mask", "token_type_ids")})
        else:
            dyn = {n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask", "token_type_ids")}
            torch.onnx.export(model, args, str(path), kwargs={"return_dict": False},
                              input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=names,
                              dynamic_axes=dyn, opset_version=14 if tag == "onnx-opset14" else 17, dynamo=False)
    model.eval()  # the exporters restore the mode they found; make sure it is eval


def main():
    bin_dir, work = Path(sys.argv[1]), Path(sys.argv[2])
    quick = "--quick" in sys.argv
    failures, rows = [], []
    for si, (shape, (cfg, heads)) in enumerate(SHAPES.items()):
        for hi, head in enumerate(heads[:1] if quick else heads):
            d = work / shape / head
            c, w, model = build(cfg, head, 1000 * si + hi)
            ckpt.save(d / "hf", c, w)
            cases = inputs(c, np.random.default_rng(si))
            names = OUTPUTS.get(head, ["logits"])
            sources = {"safetensors": [str(d / "hf")]}
            first = ["onnx", "onnx-opset14", "onnx-no-token-types", "onnx-dynamo", "onnx-sdpa", "onnx-dynamo-sdpa"]
            for tag in (first if hi == 0 else ["onnx", "onnx-sdpa"]):
                try:
                    export(model, d / (tag + ".onnx"), names, cases[3][1], tag)
                    sources[tag] = [str(d / (tag + ".onnx"))]
                except Exception as e:  # an exporter limitation is not ours: report it
                    rows.append((shape, head, tag, "-", "export failed in torch: %s" % str(e)[:120]))
            files = {}
            for src, args in sources.items():
                for prec in ("f32", "int8"):
                    out = d / ("%s.%s.albert" % (src, prec))
                    r = subprocess.run([str(bin_dir / "albert-convert"), *args, "-o", str(out), "--precision", prec, "-q"],
                                       capture_output=True, text=True)
                    if r.returncode:
                        failures.append("%s/%s %s %s: convert failed: %s" % (shape, head, src, prec, r.stderr.strip()))
                    else:
                        files[(src, prec)] = out
            for name, case in cases:
                (d / "case.json").write_text(json.dumps(
                    {k: {"shape": list(v.shape), "data": v.reshape(-1).tolist()} for k, v in case.items()}))
                with torch.no_grad():
                    ref = model(**{k: torch.from_numpy(v) for k, v in case.items()}, return_dict=True)
                mask = case["attention_mask"].astype(bool)
                for (src, prec), f in files.items():
                    r = subprocess.run([str(bin_dir / "albert-edge"), "run", str(f), "--input", str(d / "case.json")],
                                       capture_output=True, text=True)
                    if r.returncode:
                        failures.append("%s/%s %s %s %s: run failed: %s" % (shape, head, src, prec, name, r.stderr.strip()))
                        continue
                    got = json.loads(r.stdout)["outputs"]
                    for k in names:
                        want = ref[k].numpy()
                        g = np.array(got[k]["data"], np.float32).reshape(got[k]["shape"]) if k in got else None
                        if g is None or g.shape != want.shape:
                            failures.append("%s/%s %s %s %s: %s missing or of the wrong shape" % (shape, head, src, prec, name, k))
                            continue
                        if want.ndim >= 2 and want.shape[:2] == mask.shape:
                            g, want = g[mask], want[mask]
                        rel = float(np.abs(g - want).max() / max(np.abs(want).max(), 1e-30))
                        cos = float((g * want).sum() / max(np.linalg.norm(g) * np.linalg.norm(want), 1e-30))
                        rows.append((shape, head, "%s %s" % (src, prec), name, "%s: rel %.1e cos %.6f" % (k, rel, cos)))
                        if (prec == "f32" and rel > F32_REL) or (prec == "int8" and cos < INT8_COS):
                            failures.append("%s/%s %s %s %s: %s rel %.2e cos %.6f" % (shape, head, src, prec, name, k, rel, cos))
    for r in rows:
        print(" | ".join(r))
    worst = {}
    for r in rows:
        if ": rel " in r[4]:
            prec = r[2].split()[-1]
            rel, cos = float(r[4].split("rel ")[1].split()[0]), float(r[4].split("cos ")[1])
            a, b = worst.get(prec, (0.0, 1.0))
            worst[prec] = (max(a, rel), min(b, cos))
    print("\nchecked %d outputs; worst f32 relative error %.1e; worst int8 cosine %.6f"
          % (len(rows), worst.get("f32", (0, 1))[0], worst.get("int8", (0, 1))[1]))
    if failures:
        print("\nFAILED:\n" + "\n".join(failures))
        sys.exit(1)
    print("all within tolerance (f32 relative error <= %g, int8 cosine >= %g)" % (F32_REL, INT8_COS))


main()
