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

/// A JSON array of numbers.
fn numbers(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Runs the CLI on `args` expecting a refusal (exit code 1); its message.
fn refusal<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = bin().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

/// A JSON array of strings.
fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
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
    let names = strings(&json_of(&["info".as_ref(), "--json".as_ref(), p.as_os_str()])["labels"]);
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
        let e = refusal(&["eval".as_ref(), p.as_os_str(), bad.as_os_str()]);
        assert!(e.contains("line 3") && e.contains(needle), "{e}");
    }
}

/// A copy of the `tiny-base/seqcls3` fixture with `edit` applied to its
/// `config.json`, and only the first classifier output when `one_output`.
fn variant_dir(name: &str, one_output: bool, edit: &dyn Fn(&mut serde_json::Value)) -> PathBuf {
    let src = common::shared().join("fixtures/tiny-base/seqcls3");
    let dir = temp(&format!("ckpt-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["spiece.model", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let weights = std::fs::read(src.join("model.safetensors")).unwrap();
    if one_output {
        cfg["id2label"] = serde_json::json!({"0": "score"});
        cfg["label2id"] = serde_json::json!({"score": 0});
        let st = safetensors::SafeTensors::deserialize(&weights).unwrap();
        let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (n, t) in st.tensors() {
            let (mut shape, mut data) = (t.shape().to_vec(), t.data().to_vec());
            if n.starts_with("classifier.") {
                // Row 0 of the weight, element 0 of the bias.
                let row = data.len() / shape[0];
                data.truncate(row);
                shape[0] = 1;
            }
            owned.push((n, t.dtype(), shape, data));
        }
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
            .iter()
            .map(|(n, d, s, b)| {
                let v = safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap();
                (n.clone(), v)
            })
            .collect();
        std::fs::write(
            dir.join("model.safetensors"),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
    } else {
        std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    }
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    dir
}

/// `dir` converted to an f32 file `name.albert`.
fn convert_dir(dir: &std::path::Path, name: &str) -> PathBuf {
    let raw = albert_convert::load::safetensors::load_dir(dir).unwrap();
    let bytes = albert_convert::convert::convert(&raw, Precision::F32)
        .unwrap()
        .0;
    let out = temp(&format!("{name}.albert"));
    std::fs::write(&out, bytes).unwrap();
    out
}

/// The fixture variant with `problem_type` (`None`: unset), converted to f32.
fn problem_variant(name: &str, problem_type: Option<&str>, one_output: bool) -> PathBuf {
    let dir = variant_dir(name, one_output, &|cfg| {
        if let Some(p) = problem_type {
            cfg["problem_type"] = p.into();
        }
    });
    convert_dir(&dir, name)
}

fn classify_json(model: &std::path::Path, text: &str) -> serde_json::Value {
    json_of(&[
        "classify".as_ref(),
        model.as_os_str(),
        text.as_ref(),
        "--json".as_ref(),
    ])
}

/// `classify` turns logits into scores as transformers' pipeline does for the
/// model's `problem_type`: softmax, a sigmoid per label (multi-label, or one
/// output), or none (regression).
#[test]
fn classify_scores_follow_the_problem_type() {
    let text = "a fine film, if long";
    let cases = [
        (
            "unset",
            None,
            false,
            "single_label_classification",
            "softmax",
        ),
        (
            "single",
            Some("single_label_classification"),
            false,
            "single_label_classification",
            "softmax",
        ),
        (
            "multi",
            Some("multi_label_classification"),
            false,
            "multi_label_classification",
            "sigmoid",
        ),
        (
            "regression3",
            Some("regression"),
            false,
            "regression",
            "none",
        ),
        ("one", None, true, "single_label_classification", "sigmoid"),
        (
            "one-regression",
            Some("regression"),
            true,
            "regression",
            "none",
        ),
    ];
    let mut logits3 = None;
    for (name, problem, one, stored, function) in cases {
        let p = problem_variant(name, problem, one);
        let info = json_of(&["info".as_ref(), "--json".as_ref(), p.as_os_str()]);
        assert_eq!(info["problem_type"], stored, "{name}");
        assert_eq!(info["score_function"], function, "{name}");
        let v = classify_json(&p, text);
        assert_eq!(v["function"], function, "{name}");
        let logits = numbers(&v["logits"]);
        assert_eq!(logits.len(), if one { 1 } else { 3 }, "{name}");
        // The weights are the same: only the scores differ.
        if !one {
            assert_eq!(
                *logits3.get_or_insert_with(|| logits.clone()),
                logits,
                "{name}"
            );
        }
        let want: Vec<f64> = match function {
            "softmax" => {
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = logits.iter().map(|x| (x - m).exp()).collect();
                e.iter().map(|x| x / e.iter().sum::<f64>()).collect()
            }
            "sigmoid" => logits.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect(),
            _ => logits.clone(),
        };
        let labels = strings(&info["labels"]);
        for (l, w) in labels.iter().zip(&want) {
            let got = v["scores"][l].as_f64().unwrap();
            assert!(
                (got - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{name} {l}: {got} vs {w}"
            );
        }
        let best = (0..want.len())
            .max_by(|&a, &b| want[a].total_cmp(&want[b]))
            .unwrap();
        assert_eq!(v["label"], labels[best].as_str(), "{name}");
        assert!(
            (v["score"].as_f64().unwrap() - want[best]).abs() <= 1e-6 * want[best].abs().max(1.0)
        );
        assert_eq!(
            v.get("probabilities").is_some(),
            function == "softmax",
            "{name}"
        );
        if problem == Some("multi_label_classification") {
            let chosen: Vec<&str> = labels
                .iter()
                .zip(&logits)
                .filter(|(_, &x)| x > 0.0)
                .map(|(l, _)| l.as_str())
                .collect();
            assert_eq!(v["labels"], serde_json::json!(chosen));
        }
    }
}

/// `eval` on a multi-label model (label sets) and a one-output model
/// (regression: correlations and squared error).
#[test]
fn eval_measures_multi_label_sets_and_regression() {
    let texts = [
        "a fine film",
        "dull and long",
        "so so",
        "the best thing this year",
        "i want my money back",
    ];
    let write = |name: &str, rows: &[String]| {
        let p = temp(name);
        let mut s = String::from("sentence\tlabel\n");
        for (t, l) in texts.iter().zip(rows) {
            s += &format!("{t}\t{l}\n");
        }
        std::fs::write(&p, s).unwrap();
        p
    };
    let eval = |m: &PathBuf, f: &PathBuf| {
        json_of(&[
            "eval".as_ref(),
            m.as_os_str(),
            f.as_os_str(),
            "--json".as_ref(),
        ])
    };

    // `eval` refusing the file: exit code 1 and the message.
    let eval_fails =
        |m: &PathBuf, f: &PathBuf| refusal(&["eval".as_ref(), m.as_os_str(), f.as_os_str()]);

    // Multi-label: the model's own label sets score 1; one row changed, 4/5.
    let multi = problem_variant("eval-multi", Some("multi_label_classification"), false);
    let sets: Vec<Vec<String>> = texts
        .iter()
        .map(|t| strings(&classify_json(&multi, t)["labels"]))
        .collect();
    let own: Vec<String> = sets.iter().map(|s| s.join(", ")).collect();
    let r = eval(&multi, &write("multi-own.tsv", &own));
    assert_eq!(
        (r["accuracy"].as_f64(), r["micro_f1"].as_f64()),
        (Some(1.0), Some(1.0)),
        "{r}"
    );
    let mut changed = own.clone();
    changed[0] = if sets[0].is_empty() {
        "0".into()
    } else {
        String::new()
    };
    let r = eval(&multi, &write("multi-changed.tsv", &changed));
    assert_eq!(r["correct"], 4, "{r}");
    assert!(r["micro_f1"].as_f64().unwrap() < 1.0, "{r}");
    let mut bad = own.clone();
    bad[2] = "0, nonsense".into();
    assert!(eval_fails(&multi, &write("multi-bad.tsv", &bad)).contains("line 4"));

    // Regression (one output, problem type unset, as transformers trains it):
    // labels an increasing linear function of the model's scores correlate 1.
    let one = problem_variant("eval-one", None, true);
    let scores: Vec<f64> = texts
        .iter()
        .map(|t| classify_json(&one, t)["logits"][0].as_f64().unwrap())
        .collect();
    let lin: Vec<String> = scores
        .iter()
        .map(|s| format!("{}", 2.0 * s + 1.0))
        .collect();
    let r = eval(&one, &write("reg-lin.tsv", &lin));
    assert!((r["pearson"].as_f64().unwrap() - 1.0).abs() < 1e-6, "{r}");
    assert!((r["spearman"].as_f64().unwrap() - 1.0).abs() < 1e-12, "{r}");
    let mse = scores.iter().map(|s| (s + 1.0).powi(2)).sum::<f64>() / scores.len() as f64;
    assert!(
        (r["mse"].as_f64().unwrap() - mse).abs() <= 1e-6 * mse.max(1.0),
        "{r}"
    );
    let neg: Vec<String> = scores.iter().map(|s| format!("{}", -s)).collect();
    let r = eval(&one, &write("reg-neg.tsv", &neg));
    assert!((r["pearson"].as_f64().unwrap() + 1.0).abs() < 1e-6, "{r}");
    let mut bad = lin.clone();
    bad[1] = "positive".into();
    let e = eval_fails(&one, &write("reg-bad.tsv", &bad));
    assert!(e.contains("line 3") && e.contains("not a number"), "{e}");
    // A regression with three outputs is refused, not guessed at.
    let three = problem_variant("eval-reg3", Some("regression"), false);
    assert!(eval_fails(&three, &write("reg3.tsv", &lin)).contains("one output"));
}

/// A multiple-choice model (`AlbertForMultipleChoice`): `choose` scores each
/// (prompt, choice) pair and takes a softmax over the choices; `classify` and
/// `eval` send the user to it.
#[test]
fn choose_takes_a_softmax_over_the_choices() {
    let mc = variant_dir("mc", true, &|cfg| {
        cfg["architectures"] = serde_json::json!(["AlbertForMultipleChoice"]);
    });
    let mc = convert_dir(&mc, "mc");
    // The same weights as a one-output sequence classifier.
    let plain = problem_variant("mc-plain", None, true);
    let info = json_of(&["info".as_ref(), "--json".as_ref(), mc.as_os_str()]);
    assert_eq!(info["problem_type"], "multiple_choice");
    assert_eq!(info["score_function"], "softmax over choices");
    let prompt = "the film was";
    let choices = [
        "a fine film",
        "dull and long",
        "so so, if you like that sort of thing",
    ];
    let mut args: Vec<std::ffi::OsString> = vec![
        "choose".into(),
        mc.clone().into(),
        prompt.into(),
        "--json".into(),
    ];
    for c in choices {
        args.push("--choice".into());
        args.push(c.into());
    }
    let v = json_of(&args);
    let logits = numbers(&v["logits"]);
    for (c, l) in choices.iter().zip(&logits) {
        let want = json_of(&[
            "classify".as_ref(),
            plain.as_os_str(),
            prompt.as_ref(),
            "--pair".as_ref(),
            c.as_ref(),
            "--json".as_ref(),
        ])["logits"][0]
            .as_f64()
            .unwrap();
        assert_eq!(*l, want, "{c}");
    }
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|x| (x - m).exp()).collect();
    let sum: f64 = e.iter().sum();
    for (got, e) in v["scores"].as_array().unwrap().iter().zip(&e) {
        assert!((got.as_f64().unwrap() - e / sum).abs() < 1e-12);
    }
    let best = (0..3)
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap();
    assert_eq!(v["choice_id"], best);
    assert_eq!(v["choice"], choices[best]);
    // The other commands point to `choose`, and `choose` to `classify`.
    let tsv = temp("mc.tsv");
    std::fs::write(&tsv, "sentence\tlabel\nfine\t0\n").unwrap();
    for args in [
        vec![
            "classify".into(),
            mc.clone().into_os_string(),
            "fine".into(),
        ],
        vec![
            "eval".into(),
            mc.clone().into_os_string(),
            tsv.into_os_string(),
        ],
    ] {
        assert!(refusal(&args).contains("choose"));
    }
    let e = refusal(&[
        "choose".as_ref(),
        plain.as_os_str(),
        "x".as_ref(),
        "--choice".as_ref(),
        "a".as_ref(),
        "--choice".as_ref(),
        "b".as_ref(),
    ]);
    assert!(e.contains("classify"), "{e}");
    // One classifier output or none: a multiple-choice checkpoint with three is refused.
    let three = variant_dir("mc3", false, &|cfg| {
        cfg["architectures"] = serde_json::json!(["AlbertForMultipleChoice"]);
    });
    let raw = albert_convert::load::safetensors::load_dir(&three).unwrap();
    let e = albert_convert::convert::convert(&raw, Precision::F32).unwrap_err();
    assert!(format!("{e:#}").contains("one classifier output"), "{e:#}");
}

/// `eval` on a multiple-choice model: each question's pick is `choose`'s, and
/// the accuracy counts them against the labels.
#[test]
fn eval_scores_multiple_choice_questions() {
    let mc = variant_dir("eval-mc", true, &|cfg| {
        cfg["architectures"] = serde_json::json!(["AlbertForMultipleChoice"]);
    });
    let mc = convert_dir(&mc, "eval-mc");
    // SWAG's columns: every choice is `sent2`, a space and the ending. The
    // second question has no ending1: its choices are positions 0 and 2.
    let rows = [
        [
            "the film was",
            "in the end",
            "a fine film",
            "dull and long",
            "so so",
        ],
        [
            "she opened the door",
            "and then",
            "it rained",
            "",
            "the cat left",
        ],
        [
            "i want my money back",
            "because",
            "it was bad",
            "it was good",
            "who knows",
        ],
    ];
    let picks: Vec<usize> = rows
        .iter()
        .map(|r| {
            let kept: Vec<usize> = (0..3).filter(|&i| !r[2 + i].is_empty()).collect();
            let mut args: Vec<String> = vec![
                "choose".into(),
                mc.display().to_string(),
                r[0].into(),
                "--json".into(),
            ];
            for &i in &kept {
                args.push("--choice".into());
                args.push(format!("{} {}", r[1], r[2 + i]));
            }
            kept[json_of(&args)["choice_id"].as_u64().unwrap() as usize]
        })
        .collect();
    let write = |name: &str, labels: &[String]| {
        let p = temp(name);
        let mut s = String::from("video-id\tsent1\tsent2\tending0\tending1\tending2\tlabel\n");
        for (r, l) in rows.iter().zip(labels) {
            s += &format!("v\t{}\t{}\t{}\t{}\t{}\t{l}\n", r[0], r[1], r[2], r[3], r[4]);
        }
        std::fs::write(&p, s).unwrap();
        p
    };
    let eval = |f: &PathBuf, extra: &[&std::ffi::OsStr]| {
        let mut args = vec![
            "eval".as_ref(),
            mc.as_os_str(),
            f.as_os_str(),
            "--json".as_ref(),
        ];
        args.extend_from_slice(extra);
        json_of(&args)
    };
    let own: Vec<String> = picks.iter().map(|p| p.to_string()).collect();
    let r = eval(&write("mc-own.tsv", &own), &[]);
    assert_eq!(r["accuracy"].as_f64(), Some(1.0), "{r}");
    assert_eq!(
        numbers(&r["predictions"]),
        picks.iter().map(|&p| p as f64).collect::<Vec<_>>()
    );
    // Letters name the same positions; one label moved to another choice: 2/3.
    let mut letters: Vec<String> = picks
        .iter()
        .map(|&p| ((b'A' + p as u8) as char).to_string())
        .collect();
    letters[0] = ((b'A' + ((picks[0] as u8 + 1) % 3)) as char).to_string();
    let r = eval(
        &write("mc-letters.tsv", &letters),
        &["--compare".as_ref(), mc.as_os_str()],
    );
    assert_eq!(
        (r["correct"].as_u64(), r["n"].as_u64()),
        (Some(2), Some(3)),
        "{r}"
    );
    assert_eq!(r["agreement"].as_f64(), Some(1.0), "{r}");
    // A label naming no choice of its row, and a classifier of another kind to
    // compare with, are refused.
    let mut bad = own.clone();
    bad[1] = "1".into();
    let e = refusal(&[
        "eval".as_ref(),
        mc.as_os_str(),
        write("mc-bad.tsv", &bad).as_os_str(),
    ]);
    assert!(e.contains("line 3"), "{e}");
    let plain = problem_variant("eval-mc-plain", None, true);
    let e = refusal(&[
        "eval".as_ref(),
        mc.as_os_str(),
        write("mc-own2.tsv", &own).as_os_str(),
        "--compare".as_ref(),
        plain.as_os_str(),
    ]);
    assert!(e.contains("not a multiple-choice model"), "{e}");
}
