//! The `albert-convert` command line: conversion, summary, atomic output, refusals.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::shared;

fn tmpdir(name: &str) -> PathBuf {
    common::tmpdir("cli", name)
}

fn convert(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_albert-convert"))
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn copy_checkpoint(from: &Path, to: &Path) {
    for f in [
        "config.json",
        "model.safetensors",
        "spiece.model",
        "tokenizer_config.json",
    ] {
        if from.join(f).exists() {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
    }
}

#[test]
fn converts_with_summary_and_leaves_no_temporary_files() {
    let d = tmpdir("ok");
    let out = d.join("m.albert");
    let r = convert(&shared().join("fixtures/tiny-base/mlm"), &out, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let text = String::from_utf8_lossy(&r.stdout);
    for needle in [
        "parameters",
        "file size",
        "workspace",
        "int8 weight error",
        "layer.ffn.weight",
    ] {
        assert!(text.contains(needle), "summary lacks {needle}: {text}");
    }
    let model = albert_edge::Model::open(&out).unwrap();
    assert_eq!(model.config().head, albert_edge::HeadKind::MaskedLm);
    let names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // The model file has the mode of any new file (not the private mode of the
    // temporary file it was written as).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let plain = d.join("plain");
        std::fs::File::create(&plain).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out), mode(&plain), "model file mode");
        std::fs::remove_file(&plain).unwrap();
    }
    let r = convert(
        &shared().join("fixtures/tiny-base/mlm"),
        &d.join("f.albert"),
        &["--precision", "f32", "--quiet"],
    );
    assert!(r.status.success());
    assert!(r.stdout.is_empty());
}

#[test]
fn weight_pairs_flag_reaches_the_file() {
    let d = tmpdir("pairs");
    let ck = shared().join("fixtures/tiny-base/seqcls2");
    for (flag, want) in [
        (None, false),
        (Some("free"), false),
        (Some("bounded"), true),
    ] {
        let out = d.join(format!("{}.albert", flag.unwrap_or("default")));
        let extra: Vec<&str> = flag.map(|f| vec!["--weight-pairs", f]).unwrap_or_default();
        let r = convert(&ck, &out, &extra);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let model = albert_edge::Model::open(&out).unwrap();
        assert_eq!(model.pairs_bounded(), want, "{flag:?}");
    }
    let r = convert(&ck, &d.join("x.albert"), &["--weight-pairs", "tight"]);
    assert!(!r.status.success());
}

