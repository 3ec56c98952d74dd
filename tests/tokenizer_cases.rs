//! Golden tests of the tokenizer against transformers 4.57.6's slow `AlbertTokenizer`:
//! all of `fixtures/tokenizer/cases.json` and the 872 SST-2 dev id lists of
//! `models/sst2-base/predictions_dev.json`, plus truncation against a plain reference.
//!
//! The shared folder is `../shared` next to the repository, or `$ALBERT_EDGE_SHARED`.

use albert_edge::tokenizer::{TokenizeError, Tokenizer};
use serde::Deserialize;
use std::path::PathBuf;

fn shared() -> PathBuf {
    let dir = std::env::var_os("ALBERT_EDGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")));
    assert!(
        dir.join("fixtures/spiece/spiece.model").is_file(),
        "shared fixtures not found at {} (set ALBERT_EDGE_SHARED to the shared/ folder)",
        dir.display()
    );
    dir
}

fn read(rel: &str) -> Vec<u8> {
    let p = shared().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn section() -> Vec<u8> {
    let model = read("fixtures/spiece/spiece.model");
    let config = String::from_utf8(read("models/sst2-base/tokenizer_config.json")).unwrap();
    albert_convert::spm::build_tokenizer_section(&model, Some(&config)).expect("build section")
}

#[derive(Deserialize)]
struct Cases {
    num_cases: usize,
    special_token_ids: std::collections::BTreeMap<String, u32>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    text: String,
    text_pair: Option<String>,
    input_ids: Vec<u32>,
    token_type_ids: Vec<u32>,
    attention_mask: Vec<u32>,
    pieces: Vec<Vec<String>>,
}

fn load_cases() -> Cases {
    serde_json::from_slice(&read("fixtures/tokenizer/cases.json")).expect("cases.json")
}

#[test]
fn special_ids_match_fixture() {
    let bytes = section();
    let tok = Tokenizer::from_section(&bytes).unwrap();
    let cases = load_cases();
    let ids = &cases.special_token_ids;
    assert_eq!(tok.pad_id(), ids["<pad>"]);
    assert_eq!(tok.unk_id(), ids["<unk>"]);
    assert_eq!(tok.cls_id(), ids["[CLS]"]);
    assert_eq!(tok.sep_id(), ids["[SEP]"]);
    assert_eq!(tok.mask_id(), Some(ids["[MASK]"]));
    assert_eq!(tok.vocab_size(), 8000);
    assert_eq!(tok.piece(tok.cls_id()), Some("[CLS]"));
    assert_eq!(tok.piece(8000), None);
}

#[test]
fn all_cases_match_reference() {
    let bytes = section();
    let tok = Tokenizer::from_section(&bytes).unwrap();
    let cases = load_cases();
    assert_eq!(cases.cases.len(), cases.num_cases);
    assert_eq!(cases.num_cases, 84);
    let mut failures = Vec::new();
    for c in &cases.cases {
        let e = tok.encode_pair(&c.text, c.text_pair.as_deref(), None);
        let ok = e.ids == c.input_ids
            && e.type_ids == c.token_type_ids
            && e.attention_mask == c.attention_mask;
        // Surface pieces: everything between the special tokens.
        let expected_pieces: Vec<&String> = c.pieces.iter().flatten().collect();
        let got_pieces: Vec<&String> = e
            .pieces
            .iter()
            .zip(&e.ids)
            .filter(|(_, &id)| id != tok.cls_id() && id != tok.sep_id())
            .map(|(p, _)| p)
            .collect();
        let pieces_ok =
            c.text.contains('[') || c.text.contains('<') || got_pieces == expected_pieces;
        if !ok || !pieces_ok {
            failures.push(format!(
                "{}: {:?} / {:?}\n  expected {:?}\n  got      {:?}\n  pieces   {:?}\n  expected {:?}",
                c.id, c.text, c.text_pair, c.input_ids, e.ids, e.pieces, expected_pieces
            ));
        }
        // The no-alloc API gives the same result.
        let mut scratch = vec![
            0u8;
            tok.scratch_len(
                c.text
                    .len()
                    .max(c.text_pair.as_ref().map_or(0, |p| p.len()))
            )
        ];
        let mut ids = vec![0u32; e.ids.len()];
        let mut types = vec![0u32; e.ids.len()];
        let n = tok
            .encode_into(
                &c.text,
                c.text_pair.as_deref(),
                None,
                &mut scratch,
                &mut ids,
                &mut types,
            )
            .unwrap();
        assert_eq!(n, e.ids.len(), "{}", c.id);
        assert_eq!(ids, e.ids, "{}", c.id);
        assert_eq!(types, e.type_ids, "{}", c.id);
        if !e.ids.is_empty() {
            let mut short = vec![0u32; e.ids.len() - 1];
            let mut short_t = vec![0u32; e.ids.len() - 1];
            let r = tok.encode_into(
                &c.text,
                c.text_pair.as_deref(),
                None,
                &mut scratch,
                &mut short,
                &mut short_t,
            );
            assert_eq!(
                r,
                Err(TokenizeError::OutputTooSmall {
                    needed: e.ids.len()
                }),
                "{}",
                c.id
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 84 cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[derive(Deserialize)]
struct Predictions {
    n: usize,
    max_length: usize,
    input_ids: Vec<Vec<u32>>,
}

#[test]
fn sst2_dev_ids_match_reference() {
    let bytes = section();
    let tok = Tokenizer::from_section(&bytes).unwrap();
    let p: Predictions =
        serde_json::from_slice(&read("models/sst2-base/predictions_dev.json")).unwrap();
    let tsv = String::from_utf8(read("data/sst2/dev.tsv")).unwrap();
    let mut lines = tsv.lines();
    assert_eq!(lines.next(), Some("sentence\tlabel"));
    let sentences: Vec<&str> = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.rsplit_once('\t').expect("sentence\\tlabel").0)
        .collect();
    assert_eq!(sentences.len(), p.n);
    assert_eq!(p.input_ids.len(), p.n);
    let mut scratch = vec![0u8; tok.scratch_len(1024)];
    let mut ids = vec![0u32; p.max_length];
    let mut types = vec![0u32; p.max_length];
    let mut bad = Vec::new();
    for (i, (s, want)) in sentences.iter().zip(&p.input_ids).enumerate() {
        let n = tok
            .encode_into(
                s,
                None,
                Some(p.max_length),
                &mut scratch,
                &mut ids,
                &mut types,
            )
            .unwrap();
        if ids[..n] != want[..] {
            bad.push(format!(
                "{i}: {s:?}\n  expected {want:?}\n  got      {:?}",
                &ids[..n]
            ));
        }
        assert!(types[..n].iter().all(|&t| t == 0));
    }
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        p.n,
        bad.join("\n")
    );
}

/// Plain reference of transformers' truncation: remove one token at a time from the longer
/// segment (the second on ties), then wrap with special tokens.
/// Returns the ids and the number of leading tokens with type 0.
fn reference_truncate(
    a: &[u32],
    b: Option<&[u32]>,
    max_len: usize,
    cls: u32,
    sep: u32,
) -> Option<(Vec<u32>, usize)> {
    let mut a = a.to_vec();
    let mut b2 = b.map(|b| b.to_vec());
    let special = if b.is_some() { 3 } else { 2 };
    let total = a.len() + b2.as_ref().map_or(0, |b| b.len()) + special;
    if total > max_len {
        let remove = total - max_len;
        match &mut b2 {
            None => {
                if a.len() > remove {
                    a.truncate(a.len() - remove);
                } else {
                    return None;
                }
            }
            Some(b) => {
                for _ in 0..remove {
                    if a.len() > b.len() {
                        a.pop();
                    } else {
                        b.pop();
                    }
                }
                if a.len() + b.len() + 3 > max_len {
                    return None;
                }
            }
        }
    }
    let mut out = vec![cls];
    out.extend(&a);
    out.push(sep);
    let first = out.len();
    if let Some(b) = b2 {
        out.extend(&b);
        out.push(sep);
    }
    Some((out, first))
}

#[test]
fn truncation_matches_reference_rule() {
    let bytes = section();
    let tok = Tokenizer::from_section(&bytes).unwrap();
    let cases = load_cases();
    let mut scratch = vec![0u8; tok.scratch_len(8192)];
    let inner = |t: &str| {
        let e = tok.encode_pair(t, None, None);
        e.ids[1..e.ids.len() - 1].to_vec()
    };
    let mut checked = 0;
    for c in cases.cases.iter().filter(|c| c.text.len() < 400) {
        let a = inner(&c.text);
        let b = c.text_pair.as_deref().map(inner);
        let full = 2 + a.len() + b.as_ref().map_or(0, |b| b.len() + 1);
        for max_len in 0..=full + 2 {
            let want = reference_truncate(&a, b.as_deref(), max_len, tok.cls_id(), tok.sep_id());
            let mut ids = vec![0u32; full + 2];
            let mut types = vec![0u32; full + 2];
            let got = tok.encode_into(
                &c.text,
                c.text_pair.as_deref(),
                Some(max_len),
                &mut scratch,
                &mut ids,
                &mut types,
            );
            match want {
                Some((w, first)) => {
                    let n = got.unwrap_or_else(|e| panic!("{} max_len {max_len}: {e}", c.id));
                    assert_eq!(ids[..n], w[..], "{} max_len {max_len}", c.id);
                    let want_types: Vec<u32> = (0..n).map(|i| u32::from(i >= first)).collect();
                    assert_eq!(
                        types[..n],
                        want_types[..],
                        "{} max_len {max_len}: {:?}",
                        c.id,
                        &ids[..n]
                    );
                }
                None => assert_eq!(
                    got,
                    Err(TokenizeError::MaxLenTooSmall),
                    "{} max_len {max_len}",
                    c.id
                ),
            }
            checked += 1;
        }
    }
    assert!(checked > 500);
}
