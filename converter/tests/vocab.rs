//! Vocabulary pruning (`--keep-vocab`) on the fixtures: the corpus tokenizes and runs
//! exactly as before, the embedding table shrinks to the pieces kept, other text still
//! tokenizes and runs.

use albert_convert::convert::{self, ActivationParts, Heads, Options};
use albert_convert::corpus::{self, Text};
use albert_convert::{load, spm, vocab};
use albert_edge::tokenizer::layout::piece_type;
use albert_edge::{Input, Model, Precision};

mod common;
use common::shared;

fn raw(ckpt: &str) -> load::RawCheckpoint {
    load::safetensors::load_dir(&shared().join("fixtures").join(ckpt)).unwrap()
}

/// The 84 tokenizer fixture texts (singles and pairs): a corpus with accents, CJK,
/// emoji, digits with commas, special-token strings and odd whitespace.
fn fixture_corpus() -> Vec<Text> {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared().join("fixtures/tokenizer/cases.json")).unwrap(),
    )
    .unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Text {
            a: c["text"].as_str().unwrap().to_string(),
            b: c.get("text_pair")
                .and_then(|p| p.as_str())
                .map(String::from),
        })
        .collect()
}

/// Texts the corpus never saw.
fn other_texts() -> Vec<Text> {
    let mut t: Vec<Text> = [
        "zebras quickly vex the jovial xylophonist",
        "Ünïcödé façade naïve café 日本語のテキスト 😀🎉 Ωμέγα",
        "1,234,567 apples and 89,000 oranges, 12, 3,",
        "[CLS] <unk> [MASK] <pad> [SEP] inside text",
        "    lots   of\tspace\n\nand newlines   ",
        "a",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
    ]
    .iter()
    .map(|s| Text {
        a: s.to_string(),
        b: None,
    })
    .collect();
    t.push(Text {
        a: "a question nobody asked?".into(),
        b: Some("an answer with ümlauts and 42,".into()),
    });
    let dev = corpus::read(&shared().join("data/sst2/dev.tsv")).unwrap();
    t.extend(dev.into_iter().take(60));
    t
}

fn encode(m: &Model<'_>, t: &Text) -> (Vec<u32>, Vec<u32>, Vec<String>) {
    let e = m
        .tokenizer()
        .unwrap()
        .encode_pair(&t.a, t.b.as_deref(), None);
    (e.ids, e.type_ids, e.pieces)
}

fn run(m: &Model<'_>, ids: &[u32], types: &[u32], output: &str) -> Vec<f32> {
    let mut ws = m.new_workspace(ids.len(), 1);
    let input = Input {
        batch: 1,
        seq: ids.len(),
        input_ids: ids,
        attention_mask: None,
        token_type_ids: Some(types),
    };
    m.run(&mut ws, &input)
        .unwrap()
        .get(output)
        .unwrap()
        .data
        .to_vec()
}

fn keep_vocab(ckpt: &str, precision: Precision) -> (Vec<u8>, Vec<u8>, convert::Report) {
    let r = raw(ckpt);
    let (full, _) =
        convert::convert_with(&r, precision, &Options::default(), &mut |_, _, _| {}).unwrap();
    let o = Options {
        keep_vocab: Some(fixture_corpus()),
        ..Options::default()
    };
    let (pruned, report) = convert::convert_with(&r, precision, &o, &mut |_, _, _| {}).unwrap();
    (full, pruned, report)
}

fn old_ids(full: &Model<'_>, pruned: &Model<'_>) -> Vec<u32> {
    let (a, b) = (full.tokenizer().unwrap(), pruned.tokenizer().unwrap());
    (0..b.vocab_size() as u32)
        .map(|i| {
            let p = b.piece(i).unwrap();
            (0..a.vocab_size() as u32)
                .find(|&j| a.piece(j) == Some(p))
                .unwrap()
        })
        .collect()
}

