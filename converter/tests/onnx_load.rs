//! ONNX reader tests against the shared fixtures: every tensor recovered from an ONNX export
//! must equal (fp32) or be within half a quantization step of (int8) the same-named tensor
//! in the sibling `model.safetensors`, with the same names and config.
//!
//! Fixtures: `$ALBERT_EDGE_SHARED` or `<repo>/../shared`.

use albert_convert::config::HfConfig;
use albert_convert::load::onnx::{from_model_proto, load_onnx, load_onnx_with_info};
use albert_convert::load::{RawCheckpoint, Tensor};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

mod common;
use common::shared;

fn safetensors(path: &Path) -> BTreeMap<String, Tensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            assert_eq!(v.dtype(), safetensors::Dtype::F32, "{name}");
            let data = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (
                name,
                Tensor {
                    shape: v.shape().to_vec(),
                    data,
                },
            )
        })
        .collect()
}

fn sibling_config(dir: &Path) -> HfConfig {
    HfConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// Compares the config fields that describe the network.
fn assert_config(got: &HfConfig, want: &HfConfig) {
    let g = (
        got.vocab_size,
        got.embedding_size,
        got.hidden_size,
        got.num_attention_heads,
        got.intermediate_size,
        got.num_hidden_layers,
        got.num_hidden_groups,
        got.inner_group_num,
        got.max_position_embeddings,
        got.type_vocab_size,
    );
    let w = (
        want.vocab_size,
        want.embedding_size,
        want.hidden_size,
        want.num_attention_heads,
        want.intermediate_size,
        want.num_hidden_layers,
        want.num_hidden_groups,
        want.inner_group_num,
        want.max_position_embeddings,
        want.type_vocab_size,
    );
    assert_eq!(g, w, "numeric config fields");
    assert_eq!(got.layer_norm_eps, want.layer_norm_eps);
    assert_eq!(got.hidden_act, want.hidden_act);
    assert_eq!(got.model_type.as_deref(), Some("albert"));
    assert_eq!(got.architectures, want.architectures);
}

fn names(m: &BTreeMap<String, Tensor>) -> BTreeSet<String> {
    m.keys().cloned().collect()
}

/// fp32: same names, bit-identical values.
fn assert_exact(got: &RawCheckpoint, want: &BTreeMap<String, Tensor>) {
    assert_eq!(names(&got.tensors), names(want), "tensor names");
    for (name, w) in want {
        let g = &got.tensors[name];
        assert_eq!(g.shape, w.shape, "{name} shape");
        let same = g
            .data
            .iter()
            .zip(&w.data)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{name}: values differ");
    }
}

fn check_fp32(dir: &Path) {
    let t = std::time::Instant::now();
    let ckpt = load_onnx(&dir.join("model.onnx"), None)
        .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
    eprintln!("{}: loaded in {:?}", dir.display(), t.elapsed());
    assert_exact(&ckpt, &safetensors(&dir.join("model.safetensors")));
    assert_config(&ckpt.config, &sibling_config(dir));
    assert_eq!(
        ckpt.source_bytes,
        std::fs::metadata(dir.join("model.onnx")).unwrap().len()
    );
    assert_eq!(
        ckpt.spiece.as_deref(),
        Some(std::fs::read(dir.join("spiece.model")).unwrap().as_slice())
    );
    assert!(ckpt.tokenizer_config.is_some());
}

fn check_int8(dir: &Path) {
    let (ckpt, info) = load_onnx_with_info(&dir.join("model.int8.onnx"), None)
        .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
    let want = safetensors(&dir.join("model.safetensors"));
    assert_eq!(names(&ckpt.tensors), names(&want), "tensor names");
    assert_config(&ckpt.config, &sibling_config(dir));
    let mut n_quant = 0;
    for (name, w) in &want {
        let g = &ckpt.tensors[name];
        assert_eq!(g.shape, w.shape, "{name} shape");
        match info.quant_steps.get(name) {
            Some(&step) => {
                n_quant += 1;
                let max_abs = w.data.iter().fold(0f32, |m, x| m.max(x.abs()));
                // The step must be what an 8-bit quantizer of this tensor gives, not arbitrary.
                assert!(
                    step > 0.0 && step <= 2.0 * max_abs / 254.0 * 1.001,
                    "{name}: step {step} for max |w| {max_abs}"
                );
                for (i, (a, b)) in g.data.iter().zip(&w.data).enumerate() {
                    assert!(
                        (a - b).abs() <= step / 2.0 * 1.0001 + 1e-7,
                        "{name}[{i}]: {a} vs {b} (step {step})"
                    );
                }
            }
            None => assert!(
                g.data
                    .iter()
                    .zip(&w.data)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}: float tensor differs"
            ),
        }
    }
    eprintln!("{}: {n_quant} tensors dequantized", dir.display());
    assert!(
        n_quant >= 10,
        "expected the matrices and embeddings to be quantized, got {n_quant}"
    );
}

