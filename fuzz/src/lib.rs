//! Helpers shared by the fuzz targets and the seed generator: small synthetic
//! models built with the converter's own packer, a tiny sentencepiece
//! vocabulary, a 64-byte aligned copy, and "resealing" (recomputing every
//! checksum after a mutation so that the mutation reaches the structural checks
//! behind them).

use albert_convert::model::{Albert, Arch, Layer, Linear, Mat, MlmHead, Norm};
use albert_convert::spm::{Piece, SpModel};
use albert_edge::tokenizer::layout::piece_type;
use albert_edge::{Activation, HeadKind, Precision};

/// A 64-byte aligned copy of some bytes (model files must start aligned).
pub struct Aligned {
    blocks: Vec<Block>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u8; 64]);

impl Aligned {
    /// Copies `b` into a fresh aligned buffer.
    pub fn new(b: &[u8]) -> Self {
        let mut blocks = vec![Block([0; 64]); b.len().div_ceil(64)];
        for (blk, chunk) in blocks.iter_mut().zip(b.chunks(64)) {
            blk.0[..chunk.len()].copy_from_slice(chunk);
        }
        Aligned {
            blocks,
            len: b.len(),
        }
    }

    /// The copied bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `Block` is 64 plain bytes without padding, so the vector holds
        // `blocks.len() * 64 >= len` initialized bytes; the slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), self.len) }
    }
}

fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn rd_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Recomputes the CRC of every section whose range lies inside `b`, then the
/// header CRC. Entries that do not parse are left alone (the loader rejects
/// them anyway). Never panics.
pub fn reseal(b: &mut [u8]) {
    if b.len() < 64 {
        return;
    }
    let n = rd_u32(b, 24).unwrap_or(0).min(64) as usize;
    for i in 0..n {
        let e = 64 + i * 32;
        let (Some(off), Some(len)) = (rd_u64(b, e + 8), rd_u64(b, e + 16)) else {
            break;
        };
        let (Ok(off), Ok(len)) = (usize::try_from(off), usize::try_from(len)) else {
            continue;
        };
        let Some(end) = off.checked_add(len) else {
            continue;
        };
        if end > b.len() || e + 28 > b.len() {
            continue;
        }
        let crc = crc32(&b[off..end]);
        b[e + 24..e + 28].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32(&b[0..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
}

/// CRC-32 (IEEE), as the format uses.
pub fn crc32(b: &[u8]) -> u32 {
    albert_convert::pack::crc32(b)
}

/// The bytes of section `kind` of a (valid) model file, if present.
pub fn section(b: &[u8], kind: u32) -> Option<&[u8]> {
    let n = rd_u32(b, 24)? as usize;
    for i in 0..n.min(64) {
        let e = 64 + i * 32;
        if rd_u32(b, e)? == kind {
            let off = usize::try_from(rd_u64(b, e + 8)?).ok()?;
            let len = usize::try_from(rd_u64(b, e + 16)?).ok()?;
            return b.get(off..off.checked_add(len)?);
        }
    }
    None
}

/// SplitMix64, for deterministic synthetic weights.
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[-scale, scale)`.
    pub fn sym(&mut self, scale: f32) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * scale
    }
}

/// The shape of a synthetic model. Odd sizes on purpose: nothing is a multiple
/// of the kernels' 4 x 16 packing or of any SIMD width.
pub fn tiny_arch(vocab: usize) -> Arch {
    Arch {
        vocab,
        embedding: 12,
        hidden: 20,
        heads: 2,
        head_dim: 10,
        intermediate: 36,
        layers: 3,
        groups: 2,
        inner: 1,
        activation: Activation::GeluNew,
        eps: 1e-12,
        max_positions: 40,
        type_vocab: 2,
    }
}

fn mat(rng: &mut Rng, rows: usize, cols: usize) -> Mat {
    Mat {
        rows,
        cols,
        data: (0..rows * cols).map(|_| rng.sym(0.5)).collect(),
    }
}

fn linear(rng: &mut Rng, out: usize, inp: usize) -> Linear {
    Linear {
        w: mat(rng, out, inp),
        b: (0..out).map(|_| rng.sym(0.1)).collect(),
    }
}

fn norm(rng: &mut Rng, n: usize) -> Norm {
    Norm {
        gamma: (0..n).map(|_| 1.0 + rng.sym(0.1)).collect(),
        beta: (0..n).map(|_| rng.sym(0.1)).collect(),
    }
}

/// A synthetic ALBERT with deterministic random weights and the given head
/// (`labels` classes for the classification heads).
pub fn tiny_albert(arch: Arch, head: HeadKind, labels: usize, seed: u64) -> Albert {
    let rng = &mut Rng(seed);
    let (e, h, i, a) = (
        arch.embedding,
        arch.hidden,
        arch.intermediate,
        arch.heads * arch.head_dim,
    );
    let layers = (0..arch.groups * arch.inner)
        .map(|_| Layer {
            query: linear(rng, a, h),
            key: linear(rng, a, h),
            value: linear(rng, a, h),
            dense: linear(rng, h, a),
            attn_norm: norm(rng, h),
            ffn: linear(rng, i, h),
            ffn_output: linear(rng, h, i),
            out_norm: norm(rng, h),
        })
        .collect();
    let n_labels = match head {
        HeadKind::SequenceClassification | HeadKind::TokenClassification => labels.max(1),
        HeadKind::QuestionAnswering => 2,
        _ => 0,
    };
    let pooler = matches!(head, HeadKind::SequenceClassification | HeadKind::Base)
        .then(|| linear(rng, h, h));
    let classifier = (n_labels > 0).then(|| linear(rng, n_labels, h));
    let mlm = (head == HeadKind::MaskedLm).then(|| MlmHead {
        dense: linear(rng, e, h),
        norm: norm(rng, e),
        bias: (0..arch.vocab).map(|_| rng.sym(0.1)).collect(),
        decoder: None,
    });
    Albert {
        arch,
        head,
        labels: match head {
            HeadKind::SequenceClassification | HeadKind::TokenClassification => {
                (0..n_labels).map(|k| format!("label_{k}")).collect()
            }
            _ => Vec::new(),
        },
        problem_type: Default::default(),
        word: mat(rng, arch.vocab, e),
        position: mat(rng, arch.max_positions, e),
        token_type: mat(rng, arch.type_vocab, e),
        emb_norm: norm(rng, e),
        mapping_in: linear(rng, h, e),
        layers,
        pooler,
        classifier,
        mlm,
    }
}

/// A tiny sentencepiece unigram model (no charsmap): the ALBERT special pieces,
/// `▁`, the letters, digits and a few words and punctuation pieces, including
/// a digit+comma piece (ALBERT's comma re-split) and user-defined symbols.
pub fn tiny_spm() -> SpModel {
    let p = |s: &str, score: f32, kind: u8| Piece {
        piece: s.into(),
        score,
        kind,
    };
    let mut pieces = vec![
        p("<pad>", 0.0, piece_type::CONTROL),
        p("<unk>", 0.0, piece_type::UNKNOWN),
        p("[CLS]", 0.0, piece_type::CONTROL),
        p("[SEP]", 0.0, piece_type::CONTROL),
        p("[MASK]", 0.0, piece_type::CONTROL),
        p("(", 0.0, piece_type::USER_DEFINED),
        p(")", 0.0, piece_type::USER_DEFINED),
        p("\u{2581}", -2.0, piece_type::NORMAL),
    ];
    let mut score = -3.0;
    for c in ('a'..='z').chain('0'..='9') {
        pieces.push(p(&c.to_string(), score, piece_type::NORMAL));
        score -= 0.05;
    }
    for w in [
        "\u{2581}the",
        "\u{2581}a",
        "\u{2581}film",
        "ing",
        "ed",
        "\u{2581}is",
        "1,",
        ",",
        ".",
        "!",
        "\u{2581}good",
        "\u{2581}bad",
        "er",
        "\u{2581}\u{e9}t\u{e9}",
        "\u{e9}",
    ] {
        pieces.push(p(w, score, piece_type::NORMAL));
        score -= 0.1;
    }
    SpModel {
        unk_id: Some(1),
        ..SpModel::unigram(pieces)
    }
}

/// The smallest useful vocabulary: the special pieces, `▁`, three letters and a
/// user-defined symbol (10 pieces).
pub fn mini_spm() -> SpModel {
    let mut m = tiny_spm();
    m.pieces.truncate(7);
    m.pieces.retain(|p| p.piece != ")");
    let normal = |s: &str, score: f32| Piece {
        piece: s.into(),
        score,
        kind: piece_type::NORMAL,
    };
    m.pieces.push(normal("\u{2581}", -2.0));
    m.pieces.extend([
        normal("a", -3.0),
        normal("b", -3.5),
        normal("\u{2581}a", -2.5),
    ]);
    m
}

/// A minimal classifier with a tokenizer (a few KiB), for runs under Miri,
/// where every byte validated costs: vocabulary 10, E 4, H 8, 2 heads of 4,
/// I 12, 2 layers in 2 groups, 8 positions.
pub fn mini_model(precision: Precision) -> Vec<u8> {
    let spm = mini_spm();
    let arch = Arch {
        vocab: spm.pieces.len(),
        embedding: 4,
        hidden: 8,
        heads: 2,
        head_dim: 4,
        intermediate: 12,
        layers: 2,
        groups: 2,
        inner: 1,
        activation: Activation::GeluNew,
        eps: 1e-12,
        max_positions: 8,
        type_vocab: 2,
    };
    let albert = tiny_albert(arch, HeadKind::SequenceClassification, 2, 0x3141);
    let tok = albert_convert::spm::build_tokenizer_section(&spm.to_proto(), None)
        .expect("mini sentencepiece model builds");
    albert_convert::convert::finish(&albert, precision, Some(&tok), 0, None)
        .expect("mini model packs")
        .0
}

/// A synthetic model file: [`tiny_albert`] packed by the converter (for int8,
/// calibrated on the converter's synthetic sequences), with the tokenizer
/// section of [`tiny_spm`] when `with_tokenizer` (the vocabulary then matches).
pub fn tiny_model(head: HeadKind, precision: Precision, with_tokenizer: bool) -> Vec<u8> {
    let spm = tiny_spm();
    let arch = tiny_arch(spm.pieces.len());
    let albert = tiny_albert(arch, head, 3, 0x5eed ^ head as u64);
    let tok = with_tokenizer.then(|| {
        albert_convert::spm::build_tokenizer_section(&spm.to_proto(), None)
            .expect("tiny sentencepiece model builds")
    });
    albert_convert::convert::finish(&albert, precision, tok.as_deref(), 0, None)
        .expect("tiny model packs")
        .0
}

/// Splits fuzz input into a few integer knobs and the rest.
pub struct Knobs<'a> {
    data: &'a [u8],
}

impl<'a> Knobs<'a> {
    /// Wraps the fuzz input.
    pub fn new(data: &'a [u8]) -> Self {
        Knobs { data }
    }
    /// Takes one byte (0 when exhausted).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    /// Takes a little-endian u16 (0 when exhausted).
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    /// Takes a little-endian u32 (0 when exhausted).
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    /// Everything left.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Uses everything a loaded model offers: accessors, a run on a short valid
/// input (which must succeed), a run with a one-byte-short workspace (which
/// must fail cleanly), and the tokenizer when there is one.
pub fn exercise(m: &albert_edge::Model<'_>) {
    use albert_edge::{Input, RunError, Workspace};
    let cfg = *m.config();
    let _ = format!("{m:?}");
    let _ = m.labels().count();
    let _ = m.label(usize::MAX);
    let _ = m.tensors().count();
    let _ = m.parameter_count();
    let seq = (cfg.max_positions as usize).min(3);
    let ids: Vec<u32> = (0..2 * seq as u32)
        .map(|i| (i * 7 + 2) % cfg.vocab_size)
        .collect();
    let mask: Vec<u32> = (0..2 * seq as u32).map(|i| u32::from(i != 1)).collect();
    let types: Vec<u32> = (0..2 * seq as u32)
        .map(|i| (i / 2) % cfg.type_vocab_size)
        .collect();
    let input = Input {
        batch: 2,
        seq,
        input_ids: &ids,
        attention_mask: Some(&mask),
        token_type_ids: Some(&types),
    };
    let need = m.workspace_len(seq, 2);
    assert!(
        need < usize::MAX,
        "workspace size overflows for a loaded model"
    );
    let mut buf = vec![0u8; need];
    {
        let mut ws = Workspace::from_bytes(&mut buf[..need - 1]);
        assert!(matches!(
            m.run(&mut ws, &input),
            Err(RunError::WorkspaceTooSmall { .. })
        ));
    }
    let mut ws = Workspace::from_bytes(&mut buf);
    let out = m
        .run(&mut ws, &input)
        .expect("a valid input runs on a loaded model");
    for o in out.iter() {
        let n: usize = o.shape().iter().product();
        assert_eq!(n, o.data.len(), "output {} shape and data disagree", o.name);
    }
    if let Some(t) = m.tokenizer() {
        let _ = t.piece(0);
        let _ = t.piece(u32::MAX);
        for text in ["Hello, world! (x) 1,000 \u{e9}t\u{e9} [MASK] \u{1f600}", ""] {
            let mut scratch = vec![0u8; t.scratch_len(text.len())];
            let mut ids = [0u32; 64];
            let mut types = [0u32; 64];
            match t.encode_into(
                text,
                Some(text),
                Some(40),
                &mut scratch,
                &mut ids,
                &mut types,
            ) {
                Ok(n) => assert!(ids[..n].iter().all(|&i| (i as usize) < t.vocab_size())),
                Err(albert_edge::tokenizer::TokenizeError::ScratchTooSmall) => {
                    panic!("scratch_len was not enough")
                }
                Err(_) => {}
            }
        }
    }
}
