//! Vocabulary pruning (`--keep-vocab CORPUS`): keep the pieces a domain corpus uses.
//!
//! The word-embedding rows (and the masked-LM decoder rows and bias) of the pieces a
//! corpus never produces are dead weight for that domain. [`plan`] chooses the pieces
//! to keep, [`prune_model`] and [`prune_spm`] remap the model and the tokenizer to them,
//! and [`keep_vocab`] does all of it and proves the result on the corpus.
//!
//! # Why the corpus tokenizes exactly as before
//!
//! The unigram tokenizer picks, word by word, the best-scoring path through the lattice
//! of vocabulary pieces. Removing pieces removes paths and adds none, so if every piece
//! of the corpus's best paths is kept, those paths stay available and stay best (ties
//! too: the runtime keeps the first candidate with the highest score, and the remaining
//! candidates keep their order). What else the scores depend on is kept as well:
//!
//! * the unknown penalty is `min_score - 10` over NORMAL pieces, and user-defined
//!   symbols score `len * max_score - 0.1`: the NORMAL pieces with the lowest and the
//!   highest score are kept;
//! * every non-NORMAL piece (control, unknown, user-defined, unused) is kept, so special
//!   tokens, user-defined symbols and `PieceToId` of merged unknown runs are unchanged;
//! * `AlbertTokenizer`'s digit+comma rule re-encodes pieces ending in `<digit>,` that
//!   never reach the output: all such pieces are kept, with every piece that could
//!   appear when their text is re-encoded (all pieces that are substrings of it);
//! * kept pieces keep their order (the id map is increasing), scores and types.
//!
//! Every single-character piece is kept too, so text outside the corpus still
//! tokenizes, into shorter pieces (or `<unk>` for characters the original vocabulary
//! did not have either), and runs. [`keep_vocab`] re-tokenizes the whole corpus with the
//! pruned tokenizer and fails if any id differs from the remapped original.

use crate::corpus::{self, Text};
use crate::model::{Albert, Mat};
use crate::spm::{self, SpModel};
use albert_edge::tokenizer::layout::piece_type;
use albert_edge::tokenizer::Tokenizer;
use anyhow::{anyhow, bail, Context, Result};

/// What [`keep_vocab`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocabReport {
    /// Pieces before.
    pub before: usize,
    /// Pieces kept.
    pub kept: usize,
    /// Of those, pieces the corpus's tokenization produced.
    pub used: usize,
    /// Texts in the corpus.
    pub texts: usize,
}

/// Whether `AlbertTokenizer._tokenize` re-encodes `piece` (`len > 1`, ends in `,`
/// after a digit).
fn comma_rule_applies(piece: &str) -> bool {
    let mut it = piece.chars().rev();
    piece.chars().count() > 1
        && matches!((it.next(), it.next()), (Some(','), Some(d)) if d.is_numeric())
}

/// The old ids to keep, increasing: the pieces marked in `used` plus everything the
/// module docs list. `used.len()` must be the vocabulary size.
pub fn plan(sp: &SpModel, used: &[bool]) -> Result<Vec<u32>> {
    let v = sp.pieces.len();
    if used.len() != v {
        bail!("internal: {} usage flags for {v} pieces", used.len());
    }
    let mut keep = used.to_vec();
    let (mut lo, mut hi) = (None::<usize>, None::<usize>);
    let mut rescan: Vec<String> = Vec::new();
    for (i, p) in sp.pieces.iter().enumerate() {
        if p.kind != piece_type::NORMAL || p.piece.chars().count() == 1 {
            keep[i] = true;
        }
        if p.kind == piece_type::NORMAL {
            if lo.is_none_or(|j| p.score < sp.pieces[j].score) {
                lo = Some(i);
            }
            if hi.is_none_or(|j| p.score > sp.pieces[j].score) {
                hi = Some(i);
            }
        }
        if matches!(p.kind, piece_type::NORMAL | piece_type::USER_DEFINED)
            && comma_rule_applies(&p.piece)
        {
            keep[i] = true;
            // The re-encoded text: the piece without its comma and `▁`s, after a `▁`.
            let body: String = p.piece[..p.piece.len() - 1]
                .chars()
                .filter(|&c| c != '\u{2581}')
                .collect();
            rescan.push(format!("\u{2581}{body}"));
        }
    }
    for i in [lo, hi].into_iter().flatten() {
        keep[i] = true;
    }
    if !rescan.is_empty() {
        for (i, p) in sp.pieces.iter().enumerate() {
            if !keep[i] && rescan.iter().any(|t| t.contains(p.piece.as_str())) {
                keep[i] = true;
            }
        }
    }
    Ok((0..v as u32).filter(|&i| keep[i as usize]).collect())
}