#[test]
fn tiny_base_fp32() {
    check_fp32(&shared().join("fixtures/tiny-base/base"));
}

#[test]
fn tiny_seqcls2_fp32() {
    check_fp32(&shared().join("fixtures/tiny-base/seqcls2"));
}

#[test]
fn tiny_seqcls2_int8() {
    check_int8(&shared().join("fixtures/tiny-base/seqcls2"));
}

#[test]
fn sst2_tiny_fp32() {
    let dir = shared().join("models/sst2-tiny");
    check_fp32(&dir);
    // config.json's id2label is adopted when the shapes agree.
    let ckpt = load_onnx(&dir.join("model.onnx"), None).unwrap();
    assert_eq!(
        ckpt.config.label_names(2),
        sibling_config(&dir).label_names(2)
    );
}

#[test]
fn sst2_tiny_int8() {
    check_int8(&shared().join("models/sst2-tiny"));
}

#[test]
fn sst2_base_fp32_and_int8() {
    let dir = shared().join("models/sst2-base");
    check_fp32(&dir);
    check_int8(&dir);
}

// ---- graphs built or rewritten in the test -------------------------------------------

fn decode(path: &Path) -> pb::ModelProto {
    let bytes = std::fs::read(path).unwrap();
    tract_onnx::onnx()
        .proto_model_for_read(&mut bytes.as_slice())
        .unwrap()
}

fn f32_init(name: &str, shape: &[usize], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: 1,
        raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn i64_init(name: &str, shape: &[usize], data: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: 7,
        raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: format!("/test/{op}_{}", outputs[0]),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        i,
        r#type: 2,
        ..Default::default()
    }
}

fn value(name: &str) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        ..Default::default()
    }
}

fn transpose(t: &Tensor) -> Vec<f32> {
    let (r, c) = (t.shape[0], t.shape[1]);
    let mut out = vec![0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = t.data[i * c + j];
        }
    }
    out
}

/// `MatMul(x, W^T) + b` as the TorchScript exporter writes it.
fn push_linear(g: &mut pb::GraphProto, x: &str, name: &str, w: &Tensor, b: &Tensor, out: &str) {
    let (o, i) = (w.shape[0], w.shape[1]);
    g.initializer
        .push(f32_init(&format!("{name}.wT"), &[i, o], &transpose(w)));
    g.initializer
        .push(f32_init(&format!("{name}.b"), &[o], &b.data));
    let mm = format!("{name}.mm");
    g.node
        .push(node("MatMul", &[x, &format!("{name}.wT")], &[&mm], vec![]));
    g.node
        .push(node("Add", &[&format!("{name}.b"), &mm], &[out], vec![]));
}

/// The base (AlbertModel) graph without its pooler: `last_hidden_state` is free for a new head.
fn base_without_pooler() -> pb::ModelProto {
    let mut m = decode(&shared().join("fixtures/tiny-base/base/model.onnx"));
    let g = m.graph.as_mut().unwrap();
    g.node
        .retain(|n| !(n.name.contains("pooler") || n.name == "/Gather_5"));
    g.output.clear();
    m
}

fn fixture(head: &str) -> (PathBuf, BTreeMap<String, Tensor>) {
    let dir = shared().join("fixtures/tiny-base").join(head);
    let st = safetensors(&dir.join("model.safetensors"));
    (dir, st)
}

