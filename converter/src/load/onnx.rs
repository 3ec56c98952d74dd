//! ONNX reader (tract-onnx): maps an ALBERT ONNX export back to Hugging Face tensor names.
//!
//! The file is decoded with tract-onnx's protobuf types (`tract_onnx::pb::ModelProto`); the
//! raw graph is walked directly rather than through tract's optimizer, because the
//! optimizer folds and fuses exactly the structure we need to see.
//!
//! ALBERT is recognized from the dataflow (see the `albert` submodule for the walk): exporter-given
//! names such as `onnx::MatMul_681` or `val_12` carry no meaning and are never used to
//! decide a role; graph input/output names are only tie-breakers. The result is a
//! [`RawCheckpoint`] interchangeable with the safetensors reader's:
//!
//! * tensors under the names `save_pretrained` writes (`albert.`-prefixed for the head
//!   classes), Linear weights `[out, in]` (the exporter's `[in, out]` copies are transposed
//!   back, bit-exact);
//! * layer sharing expressed as `encoder.albert_layer_groups.{g}.albert_layers.{j}` with
//!   `num_hidden_groups` / `inner_group_num` inferred from which layer calls use identical
//!   weights (per-call copies written by the dynamo exporter must be bit-identical);
//! * ONNX Runtime dynamic-int8 graphs dequantized to f32 (`(q - zero_point) * scale`).
//!
//! Supported: the TorchScript exporter's graphs (opset 17 in `shared/fixtures`,
//! `shared/models`; earlier opsets, whose LayerNorm is spelled out with `ReduceMean`,
//! once `fuse` has put `LayerNormalization` back), the dynamo exporter's, per-call weight
//! copies, `quantize_dynamic` output; eager attention and the scaled-dot-product
//! attention of transformers' default `sdpa` implementation; `AlbertForMultipleChoice`
//! (its flattening of `[batch, choices, seq]` inputs undone by `choices`). Refused with a message: anything whose structure
//! is not fully understood (a LayerNorm spelled another way, QDQ static quantization,
//! fused ORT ops such as `Attention`/`FastGelu`, float16 weights, BERT-like graphs
//! without the factorized embedding projection).

mod albert;
mod choices;
mod fuse;
mod graph;
mod linear;
mod shapes;
mod sharing;

use self::albert::{Albert, Head};
use self::graph::Graph;
use self::linear::Linear;
use crate::config::HfConfig;
use crate::load::{RawCheckpoint, Tensor};
use anyhow::{anyhow, bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tract_onnx::prelude::Framework;

/// Extra facts about an ONNX load, for summaries and tests.
#[derive(Debug, Clone, Default)]
pub struct OnnxInfo {
    /// Number of layer applications found in the graph (`num_hidden_layers * inner_group_num`).
    pub layer_calls: usize,
    /// For tensors that were dequantized from int8/uint8: HF name -> largest quantization
    /// step (scale). `|dequantized - original| <= step / 2` for round-to-nearest quantizers.
    pub quant_steps: BTreeMap<String, f32>,
    /// True when every layer call had its own (bit-identical) copy of the shared weights.
    pub per_call_copies: bool,
}

/// Reads an ALBERT ONNX export into a [`RawCheckpoint`].
///
/// `tokenizer` is an optional path to `spiece.model`; without it, `spiece.model` next to the
/// ONNX file is used when present. `tokenizer_config.json` next to the file is picked up too,
/// and `config.json` next to it only contributes `id2label` (when its shape fields agree with
/// the graph). Everything else in the config comes from the graph.
///
/// Fails with a message naming what was not recognized when the graph is not an ALBERT
/// this reader fully understands; it never guesses.
pub fn load_onnx(path: &Path, tokenizer: Option<&Path>) -> Result<RawCheckpoint> {
    load_onnx_with_info(path, tokenizer).map(|(c, _)| c)
}

/// [`load_onnx`], also returning [`OnnxInfo`].
pub fn load_onnx_with_info(
    path: &Path,
    tokenizer: Option<&Path>,
) -> Result<(RawCheckpoint, OnnxInfo)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut bytes.as_slice())
        .map_err(|e| anyhow!("{}: not a valid ONNX protobuf file ({e})", path.display()))?;
    let dir = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    let (mut ckpt, info) = from_model_proto(&proto, dir)
        .with_context(|| format!("{}: not a supported ALBERT ONNX graph", path.display()))?;
    ckpt.source_bytes = bytes.len() as u64;
    if let Some(g) = &proto.graph {
        let graph = Graph::new(g, dir)?;
        for f in graph.external_files()? {
            ckpt.source_bytes += std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        }
    }
    // Tokenizer files.
    let sibling = |name: &str| dir.map(|d| d.join(name)).filter(|p| p.is_file());
    ckpt.spiece = match tokenizer {
        Some(t) => {
            Some(std::fs::read(t).with_context(|| format!("reading tokenizer {}", t.display()))?)
        }
        None => match sibling("spiece.model") {
            Some(p) => Some(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?),
            None => None,
        },
    };
    if let Some(p) = sibling("tokenizer_config.json") {
        ckpt.tokenizer_config =
            Some(std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?);
    }
    if let Some(p) = sibling("config.json") {
        adopt_label_names(&mut ckpt.config, &p);
    }
    Ok((ckpt, info))
}