#[test]
fn corpus_is_unchanged_and_embeddings_shrink_f32() {
    let (full_bytes, pruned_bytes, report) = keep_vocab("tiny-base/seqcls2", Precision::F32);
    let (full, pruned) = (
        Model::from_vec(&full_bytes).unwrap(),
        Model::from_vec(&pruned_bytes).unwrap(),
    );
    let v = report.vocab.clone().unwrap();
    let before = report.before.unwrap();
    println!("{v:?}, {before:?}, after {} parameters", report.parameters);
    assert_eq!(v.before, 8000);
    assert!(v.kept < v.before / 4, "{v:?}");
    assert!(v.used <= v.kept);
    assert_eq!(pruned.config().vocab_size as usize, v.kept);
    assert_eq!(pruned.tokenizer().unwrap().vocab_size(), v.kept);
    // The embedding table shrinks exactly by the rows removed, nothing else changes.
    let e = full.config().embedding_size as usize;
    assert_eq!(
        before.parameters - report.parameters,
        (v.before - v.kept) * e
    );
    assert!(report.file_bytes < before.file_bytes);
    let map = old_ids(&full, &pruned);
    assert!(map.windows(2).all(|w| w[0] < w[1]), "order is kept");
    for t in &fixture_corpus() {
        let (ids_a, types_a, pieces_a) = encode(&full, t);
        let (ids_b, types_b, pieces_b) = encode(&pruned, t);
        let remapped: Vec<u32> = ids_b.iter().map(|&i| map[i as usize]).collect();
        assert_eq!(remapped, ids_a, "{:?}", t.a);
        assert_eq!((&types_a, &pieces_a), (&types_b, &pieces_b), "{:?}", t.a);
        // Bit-identical logits: the same rows, the same arithmetic.
        let la = run(&full, &ids_a, &types_a, "logits");
        let lb = run(&pruned, &ids_b, &types_b, "logits");
        assert_eq!(
            la.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            lb.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "{:?}",
            t.a
        );
    }
}

#[test]
fn corpus_is_unchanged_int8() {
    // Activation ranges are collected before the vocabulary is pruned, and the word
    // embeddings are quantized per row: the int8 file computes the same logits too.
    let (full_bytes, pruned_bytes, _) = keep_vocab("tiny-base/seqcls2", Precision::Int8);
    let (full, pruned) = (
        Model::from_vec(&full_bytes).unwrap(),
        Model::from_vec(&pruned_bytes).unwrap(),
    );
    for t in &fixture_corpus() {
        let (ids_a, types_a, _) = encode(&full, t);
        let (ids_b, types_b, _) = encode(&pruned, t);
        let la = run(&full, &ids_a, &types_a, "logits");
        let lb = run(&pruned, &ids_b, &types_b, "logits");
        assert_eq!(la, lb, "{:?}", t.a);
    }
}

#[test]
fn other_text_still_tokenizes_and_runs() {
    let (full_bytes, pruned_bytes, _) = keep_vocab("tiny-base/seqcls2", Precision::F32);
    let (full, pruned) = (
        Model::from_vec(&full_bytes).unwrap(),
        Model::from_vec(&pruned_bytes).unwrap(),
    );
    let vocab = pruned.config().vocab_size;
    let unk = pruned.tokenizer().unwrap().unk_id();
    let mut shorter = 0;
    for t in &other_texts() {
        let (ids_a, _, pieces_a) = encode(&full, t);
        let (ids, types, pieces) = encode(&pruned, t);
        assert!(ids.len() >= 3, "{:?}", t.a);
        assert!(ids.iter().all(|&i| i < vocab));
        // Same text, cut into pieces that are at most as long: unknown characters of the
        // full vocabulary stay unknown, and a known character never becomes unknown.
        assert_eq!(pieces.concat(), pieces_a.concat(), "{:?}", t.a);
        let unk_a = ids_a.iter().filter(|&&i| i == 1).count();
        assert_eq!(
            ids.iter().filter(|&&i| i == unk).count(),
            unk_a,
            "{:?}: {pieces_a:?} -> {pieces:?}",
            t.a
        );
        shorter += usize::from(ids.len() > ids_a.len());
        let logits = run(&pruned, &ids, &types, "logits");
        assert!(logits.iter().all(|v| v.is_finite()));
    }
    assert!(
        shorter > 0,
        "the test texts should need pieces the corpus did not"
    );
}

#[test]
fn masked_lm_decoder_and_bias_are_remapped() {
    // tiny-base/mlm: scores over the vocabulary; the kept pieces keep theirs exactly.
    let (full_bytes, pruned_bytes, report) = keep_vocab("tiny-base/mlm", Precision::F32);
    let (full, pruned) = (
        Model::from_vec(&full_bytes).unwrap(),
        Model::from_vec(&pruned_bytes).unwrap(),
    );
    let v = report.vocab.unwrap();
    let map = old_ids(&full, &pruned);
    for t in fixture_corpus().iter().take(12) {
        let (ids_a, types_a, _) = encode(&full, t);
        let (ids_b, types_b, _) = encode(&pruned, t);
        let la = run(&full, &ids_a, &types_a, "logits");
        let lb = run(&pruned, &ids_b, &types_b, "logits");
        assert_eq!(la.len(), ids_a.len() * v.before);
        assert_eq!(lb.len(), ids_b.len() * v.kept);
        for pos in 0..ids_a.len() {
            for (n, &o) in map.iter().enumerate() {
                assert_eq!(
                    lb[pos * v.kept + n].to_bits(),
                    la[pos * v.before + o as usize].to_bits()
                );
            }
        }
    }
}

