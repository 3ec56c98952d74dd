//! `albert-convert verify`: passes on ONNX / converted-file pairs, fails on a different
//! model's file, and reports malformed input with exit code 1 and one line, never a panic.
//! Also checks that the convert form of the command line still works next to the
//! subcommand.
//!
//! Fixtures: `$ALBERT_EDGE_SHARED` or `<repo>/../shared`.

use albert_convert::verify::{self, OnnxRunner, Tolerance};
use albert_edge::Model;
use std::path::Path;
use std::process::{Command, Output};
use tract_onnx::prelude::Framework;

mod common;
use common::shared;

fn bin(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_albert-convert"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Copies the model files (not the tokenizer: the comparison is about the network) of a
/// checkpoint folder into `to`.
fn stage(from: &Path, to: &Path, files: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for f in files {
        std::fs::copy(from.join(f), to.join(f))
            .unwrap_or_else(|e| panic!("{}: {e}", from.join(f).display()));
    }
}

/// Converts `input` (folder or .onnx) with the CLI.
fn convert(input: &Path, out: &Path, precision: &str) {
    let o = bin(&[
        input.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--precision".as_ref(),
        precision.as_ref(),
        "--quiet".as_ref(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
}

fn verify_cli(onnx: &Path, albert: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["verify".as_ref(), onnx.as_os_str(), albert.as_os_str()];
    args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    bin(&args)
}

/// Asserts exit code 1 with exactly one line on stderr that names the problem, and no
/// panic.
fn assert_clean_failure(o: &Output, needle: &str) {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("albert-convert: error: "), "prefix: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

/// Every fixture ONNX with the file converted from it, f32 and int8, default (synthetic)
/// inputs: exit 0 and a PASS line. Prints the report for the record.
#[test]
fn verify_passes_on_converted_files() {
    let s = shared();
    let tmp = tempfile::tempdir().unwrap();
    for (label, dir) in [
        ("base", s.join("fixtures/tiny-base/base")),
        ("seqcls2", s.join("fixtures/tiny-base/seqcls2")),
        ("sst2-tiny", s.join("models/sst2-tiny")),
    ] {
        let d = tmp.path().join(label);
        stage(&dir, &d, &["config.json", "model.onnx"]);
        for precision in ["f32", "int8"] {
            let out = tmp.path().join(format!("{label}.{precision}.albert"));
            convert(&d.join("model.onnx"), &out, precision);
            let o = verify_cli(&d.join("model.onnx"), &out, &[]);
            let (stdout, stderr) = text(&o);
            eprintln!("--- {label} {precision}\n{stdout}{stderr}");
            assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
            assert!(stdout.contains("PASS"), "{stdout}");
            // The default cases include one token and a padded batch of two.
            assert!(stdout.contains("synthetic_len1"), "{stdout}");
            assert!(stdout.contains("synthetic_batch2_padded"), "{stdout}");
        }
    }
}

/// `--inputs reference.json` (all five cases) and `--inputs` with a single case.
#[test]
fn verify_passes_on_reference_cases() {
    let s = shared();
    let tmp = tempfile::tempdir().unwrap();
    for label in ["base", "seqcls2"] {
        let dir = s.join("fixtures/tiny-base").join(label);
        let d = tmp.path().join(label);
        stage(&dir, &d, &["config.json", "model.onnx"]);
        let reference = dir.join("reference.json");
        for precision in ["f32", "int8"] {
            let out = tmp.path().join(format!("{label}.{precision}.albert"));
            convert(&d.join("model.onnx"), &out, precision);
            let o = verify_cli(
                &d.join("model.onnx"),
                &out,
                &["--inputs", reference.to_str().unwrap()],
            );
            let (stdout, stderr) = text(&o);
            eprintln!("--- {label} {precision} reference cases\n{stdout}{stderr}");
            assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
            for case in [
                "single",
                "batch3_padded",
                "pair",
                "max_len_128",
                "len1_cls_only",
            ] {
                assert!(stdout.contains(case), "{case} missing: {stdout}");
            }
        }
    }
    // One case in the reference.json case layout, taken from the file.
    let dir = s.join("fixtures/tiny-base/seqcls2");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let pair = r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pair")
        .unwrap();
    let one = serde_json::json!({
        "input_ids": pair["input_ids"],
        "attention_mask": pair["attention_mask"],
        "token_type_ids": pair["token_type_ids"],
    });
    let case_file = tmp.path().join("pair_case.json");
    std::fs::write(&case_file, one.to_string()).unwrap();
    let out = tmp.path().join("seqcls2.f32.albert");
    let o = verify_cli(
        &dir.join("model.onnx"),
        &out,
        &["--inputs", case_file.to_str().unwrap()],
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("pair_case"),
        "named after the file: {stdout}"
    );
    assert!(stdout.contains("[1, 2]"), "{stdout}");
}

/// A file converted from another checkpoint (same shapes, different weights and
/// activation) fails with exit 1; so does the f32 file against ORT's int8 graph at the
/// f32 tolerance, which an explicit `--tolerance` can loosen.
#[test]
fn verify_fails_on_a_different_model() {
    let s = shared();
    let tmp = tempfile::tempdir().unwrap();
    let gelu = tmp.path().join("gelu");
    stage(
        &s.join("fixtures/tiny-gelu/seqcls2"),
        &gelu,
        &["config.json", "model.safetensors"],
    );
    let onnx = s.join("fixtures/tiny-base/seqcls2/model.onnx");
    for precision in ["f32", "int8"] {
        let other = tmp.path().join(format!("gelu.{precision}.albert"));
        convert(&gelu, &other, precision);
        let o = verify_cli(&onnx, &other, &[]);
        let (stdout, stderr) = text(&o);
        eprintln!("--- tiny-gelu {precision} file vs tiny-base onnx\n{stdout}{stderr}");
        assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
        assert!(stdout.contains("FAIL"), "{stdout}");
        assert!(!stderr.contains("panicked"));
    }

    // ORT int8 graph vs the fp32 file (weights differ by int8 rounding).
    let d = tmp.path().join("s2");
    stage(
        &s.join("fixtures/tiny-base/seqcls2"),
        &d,
        &["config.json", "model.safetensors"],
    );
    let f32_file = tmp.path().join("s2.f32.albert");
    convert(&d, &f32_file, "f32");
    let int8_onnx = s.join("fixtures/tiny-base/seqcls2/model.int8.onnx");
    let reference = s.join("fixtures/tiny-base/seqcls2/reference.json");
    let inputs = ["--inputs", reference.to_str().unwrap()];
    let o = verify_cli(&int8_onnx, &f32_file, &inputs);
    let (stdout, _) = text(&o);
    eprintln!("--- seqcls2 model.int8.onnx (tract) vs fp32 file\n{stdout}");
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    let o = verify_cli(
        &int8_onnx,
        &f32_file,
        &[inputs[0], inputs[1], "--tolerance", "0.5"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).0);
}

/// Garbage, truncated and foreign files, and bad `--inputs`: exit 1, one line, no panic.
#[test]
fn malformed_inputs_fail_cleanly() {
    let s = shared();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("s2");
    stage(
        &s.join("fixtures/tiny-base/seqcls2"),
        &d,
        &["config.json", "model.onnx"],
    );
    let onnx = d.join("model.onnx");
    let good = tmp.path().join("good.albert");
    convert(&onnx, &good, "f32");
    let onnx_bytes = std::fs::read(&onnx).unwrap();

    // Deterministic garbage.
    let mut x = 0x1234_5678_u32;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let bad = tmp.path().join("bad.onnx");
    std::fs::write(&bad, &garbage).unwrap();
    assert_clean_failure(&verify_cli(&bad, &good, &[]), "bad.onnx");

    std::fs::write(&bad, b"").unwrap();
    let o = verify_cli(&bad, &good, &[]);
    assert_clean_failure(&o, "bad.onnx");

    // Truncated at several points (inside the header, the initializers, the nodes).
    for cut in [1, 17, 1000, onnx_bytes.len() / 3, onnx_bytes.len() - 7] {
        std::fs::write(&bad, &onnx_bytes[..cut]).unwrap();
        assert_clean_failure(&verify_cli(&bad, &good, &[]), "bad.onnx");
    }

    // A model file where the ONNX graph is expected, and the other way round.
    assert_clean_failure(&verify_cli(&good, &good, &[]), "good.albert");
    assert_clean_failure(&verify_cli(&onnx, &onnx, &[]), "model.onnx");
    // Missing files.
    let missing = tmp.path().join("missing.onnx");
    assert_clean_failure(&verify_cli(&missing, &good, &[]), "missing.onnx");

    // Bad --inputs: not JSON, wrong layout, ids outside the vocabulary.
    let inputs = tmp.path().join("in.json");
    for (content, needle) in [
        ("not json", "in.json"),
        (r#"{"foo": 1}"#, "input_ids"),
        (
            r#"{"input_ids": {"shape": [1, 2], "data": [1]}}"#,
            "needs 2 values",
        ),
        (
            r#"{"input_ids": {"shape": [1, 2], "data": [2, 99999]}}"#,
            "out of range",
        ),
        (
            r#"{"input_ids": {"shape": [1, 2], "data": [2, -1]}}"#,
            "not a valid id",
        ),
    ] {
        std::fs::write(&inputs, content).unwrap();
        let o = verify_cli(&onnx, &good, &["--inputs", inputs.to_str().unwrap()]);
        assert_clean_failure(&o, needle);
    }
}

/// Damaged graphs decoded in memory (a node losing an input or its outputs, an input
/// rewired to `input_ids`): the runner returns `Err` or `Ok`, never unwinds.
#[test]
fn damaged_graphs_do_not_panic() {
    let path = shared().join("fixtures/tiny-base/seqcls2/model.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let base = tract_onnx::onnx()
        .proto_model_for_read(&mut bytes.as_slice())
        .unwrap();
    // tract panics on some damaged graphs (caught by the runner); keep the default hook
    // from printing those, and only those.
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info
            .location()
            .is_some_and(|l| l.file().contains("/tract-"))
        {
            prev(info)
        }
    }));
    let cfg = albert_convert::config::HfConfig::from_json(
        &std::fs::read_to_string(path.with_file_name("config.json")).unwrap(),
    )
    .unwrap();
    let case = &verify::synthetic_cases(
        cfg.vocab_size as u32,
        cfg.max_position_embeddings as u32,
        cfg.type_vocab_size as u32,
    )[1];
    // The undamaged graph runs.
    assert!(OnnxRunner::from_proto(&base, None)
        .and_then(|r| r.run(case))
        .is_ok());
    // Token ids outside the vocabulary make tract's Gather panic; the runner turns that
    // into an error (the CLI never gets there: the .albert run rejects such ids first).
    let mut oob = case.clone();
    oob.input_ids[0] = cfg.vocab_size as i64 + 5;
    let e =
        std::panic::catch_unwind(|| OnnxRunner::from_proto(&base, None).and_then(|r| r.run(&oob)))
            .expect("verify must not unwind");
    assert!(e.is_err());
    let n_nodes = base.graph.as_ref().unwrap().node.len();
    let (mut errors, mut oks) = (0, 0);
    for i in (0..n_nodes).step_by(11) {
        for damage in 0..3 {
            let mut m = base.clone();
            let n = &mut m.graph.as_mut().unwrap().node[i];
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
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                OnnxRunner::from_proto(&m, None).and_then(|r| r.run(case))
            }));
            match r.expect("verify must not unwind") {
                Ok(_) => oks += 1,
                Err(_) => errors += 1,
            }
        }
    }
    eprintln!("damaged graphs: {errors} errors, {oks} ran");
    assert!(errors > 0 && oks > 0);
}

/// The library entry point: numbers for the record, and the int8 default tolerance.
#[test]
fn verify_files_reports_numbers() {
    let s = shared();
    let dir = s.join("fixtures/tiny-base/seqcls2");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("s2");
    stage(&dir, &d, &["config.json", "model.safetensors"]);
    let out = tmp.path().join("s2.int8.albert");
    convert(&d, &out, "int8");
    let cases = verify::read_cases(&dir.join("reference.json")).unwrap();
    let r = verify::verify_files(&dir.join("model.onnx"), &out, Some(&cases), None).unwrap();
    assert_eq!(
        r.tolerance,
        Tolerance::RelativeToMax(verify::INT8_RELATIVE_TOLERANCE)
    );
    assert_eq!(r.comparisons.len(), 5);
    let w = r.worst("logits").unwrap();
    eprintln!(
        "seqcls2 int8 file vs model.onnx: worst max abs {:.4} (case {}), bound {:.4}, cosine {:.5}",
        w.max_abs, w.case, w.bound, w.cosine
    );
    assert!(r.passed());
    assert!(r.comparisons.iter().all(|c| c.cosine > 0.99));
    // The same with an absolute tolerance below the int8 error fails.
    let r = verify::verify_files(
        &dir.join("model.onnx"),
        &out,
        Some(&cases),
        Some(Tolerance::Absolute(1e-4)),
    )
    .unwrap();
    assert!(!r.passed());
}

/// Usage errors exit with 2; the convert form keeps working beside the subcommand.
#[test]
fn usage_errors_and_convert_form() {
    for args in [
        vec![],
        vec!["verify"],
        vec!["verify", "a.onnx"],
        vec!["verify", "a.onnx", "b.albert", "--tolerance", "x"],
        vec!["verify", "a.onnx", "b.albert", "--bogus"],
        vec!["some-folder"],
        vec!["some-folder", "-o", "x.albert", "--precision", "int4"],
    ] {
        let a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
        let o = bin(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o).1);
    }
    let o = bin(&["verify".as_ref(), "--help".as_ref()]);
    let (help, _) = text(&o);
    assert!(o.status.success());
    assert!(help.contains("0.15"), "int8 default documented: {help}");
    assert!(help.contains("1e-4"), "{help}");

    // Convert form: folder, -o, --precision, --quiet, exactly as before.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    stage(
        &shared().join("fixtures/tiny-base/seqcls2"),
        &d,
        &["config.json", "model.safetensors"],
    );
    let out = tmp.path().join("m.albert");
    let o = bin(&[
        d.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--precision".as_ref(),
        "f32".as_ref(),
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("wrote"), "summary: {stdout}");
    assert!(Model::read(&out).is_ok());
    // An unreadable input still exits 1 with the converter's message.
    let o = bin(&[
        tmp.path().join("nope.txt").as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_clean_failure(&o, "nope.txt");
}
