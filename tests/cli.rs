//! The `albert-edge` command-line contract: `info`, `run`, exit codes, one-line errors.

mod common;

use albert_edge::{Input, Model, Precision};
use std::path::PathBuf;
use std::process::Command;

/// The CLI, run through `$ALBERT_EDGE_TEST_RUNNER` (e.g. `qemu-aarch64 -L ...`)
/// when the tests themselves run under emulation.
fn bin() -> Command {
    let exe = env!("CARGO_BIN_EXE_albert-edge");
    match std::env::var("ALBERT_EDGE_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut parts = runner.split_whitespace();
            let mut c = Command::new(parts.next().unwrap());
            c.args(parts).arg(exe);
            c
        }
        _ => Command::new(exe),
    }
}

/// Runs the CLI with `args`, asserts success, and parses its standard output as JSON.
fn json_of<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> serde_json::Value {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("albert-edge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn model_file(ckpt: &str, precision: Precision) -> PathBuf {
    let p = temp(&format!(
        "{}-{}.albert",
        ckpt.replace('/', "-"),
        precision.name()
    ));
    if !p.exists() {
        std::fs::write(&p, common::convert_fixture(ckpt, precision)).unwrap();
    }
    p
}

#[test]
fn info_json_reports_config_and_sizes() {
    let p = model_file("tiny-base/seqcls3", Precision::Int8);
    let v = json_of(&["info".as_ref(), "--json".as_ref(), p.as_os_str()]);
    assert_eq!(v["head"], "sequence-classification");
    assert_eq!(v["precision"], "int8");
    assert_eq!(v["labels"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["file_bytes"].as_u64().unwrap(),
        std::fs::metadata(&p).unwrap().len()
    );
    assert!(v["parameters"].as_u64().unwrap() > 300_000);
    assert_eq!(v["config"]["hidden_size"], 64);
    let text = bin().arg("info").arg(&p).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("sequence-classification"));
}

#[test]
fn run_prints_transformers_named_outputs_equal_to_the_library() {
    let (_, reference) = common::reference("tiny-base/qa");
    let case = &reference["cases"][1];
    let input = temp("qa-case.json");
    std::fs::write(&input, serde_json::to_string(case).unwrap()).unwrap();
    let p = model_file("tiny-base/qa", Precision::F32);
    let v = json_of(&[
        "run".as_ref(),
        p.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
    ]);
    let (shape, ids) = common::u32_array(&case["input_ids"]);
    let (_, mask) = common::u32_array(&case["attention_mask"]);
    let (_, types) = common::u32_array(&case["token_type_ids"]);
    let model = Model::open(&p).unwrap();
    let mut ws = model.new_workspace(shape[1], shape[0]);
    let lib = model
        .run(
            &mut ws,
            &Input {
                batch: shape[0],
                seq: shape[1],
                input_ids: &ids,
                attention_mask: Some(&mask),
                token_type_ids: Some(&types),
            },
        )
        .unwrap();
    for name in ["start_logits", "end_logits"] {
        let o = &v["outputs"][name];
        assert_eq!(o["dtype"], "f32");
        assert_eq!(o["shape"], serde_json::json!(shape));
        let got: Vec<f32> = o["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got, lib.get(name).unwrap().data, "{name}");
    }
}

fn fails_with(args: &[&str], code: i32, needle: &str) {
    let out = bin().args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(needle),
        "{args:?}: stderr {err:?} lacks {needle:?}"
    );
    if code == 1 {
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err:?}"
        );
    }
}

#[test]
fn failures_are_one_line_with_exit_code_1_and_usage_errors_exit_2() {
    let model = model_file("tiny-base/seqcls2", Precision::Int8);
    let m = model.to_str().unwrap();
    fails_with(&["info", "/nonexistent/model.albert"], 1, "cannot open");
    let junk = temp("junk.albert");
    std::fs::write(
        &junk,
        b"not a model at all, just some bytes that are long enough to hold a header.....",
    )
    .unwrap();
    fails_with(&["info", junk.to_str().unwrap()], 1, "");
    let bad = temp("bad.json");
    std::fs::write(
        &bad,
        "{\"input_ids\": {\"shape\": [1, 2], \"data\": [2, 999999]}}",
    )
    .unwrap();
    fails_with(
        &["run", m, "--input", bad.to_str().unwrap()],
        1,
        "out of range",
    );
    std::fs::write(
        &bad,
        "{\"input_ids\": {\"shape\": [1, 3], \"data\": [2, 3]}}",
    )
    .unwrap();
    fails_with(
        &["run", m, "--input", bad.to_str().unwrap()],
        1,
        "do not match",
    );
    std::fs::write(
        &bad,
        "{\"input_ids\": {\"shape\": [1, 2], \"data\": [2, -3]}}",
    )
    .unwrap();
    fails_with(&["run", m, "--input", bad.to_str().unwrap()], 1, "integers");
    std::fs::write(&bad, "not json").unwrap();
    fails_with(&["run", m, "--input", bad.to_str().unwrap()], 1, "JSON");
    fails_with(&["run", m], 2, "--input");
    fails_with(&["frobnicate"], 2, "");
    fails_with(&["--tier", "quantum", "info", m], 1, "unknown tier");
}

/// `eval` takes labels as class indices or as the model's label names, and refuses
/// others (and out-of-range indices) naming the line, before running anything.
#[test]
fn eval_reads_label_indices_and_names() {
    let p = model_file("tiny-base/seqcls3", Precision::Int8);
    let names: Vec<String> = {
        let v = json_of(&["info".as_ref(), "--json".as_ref(), p.as_os_str()]);
        v["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect()
    };
    let texts = ["a fine film", "dull and long", "so so"];
    let by_index = temp("eval-index.tsv");
    let by_name = temp("eval-name.tsv");
    let mut a = String::from("sentence\tlabel\n");
    let mut b = String::from("label\tsentence\n");
    for (i, t) in texts.iter().enumerate() {
        a += &format!("{t}\t{i}\n");
        b += &format!("{}\t{t}\n", names[i].to_lowercase());
    }
    std::fs::write(&by_index, a).unwrap();
    // With a byte-order mark and CRLF line ends, as spreadsheets write them.
    std::fs::write(&by_name, format!("\u{feff}{}", b.replace('\n', "\r\n"))).unwrap();
    let run = |f: &PathBuf| {
        json_of(&[
            "eval".as_ref(),
            p.as_os_str(),
            f.as_os_str(),
            "--json".as_ref(),
        ])
    };
    let (x, y) = (run(&by_index), run(&by_name));
    assert_eq!(x["n"], 3);
    assert_eq!(x["correct"], y["correct"]);
    assert_eq!(x["predictions"], y["predictions"]);
    assert_eq!(x["per_class"], y["per_class"]);
    for (label, needle) in [("3", "out of range"), ("maybe", "neither a class index")] {
        let bad = temp(&format!("eval-bad-{label}.tsv"));
        std::fs::write(&bad, format!("sentence\tlabel\nok\t0\nfine\t{label}\n")).unwrap();
        let out = bin().arg("eval").arg(&p).arg(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("line 3") && e.contains(needle), "{e}");
    }
}