/// Takes `id2label` and `problem_type` from a sibling `config.json` if it
/// describes the same model.
fn adopt_label_names(cfg: &mut HfConfig, path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let Ok(other) = serde_json::from_str::<HfConfig>(&text) else {
        return;
    };
    let same = other.vocab_size == cfg.vocab_size
        && other.embedding_size == cfg.embedding_size
        && other.hidden_size == cfg.hidden_size
        && other.num_attention_heads == cfg.num_attention_heads
        && other.intermediate_size == cfg.intermediate_size
        && other.num_hidden_layers == cfg.num_hidden_layers;
    if same {
        cfg.problem_type = other.problem_type.clone();
    }
    if let (true, Some(map), Some(n)) = (same, &other.id2label, cfg.num_labels) {
        if map.len() == n {
            cfg.id2label = Some(map.clone());
        }
    }
}

/// Recognizes ALBERT in an already-decoded `ModelProto`. `dir` is the model folder (for
/// external data). `source_bytes`, `spiece` and `tokenizer_config` are left empty.
pub fn from_model_proto(
    proto: &tract_onnx::pb::ModelProto,
    dir: Option<&Path>,
) -> Result<(RawCheckpoint, OnnxInfo)> {
    let g = proto
        .graph
        .as_ref()
        .ok_or_else(|| anyhow!("the file has no graph"))?;
    ensure!(!g.node.is_empty(), "the graph has no nodes");
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(0);
    // Exports before opset 17 spell LayerNorm out; fuse it back (see `fuse`).
    let spelled_out = !g.node.iter().any(|n| n.op_type == "LayerNormalization")
        && g.node.iter().any(|n| n.op_type == "ReduceMean");
    let fused = if spelled_out {
        fuse::layer_norms(g, dir)?
    } else {
        None
    };
    let g = fused.as_ref().unwrap_or(g);
    // Multiple choice: the flattening of [batch, choices, seq] inputs undone (see `choices`).
    let unflattened = choices::unflatten(g, dir)?;
    let g = unflattened.as_ref().unwrap_or(g);
    let graph = Graph::new(g, dir)?;
    for n in graph.nodes() {
        if matches!(
            n.op_type.as_str(),
            "Attention"
                | "FastGelu"
                | "SkipLayerNormalization"
                | "EmbedLayerNormalization"
                | "BiasGelu"
        ) {
            bail!("the graph uses the fused ONNX Runtime op {} ({}); export without ORT transformer optimizations", n.op_type, n.domain);
        }
        if matches!(n.op_type.as_str(), "QuantizeLinear" | "QLinearMatMul") {
            bail!("the graph uses static (QDQ / QLinear) quantization ({}), only ONNX Runtime dynamic quantization is supported", n.op_type);
        }
    }
    if !graph
        .nodes()
        .iter()
        .any(|n| n.op_type == "LayerNormalization")
        && graph.nodes().iter().any(|n| n.op_type == "ReduceMean")
    {
        bail!("LayerNorm is spelled out with ReduceMean nodes in a form not recognized (expected ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div, Mul gamma, Add beta, as torch.onnx.export writes it before opset 17)");
    }
    let a = albert::recognize(&graph, opset)?;
    build(&a, unflattened.is_some())
}

/// Shortest decimal that round-trips the f32 epsilon, as f64 (`1e-12` rather than
/// `9.999999960041972e-13`), so the config matches the original `config.json`.
fn eps_f64(eps: f32) -> f64 {
    format!("{eps}").parse::<f64>().unwrap_or(eps as f64)
}

