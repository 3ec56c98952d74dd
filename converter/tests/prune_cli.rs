//! `albert-convert` pruning flags: parsed, applied, summarized, and refused clearly
//! when wrong. (The binary needs the `onnx` feature.)
#![cfg(feature = "onnx")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::shared;

fn tmpdir(name: &str) -> PathBuf {
    common::tmpdir("prune", name)
}

/// tiny-base/seqcls2: 4 heads, FFN 128, vocabulary 8000.
fn convert(out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_albert-convert"))
        .arg(shared().join("fixtures/tiny-base/seqcls2"))
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn corpus(dir: &Path) -> PathBuf {
    let p = dir.join("corpus.tsv");
    std::fs::write(
        &p,
        "sentence\tlabel\nit 's a charming and often affecting journey . \t1\n\
         unflinchingly bleak and desperate \t0\nthe acting , costumes , music , \
         cinematography and sound are all astounding given the production 's \
         austere locales . \t1\n",
    )
    .unwrap();
    p
}

#[test]
fn prunes_heads_ffn_and_vocabulary_and_reports_before_and_after() {
    let d = tmpdir("ok");
    let out = d.join("m.albert");
    let c = corpus(&d);
    let c = c.to_str().unwrap();
    let r = convert(
        &out,
        &[
            "--prune-heads",
            "1",
            "--prune-ffn",
            "0.5",
            "--calibrate",
            c,
            "--keep-vocab",
            c,
        ],
    );
    assert!(r.status.success(), "{}", stderr(&r));
    let text = String::from_utf8_lossy(&r.stdout);
    for needle in [
        "before -> after",
        "parameters",
        "file size",
        "workspace",
        "heads per layer  4 -> 3",
        "FFN size         128 -> 64",
        "vocabulary       8000 -> ",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let m = albert_edge::Model::read(&out).unwrap();
    assert_eq!(m.config().num_heads, 3);
    assert_eq!(m.config().intermediate_size, 64);
    assert!(m.config().vocab_size < 8000);
    // The file still classifies text the corpus never saw.
    let tok = m.tokenizer().unwrap();
    let ids = tok.encode("zebras and xylophones, 1,234 😀");
    let mut ws = m.new_workspace(ids.len(), 1);
    let logits = m.run(&mut ws, &albert_edge::Input::single(&ids)).unwrap();
    assert!(logits
        .get("logits")
        .unwrap()
        .data
        .iter()
        .all(|v| v.is_finite()));
}

#[test]
fn head_lists_and_the_fast_preset() {
    let d = tmpdir("list");
    let out = d.join("m.albert");
    let r = convert(&out, &["--prune-heads", "0,2", "-q"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(
        albert_edge::Model::read(&out).unwrap().config().num_heads,
        2
    );
    let r = convert(&out, &["--prune-heads", "3,", "-q"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(
        albert_edge::Model::read(&out).unwrap().config().num_heads,
        3
    );
    let r = convert(&out, &["--prune", "fast", "-q"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let m = albert_edge::Model::read(&out).unwrap();
    assert_eq!(m.config().num_heads, 3);
    // The fixture is mostly embeddings: a quarter of its parameters is out of reach,
    // so the FFN goes to the preset's cap, 75% of 128 neurons (96) removed.
    assert_eq!(m.config().intermediate_size, 32);
}

#[test]
fn wrong_flags_are_refused_clearly() {
    let d = tmpdir("bad");
    let out = d.join("m.albert");
    // Usage errors (clap, exit 2): the value is named and nothing is written.
    for (args, needle) in [
        (&["--prune-ffn", "1.5"][..], "not a fraction in [0, 1)"),
        (&["--prune-ffn=-0.2"][..], "not a fraction in [0, 1)"),
        (&["--prune-ffn", "half"][..], "not a fraction in [0, 1)"),
        (&["--prune-heads", "two"][..], "neither a number of heads"),
        (&["--prune-heads", "1,x"][..], "not a head index"),
        (
            &["--prune", "fast", "--prune-heads", "1"][..],
            "cannot be used with",
        ),
        (&["--prune", "slow"][..], "invalid value 'slow'"),
    ] {
        let r = convert(&out, args);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {}", stderr(&r));
        assert!(stderr(&r).contains(needle), "{args:?}: {}", stderr(&r));
        assert!(!out.exists());
    }
    // Errors that depend on the model (exit 1, one line).
    for (args, needle) in [
        (
            &["--prune-heads", "13"][..],
            "--prune-heads 13: the model has 4 heads per layer and at least one must remain",
        ),
        (&["--prune-heads", "4"][..], "at least one must remain"),
        (&["--prune-heads", "1,7"][..], "head 7 does not exist"),
        (
            &["--prune-heads", "0,1,2,3"][..],
            "cannot remove all 4 heads",
        ),
        (
            &["--keep-vocab", "/nonexistent/corpus.tsv"][..],
            "cannot read",
        ),
        (
            &["--calibrate", "/nonexistent/corpus.tsv"][..],
            "cannot read",
        ),
    ] {
        let r = convert(&out, args);
        assert_eq!(r.status.code(), Some(1), "{args:?}: {}", stderr(&r));
        let e = stderr(&r);
        assert!(e.contains(needle), "{args:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
        assert!(!out.exists());
    }
    let empty = d.join("empty.tsv");
    std::fs::write(&empty, "sentence\tlabel\n").unwrap();
    let r = convert(&out, &["--keep-vocab", empty.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr(&r).contains("no texts"), "{}", stderr(&r));
}
