//! `albert_convert::spm`: decoding the real `spiece.model`, building and validating the
//! section, and clear refusals of settings the runtime does not reproduce.

use albert_convert::spm::{self, Piece, SpModel};
use albert_edge::tokenizer::layout::piece_type;
use albert_edge::tokenizer::Tokenizer;
use std::path::PathBuf;

fn shared() -> PathBuf {
    let dir = std::env::var_os("ALBERT_EDGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    assert!(
        dir.join("fixtures/spiece/spiece.model").is_file(),
        "shared fixtures not found at {} (set ALBERT_EDGE_SHARED to the shared/ folder)",
        dir.display()
    );
    dir
}

fn spiece() -> Vec<u8> {
    std::fs::read(shared().join("fixtures/spiece/spiece.model")).unwrap()
}

/// A tiny valid unigram model without a charsmap.
fn tiny() -> SpModel {
    let p = |s: &str, score: f32, kind: u8| Piece {
        piece: s.into(),
        score,
        kind,
    };
    SpModel {
        pieces: vec![
            p("<pad>", 0.0, piece_type::CONTROL),
            p("<unk>", 0.0, piece_type::UNKNOWN),
            p("[CLS]", 0.0, piece_type::CONTROL),
            p("[SEP]", 0.0, piece_type::CONTROL),
            p("[MASK]", 0.0, piece_type::CONTROL),
            p("(", 0.0, piece_type::USER_DEFINED),
            p("\u{2581}", -2.0, piece_type::NORMAL),
            p("a", -3.0, piece_type::NORMAL),
            p("b", -3.5, piece_type::NORMAL),
            p("\u{2581}a", -2.5, piece_type::NORMAL),
            p("ab", -1.0, piece_type::NORMAL),
        ],
        unk_id: Some(1),
        ..SpModel::unigram(Vec::new())
    }
}

#[test]
fn real_model_decodes() {
    let m = spm::parse_model(&spiece()).unwrap();
    assert_eq!(m.pieces.len(), 8000);
    assert_eq!(m.model_type, 1);
    assert_eq!(m.normalizer_name, "nmt_nfkc");
    assert!(!m.precompiled_charsmap.is_empty());
    assert!(m.add_dummy_prefix && m.remove_extra_whitespaces && m.escape_whitespaces);
    assert!(!m.byte_fallback && !m.treat_whitespace_as_suffix);
    assert_eq!(m.pieces[1].kind, piece_type::UNKNOWN);
    let ud: Vec<&str> = m
        .pieces
        .iter()
        .filter(|p| p.kind == piece_type::USER_DEFINED)
        .map(|p| p.piece.as_str())
        .collect();
    assert_eq!(
        ud,
        ["(", ")", "\"", "-", ".", "\u{2013}", "\u{a3}", "\u{20ac}"]
    );
    // Re-encoding the decoded fields and decoding again is lossless.
    assert_eq!(spm::parse_model(&m.to_proto()).unwrap(), m);
}

#[test]
fn real_model_builds_a_valid_section() {
    let s = spm::build_tokenizer_section(&spiece(), None).unwrap();
    assert_eq!(&s[..4], b"ALTK");
    let t = Tokenizer::from_section(&s).unwrap();
    assert_eq!(t.vocab_size(), 8000);
    assert_eq!(
        (t.pad_id(), t.unk_id(), t.cls_id(), t.sep_id()),
        (0, 1, 2, 3)
    );
    assert_eq!(t.mask_id(), Some(4));
    assert_eq!(t.piece(5), Some("("));
}

/// The piece index is checked at load: a piece moved out of its probe sequence,
/// a duplicate, a stray id, or a bad probe bound is refused; an older layout
/// version too.
#[test]
fn a_broken_piece_index_is_refused() {
    use albert_edge::tokenizer::layout::{field, NO_ID};
    use albert_edge::tokenizer::TokenizerError;
    let s = spm::build_tokenizer_section(&spiece(), None).unwrap();
    let rd = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap());
    let (slots, index) = (
        rd(&s, field::INDEX_SLOTS) as usize,
        rd(&s, field::INDEX) as usize,
    );
    assert_eq!(slots, 16384);
    let slot = |i: usize| index + 4 * i;
    let filled: Vec<usize> = (0..slots).filter(|&i| rd(&s, slot(i)) != NO_ID).collect();
    let empty = (0..slots).find(|&i| rd(&s, slot(i)) == NO_ID).unwrap();
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = s.clone();
        f(&mut b);
        Tokenizer::from_section(&b).err()
    };
    let put = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let bad = Some(TokenizerError::BadPieceIndex);
    // A piece moved to an empty slot, out of its probe sequence.
    assert_eq!(
        edit(&|b| {
            let id = rd(b, slot(filled[7]));
            put(b, slot(filled[7]), NO_ID);
            put(b, slot(empty), id);
        }),
        bad
    );
    // One id twice (another lost), an id past the vocabulary.
    assert_eq!(
        edit(&|b| put(b, slot(filled[7]), rd(b, slot(filled[8])))),
        bad
    );
    assert_eq!(edit(&|b| put(b, slot(filled[7]), 8000)), bad);
    // Probe bounds: none, past the limit, and too small for the pieces.
    assert_eq!(edit(&|b| put(b, field::INDEX_PROBES, 0)), bad);
    assert_eq!(edit(&|b| put(b, field::INDEX_PROBES, 65)), bad);
    let probes = rd(&s, field::INDEX_PROBES);
    assert!(probes > 1);
    assert_eq!(edit(&|b| put(b, field::INDEX_PROBES, 1)), bad);
    // Not a power of two.
    assert!(edit(&|b| put(b, field::INDEX_SLOTS, 16383)).is_some());
    assert_eq!(
        edit(&|b| put(b, field::VERSION, 1)),
        Some(TokenizerError::UnsupportedVersion)
    );
    assert_eq!(edit(&|_| {}), None);
}