#[test]
fn grafted_token_classification_head() {
    let (dir, st) = fixture("tokcls5");
    let mut m = base_without_pooler();
    let g = m.graph.as_mut().unwrap();
    push_linear(
        g,
        "last_hidden_state",
        "cls",
        &st["classifier.weight"],
        &st["classifier.bias"],
        "logits",
    );
    g.output.push(value("logits"));
    let (ckpt, _) = from_model_proto(&m, None).unwrap_or_else(|e| panic!("{e:#}"));
    assert_exact(&ckpt, &st);
    assert_config(&ckpt.config, &sibling_config(&dir));
    assert_eq!(ckpt.config.num_labels, Some(5));
}

#[test]
fn grafted_question_answering_head() {
    let (dir, st) = fixture("qa");
    let mut m = base_without_pooler();
    let g = m.graph.as_mut().unwrap();
    push_linear(
        g,
        "last_hidden_state",
        "qa",
        &st["qa_outputs.weight"],
        &st["qa_outputs.bias"],
        "qa_logits",
    );
    g.initializer.push(i64_init("split_sizes", &[2], &[1, 1]));
    g.initializer.push(i64_init("last_axis", &[1], &[-1]));
    g.node.push(node(
        "Split",
        &["qa_logits", "split_sizes"],
        &["s0", "s1"],
        vec![attr_int("axis", -1)],
    ));
    g.node.push(node(
        "Squeeze",
        &["s0", "last_axis"],
        &["start_logits"],
        vec![],
    ));
    g.node.push(node(
        "Squeeze",
        &["s1", "last_axis"],
        &["end_logits"],
        vec![],
    ));
    g.output
        .extend([value("start_logits"), value("end_logits")]);
    let (ckpt, _) = from_model_proto(&m, None).unwrap_or_else(|e| panic!("{e:#}"));
    assert_exact(&ckpt, &st);
    assert_config(&ckpt.config, &sibling_config(&dir));
}

#[test]
fn grafted_masked_lm_head() {
    let (dir, st) = fixture("mlm");
    let mut m = base_without_pooler();
    let g = m.graph.as_mut().unwrap();
    push_linear(
        g,
        "last_hidden_state",
        "pd",
        &st["predictions.dense.weight"],
        &st["predictions.dense.bias"],
        "d",
    );
    // gelu_new(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    for (n, v) in [
        ("c3", 3.0f32),
        ("c044", 0.044715),
        ("csq", 0.797_884_6),
        ("c1", 1.0),
        ("c05", 0.5),
    ] {
        g.initializer.push(f32_init(n, &[], &[v]));
    }
    g.node.push(node("Pow", &["d", "c3"], &["p3"], vec![]));
    g.node.push(node("Mul", &["p3", "c044"], &["m1"], vec![]));
    g.node.push(node("Add", &["d", "m1"], &["a1"], vec![]));
    g.node.push(node("Mul", &["a1", "csq"], &["m2"], vec![]));
    g.node.push(node("Tanh", &["m2"], &["t"], vec![]));
    g.node.push(node("Add", &["t", "c1"], &["a2"], vec![]));
    g.node.push(node("Mul", &["d", "c05"], &["m3"], vec![]));
    g.node.push(node("Mul", &["m3", "a2"], &["act"], vec![]));
    g.initializer.push(f32_init(
        "ln.w",
        &[32],
        &st["predictions.LayerNorm.weight"].data,
    ));
    g.initializer.push(f32_init(
        "ln.b",
        &[32],
        &st["predictions.LayerNorm.bias"].data,
    ));
    let mut ln = node(
        "LayerNormalization",
        &["act", "ln.w", "ln.b"],
        &["t_ln"],
        vec![attr_int("axis", -1)],
    );
    ln.attribute.push(pb::AttributeProto {
        name: "epsilon".into(),
        f: 1e-12,
        r#type: 1,
        ..Default::default()
    });
    g.node.push(ln);
    push_linear(
        g,
        "t_ln",
        "dec",
        &st["albert.embeddings.word_embeddings.weight"],
        &st["predictions.bias"],
        "logits",
    );
    g.output.push(value("logits"));
    let (ckpt, _) = from_model_proto(&m, None).unwrap_or_else(|e| panic!("{e:#}"));
    // The tied decoder is a copy of the word embeddings, so it is not emitted.
    assert_exact(&ckpt, &st);
    assert_config(&ckpt.config, &sibling_config(&dir));
}