fn refuses(edit: impl Fn(&Path), needle: &str) {
    let d = tmpdir(&needle.replace(|c: char| !c.is_alphanumeric(), "_"));
    let ck = d.join("ckpt");
    std::fs::create_dir_all(&ck).unwrap();
    copy_checkpoint(&shared().join("fixtures/tiny-base/seqcls2"), &ck);
    edit(&ck);
    let out = d.join("out.albert");
    let r = convert(&ck, &out, &[]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
    assert!(!out.exists(), "a refused conversion left an output file");
}

fn edit_config(ck: &Path, f: impl Fn(&mut serde_json::Value)) {
    let p = ck.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

#[test]
fn refuses_what_it_cannot_run_exactly_naming_the_cause() {
    refuses(
        |ck| edit_config(ck, |v| v["model_type"] = "bert".into()),
        "model_type",
    );
    refuses(
        |ck| edit_config(ck, |v| v["hidden_act"] = "swish".into()),
        "hidden_act",
    );
    refuses(
        |ck| edit_config(ck, |v| v["hidden_size"] = 50.into()),
        "hidden_size",
    );
    // A config that no longer matches the tensors names the first mismatching tensor.
    refuses(
        |ck| edit_config(ck, |v| v["hidden_size"] = 48.into()),
        "embedding_hidden_mapping_in.weight",
    );
    refuses(
        |ck| std::fs::write(ck.join("model.safetensors"), b"garbage").unwrap(),
        "safetensors",
    );
    refuses(
        |ck| std::fs::remove_file(ck.join("config.json")).unwrap(),
        "config.json",
    );
    // A missing tensor is named.
    refuses(
        |ck| {
            let bytes = std::fs::read(ck.join("model.safetensors")).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
                .tensors()
                .into_iter()
                .filter(|(n, _)| !n.ends_with("attention.key.weight"))
                .collect();
            let out = safetensors::serialize(kept, None).unwrap();
            std::fs::write(ck.join("model.safetensors"), out).unwrap();
        },
        "attention.key.weight",
    );
}

#[test]
fn a_failed_write_leaves_the_old_file_untouched() {
    let d = tmpdir("ro");
    let out = d.join("missing-dir/m.albert");
    let r = convert(
        &shared().join("fixtures/tiny-base/seqcls2"),
        &out,
        &["--quiet"],
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("temporary file"));
}

/// A checkpoint saved in shards (`model.safetensors.index.json` + shard files) converts
/// to the same bytes as the single file; other weight formats and shard names that leave
/// the folder are refused, naming the cause.
#[test]
fn sharded_checkpoints_convert_like_single_files() {
    let src = shared().join("fixtures/tiny-base/seqcls2");
    let d = tmpdir("sharded");
    let single = d.join("single.albert");
    assert!(convert(&src, &single, &["-q"]).status.success());

    let ck = d.join("ckpt");
    std::fs::create_dir_all(&ck).unwrap();
    copy_checkpoint(&src, &ck);
    let bytes = std::fs::read(ck.join("model.safetensors")).unwrap();
    std::fs::remove_file(ck.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = st.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let half = tensors.len() / 2;
    let mut map = serde_json::Map::new();
    for (k, part) in [&tensors[..half], &tensors[half..]].into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", k + 1);
        for (name, _) in part {
            map.insert(name.clone(), file.clone().into());
        }
        let out =
            safetensors::serialize(part.iter().map(|(n, v)| (n.clone(), v.clone())), None).unwrap();
        std::fs::write(ck.join(&file), out).unwrap();
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(ck.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let sharded = d.join("sharded.albert");
    let r = convert(&ck, &sharded, &["-q"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        std::fs::read(&sharded).unwrap(),
        std::fs::read(&single).unwrap()
    );

    // A shard path outside the folder is refused.
    let mut evil = map.clone();
    let first = evil.keys().next().unwrap().clone();
    evil.insert(first, "../model-00001-of-00002.safetensors".into());
    std::fs::write(
        ck.join("model.safetensors.index.json"),
        serde_json::json!({"weight_map": evil}).to_string(),
    )
    .unwrap();
    let r = convert(&ck, &d.join("evil.albert"), &["-q"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("not a file name"));

    // PyTorch pickles are named, not silently ignored.
    let pt = d.join("pt");
    std::fs::create_dir_all(&pt).unwrap();
    std::fs::copy(src.join("config.json"), pt.join("config.json")).unwrap();
    std::fs::write(pt.join("pytorch_model.bin"), b"not read").unwrap();
    let r = convert(&pt, &d.join("pt.albert"), &["-q"]);
    assert_eq!(r.status.code(), Some(1));
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(
        e.contains("pytorch_model.bin") && e.contains("safetensors"),
        "{e}"
    );
}

/// A folder with transformers 5's tokenizer.json instead of spiece.model: the tokenizer
/// comes from it (the library test `spm_build` checks the result); one that is not a
/// sentencepiece conversion is refused naming the file and `--tokenizer`, which wins.
#[test]
fn tokenizer_json_is_read_when_there_is_no_spiece_model() {
    let src = shared().join("fixtures/tiny-base/seqcls2");
    let d = tmpdir("tokjson");
    let ck = d.join("ckpt");
    std::fs::create_dir_all(&ck).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), ck.join(f)).unwrap();
    }
    std::fs::write(ck.join("tokenizer.json"), br#"{"model": {"type": "BPE"}}"#).unwrap();
    let r = convert(&ck, &d.join("b.albert"), &["-q"]);
    assert_eq!(r.status.code(), Some(1));
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(
        e.contains("tokenizer.json") && e.contains("--tokenizer") && e.contains("Unigram"),
        "{e}"
    );
    // Named with --tokenizer, a .json file is read the same way.
    let json = ck.join("tokenizer.json");
    let r = convert(
        &ck,
        &d.join("j.albert"),
        &["-q", "--tokenizer", json.to_str().unwrap()],
    );
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("Unigram"));
    let spm = src.join("spiece.model");
    let with = d.join("c.albert");
    let r = convert(&ck, &with, &["-q", "--tokenizer", spm.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let reference = d.join("ref.albert");
    assert!(convert(&src, &reference, &["-q"]).status.success());
    assert_eq!(
        std::fs::read(&with).unwrap(),
        std::fs::read(&reference).unwrap()
    );
}