/// Turns the recognized structure into HF tensors and config.
/// `multiple_choice`: the graph was an `AlbertForMultipleChoice` export (see `choices`).
fn build(a: &Albert, multiple_choice: bool) -> Result<(RawCheckpoint, OnnxInfo)> {
    let mut info = OnnxInfo {
        layer_calls: a.calls.len(),
        ..Default::default()
    };
    let (ids, n_distinct) = sharing::distinct_ids(&a.calls);
    let layout = match sharing::infer_layout(&ids, n_distinct) {
        Some(l) => l,
        None => {
            // Name the first call that differs from call 0, and how.
            let k = ids.iter().position(|&id| id != 0).unwrap_or(0);
            let diff = sharing::differing(&a.calls[0], &a.calls[k]);
            bail!(
                "the model does not share weights across layers the way ALBERT does: layer call {k} differs from layer call 0 in {} ({} of {} calls use {} distinct weight sets in an order no num_hidden_groups / inner_group_num explains)",
                if diff.is_empty() { "its weight layout".to_string() } else { diff.join(", ") },
                ids.iter().filter(|&&i| i != 0).count(),
                ids.len(),
                n_distinct
            )
        }
    };
    // Per-call copies: more calls than distinct sets, yet different storage names.
    info.per_call_copies = a.calls.len() > n_distinct
        && a.calls
            .iter()
            .skip(1)
            .any(|c| c.query.keys != a.calls[0].query.keys);

    if multiple_choice {
        ensure!(
            matches!(&a.head, Head::SequenceClassification { classifier, .. } if classifier.out_features() == 1),
            "the graph flattens [batch, choices, sequence] inputs (multiple choice), but its head is not a classifier with one output per choice"
        );
    }
    let (arch, prefix, num_labels) = match &a.head {
        Head::Base { .. } => ("AlbertModel", "", None),
        Head::SequenceClassification { classifier, .. } if multiple_choice => (
            "AlbertForMultipleChoice",
            "albert.",
            Some(classifier.out_features()),
        ),
        Head::SequenceClassification { classifier, .. } => (
            "AlbertForSequenceClassification",
            "albert.",
            Some(classifier.out_features()),
        ),
        Head::TokenClassification { classifier } => (
            "AlbertForTokenClassification",
            "albert.",
            Some(classifier.out_features()),
        ),
        Head::QuestionAnswering { .. } => ("AlbertForQuestionAnswering", "albert.", Some(2)),
        Head::MaskedLm { .. } => ("AlbertForMaskedLM", "albert.", None),
    };
    let mut out = Out {
        tensors: BTreeMap::new(),
        info: &mut info,
    };
    let p = |s: &str| format!("{prefix}{s}");
    out.put(
        &p("embeddings.word_embeddings.weight"),
        &a.word.table,
        a.word.quant_step,
    )?;
    out.put(
        &p("embeddings.position_embeddings.weight"),
        &a.position.table,
        a.position.quant_step,
    )?;
    out.put(
        &p("embeddings.token_type_embeddings.weight"),
        &a.token_type.table,
        a.token_type.quant_step,
    )?;
    out.put(
        &p("embeddings.LayerNorm.weight"),
        &a.embedding_norm.gamma,
        None,
    )?;
    out.put(
        &p("embeddings.LayerNorm.bias"),
        &a.embedding_norm.beta,
        None,
    )?;
    out.linear(&p("encoder.embedding_hidden_mapping_in"), &a.projection)?;
    // One set of layer tensors per distinct (group, inner) slot, from the first call using it.
    for (c, call) in a.calls.iter().enumerate() {
        let (gi, j) = layout.slot(c);
        let base = p(&format!(
            "encoder.albert_layer_groups.{gi}.albert_layers.{j}."
        ));
        if out
            .tensors
            .contains_key(&format!("{base}attention.query.weight"))
        {
            continue;
        }
        for (name, lin) in [
            ("attention.query", &call.query),
            ("attention.key", &call.key),
            ("attention.value", &call.value),
            ("attention.dense", &call.dense),
            ("ffn", &call.ffn),
            ("ffn_output", &call.ffn_output),
        ] {
            out.linear(&format!("{base}{name}"), lin)?;
        }
        out.put(
            &format!("{base}attention.LayerNorm.weight"),
            &call.attention_norm.gamma,
            None,
        )?;
        out.put(
            &format!("{base}attention.LayerNorm.bias"),
            &call.attention_norm.beta,
            None,
        )?;
        out.put(
            &format!("{base}full_layer_layer_norm.weight"),
            &call.full_norm.gamma,
            None,
        )?;
        out.put(
            &format!("{base}full_layer_layer_norm.bias"),
            &call.full_norm.beta,
            None,
        )?;
    }
    match &a.head {
        Head::Base { pooler } => {
            if let Some(pl) = pooler {
                out.linear(&p("pooler"), pl)?;
            }
        }
        Head::SequenceClassification { pooler, classifier } => {
            out.linear(&p("pooler"), pooler)?;
            out.linear("classifier", classifier)?;
        }
        Head::TokenClassification { classifier } => out.linear("classifier", classifier)?,
        Head::QuestionAnswering { qa_outputs } => out.linear("qa_outputs", qa_outputs)?,
        Head::MaskedLm {
            dense,
            act,
            norm,
            decoder,
        } => {
            ensure!(
                *act == a.calls[0].act,
                "the masked-LM head uses {act} but the encoder uses {}",
                a.calls[0].act
            );
            out.linear("predictions.dense", dense)?;
            out.put("predictions.LayerNorm.weight", &norm.gamma, None)?;
            out.put("predictions.LayerNorm.bias", &norm.beta, None)?;
            let bias = decoder
                .bias
                .as_ref()
                .ok_or_else(|| anyhow!("masked-LM decoder has no bias"))?;
            out.put("predictions.bias", bias, None)?;
            // The decoder is tied to the word embeddings; keep it only if it is not a copy.
            if !sharing::bit_equal(&decoder.weight, &a.word.table) {
                out.put(
                    "predictions.decoder.weight",
                    &decoder.weight,
                    decoder.quant_step,
                )?;
            }
        }
    }
    let tensors = out.tensors;
    let call = &a.calls[0];
    let eps = a.embedding_norm.eps;
    for c in &a.calls {
        ensure!(
            c.attention_norm.eps == eps && c.full_norm.eps == eps,
            "LayerNorm epsilons differ ({} vs {eps}); ALBERT uses one layer_norm_eps",
            c.attention_norm.eps
        );
    }
    let config = HfConfig {
        model_type: Some("albert".into()),
        architectures: Some(vec![arch.into()]),
        vocab_size: a.word.table.shape[0],
        embedding_size: a.word.table.shape[1],
        hidden_size: a.projection.out_features(),
        num_attention_heads: call.heads,
        intermediate_size: call.ffn.out_features(),
        num_hidden_layers: layout.num_hidden_layers,
        num_hidden_groups: layout.num_hidden_groups,
        inner_group_num: layout.inner_group_num,
        hidden_act: call.act.into(),
        layer_norm_eps: eps_f64(eps),
        max_position_embeddings: a.position.table.shape[0],
        type_vocab_size: a.token_type.table.shape[0],
        id2label: None,
        num_labels,
        position_embedding_type: Some("absolute".into()),
        // Not in the graph: a sibling config.json may give it.
        problem_type: None,
    };
    config
        .check()
        .context("the configuration read from the graph")?;
    let ckpt = RawCheckpoint {
        config,
        tensors,
        spiece: None,
        tokenizer_config: None,
        source_bytes: 0,
    };
    Ok((ckpt, info))
}

