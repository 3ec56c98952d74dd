//! `spiece.model` reader: builds the model file's tokenizer section.
//!
//! Input: a sentencepiece `ModelProto`
//! (<https://github.com/google/sentencepiece/blob/v0.2.0/src/sentencepiece_model.proto>)
//! and optionally the Hugging Face `tokenizer_config.json`. Output: the bytes of the
//! tokenizer section described in `albert_edge::tokenizer::layout` and
//! `docs/tokenizer-section.md`, which the runtime uses in place.
//!
//! Only what the runtime reproduces exactly is accepted: a UNIGRAM model, without byte
//! fallback, without `treat_whitespace_as_suffix`, with `escape_whitespaces`, whose pieces
//! never contain `▁` after their first character (so segmentation never crosses a `▁`).
//! `split_by_whitespace` and `split_digits` only shape training for unigram models; they
//! are read and recorded but change nothing at encoding time.

pub mod index;
pub mod proto;

use albert_edge::tokenizer::layout::{self, field, piece_type, NO_ID};
use anyhow::{bail, Context, Result};
use proto::Reader;

/// One `ModelProto.SentencePiece`.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The piece text.
    pub piece: String,
    /// Its log-probability.
    pub score: f32,
    /// `piece_type::*` (NORMAL when absent).
    pub kind: u8,
}

/// The parts of a sentencepiece `ModelProto` that matter for encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct SpModel {
    /// The vocabulary, in id order.
    pub pieces: Vec<Piece>,
    /// `trainer_spec.model_type` (1 = UNIGRAM, 2 = BPE, 3 = WORD, 4 = CHAR).
    pub model_type: u64,
    /// `trainer_spec.byte_fallback`.
    pub byte_fallback: bool,
    /// `trainer_spec.treat_whitespace_as_suffix`.
    pub treat_whitespace_as_suffix: bool,
    /// `trainer_spec.split_by_whitespace` (training-time only for unigram; recorded).
    pub split_by_whitespace: bool,
    /// `trainer_spec.split_digits` (training-time only for unigram; recorded).
    pub split_digits: bool,
    /// `trainer_spec.unk_id` (the UNKNOWN piece is authoritative; checked against it).
    pub unk_id: Option<u64>,
    /// `normalizer_spec.name`.
    pub normalizer_name: String,
    /// `normalizer_spec.precompiled_charsmap`.
    pub precompiled_charsmap: Vec<u8>,
    /// `normalizer_spec.add_dummy_prefix` (default true).
    pub add_dummy_prefix: bool,
    /// `normalizer_spec.remove_extra_whitespaces` (default true).
    pub remove_extra_whitespaces: bool,
    /// `normalizer_spec.escape_whitespaces` (default true).
    pub escape_whitespaces: bool,
}

fn parse_piece(buf: &[u8]) -> Result<Piece> {
    let mut p = Piece {
        piece: String::new(),
        score: 0.0,
        kind: piece_type::NORMAL,
    };
    let mut r = Reader::new(buf);
    while let Some((n, v)) = r.next_field()? {
        match n {
            1 => p.piece = v.str("SentencePiece.piece")?.to_owned(),
            2 => p.score = v.f32("SentencePiece.score")?,
            3 => {
                let t = v.varint("SentencePiece.type")?;
                if !(1..=6).contains(&t) {
                    bail!("piece {:?}: unknown type {t}", p.piece);
                }
                p.kind = t as u8;
            }
            _ => {}
        }
    }
    Ok(p)
}