/// Replaces the TorchScript exporter's `Identity` weight copies by real per-call copies
/// (what the dynamo exporter writes), optionally perturbing the copy one node reads.
fn per_call_copies(perturb_reader: Option<&str>) -> pb::ModelProto {
    let mut m = decode(&shared().join("fixtures/tiny-base/base/model.onnx"));
    let g = m.graph.as_mut().unwrap();
    let inits: BTreeMap<String, pb::TensorProto> = g
        .initializer
        .iter()
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    let mut copies = Vec::new();
    g.node.retain(|n| {
        if n.op_type == "Identity" && inits.contains_key(&n.input[0]) {
            let mut t = inits[&n.input[0]].clone();
            t.name = n.output[0].clone();
            copies.push(t);
            false
        } else {
            true
        }
    });
    assert_eq!(
        copies.len(),
        30,
        "the fixture should have 30 Identity weight copies"
    );
    if let Some(reader) = perturb_reader {
        let w = g.node.iter().find(|n| n.name == reader).unwrap().input[1].clone();
        let t = copies
            .iter_mut()
            .find(|t| t.name == w)
            .expect("the perturbed reader uses a copy");
        t.raw_data[40] ^= 0x01; // flip the lowest mantissa bit of one value
    }
    g.initializer.extend(copies);
    m
}

#[test]
fn per_call_copies_map_to_one_layer() {
    let m = per_call_copies(None);
    let (ckpt, info) = from_model_proto(&m, None).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(info.per_call_copies);
    assert_eq!(info.layer_calls, 6);
    let dir = shared().join("fixtures/tiny-base/base");
    assert_exact(&ckpt, &safetensors(&dir.join("model.safetensors")));
    assert_config(&ckpt.config, &sibling_config(&dir));
}

#[test]
fn per_call_copies_that_differ_are_refused() {
    let m = per_call_copies(Some(
        "/encoder/albert_layer_groups.0/albert_layers.0/attention/query_3/MatMul",
    ));
    let e = format!("{:#}", from_model_proto(&m, None).unwrap_err());
    assert!(e.contains("does not share weights"), "{e}");
    assert!(
        e.contains("layer call 3") && e.contains("attention.query.weight"),
        "{e}"
    );
}

fn err_of(m: &pb::ModelProto) -> String {
    format!("{:#}", from_model_proto(m, None).unwrap_err())
}

#[test]
fn a_single_matmul_is_not_albert() {
    let mut g = pb::GraphProto::default();
    g.input.push(value("x"));
    g.initializer.push(f32_init("w", &[4, 4], &[0.5; 16]));
    g.node.push(node("MatMul", &["x", "w"], &["y"], vec![]));
    g.output.push(value("y"));
    let m = pb::ModelProto {
        graph: Some(g),
        ..Default::default()
    };
    let e = err_of(&m);
    assert!(e.contains("no embedding lookup"), "{e}");
    assert!(err_of(&pb::ModelProto::default()).contains("no graph"));
}

