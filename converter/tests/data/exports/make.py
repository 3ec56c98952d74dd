"""Writes the small ONNX exports of `converter/tests/onnx_exports.rs` (not run by CI;
needs torch and transformers 5, e.g. `pip install torch transformers onnx onnxscript`).

Two random ALBERT checkpoints, as transformers 5 builds them with its default
(`sdpa`) attention: a sequence classifier (3 labels) and a multiple-choice model.
Each folder holds the checkpoint (`config.json`, `model.safetensors`), its exports by
the TorchScript exporter (`opset17.onnx`) and the dynamo exporter (`dynamo.onnx`), and
`expected.json`: the PyTorch logits on a few inputs (the multiple-choice ones
`[1, choices, seq]`), which the tests compare with the converted files.
"""
import json
import sys
import warnings
from pathlib import Path

import onnx
import torch
from transformers import AlbertConfig, AlbertForMultipleChoice, AlbertForSequenceClassification

out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
NAMES = ["input_ids", "attention_mask", "token_type_ids"]


def build(cls, seed):
    torch.manual_seed(seed)
    cfg = AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=37, max_position_embeddings=40,
                       type_vocab_size=2, hidden_act="gelu_new", num_labels=3)
    m = cls(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m


def inputs(shape, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, shape, generator=g)
    mask = torch.ones_like(ids)
    mask[..., shape[-1] - 2:] = 0  # two padded positions at the end of every row
    types = torch.zeros_like(ids)
    types[..., shape[-1] // 2:] = 1
    return ids, mask, types


def export(m, example, path, dynamo, rank):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = [torch.export.Dim("batch"), torch.export.Dim("choices"), torch.export.Dim("seq", min=2)]
            dims = dims if rank == 3 else [dims[0], dims[2]]
            torch.onnx.export(m, example, str(path), input_names=NAMES, output_names=["logits"], dynamo=True,
                              dynamic_shapes={k: dict(enumerate(dims)) for k in NAMES}, external_data=False)
        else:
            axes = ["batch", "choices", "sequence"] if rank == 3 else ["batch", "sequence"]
            torch.onnx.export(m, example, str(path), kwargs={"return_dict": False}, input_names=NAMES,
                              output_names=["logits"], dynamic_axes={k: dict(enumerate(axes)) for k in NAMES},
                              opset_version=17, dynamo=False)
    # Stack traces and doc strings make up most of a small export: dropped.
    model = onnx.load(str(path))
    del model.metadata_props[:]
    model.doc_string = ""
    for n in model.graph.node:
        del n.metadata_props[:]
        n.doc_string = ""
    onnx.save(model, str(path))


for name, cls, shapes in [("seqcls", AlbertForSequenceClassification, [(1, 7), (2, 11)]),
                          ("mc", AlbertForMultipleChoice, [(1, 3, 9), (1, 2, 12)])]:
    m = build(cls, 7 if name == "seqcls" else 8)
    assert m.config._attn_implementation == "sdpa", m.config._attn_implementation
    m.save_pretrained(out / name)
    rank = len(shapes[0])
    for tag, dynamo in [("opset17", False), ("dynamo", True)]:
        export(m, inputs(shapes[0], 0), out / name / f"{tag}.onnx", dynamo, rank)
    cases = []
    for i, shape in enumerate(shapes):
        ids, mask, types = inputs(shape, 100 + i)
        with torch.no_grad():
            logits = m(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        cases.append({"shape": list(shape), "input_ids": ids.reshape(-1).tolist(),
                      "attention_mask": mask.reshape(-1).tolist(), "token_type_ids": types.reshape(-1).tolist(),
                      "logits": logits.reshape(-1).tolist()})
    (out / name / "expected.json").write_text(json.dumps(cases) + "\n")