#[test]
fn tiny_model_builds_and_encodes() {
    let s = spm::build_tokenizer_section(&tiny().to_proto(), None).unwrap();
    let t = Tokenizer::from_section(&s).unwrap();
    // "ab" as one word: "▁a"+"b" = -6.0 vs "▁"+"ab" = -3.0.
    assert_eq!(t.encode("ab"), vec![2, 6, 10, 3]);
    // user-defined "(" wins; "c" is unknown.
    assert_eq!(t.encode("(c"), vec![2, 6, 5, 1, 3]);
    assert_eq!(t.encode(""), vec![2, 3]);
}

#[test]
fn tokenizer_config_is_read() {
    let cfg = r#"{"do_lower_case": false, "keep_accents": true, "remove_space": false}"#;
    let s = spm::parse_tokenizer_config(cfg).unwrap();
    assert!(!s.do_lower_case && s.keep_accents && !s.remove_space);
    let d = spm::parse_tokenizer_config("{}").unwrap();
    assert!(d.do_lower_case && !d.keep_accents && d.remove_space);
    assert!(spm::parse_tokenizer_config(r#"{"do_lower_case": "yes"}"#).is_err());
    assert!(spm::parse_tokenizer_config("not json").is_err());
    let section = spm::build_tokenizer_section(&tiny().to_proto(), Some(cfg)).unwrap();
    let t = Tokenizer::from_section(&section).unwrap();
    // Without lower-casing "A" is unknown.
    assert_eq!(t.encode("A"), vec![2, 6, 1, 3]);
}

/// Without `remove_extra_whitespaces` every space is a `▁`, leading and trailing ones
/// included (expected ids: sentencepiece 0.2.3 on the same model proto).
#[test]
fn spaces_are_kept_without_remove_extra_whitespaces() {
    let mut m = tiny();
    m.remove_extra_whitespaces = false;
    let cfg = r#"{"remove_space": false}"#;
    let s = spm::build_tokenizer_section(&m.to_proto(), Some(cfg)).unwrap();
    let t = Tokenizer::from_section(&s).unwrap();
    let cases: [(&str, &[u32]); 6] = [
        ("a  ", &[9, 6, 6]),
        ("  a", &[6, 6, 9]),
        ("   ", &[6, 6, 6, 6]),
        ("a b  ", &[9, 6, 8, 6, 6]),
        (" (a ", &[6, 6, 5, 7, 6]),
        ("a\t", &[9, 1]),
    ];
    for (text, ids) in cases {
        let mut want = vec![2];
        want.extend_from_slice(ids);
        want.push(3);
        assert_eq!(t.encode(text), want, "{text:?}");
    }
    // With it (the default) the same texts lose their extra spaces.
    let s = spm::build_tokenizer_section(&tiny().to_proto(), Some(cfg)).unwrap();
    let t = Tokenizer::from_section(&s).unwrap();
    assert_eq!(t.encode("a  "), vec![2, 9, 3]);
    assert_eq!(t.encode("  a"), vec![2, 9, 3]);
    assert_eq!(t.encode("   "), vec![2, 3]);
}

fn refused(m: SpModel, needle: &str) {
    let e = spm::build_tokenizer_section(&m.to_proto(), None).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains(needle),
        "error {msg:?} does not mention {needle:?}"
    );
}

#[test]
fn unsupported_settings_are_refused() {
    let mut m = tiny();
    m.model_type = 2;
    refused(m, "only UNIGRAM");
    let mut m = tiny();
    m.byte_fallback = true;
    refused(m, "byte_fallback");
    let mut m = tiny();
    m.treat_whitespace_as_suffix = true;
    refused(m, "treat_whitespace_as_suffix");
    let mut m = tiny();
    m.escape_whitespaces = false;
    refused(m, "escape_whitespaces");
    let mut m = tiny();
    m.pieces[10].piece = "a\u{2581}b".into();
    refused(m, "after its first character");
    let mut m = tiny();
    m.pieces[6].piece = "x".into();
    refused(m, "no NORMAL or USER_DEFINED");
    let mut m = tiny();
    m.pieces[2].piece = "[CLX]".into();
    refused(m, "[CLS]");
    let mut m = tiny();
    m.pieces[7].piece = "b".into();
    refused(m, "duplicate piece");
    let mut m = tiny();
    m.pieces[1].kind = piece_type::NORMAL;
    refused(m, "UNKNOWN");
    let mut m = tiny();
    m.unk_id = Some(0);
    refused(m, "unk_id");
    let mut m = tiny();
    m.pieces[7].score = f32::NAN;
    refused(m, "non-finite");
    let mut m = tiny();
    m.pieces[8].kind = piece_type::BYTE;
    refused(m, "BYTE");
    assert!(spm::build_tokenizer_section(&[0x0a, 0x05, 1], None).is_err());
}

/// `tokenizer.json` as transformers writes it for ALBERT (its sentencepiece conversion:
/// Unigram vocabulary, special and user-defined added tokens, a Precompiled normalizer
/// in a Sequence, Metaspace), built here from a decoded `spiece.model`.
fn tokenizer_json(m: &SpModel, prepend_scheme: &str) -> String {
    use base64::Engine as _;
    let vocab: Vec<serde_json::Value> = m
        .pieces
        .iter()
        .map(|p| serde_json::json!([p.piece, p.score as f64]))
        .collect();
    let added: Vec<serde_json::Value> = m
        .pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| p.kind != piece_type::NORMAL)
        .map(|(i, p)| {
            serde_json::json!({"id": i, "content": p.piece, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": p.kind != piece_type::USER_DEFINED})
        })
        .collect();
    let unk = m
        .pieces
        .iter()
        .position(|p| p.kind == piece_type::UNKNOWN)
        .unwrap();
    serde_json::json!({
        "version": "1.0",
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Replace", "pattern": {"String": "``"}, "content": "\""},
            {"type": "NFKD"}, {"type": "StripAccents"}, {"type": "Lowercase"},
            {"type": "Precompiled", "precompiled_charsmap":
                base64::engine::general_purpose::STANDARD.encode(&m.precompiled_charsmap)}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"},
            {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": prepend_scheme, "split": true}]},
        "model": {"type": "Unigram", "unk_id": unk, "vocab": vocab, "byte_fallback": false},
    })
    .to_string()
}

/// transformers 5 saves `tokenizer.json`, not `spiece.model`: read back, it gives the same
/// tokenizer section as the `spiece.model` it was converted from.
#[test]
fn tokenizer_json_reads_back_as_its_sentencepiece_model() {
    let m = spm::parse_model(&spiece()).unwrap();
    let back = spm::from_tokenizer_json(&tokenizer_json(&m, "always")).unwrap();
    assert_eq!(back.pieces, m.pieces);
    assert_eq!(back.precompiled_charsmap, m.precompiled_charsmap);
    assert!(back.add_dummy_prefix && back.remove_extra_whitespaces);
    assert_eq!(
        spm::build_tokenizer_section(&back.to_proto(), None).unwrap(),
        spm::build_tokenizer_section(&spiece(), None).unwrap()
    );
    let never = spm::from_tokenizer_json(&tokenizer_json(&m, "never")).unwrap();
    assert!(!never.add_dummy_prefix);
    // Not a sentencepiece conversion, or a damaged one: refused, naming the cause.
    let good: serde_json::Value = serde_json::from_str(&tokenizer_json(&m, "always")).unwrap();
    let broken = |edit: &dyn Fn(&mut serde_json::Value), needle: &str| {
        let mut v = good.clone();
        edit(&mut v);
        let e = format!(
            "{:#}",
            spm::from_tokenizer_json(&v.to_string()).unwrap_err()
        );
        assert!(e.contains(needle), "{needle}: {e}");
    };
    broken(&|v| v["model"]["type"] = "BPE".into(), "Unigram");
    broken(
        &|v| v["model"]["byte_fallback"] = true.into(),
        "byte_fallback",
    );
    broken(&|v| v["model"]["unk_id"] = 9999.into(), "unk_id");
    broken(
        &|v| v["added_tokens"][0]["content"] = "[XYZ]".into(),
        "has the id of",
    );
    broken(
        &|v| v["pre_tokenizer"] = serde_json::Value::Null,
        "Metaspace",
    );
    broken(&|v| v["model"]["vocab"][7] = "x".into(), "vocab entry 7");
    assert!(spm::from_tokenizer_json("not json").is_err());
}

/// A tokenizer whose pieces are not the model's vocabulary is refused before
/// anything is written, naming both sizes (not as an internal error).
#[test]
fn a_tokenizer_of_another_vocabulary_is_refused() {
    let dir = shared().join("fixtures/tiny-base/seqcls2");
    let mut raw = albert_convert::load::safetensors::load_dir(&dir).unwrap();
    raw.spiece = Some(tiny().to_proto());
    let pieces = tiny().pieces.len();
    for p in [albert_edge::Precision::F32, albert_edge::Precision::Int8] {
        let e = albert_convert::convert::convert(&raw, p).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains(&format!("{pieces} pieces"))
                && msg.contains("8000 word embeddings")
                && !msg.contains("internal"),
            "{msg}"
        );
    }
}