#[test]
fn broken_structure_is_named() {
    // Drop the embeddings LayerNorm: the sum now goes nowhere recognizable.
    let mut m = decode(&shared().join("fixtures/tiny-base/base/model.onnx"));
    m.graph
        .as_mut()
        .unwrap()
        .node
        .retain(|n| n.op_type != "LayerNormalization" || !n.name.contains("embeddings"));
    let e = err_of(&m);
    assert!(
        e.contains("LayerNormalization after the embeddings Add"),
        "{e}"
    );

    // Change the score scaling: refused, not silently accepted.
    let mut m = decode(&shared().join("fixtures/tiny-base/base/model.onnx"));
    let g = m.graph.as_mut().unwrap();
    let mul = g
        .node
        .iter()
        .find(|n| n.name.ends_with("attention_2/Mul"))
        .unwrap()
        .clone();
    g.initializer.push(f32_init("bad_scale", &[], &[0.3]));
    for n in g.node.iter_mut() {
        if n.name == mul.name {
            n.input[1] = "bad_scale".into();
        }
    }
    let e = err_of(&m);
    assert!(e.contains("layer call 2") && e.contains("scaled by"), "{e}");

    // An extra output computed from something else is not silently dropped.
    let mut m = decode(&shared().join("fixtures/tiny-base/seqcls2/model.onnx"));
    let g = m.graph.as_mut().unwrap();
    g.node.push(node(
        "Relu",
        &["/albert/pooler_activation/Tanh_output_0"],
        &["extra"],
        vec![],
    ));
    g.output.push(value("extra"));
    let e = err_of(&m);
    assert!(e.contains("\"extra\" is not produced"), "{e}");

    // Positions that do not start at 0 are refused.
    let mut m = decode(&shared().join("fixtures/tiny-base/base/model.onnx"));
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(i64_init("start2", &[1], &[2]));
    for n in g.node.iter_mut() {
        if n.op_type == "Slice" && n.name.contains("embeddings") {
            n.input[1] = "start2".into();
        }
    }
    let e = err_of(&m);
    assert!(e.contains("position ids do not start at 0"), "{e}");

    // A different activation (sigmoid-weighted) is not one ALBERT supports.
    let mut m = decode(&shared().join("fixtures/tiny-base/base/model.onnx"));
    let g = m.graph.as_mut().unwrap();
    for n in g.node.iter_mut() {
        if n.op_type == "Tanh" && n.name.contains("activation") {
            n.op_type = "Sigmoid".into();
        }
    }
    let e = err_of(&m);
    assert!(e.contains("none of gelu_new, gelu, relu"), "{e}");
}

