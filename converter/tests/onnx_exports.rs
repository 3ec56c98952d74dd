//! ONNX exports as transformers 5 and PyTorch write them by default, committed under
//! `tests/data/exports` (written by its `make.py`): scaled-dot-product attention (the
//! default `sdpa` implementation: the scores scaled on both sides, `Where(IsNaN(p), 0, p)`
//! after the softmax, the dynamo exporter's key transpose through 3-D), and
//! `AlbertForMultipleChoice` (`[batch, choices, seq]` inputs flattened to rows, the
//! logits reshaped to `[batch, choices]`), from the TorchScript (opset 17) and the
//! dynamo exporter.
//!
//! Each must give the checkpoint's own tensors, convert to the same file as the
//! checkpoint, and reproduce PyTorch's logits.

use albert_convert::convert;
use albert_convert::load::onnx::{from_model_proto, load_onnx};
use albert_convert::load::safetensors::load_dir;
use albert_convert::load::RawCheckpoint;
use albert_convert::verify::verify_files;
use albert_edge::{Input, Model, Precision, ProblemType};
use std::path::{Path, PathBuf};
use tract_onnx::pb;
use tract_onnx::prelude::Framework;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/exports")
        .join(name)
}

const EXPORTS: [&str; 2] = ["opset17", "dynamo"];

fn onnx(dir: &Path, tag: &str) -> RawCheckpoint {
    let p = dir.join(format!("{tag}.onnx"));
    load_onnx(&p, None).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()))
}

fn f32_file(raw: &RawCheckpoint) -> Vec<u8> {
    convert::convert(raw, Precision::F32)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .0
}

/// The checkpoint's tensors, bit for bit, and its architecture.
fn assert_same_checkpoint(got: &RawCheckpoint, want: &RawCheckpoint, what: &str) {
    let names = |c: &RawCheckpoint| c.tensors.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: tensor names");
    for (name, w) in &want.tensors {
        let g = &got.tensors[name];
        assert_eq!(g.shape, w.shape, "{what}: {name}");
        assert!(
            g.data
                .iter()
                .zip(&w.data)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{what}: {name} differs"
        );
    }
    assert_eq!(
        got.config.architectures, want.config.architectures,
        "{what}"
    );
    assert_eq!(
        (got.config.num_hidden_layers, got.config.num_attention_heads),
        (
            want.config.num_hidden_layers,
            want.config.num_attention_heads
        ),
        "{what}"
    );
}

/// One input of `expected.json` and PyTorch's logits for it.
#[derive(serde::Deserialize)]
struct Case {
    shape: Vec<usize>,
    input_ids: Vec<u32>,
    attention_mask: Vec<u32>,
    token_type_ids: Vec<u32>,
    logits: Vec<f32>,
}

/// PyTorch's logits on `expected.json`'s inputs; a multiple-choice case runs its
/// choices as rows.
fn assert_logits(model: &Model<'_>, dir: &Path, what: &str) {
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    for Case {
        shape,
        input_ids: ids,
        attention_mask: mask,
        token_type_ids: types,
        logits: want,
    } in &cases
    {
        let seq = *shape.last().unwrap();
        let batch = ids.len() / seq;
        let input = Input {
            batch,
            seq,
            input_ids: ids,
            attention_mask: Some(mask),
            token_type_ids: Some(types),
        };
        let mut ws = model.new_workspace(seq, batch);
        let out = model.run(&mut ws, &input).unwrap();
        let got = out.get("logits").unwrap().data;
        assert_eq!(got.len(), want.len(), "{what} {shape:?}");
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 1e-5 * scale.max(1.0),
                "{what} {shape:?}: {got:?} vs PyTorch {want:?}"
            );
        }
    }
}

/// Every export of checkpoint `name` gives its tensors, converts to the same f32
/// file and reproduces PyTorch's logits; `more` checks each further. Returns the
/// checkpoint's f32 file.
fn exports_match_checkpoint(name: &str, more: &dyn Fn(&RawCheckpoint, &Model<'_>)) -> Vec<u8> {
    let dir = data(name);
    let ckpt = load_dir(&dir).unwrap();
    let want = f32_file(&ckpt);
    for tag in EXPORTS {
        let what = format!("{name} {tag}");
        let raw = onnx(&dir, tag);
        assert_same_checkpoint(&raw, &ckpt, &what);
        let bytes = f32_file(&raw);
        assert!(
            bytes == want,
            "{what}: the file differs from the checkpoint's"
        );
        let model = Model::from_vec(&bytes).unwrap();
        assert_logits(&model, &dir, &what);
        more(&raw, &model);
    }
    want
}

#[test]
fn sdpa_exports_convert_like_their_checkpoint() {
    exports_match_checkpoint("seqcls", &|raw, _| {
        assert_eq!(
            raw.config.architectures.as_deref(),
            Some(&["AlbertForSequenceClassification".to_string()][..])
        );
    });
}

#[test]
fn multiple_choice_exports_convert_like_their_checkpoint() {
    let want = exports_match_checkpoint("mc", &|raw, model| {
        assert_eq!(
            raw.config.architectures.as_deref(),
            Some(&["AlbertForMultipleChoice".to_string()][..])
        );
        assert_eq!(model.config().problem_type, ProblemType::MultipleChoice);
        // int8 too.
        let q = convert::convert(raw, Precision::Int8).unwrap().0;
        let q = Model::from_vec(&q).unwrap();
        assert_eq!(q.config().problem_type, ProblemType::MultipleChoice);
    });
    let dir = data("mc");
    // `verify` runs the graph on [1, choices, seq] and compares per choice.
    let out = std::env::temp_dir().join(format!("albert-mc-verify-{}.albert", std::process::id()));
    std::fs::write(&out, &want).unwrap();
    let report = verify_files(&dir.join("opset17.onnx"), &out, None, None).unwrap();
    std::fs::remove_file(&out).unwrap();
    assert!(report.passed(), "{:?}", report.comparisons);
    assert!(report.comparisons.iter().all(|c| c.shape[1] == 1));
}

fn decode(path: &Path) -> pb::ModelProto {
    let bytes = std::fs::read(path).unwrap();
    tract_onnx::onnx()
        .proto_model_for_read(&mut bytes.as_slice())
        .unwrap()
}

/// A multiple-choice graph whose logits are not reshaped back to
/// `[batch, choices]`, or that reshapes an input otherwise, is refused.
#[test]
fn other_reshapes_of_choices_are_refused() {
    let m = decode(&data("mc").join("opset17.onnx"));
    let with_shape = |value: &str, shape: &[i64]| {
        let mut m = m.clone();
        let g = m.graph.as_mut().unwrap();
        g.initializer.push(pb::TensorProto {
            name: "test_shape".into(),
            dims: vec![shape.len() as i64],
            data_type: 7,
            raw_data: shape.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        });
        let n = g
            .node
            .iter_mut()
            .find(|n| n.op_type == "Reshape" && (n.input[0] == value || n.output[0] == value))
            .unwrap();
        n.input[1] = "test_shape".into();
        format!("{:#}", from_model_proto(&m, None).unwrap_err())
    };
    let e = with_shape("logits", &[-1, 5]);
    assert!(e.contains("not one score per choice"), "{e}");
    let e = with_shape("input_ids", &[-1, 7]);
    assert!(e.contains("not flattened to [-1, sequence]"), "{e}");
    // The graph as exported converts (the refusals come from the edits).
    from_model_proto(&m, None).unwrap();
}