/// Decodes a sentencepiece `ModelProto`.
pub fn parse_model(bytes: &[u8]) -> Result<SpModel> {
    let mut m = SpModel {
        normalizer_name: String::new(),
        ..SpModel::unigram(Vec::new())
    };
    let mut r = Reader::new(bytes);
    while let Some((n, v)) = r.next_field()? {
        match n {
            1 => m.pieces.push(
                parse_piece(v.bytes("ModelProto.pieces")?)
                    .with_context(|| format!("piece {}", m.pieces.len()))?,
            ),
            2 => {
                let mut t = Reader::new(v.bytes("ModelProto.trainer_spec")?);
                while let Some((n, v)) = t.next_field().context("trainer_spec")? {
                    match n {
                        3 => m.model_type = v.varint("model_type")?,
                        22 => m.split_by_whitespace = v.bool("split_by_whitespace")?,
                        24 => {
                            m.treat_whitespace_as_suffix = v.bool("treat_whitespace_as_suffix")?
                        }
                        25 => m.split_digits = v.bool("split_digits")?,
                        35 => m.byte_fallback = v.bool("byte_fallback")?,
                        40 => m.unk_id = Some(v.varint("unk_id")?),
                        _ => {}
                    }
                }
            }
            3 => {
                let mut t = Reader::new(v.bytes("ModelProto.normalizer_spec")?);
                while let Some((n, v)) = t.next_field().context("normalizer_spec")? {
                    match n {
                        1 => m.normalizer_name = v.str("name")?.to_owned(),
                        2 => m.precompiled_charsmap = v.bytes("precompiled_charsmap")?.to_vec(),
                        3 => m.add_dummy_prefix = v.bool("add_dummy_prefix")?,
                        4 => m.remove_extra_whitespaces = v.bool("remove_extra_whitespaces")?,
                        5 => m.escape_whitespaces = v.bool("escape_whitespaces")?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(m)
}

impl SpModel {
    /// A UNIGRAM model of `pieces` with every other field at its `ModelProto` default
    /// (no charsmap, the `identity` normalizer name).
    pub fn unigram(pieces: Vec<Piece>) -> SpModel {
        SpModel {
            pieces,
            model_type: 1,
            byte_fallback: false,
            treat_whitespace_as_suffix: false,
            split_by_whitespace: true,
            split_digits: false,
            unk_id: None,
            normalizer_name: "identity".into(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }

    /// Encodes the fields this module reads back into a `ModelProto` (for tests and tools
    /// that make small models; unknown fields of the original are not kept).
    pub fn to_proto(&self) -> Vec<u8> {
        let mut w = proto::Writer::default();
        for p in &self.pieces {
            let mut pw = proto::Writer::default();
            pw.bytes(1, p.piece.as_bytes())
                .f32(2, p.score)
                .uint(3, u64::from(p.kind));
            w.bytes(1, &pw.buf);
        }
        let mut t = proto::Writer::default();
        t.uint(3, self.model_type)
            .uint(22, self.split_by_whitespace as u64)
            .uint(24, self.treat_whitespace_as_suffix as u64)
            .uint(25, self.split_digits as u64)
            .uint(35, self.byte_fallback as u64);
        if let Some(u) = self.unk_id {
            t.uint(40, u);
        }
        w.bytes(2, &t.buf);
        let mut n = proto::Writer::default();
        n.bytes(1, self.normalizer_name.as_bytes())
            .bytes(2, &self.precompiled_charsmap)
            .uint(3, self.add_dummy_prefix as u64)
            .uint(4, self.remove_extra_whitespaces as u64)
            .uint(5, self.escape_whitespaces as u64);
        w.bytes(3, &n.buf);
        w.buf
    }
}

/// transformers `AlbertTokenizer` settings from `tokenizer_config.json`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlbertSettings {
    /// `do_lower_case` (default true).
    pub do_lower_case: bool,
    /// `keep_accents` (default false).
    pub keep_accents: bool,
    /// `remove_space` (default true).
    pub remove_space: bool,
}

impl Default for AlbertSettings {
    fn default() -> Self {
        AlbertSettings {
            do_lower_case: true,
            keep_accents: false,
            remove_space: true,
        }
    }
}

/// Reads the ALBERT settings from `tokenizer_config.json` text (defaults when absent).
pub fn parse_tokenizer_config(json: &str) -> Result<AlbertSettings> {
    let v: serde_json::Value =
        serde_json::from_str(json).context("tokenizer_config.json is not valid JSON")?;
    let mut s = AlbertSettings::default();
    let get = |k: &str, d: bool| -> Result<bool> {
        match v.get(k) {
            None | Some(serde_json::Value::Null) => Ok(d),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(other) => bail!("tokenizer_config.json: {k} must be a bool, found {other}"),
        }
    };
    s.do_lower_case = get("do_lower_case", s.do_lower_case)?;
    s.keep_accents = get("keep_accents", s.keep_accents)?;
    s.remove_space = get("remove_space", s.remove_space)?;
    Ok(s)
}

/// Checks that `model` is something the runtime reproduces exactly.
fn check_supported(m: &SpModel) -> Result<()> {
    if m.model_type != 1 {
        let name = match m.model_type {
            2 => "BPE",
            3 => "WORD",
            4 => "CHAR",
            _ => "unknown",
        };
        bail!(
            "sentencepiece model_type {} ({name}) is not supported: only UNIGRAM",
            m.model_type
        );
    }
    if m.byte_fallback {
        bail!("sentencepiece byte_fallback=true is not supported");
    }
    if m.treat_whitespace_as_suffix {
        bail!("sentencepiece treat_whitespace_as_suffix=true is not supported");
    }
    if !m.escape_whitespaces {
        bail!("sentencepiece escape_whitespaces=false is not supported");
    }
    if m.pieces.is_empty() {
        bail!("sentencepiece model has no pieces");
    }
    if m.pieces.len() >= (1 << 28) {
        bail!("too many pieces");
    }
    let unks: Vec<usize> = (0..m.pieces.len())
        .filter(|&i| m.pieces[i].kind == piece_type::UNKNOWN)
        .collect();
    if unks.len() != 1 {
        bail!("expected exactly one UNKNOWN piece, found {}", unks.len());
    }
    if let Some(u) = m.unk_id {
        if u != unks[0] as u64 {
            bail!(
                "trainer_spec.unk_id {u} is not the UNKNOWN piece {}",
                unks[0]
            );
        }
    }
    let mut has_space_piece = false;
    for (i, p) in m.pieces.iter().enumerate() {
        if p.piece.is_empty() {
            bail!("piece {i} is empty");
        }
        if p.kind == piece_type::BYTE {
            bail!("BYTE pieces (byte fallback) are not supported (piece {i})");
        }
        if !p.score.is_finite() {
            bail!("piece {i} {:?} has a non-finite score", p.piece);
        }
        if matches!(p.kind, piece_type::NORMAL | piece_type::USER_DEFINED) {
            if p.piece
                .char_indices()
                .any(|(at, c)| at > 0 && c == '\u{2581}')
            {
                bail!(
                    "piece {i} {:?} contains \u{2581} after its first character: \
                     segmentation across words is not supported",
                    p.piece
                );
            }
            if p.piece == "\u{2581}" {
                has_space_piece = true;
            }
        }
        if p.kind == piece_type::USER_DEFINED && p.piece.len() > 128 {
            bail!("user-defined piece {i} is longer than 128 bytes");
        }
    }
    if !has_space_piece {
        bail!("the vocabulary has no NORMAL or USER_DEFINED \u{2581} piece");
    }
    Ok(())
}

/// Builds the tokenizer section from `spiece.model` bytes and optional
/// `tokenizer_config.json` text. See `docs/tokenizer-section.md` for the layout.
pub fn build_tokenizer_section(
    spiece_model: &[u8],
    tokenizer_config_json: Option<&str>,
) -> Result<Vec<u8>> {
    let m = parse_model(spiece_model).context("decoding spiece.model")?;
    check_supported(&m)?;
    let settings = match tokenizer_config_json {
        Some(j) => parse_tokenizer_config(j)?,
        None => AlbertSettings::default(),
    };
    let find = |s: &str| m.pieces.iter().position(|p| p.piece == s).map(|i| i as u32);
    let unk_id = m
        .pieces
        .iter()
        .position(|p| p.kind == piece_type::UNKNOWN)
        .context("no UNKNOWN piece")? as u32;
    let pad_id = find("<pad>").context("no <pad> piece in spiece.model")?;
    let cls_id = find("[CLS]").context("no [CLS] piece in spiece.model")?;
    let sep_id = find("[SEP]").context("no [SEP] piece in spiece.model")?;
    let mask_id = find("[MASK]").unwrap_or(NO_ID);

    let keys: Vec<&[u8]> = m.pieces.iter().map(|p| p.piece.as_bytes()).collect();
    let ix = index::PieceIndex::build(&keys)?;

    let mut flags = layout::FLAG_ESCAPE_WHITESPACES;
    if settings.do_lower_case {
        flags |= layout::FLAG_DO_LOWER_CASE;
    }
    if settings.keep_accents {
        flags |= layout::FLAG_KEEP_ACCENTS;
    }
    if settings.remove_space {
        flags |= layout::FLAG_REMOVE_SPACE;
    }
    if m.add_dummy_prefix {
        flags |= layout::FLAG_ADD_DUMMY_PREFIX;
    }
    if m.remove_extra_whitespaces {
        flags |= layout::FLAG_REMOVE_EXTRA_WHITESPACES;
    }

    let v = m.pieces.len();
    let mut piece_bytes = Vec::new();
    let mut offsets = Vec::with_capacity(v + 1);
    for p in &m.pieces {
        offsets.push(piece_bytes.len() as u32);
        piece_bytes.extend_from_slice(p.piece.as_bytes());
    }
    offsets.push(piece_bytes.len() as u32);

    let mut out = vec![0u8; layout::HEADER_LEN];
    let put_array = |out: &mut Vec<u8>, data: &[u8]| -> u32 {
        out.resize(layout::align_up(out.len()), 0);
        let at = out.len() as u32;
        out.extend_from_slice(data);
        at
    };
    let u32s = |xs: &[u32]| xs.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let scores: Vec<u8> = m
        .pieces
        .iter()
        .flat_map(|p| p.score.to_le_bytes())
        .collect();
    let types: Vec<u8> = m.pieces.iter().map(|p| p.kind).collect();
    let o_offsets = put_array(&mut out, &u32s(&offsets));
    let o_scores = put_array(&mut out, &scores);
    let o_index = put_array(&mut out, &u32s(&ix.slots));
    let o_types = put_array(&mut out, &types);
    let o_pieces = put_array(&mut out, &piece_bytes);
    let o_charsmap = put_array(&mut out, &m.precompiled_charsmap);
    let total = out.len();
    if total > u32::MAX as usize {
        bail!("tokenizer section larger than 4 GiB");
    }
    let mut set = |at: usize, v: u32| out[at..at + 4].copy_from_slice(&v.to_le_bytes());
    set(field::VERSION, layout::VERSION);
    set(field::HEADER_LEN, layout::HEADER_LEN as u32);
    set(field::FLAGS, flags);
    set(field::VOCAB_SIZE, v as u32);
    set(field::UNK_ID, unk_id);
    set(field::PAD_ID, pad_id);
    set(field::CLS_ID, cls_id);
    set(field::SEP_ID, sep_id);
    set(field::MASK_ID, mask_id);
    set(field::INDEX_SLOTS, ix.slots.len() as u32);
    set(field::PIECE_OFFSETS, o_offsets);
    set(field::SCORES, o_scores);
    set(field::INDEX, o_index);
    set(field::INDEX_PROBES, ix.probes);
    set(field::TYPES, o_types);
    set(field::PIECE_BYTES, o_pieces);
    set(field::PIECE_BYTES_LEN, piece_bytes.len() as u32);
    set(field::CHARSMAP, o_charsmap);
    set(field::CHARSMAP_LEN, m.precompiled_charsmap.len() as u32);
    set(field::TOTAL_LEN, total as u32);
    out[field::MAGIC..field::MAGIC + 4].copy_from_slice(&layout::MAGIC);
    // The runtime validates the section the same way it will at load time.
    albert_edge::tokenizer::Tokenizer::from_section(&out)
        .map_err(|e| anyhow::anyhow!("built tokenizer section does not validate: {e}"))?;
    Ok(out)
}

/// The parts of a `tokenizers` normalizer or pre-tokenizer (`root`), in order, with
/// `Sequence`s (whose parts are under `list`) flattened.
fn components<'v>(root: Option<&'v serde_json::Value>, list: &str) -> Vec<&'v serde_json::Value> {
    use serde_json::Value;
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = root.into_iter().collect();
    while let Some(n) = stack.pop() {
        if n.get("type").and_then(Value::as_str) == Some("Sequence") {
            let parts = n.get(list).and_then(Value::as_array);
            stack.extend(parts.into_iter().flatten().rev());
        } else {
            out.push(n);
        }
    }
    out
}

/// Reads a `tokenizers` `tokenizer.json` (what transformers 5 saves for ALBERT instead of
/// `spiece.model`) back into the sentencepiece model it was converted from: the Unigram
/// vocabulary and scores, the unknown id, special added tokens as CONTROL pieces and the
/// other added tokens as USER_DEFINED ones (sentencepiece's user-defined symbols), the
/// `Precompiled` normalizer's charsmap, and `add_dummy_prefix` from the `Metaspace`
/// prepend scheme. Other settings take sentencepiece's defaults (`remove_extra_whitespaces`
/// on: the conversion does not record it). Anything that is not such a conversion (another
/// model type, byte fallback, a different whitespace replacement) is refused.
pub fn from_tokenizer_json(json: &str) -> Result<SpModel> {
    use base64::Engine as _;
    use serde_json::Value;
    let v: Value = serde_json::from_str(json).context("tokenizer.json is not valid JSON")?;
    let model = v.get("model").context("tokenizer.json has no model")?;
    let kind = model.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "Unigram" {
        bail!("tokenizer.json: model type {kind:?} is not supported (only the Unigram model of a sentencepiece conversion)");
    }
    if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        bail!("tokenizer.json: byte_fallback is not supported");
    }
    let unk = model
        .get("unk_id")
        .and_then(Value::as_u64)
        .context("tokenizer.json: the Unigram model has no unk_id")?;
    let vocab = model
        .get("vocab")
        .and_then(Value::as_array)
        .context("tokenizer.json: the Unigram model has no vocab")?;
    let mut pieces = Vec::with_capacity(vocab.len());
    for (i, e) in vocab.iter().enumerate() {
        let (Some(piece), Some(score)) = (
            e.get(0).and_then(Value::as_str),
            e.get(1).and_then(Value::as_f64),
        ) else {
            bail!("tokenizer.json: vocab entry {i} is not [piece, score]");
        };
        pieces.push(Piece {
            piece: piece.to_string(),
            score: score as f32,
            kind: if i as u64 == unk {
                piece_type::UNKNOWN
            } else {
                piece_type::NORMAL
            },
        });
    }
    if unk as usize >= pieces.len() {
        bail!("tokenizer.json: unk_id {unk} is outside the vocabulary");
    }
    for t in v
        .get("added_tokens")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        let (Some(id), Some(content)) = (
            t.get("id").and_then(Value::as_u64),
            t.get("content").and_then(Value::as_str),
        ) else {
            bail!("tokenizer.json: an added token has no id or content");
        };
        let Some(p) = pieces.get_mut(id as usize) else {
            bail!("tokenizer.json: added token {content:?} (id {id}) is outside the vocabulary");
        };
        if p.piece != content {
            bail!(
                "tokenizer.json: added token {content:?} has the id of {:?}",
                p.piece
            );
        }
        if id != unk {
            p.kind = if t.get("special").and_then(Value::as_bool) == Some(true) {
                piece_type::CONTROL
            } else {
                piece_type::USER_DEFINED
            };
        }
    }
    // The normalizer: a Precompiled charsmap somewhere in it (a Sequence or alone).
    let mut charsmap = Vec::new();
    for n in components(v.get("normalizer"), "normalizers") {
        if n.get("type").and_then(Value::as_str) == Some("Precompiled") {
            let b64 = n
                .get("precompiled_charsmap")
                .and_then(Value::as_str)
                .unwrap_or("");
            charsmap = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .context("tokenizer.json: the precompiled_charsmap is not base64")?;
        }
    }
    // The pre-tokenizer: Metaspace with `▁`; its prepend scheme is the dummy prefix.
    let mut add_dummy_prefix = None;
    for p in components(v.get("pre_tokenizer"), "pretokenizers") {
        if p.get("type").and_then(Value::as_str) == Some("Metaspace") {
            let r = p
                .get("replacement")
                .and_then(Value::as_str)
                .unwrap_or("\u{2581}");
            if r != "\u{2581}" {
                bail!("tokenizer.json: Metaspace replacement {r:?} is not \u{2581}");
            }
            let scheme = p.get("prepend_scheme").and_then(Value::as_str);
            let legacy = p.get("add_prefix_space").and_then(Value::as_bool);
            add_dummy_prefix = Some(match (scheme, legacy) {
                (Some("always") | Some("first"), _) => true,
                (Some("never"), _) => false,
                (None, Some(b)) => b,
                (other, _) => {
                    bail!("tokenizer.json: Metaspace prepend_scheme {other:?} is not understood")
                }
            });
        }
    }
    let add_dummy_prefix = add_dummy_prefix
        .context("tokenizer.json has no Metaspace pre-tokenizer: not a sentencepiece conversion")?;
    let m = SpModel {
        unk_id: Some(unk),
        normalizer_name: if charsmap.is_empty() {
            "identity".into()
        } else {
            "nmt_nfkc".into()
        },
        precompiled_charsmap: charsmap,
        add_dummy_prefix,
        ..SpModel::unigram(pieces)
    };
    check_supported(&m).context("tokenizer.json")?;
    Ok(m)
}