/// Collects output tensors, refusing duplicates.
struct Out<'i> {
    tensors: BTreeMap<String, Tensor>,
    info: &'i mut OnnxInfo,
}

impl Out<'_> {
    fn put(&mut self, name: &str, t: &Tensor, step: Option<f32>) -> Result<()> {
        let t = Tensor::new(t.shape.clone(), t.data.clone())?;
        if self.tensors.insert(name.to_string(), t).is_some() {
            bail!("tensor {name} would be written twice");
        }
        if let Some(s) = step {
            self.info.quant_steps.insert(name.to_string(), s);
        }
        Ok(())
    }

    fn linear(&mut self, base: &str, l: &Linear) -> Result<()> {
        self.put(&format!("{base}.weight"), &l.weight, l.quant_step)?;
        let b = l
            .bias
            .as_ref()
            .ok_or_else(|| anyhow!("{base} ({}) has no bias", l.op))?;
        self.put(&format!("{base}.bias"), b, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eps_is_the_shortest_round_trip() {
        assert_eq!(eps_f64(1e-12f32), 1e-12);
        assert_eq!(eps_f64(1e-5f32), 1e-5);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("albert-onnx-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("garbage.onnx");
        std::fs::write(&p, b"\xff\xff\xff\xff not a protobuf").unwrap();
        let e = load_onnx(&p, None).unwrap_err();
        assert!(format!("{e:#}").contains("not a valid ONNX"), "{e:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