#[test]
fn files_that_are_not_onnx() {
    let dir = std::env::temp_dir().join(format!("albert-onnx-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"PK\x03\x04 this is a zip file, not a protobuf").unwrap();
    let e = format!("{:#}", load_onnx(&garbage, None).unwrap_err());
    assert!(e.contains("not a valid ONNX"), "{e}");

    let full = std::fs::read(shared().join("fixtures/tiny-base/seqcls2/model.onnx")).unwrap();
    let truncated = dir.join("truncated.onnx");
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let e = format!("{:#}", load_onnx(&truncated, None).unwrap_err());
    assert!(e.contains("not a valid ONNX"), "{e}");

    let empty = dir.join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_onnx(&empty, None).is_err());
    assert!(load_onnx(&dir.join("missing.onnx"), None).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rewrites every gelu_new in the base graph into another activation spelled with `build`
/// (which gets the ffn output and must write the activation result).
fn with_activation(build: impl Fn(&mut pb::GraphProto, &str, &str, usize)) -> pb::ModelProto {
    let mut m = decode(&shared().join("fixtures/tiny-base/base/model.onnx"));
    let g = m.graph.as_mut().unwrap();
    let exits: Vec<(String, String)> = g
        .node
        .iter()
        .filter(|n| n.name.contains("/activation") && n.name.ends_with("/Mul_3"))
        .map(|n| {
            let call = n.name.rsplit('/').nth(1).unwrap().to_string(); // activation, activation_1, ...
            let ffn = n
                .name
                .replace(&format!("{call}/Mul_3"), &call.replace("activation", "ffn"));
            (format!("{ffn}/Add_output_0"), n.output[0].clone())
        })
        .collect();
    assert_eq!(exits.len(), 6);
    g.node.retain(|n| !n.name.contains("/activation"));
    for (k, (x, y)) in exits.iter().enumerate() {
        build(g, x, y, k);
    }
    m
}

#[test]
fn relu_and_erf_gelu_are_recognized() {
    let m = with_activation(|g, x, y, _| g.node.push(node("Relu", &[x], &[y], vec![])));
    let (ckpt, _) = from_model_proto(&m, None).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(ckpt.config.hidden_act, "relu");

    // gelu(x) = x * 0.5 * (1 + erf(x / sqrt(2))), as torch exports it.
    let m = with_activation(|g, x, y, k| {
        for (n, v) in [
            ("sqrt2", std::f32::consts::SQRT_2),
            ("one", 1.0f32),
            ("half", 0.5),
        ] {
            if k == 0 {
                g.initializer.push(f32_init(n, &[], &[v]));
            }
        }
        let t = |s: &str| format!("gelu{k}_{s}");
        g.node.push(node("Div", &[x, "sqrt2"], &[&t("d")], vec![]));
        g.node.push(node("Erf", &[&t("d")], &[&t("e")], vec![]));
        g.node
            .push(node("Add", &[&t("e"), "one"], &[&t("a")], vec![]));
        g.node.push(node("Mul", &[x, &t("a")], &[&t("m")], vec![]));
        g.node.push(node("Mul", &[&t("m"), "half"], &[y], vec![]));
    });
    let (ckpt, _) = from_model_proto(&m, None).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(ckpt.config.hidden_act, "gelu");
}

/// Damaged graphs (a node losing an input or an output, an input rewired) must give `Err`
/// or `Ok`, never a panic.
#[test]
fn damaged_graphs_do_not_panic() {
    let base = decode(&shared().join("fixtures/tiny-base/seqcls2/model.int8.onnx"));
    let n_nodes = base.graph.as_ref().unwrap().node.len();
    let mut errors = 0;
    for i in (0..n_nodes).step_by(7) {
        for damage in 0..3 {
            let mut m = base.clone();
            let g = m.graph.as_mut().unwrap();
            let n = &mut g.node[i];
            match damage {
                0 => {
                    n.input.pop();
                }
                1 => n.output.truncate(0),
                _ => {
                    if let Some(first) = n.input.first_mut() {
                        *first = "input_ids".into();
                    }
                }
            }
            if from_model_proto(&m, None).is_err() {
                errors += 1;
            }
        }
    }
    assert!(errors > 0);
}

/// Initializers stored as external data are read from the model folder, and locations that
/// leave it are refused.
#[test]
fn external_data() {
    let dir = std::env::temp_dir().join(format!("albert-onnx-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut m = decode(&shared().join("fixtures/tiny-base/base/model.onnx"));
    let g = m.graph.as_mut().unwrap();
    let t = g
        .initializer
        .iter_mut()
        .find(|t| t.name == "embeddings.word_embeddings.weight")
        .unwrap();
    let mut blob = vec![0u8; 16]; // data at an offset
    blob.extend_from_slice(&t.raw_data);
    std::fs::write(dir.join("weights.bin"), &blob).unwrap();
    let len = t.raw_data.len();
    t.raw_data.clear();
    t.data_location = Some(1);
    let kv = |k: &str, v: &str| pb::StringStringEntryProto {
        key: k.into(),
        value: v.into(),
    };
    t.external_data = vec![
        kv("location", "weights.bin"),
        kv("offset", "16"),
        kv("length", &len.to_string()),
    ];
    let (ckpt, _) = from_model_proto(&m, Some(&dir)).unwrap_or_else(|e| panic!("{e:#}"));
    assert_exact(
        &ckpt,
        &safetensors(&shared().join("fixtures/tiny-base/base/model.safetensors")),
    );

    let g = m.graph.as_mut().unwrap();
    let t = g
        .initializer
        .iter_mut()
        .find(|t| t.name == "embeddings.word_embeddings.weight")
        .unwrap();
    t.external_data[0].value = "../weights.bin".into();
    let e = format!("{:#}", from_model_proto(&m, Some(&dir)).unwrap_err());
    assert!(e.contains("inside the model folder"), "{e}");
    let g = m.graph.as_mut().unwrap();
    let t = g
        .initializer
        .iter_mut()
        .find(|t| t.name == "embeddings.word_embeddings.weight")
        .unwrap();
    t.external_data[0].value = "weights.bin".into();
    t.external_data[2].value = (len + 1).to_string();
    let e = format!("{:#}", from_model_proto(&m, Some(&dir)).unwrap_err());
    assert!(e.contains("past the end"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        ints: ints.to_vec(),
        r#type: 7,
        ..Default::default()
    }
}

/// `m` with every `LayerNormalization` written out as `torch.onnx.export` writes
/// `nn.LayerNorm` before opset 17 (`square` "Pow" or "Mul"; `eps_scale` multiplies the
/// epsilon; `break_at`: a node of the pattern to leave out, by index, to make it
/// unrecognizable).
fn spell_out_layer_norms(
    mut m: pb::ModelProto,
    square: &str,
    gamma_first: bool,
    break_at: Option<usize>,
) -> pb::ModelProto {
    let g = m.graph.as_mut().unwrap();
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut count = 0;
    for n in std::mem::take(&mut g.node) {
        if n.op_type != "LayerNormalization" {
            nodes.push(n);
            continue;
        }
        let eps = n
            .attribute
            .iter()
            .find(|a| a.name == "epsilon")
            .map_or(1e-5, |a| a.f);
        let t = |s: &str| format!("ln{count}_{s}");
        let (x, gamma, beta, y) = (&n.input[0], &n.input[1], &n.input[2], &n.output[0]);
        inits.push(f32_init(&t("two"), &[], &[2.0]));
        inits.push(f32_init(&t("eps"), &[], &[eps]));
        let axes = || vec![attr_ints("axes", &[-1])];
        let square_node = if square == "Pow" {
            node("Pow", &[&t("d"), &t("two")], &[&t("p")], vec![])
        } else {
            node("Mul", &[&t("d"), &t("d")], &[&t("p")], vec![])
        };
        let scaled = if gamma_first {
            node("Mul", &[gamma, &t("n")], &[&t("s")], vec![])
        } else {
            node("Mul", &[&t("n"), gamma], &[&t("s")], vec![])
        };
        let pattern = [
            node("ReduceMean", &[x], &[&t("m")], axes()),
            node("Sub", &[x, &t("m")], &[&t("d")], vec![]),
            square_node,
            node("ReduceMean", &[&t("p")], &[&t("v")], axes()),
            node("Add", &[&t("v"), &t("eps")], &[&t("ve")], vec![]),
            node("Sqrt", &[&t("ve")], &[&t("sd")], vec![]),
            node("Div", &[&t("d"), &t("sd")], &[&t("n")], vec![]),
            scaled,
            node("Add", &[&t("s"), beta], &[y], vec![]),
        ];
        for (i, p) in pattern.into_iter().enumerate() {
            if break_at == Some(i) {
                // Keep the dataflow connected: the left-out node's output comes from x.
                nodes.push(node("Identity", &[x], &[&p.output[0]], vec![]));
            } else {
                nodes.push(p);
            }
        }
        count += 1;
    }
    assert!(count > 0);
    g.node = nodes;
    g.initializer.extend(inits);
    m
}

/// Exports before opset 17 spell LayerNorm out in nine nodes; the reader fuses them back
/// and recovers the same tensors and config as from the opset-17 graph.
#[test]
fn layer_norm_spelled_out_before_opset_17_is_fused() {
    for (fixture, square, gamma_first) in [
        ("tiny-base/seqcls2/model.onnx", "Pow", false),
        ("tiny-base/base/model.onnx", "Mul", true),
        ("tiny-base/seqcls2/model.int8.onnx", "Pow", true),
    ] {
        let original = decode(&shared().join("fixtures").join(fixture));
        let (want, _) = from_model_proto(&original, None).unwrap();
        let spelled = spell_out_layer_norms(original, square, gamma_first, None);
        let (got, _) =
            from_model_proto(&spelled, None).unwrap_or_else(|e| panic!("{fixture}: {e:#}"));
        assert_eq!(got.tensors, want.tensors, "{fixture}");
        assert_config(&got.config, &want.config);
        assert_eq!(
            got.config.layer_norm_eps, want.config.layer_norm_eps,
            "{fixture}"
        );
    }
}

/// A spelled-out LayerNorm missing any one of its nine steps is refused, not fused into
/// something else.
#[test]
fn layer_norm_spelled_out_wrongly_is_refused() {
    for missing in 0..9 {
        let original = decode(&shared().join("fixtures/tiny-base/seqcls2/model.onnx"));
        let broken = spell_out_layer_norms(original, "Pow", false, Some(missing));
        let e = match from_model_proto(&broken, None) {
            Ok(_) => panic!("step {missing} left out, still accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            e.contains("LayerNorm") || e.contains("LayerNormalization"),
            "step {missing}: {e}"
        );
    }
}

fn i64_tensor(data: &[i64], dims: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        dims: dims.to_vec(),
        data_type: 7,
        raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// The seqcls2 fixture graph without its `token_type_ids` input: the token type lookup
/// reads `index` instead, built by `build` (which gets the graph and writes `index`).
fn without_token_types(build: impl Fn(&mut pb::GraphProto, &str)) -> pb::ModelProto {
    let mut m = decode(&shared().join("fixtures/tiny-base/seqcls2/model.onnx"));
    let g = m.graph.as_mut().unwrap();
    g.input.retain(|v| v.name != "token_type_ids");
    let index = "test_token_types";
    let mut rewired = 0;
    for n in &mut g.node {
        for i in &mut n.input {
            if i == "token_type_ids" {
                *i = index.to_string();
                rewired += 1;
            }
        }
    }
    assert_eq!(rewired, 1);
    g.node.insert(
        0,
        node("Shape", &["input_ids"], &["test_ids_shape"], vec![]),
    );
    let at = g.node.len();
    build(g, index);
    // Keep the nodes in topological order: the new ones first.
    let added: Vec<pb::NodeProto> = g.node.drain(at..).collect();
    for (k, n) in added.into_iter().enumerate() {
        g.node.insert(1 + k, n);
    }
    m
}

/// Exports without a `token_type_ids` input (HF then uses type 0 everywhere) read the
/// same tensors; `verify` runs the model file with type 0 to match.
#[test]
fn graphs_without_token_type_ids_use_type_zero() {
    let (want, _) = from_model_proto(
        &decode(&shared().join("fixtures/tiny-base/seqcls2/model.onnx")),
        None,
    )
    .unwrap();
    let zero_value = pb::AttributeProto {
        name: "value".into(),
        t: Some(i64_tensor(&[0], &[1])),
        r#type: 4,
        ..Default::default()
    };
    let graphs = [
        // torch.zeros(input_shape): ConstantOfShape.
        without_token_types(|g, index| {
            g.node.push(node(
                "ConstantOfShape",
                &["test_ids_shape"],
                &[index],
                vec![zero_value.clone()],
            ))
        }),
        // A registered zero buffer expanded to the input shape.
        without_token_types(|g, index| {
            let mut t = i64_tensor(&[0; 8], &[1, 8]);
            t.name = "test_zero_buffer".into();
            g.initializer.push(t);
            g.node.push(node(
                "Slice",
                &["test_zero_buffer", "test_starts", "test_ends", "test_axes"],
                &["test_sliced"],
                vec![],
            ));
            for (name, v) in [("test_starts", 0), ("test_ends", 4), ("test_axes", 1)] {
                let mut t = i64_tensor(&[v], &[1]);
                t.name = name.into();
                g.initializer.push(t);
            }
            g.node.push(node(
                "Expand",
                &["test_sliced", "test_ids_shape"],
                &[index],
                vec![],
            ));
        }),
    ];
    for m in &graphs {
        let (got, _) = from_model_proto(m, None).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(got.tensors, want.tensors);
        assert_config(&got.config, &want.config);
    }
    // A constant index that is not all zeros is refused, naming the problem.
    let ones = without_token_types(|g, index| {
        let one = pb::AttributeProto {
            name: "value".into(),
            t: Some(i64_tensor(&[1], &[1])),
            r#type: 4,
            ..Default::default()
        };
        g.node.push(node(
            "ConstantOfShape",
            &["test_ids_shape"],
            &[index],
            vec![one],
        ))
    });
    let e = format!("{:#}", from_model_proto(&ones, None).unwrap_err());
    assert!(e.contains("token type 0"), "{e}");
}