/// The sentencepiece model restricted to the pieces `keep` (increasing old ids).
pub fn prune_spm(sp: &SpModel, keep: &[u32]) -> Result<SpModel> {
    let mut out = sp.clone();
    out.pieces = keep
        .iter()
        .map(|&i| sp.pieces[i as usize].clone())
        .collect();
    if let Some(u) = sp.unk_id {
        out.unk_id = Some(
            keep.iter()
                .position(|&i| u64::from(i) == u)
                .context("the unknown piece must be kept")? as u64,
        );
    }
    Ok(out)
}

fn keep_rows(w: &Mat, rows: &[u32]) -> Mat {
    let mut data = Vec::with_capacity(rows.len() * w.cols);
    for &r in rows {
        data.extend_from_slice(w.row(r as usize));
    }
    Mat {
        rows: rows.len(),
        cols: w.cols,
        data,
    }
}

/// Keeps the vocabulary rows `keep` (increasing old ids) of the word embeddings and of
/// the masked-LM decoder and bias.
pub fn prune_model(m: &mut Albert, keep: &[u32]) -> Result<()> {
    if keep.is_empty()
        || keep.windows(2).any(|w| w[0] >= w[1])
        || keep.last().is_some_and(|&i| i as usize >= m.arch.vocab)
    {
        bail!(
            "kept piece ids must be increasing and below the vocabulary size {}",
            m.arch.vocab
        );
    }
    m.word = keep_rows(&m.word, keep);
    if let Some(h) = &mut m.mlm {
        h.bias = keep.iter().map(|&i| h.bias[i as usize]).collect();
        if let Some(d) = &mut h.decoder {
            *d = keep_rows(d, keep);
        }
    }
    m.arch.vocab = keep.len();
    Ok(())
}

/// Prunes `m` and its tokenizer (`spiece_model` bytes, with `tokenizer_config`) to the
/// pieces `texts` use (see the module docs), checks that every text tokenizes to the
/// remapped original ids, and returns the new tokenizer section.
pub fn keep_vocab(
    m: &mut Albert,
    spiece_model: &[u8],
    tokenizer_config: Option<&str>,
    texts: &[Text],
) -> Result<(Vec<u8>, VocabReport)> {
    let sp = spm::parse_model(spiece_model).context("decoding spiece.model")?;
    if sp.pieces.len() != m.arch.vocab {
        bail!(
            "spiece.model has {} pieces but the model's vocabulary is {}",
            sp.pieces.len(),
            m.arch.vocab
        );
    }
    let full = spm::build_tokenizer_section(spiece_model, tokenizer_config)?;
    let full_tok = Tokenizer::from_section(&full).map_err(|e| anyhow!("internal: {e}"))?;
    let before = corpus::tokenize(&full_tok, texts, None)?;
    let mut used = vec![false; sp.pieces.len()];
    for s in &before {
        for &id in &s.ids {
            used[id as usize] = true;
        }
    }
    let keep = plan(&sp, &used)?;
    let pruned = prune_spm(&sp, &keep)?;
    let section = spm::build_tokenizer_section(&pruned.to_proto(), tokenizer_config)
        .context("building the pruned tokenizer")?;
    let tok = Tokenizer::from_section(&section).map_err(|e| anyhow!("internal: {e}"))?;
    let mut new_id = vec![u32::MAX; sp.pieces.len()];
    for (n, &o) in keep.iter().enumerate() {
        new_id[o as usize] = n as u32;
    }
    let after = corpus::tokenize(&tok, texts, None)?;
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let mapped: Vec<u32> = b.ids.iter().map(|&id| new_id[id as usize]).collect();
        if mapped != a.ids || b.types != a.types {
            bail!(
                "internal error: text {} tokenizes differently with the pruned vocabulary",
                i + 1
            );
        }
    }
    prune_model(m, &keep)?;
    let report = VocabReport {
        before: sp.pieces.len(),
        kept: keep.len(),
        used: used.iter().filter(|&&u| u).count(),
        texts: texts.len(),
    };
    Ok((section, report))
}
