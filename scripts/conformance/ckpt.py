"""Random ALBERT checkpoints for the conformance scripts (numpy only, no torch).

The weights imitate a trained post-LayerNorm transformer enough to exercise int8
quantization: heavy-tailed matrices, non-zero biases, a few LayerNorm channels with large
gains and offsets (activation outliers), and nearly dead ones.
"""
import json

import numpy as np


def config(vocab_size, embedding_size, hidden_size, num_attention_heads, intermediate_size,
           num_hidden_layers, num_hidden_groups=1, inner_group_num=1, hidden_act="gelu_new",
           layer_norm_eps=1e-12, max_position_embeddings=512, type_vocab_size=2, num_labels=None,
           architecture="AlbertModel"):
    c = dict(model_type="albert", architectures=[architecture], vocab_size=vocab_size,
             embedding_size=embedding_size, hidden_size=hidden_size,
             num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
             num_hidden_layers=num_hidden_layers, num_hidden_groups=num_hidden_groups,
             inner_group_num=inner_group_num, hidden_act=hidden_act, layer_norm_eps=layer_norm_eps,
             max_position_embeddings=max_position_embeddings, type_vocab_size=type_vocab_size,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.1,
             pad_token_id=0, bos_token_id=2, eos_token_id=3)
    if num_labels is not None:
        c["id2label"] = {str(i): "LABEL_%d" % i for i in range(num_labels)}
        c["label2id"] = {"LABEL_%d" % i: i for i in range(num_labels)}
    return c


HEADS = {
    # head: (transformers class, extra config)
    "base": ("AlbertModel", {}),
    "seqcls1": ("AlbertForSequenceClassification", {"num_labels": 1}),
    "seqcls2": ("AlbertForSequenceClassification", {"num_labels": 2}),
    "seqcls3": ("AlbertForSequenceClassification", {"num_labels": 3}),
    "seqcls7": ("AlbertForSequenceClassification", {"num_labels": 7}),
    "tokcls3": ("AlbertForTokenClassification", {"num_labels": 3}),
    "qa": ("AlbertForQuestionAnswering", {}),
    "mlm": ("AlbertForMaskedLM", {}),
}


def weights(c, head, seed):
    """Every parameter of `head` on the backbone of config dict `c`, by transformers name."""
    rng = np.random.default_rng(seed)
    E, H, I, V = c["embedding_size"], c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    P, T = c["max_position_embeddings"], c["type_vocab_size"]
    hid_out = {ch: v for ch, v in {7: (6.0, 0.0, 0.3, -4.0), 42: (4.0, 1.0, 0.3, 3.0)}.items() if ch < H}
    emb_out = {ch: v for ch, v in {13: (7.0, 1.5)}.items() if ch < E}
    w = {}

    def linear(o, i, gain, reads=(), bias_std=0.05):
        m = rng.standard_normal((o, i)) * (gain / np.sqrt(i))
        m[rng.random((o, i)) < 0.003] *= 8.0
        m[rng.integers(o), rng.integers(i)] = rng.choice([-1.0, 1.0]) * 14.0 * gain / np.sqrt(i)
        for ch in reads:
            m[:, ch] *= 0.25
        return m, rng.standard_normal(o) * bias_std

    def layernorm(n, outliers):
        g = 1.0 + 0.15 * rng.standard_normal(n)
        b = 0.1 * rng.standard_normal(n)
        free = [ch for ch in range(n) if ch not in outliers]
        for ch in rng.choice(free, size=min(2, len(free)), replace=False):
            g[ch] = 0.05
        for ch, (gain, bias) in outliers.items():
            g[ch], b[ch] = gain, bias
        return g, b

    w["embeddings.word_embeddings.weight"] = rng.standard_normal((V, E)) * 0.08 * np.exp(0.35 * rng.standard_normal((V, 1)))
    w["embeddings.position_embeddings.weight"] = rng.standard_normal((P, E)) * 0.04
    w["embeddings.token_type_embeddings.weight"] = rng.standard_normal((T, E)) * 0.06
    w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"] = layernorm(E, emb_out)
    m, b = linear(H, E, 1.0, reads=list(emb_out))
    for ch, v in hid_out.items():
        b[ch] = v[3]
    w["encoder.embedding_hidden_mapping_in.weight"], w["encoder.embedding_hidden_mapping_in.bias"] = m, b
    for gi in range(c["num_hidden_groups"]):
        for li in range(c["inner_group_num"]):
            p = "encoder.albert_layer_groups.%d.albert_layers.%d." % (gi, li)
            for name, gain in (("query", 2.2), ("key", 2.2), ("value", 0.7)):
                w[p + "attention.%s.weight" % name], w[p + "attention.%s.bias" % name] = linear(H, H, gain, reads=list(hid_out))
            w[p + "attention.dense.weight"], w[p + "attention.dense.bias"] = linear(H, H, 1.0)
            w[p + "attention.LayerNorm.weight"], w[p + "attention.LayerNorm.bias"] = layernorm(H, {ch: v[:2] for ch, v in hid_out.items()})
            w[p + "ffn.weight"], w[p + "ffn.bias"] = linear(I, H, 1.4, reads=list(hid_out), bias_std=0.2)
            m, b = linear(H, I, 1.0)
            for ch, (g1, b1, _, b2) in hid_out.items():
                b[ch] = -0.9 * (g1 * b2 / np.sqrt(1.0 + b2 * b2 / H) + b1)
            w[p + "ffn_output.weight"], w[p + "ffn_output.bias"] = m, b
            w[p + "full_layer_layer_norm.weight"], w[p + "full_layer_layer_norm.bias"] = layernorm(H, {ch: v[2:] for ch, v in hid_out.items()})
    if head in ("base",) or head.startswith("seqcls"):
        w["pooler.weight"], w["pooler.bias"] = linear(H, H, 1.0, reads=list(hid_out), bias_std=0.1)
    prefix = "" if head == "base" else "albert."
    w = {prefix + k: v for k, v in w.items()}
    n = c.get("id2label") and len(c["id2label"])
    if head.startswith("seqcls") or head.startswith("tokcls"):
        w["classifier.weight"], w["classifier.bias"] = linear(n, H, 1.0, bias_std=0.2)
    elif head == "qa":
        w["qa_outputs.weight"], w["qa_outputs.bias"] = linear(2, H, 1.0, bias_std=0.2)
    elif head == "mlm":
        w["predictions.dense.weight"], w["predictions.dense.bias"] = linear(E, H, 1.0)
        w["predictions.LayerNorm.weight"], w["predictions.LayerNorm.bias"] = layernorm(E, {})
        w["predictions.bias"] = rng.standard_normal(V) * 0.5
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in w.items()}


def save(folder, c, w):
    """config.json and model.safetensors, as `save_pretrained` lays them out."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(c, indent=2))
    save_file(w, str(folder / "model.safetensors"), metadata={"format": "pt"})