#[test]
fn plan_keeps_what_segmentation_depends_on() {
    let sp =
        spm::parse_model(&std::fs::read(shared().join("fixtures/spiece/spiece.model")).unwrap())
            .unwrap();
    let keep = vocab::plan(&sp, &vec![false; sp.pieces.len()]).unwrap();
    let kept = |i: usize| keep.binary_search(&(i as u32)).is_ok();
    let normal: Vec<usize> = (0..sp.pieces.len())
        .filter(|&i| sp.pieces[i].kind == piece_type::NORMAL)
        .collect();
    let score = |i: &&usize| sp.pieces[**i].score;
    let lo = normal
        .iter()
        .min_by(|a, b| score(a).total_cmp(&score(b)))
        .unwrap();
    let hi = normal
        .iter()
        .max_by(|a, b| score(a).total_cmp(&score(b)))
        .unwrap();
    assert!(kept(*lo) && kept(*hi));
    for (i, p) in sp.pieces.iter().enumerate() {
        if p.kind != piece_type::NORMAL || p.piece.chars().count() == 1 {
            assert!(kept(i), "{:?}", p.piece);
        }
    }
    assert!(keep.len() < sp.pieces.len() / 4);
    // A usage flag per piece is required.
    assert!(vocab::plan(&sp, &[true]).is_err());
}

#[test]
fn pruning_and_vocabulary_together() {
    // Heads, FFN and vocabulary, importance from activations on the corpus.
    let r = raw("tiny-groups/seqcls2");
    let o = Options {
        heads: Heads::Count(1),
        ffn_fraction: 0.25,
        calibrate: Some(fixture_corpus()),
        keep_vocab: Some(fixture_corpus()),
        preset: None,
        // The size before pruning is that of one-part activations; `auto` may
        // give the pruned file two parts, whose scratch is not about pruning.
        activation_parts: ActivationParts::One,
        ..Options::default()
    };
    let (bytes, report) =
        convert::convert_with(&r, Precision::Int8, &o, &mut |_, _, _| {}).unwrap();
    let before = report.before.unwrap();
    assert_eq!((before.heads, report.heads), (4, 3));
    assert_eq!((before.intermediate, report.intermediate), (128, 96));
    assert!(report.workspace_bytes_max_seq < before.workspace_bytes_max_seq);
    let m = Model::from_vec(&bytes).unwrap();
    assert_eq!(m.config().num_heads, 3);
    for t in other_texts().iter().take(10) {
        let (ids, types, _) = encode(&m, t);
        assert!(run(&m, &ids, &types, "logits")
            .iter()
            .all(|v| v.is_finite()));
    }
}

#[test]
fn wrong_options_are_refused() {
    let r = raw("tiny-base/seqcls2");
    let refuse = |o: Options, needle: &str| {
        let e = convert::convert_with(&r, Precision::F32, &o, &mut |_, _, _| {})
            .err()
            .unwrap();
        let msg = format!("{e:#}");
        assert!(msg.contains(needle), "{msg}");
    };
    let o = |heads, ffn_fraction| Options {
        heads,
        ffn_fraction,
        ..Options::default()
    };
    refuse(o(Heads::Count(4), 0.0), "at least one must remain");
    refuse(o(Heads::List(vec![0, 4]), 0.0), "head 4 does not exist");
    refuse(o(Heads::List(vec![1, 1]), 0.0), "listed twice");
    refuse(o(Heads::List(vec![0, 1, 2, 3]), 0.0), "cannot remove all 4");
    refuse(o(Heads::Keep, 1.5), "must be in [0, 1)");
    refuse(o(Heads::Keep, -0.1), "must be in [0, 1)");
    let mut no_tok = raw("tiny-base/seqcls2");
    no_tok.spiece = None;
    let e = convert::convert_with(
        &no_tok,
        Precision::F32,
        &Options {
            keep_vocab: Some(fixture_corpus()),
            ..Options::default()
        },
        &mut |_, _, _| {},
    )
    .err()
    .unwrap();
    assert!(format!("{e:#}").contains("needs a tokenizer"), "{e:#}");
}

#[test]
fn corpus_files_tsv_and_plain_text() {
    let tsv = corpus::parse("label\tsentence\n1\thello there\n\n0\tbye\n", "t").unwrap();
    assert_eq!(tsv.len(), 2);
    assert_eq!(tsv[1].a, "bye");
    let pairs = corpus::parse("sentence1\tsentence2\tlabel\na\tb\t0\n", "t").unwrap();
    assert_eq!(pairs[0].b.as_deref(), Some("b"));
    let plain = corpus::parse("first line\nsecond line\n", "t").unwrap();
    assert_eq!(plain.len(), 2);
    assert!(corpus::parse("", "t").is_err());
    assert!(corpus::parse("sentence\tlabel\n", "t").is_err());
    assert!(corpus::parse("sentence1\tsentence2\na\n", "t").is_err());
}
