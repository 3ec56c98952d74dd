//! The whole conversion as one function over in-memory values, so it can be
//! tested without files: interpret -> (prune) -> quantize/pack -> reload check.

use crate::calibrate::{self, ActStats, Sample};
use crate::corpus::{self, Text};
use crate::load::RawCheckpoint;
use crate::model::Albert;
use crate::names;
use crate::pack;
use crate::prune;
use crate::quantize::QuantError;
pub use crate::quantize::WeightPairs;
use crate::vocab::{self, VocabReport};
use albert_edge::format::RoleKind;
use albert_edge::tokenizer::Tokenizer;
use albert_edge::{Model, Precision};
use anyhow::{anyhow, bail, ensure, Context, Result};

/// What a conversion produced, for the summary.
#[derive(Debug, Clone)]
pub struct Report {
    /// Parameters of the model written (shared weights counted once).
    pub parameters: usize,
    /// Bytes of the input files.
    pub input_bytes: u64,
    /// Bytes of the model file.
    pub file_bytes: usize,
    /// Workspace bytes for one sequence of the maximum length.
    pub workspace_bytes_max_seq: usize,
    /// Maximum sequence length.
    pub max_seq: usize,
    /// Whether a tokenizer section was written.
    pub has_tokenizer: bool,
    /// Quantization error per int8 matrix.
    pub quant_errors: Vec<QuantError>,
    /// The same numbers for the model before pruning, when something was pruned.
    pub before: Option<Before>,
    /// Heads per layer and FFN size after pruning.
    pub heads: usize,
    /// FFN inner size after pruning.
    pub intermediate: usize,
    /// What vocabulary pruning did.
    pub vocab: Option<VocabReport>,
    /// int8 only: the matrix kinds given two-part activations, and the
    /// agreement that decided it.
    pub parts: Option<PartsReport>,
}

/// How an int8 file's matrices quantize their activations (`--activation-parts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActivationParts {
    /// One int8 part everywhere unless the int8 file's outputs fall short of
    /// [`PARTS_TARGET`] on the check inputs; then two parts for the matrix
    /// kind that raises the worst output most, then the next, until the target
    /// is met (or every kind has two parts: a model that cannot meet it gets
    /// the most precise activations there are, not those that happened to
    /// score best on the check inputs).
    #[default]
    Auto,
    /// One int8 part per activation row everywhere ([`albert_edge::format::DType::Q8`]).
    One,
    /// Two parts for every matrix ([`albert_edge::format::DType::Q8R`]): about
    /// 16-bit activations, twice the multiplies.
    Two,
}

/// The agreement [`ActivationParts::Auto`] asks of an int8 file: the cosine
/// similarity of each output with the f32 file's, over the check inputs
/// ([`calibrate::synthetic`]), at least this. Ten times closer than the 0.999
/// the fixtures are held to, as the check inputs are not the user's; the
/// trained SST-2 models reach 0.99997 and more with one part.
pub const PARTS_TARGET: f64 = 0.9999;

/// How many of [`calibrate::synthetic`]'s sequences [`ActivationParts::Auto`]
/// checks on.
const CHECK_SAMPLES: usize = 4;

/// What [`ActivationParts`] chose.
#[derive(Debug, Clone, PartialEq)]
pub struct PartsReport {
    /// The mode asked for.
    pub mode: ActivationParts,
    /// Matrix kinds with two-part activations.
    pub two_parts: Vec<RoleKind>,
    /// The worst output cosine with one part everywhere (measured by `Auto` only).
    pub cosine_one: Option<f64>,
    /// The worst output cosine with the choice (measured by `Auto` only).
    pub cosine_chosen: Option<f64>,
}

/// Size of the unpruned model at the same precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Before {
    /// Parameters.
    pub parameters: usize,
    /// File bytes.
    pub file_bytes: usize,
    /// Workspace bytes for one sequence of the maximum length.
    pub workspace_bytes_max_seq: usize,
    /// Heads per layer.
    pub heads: usize,
    /// FFN inner size.
    pub intermediate: usize,
}

/// Which attention heads to remove from every stored layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Heads {
    /// None.
    #[default]
    Keep,
    /// The `n` least important ones.
    Count(usize),
    /// These indices.
    List(Vec<usize>),
}

/// Pruning and calibration choices (the CLI's flags).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Heads to remove.
    pub heads: Heads,
    /// Fraction of FFN neurons to remove, in `[0, 1)`.
    pub ffn_fraction: f64,
    /// Calibration texts: importance from activations (instead of weights) and, for
    /// int8, the activation ranges.
    pub calibrate: Option<Vec<Text>>,
    /// Keep only the vocabulary these texts use.
    pub keep_vocab: Option<Vec<Text>>,
    /// A preset; replaces `heads` and `ffn_fraction` once the model's shape is known.
    pub preset: Option<Preset>,
    /// int8 activation quantization.
    pub activation_parts: ActivationParts,
    /// int8 weight values (`--weight-pairs`).
    pub weight_pairs: WeightPairs,
}

/// A named pruning preset (`--prune NAME`): a fixed rule, applied to any model's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preset {
    /// Name on the command line.
    pub name: &'static str,
    /// Fraction of the heads removed from every stored layer (rounded, at least one
    /// head kept).
    pub heads_fraction: f64,
    /// Fraction of FFN neurons removed, at least.
    pub ffn_fraction: f64,
    /// Fraction of the model's parameters to remove: more FFN neurons go (up to
    /// `max_ffn_fraction`) while heads and `ffn_fraction` remove fewer.
    pub parameters_fraction: f64,
    /// Fraction of FFN neurons removed, at most.
    pub max_ffn_fraction: f64,
}

impl Preset {
    /// The head count to remove from a model with `heads` heads per layer, and the
    /// minimum FFN fraction.
    pub fn options(&self, heads: usize) -> (Heads, f64) {
        let n =
            ((heads as f64 * self.heads_fraction).round() as usize).min(heads.saturating_sub(1));
        (
            if n == 0 { Heads::Keep } else { Heads::Count(n) },
            self.ffn_fraction,
        )
    }

    /// The options for model `m`: [`Self::options`], with the FFN fraction raised (to at
    /// most `max_ffn_fraction`) until `parameters_fraction` of the parameters go.
    pub fn for_model(&self, m: &Albert) -> (Heads, f64) {
        let (heads, min_ffn) = self.options(m.arch.heads);
        let removed_heads = match heads {
            Heads::Count(n) => n,
            _ => 0,
        };
        let (h, d, ni) = (m.arch.hidden, m.arch.head_dim, m.arch.intermediate);
        let stored = m.layers.len();
        // A head: its query/key/value rows and biases and its dense columns; a neuron:
        // its FFN row and bias and its FFN-output column; in every stored layer.
        let per_head = stored * (4 * h * d + 3 * d);
        let per_neuron = (stored * (2 * h + 1)).max(1);
        let target = (self.parameters_fraction * m.parameter_count() as f64).ceil() as usize;
        let need = target.saturating_sub(removed_heads * per_head);
        let min_drop = (ni as f64 * min_ffn).round() as usize;
        let max_drop = (ni as f64 * self.max_ffn_fraction).floor() as usize;
        let drop = need
            .div_ceil(per_neuron)
            .clamp(min_drop, max_drop.max(min_drop));
        let fraction = if drop == min_drop || ni == 0 {
            min_ffn
        } else {
            drop as f64 / ni as f64
        };
        (heads, fraction)
    }
}

/// `--prune fast`: a sixth of the heads and at least 40% of the FFN neurons, more (up
/// to 75%) until a quarter of the parameters are removed. See `docs/accuracy.md` for
/// the measurements behind it.
pub const FAST: Preset = Preset {
    name: "fast",
    heads_fraction: 1.0 / 6.0,
    ffn_fraction: 0.4,
    parameters_fraction: 0.25,
    max_ffn_fraction: 0.75,
};

/// With `--calibrate`, heads and FFN neurons are chosen by the activation scores, then
/// the outputs are refitted; choosing them by the refit's own error
/// ([`prune::Refit::select`]) is available to the library; it scored no better on
/// sst2-tiny and was not measured on sst2-base (docs/accuracy.md).
const SELECT_BY_REFIT: bool = false;

/// Progress callbacks: `(stage, done, total)`.
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

fn check_options(m: &Albert, o: &Options) -> Result<()> {
    let nh = m.arch.heads;
    match &o.heads {
        Heads::Keep => {}
        Heads::Count(n) if *n >= nh => bail!(
            "--prune-heads {n}: the model has {nh} heads per layer and at least one must remain"
        ),
        Heads::Count(_) => {}
        Heads::List(l) => {
            if let Some(h) = l.iter().find(|&&h| h >= nh) {
                bail!(
                    "--prune-heads: head {h} does not exist (the model has heads 0..{})",
                    nh - 1
                );
            }
            let mut s = l.clone();
            s.sort_unstable();
            s.dedup();
            if s.len() != l.len() {
                bail!("--prune-heads: a head is listed twice");
            }
            if s.len() >= nh {
                bail!("--prune-heads: cannot remove all {nh} heads");
            }
        }
    }
    if !(0.0..1.0).contains(&o.ffn_fraction) {
        bail!("--prune-ffn {} must be in [0, 1)", o.ffn_fraction);
    }
    Ok(())
}

/// Builds the tokenizer section from the checkpoint's `spiece.model`, if any,
/// and checks that its pieces are the model's `vocab` word embeddings.
pub fn tokenizer_section(raw: &RawCheckpoint, vocab: usize) -> Result<Option<Vec<u8>>> {
    let Some(sp) = &raw.spiece else {
        return Ok(None);
    };
    let section = crate::spm::build_tokenizer_section(sp, raw.tokenizer_config.as_deref())
        .context("reading spiece.model")?;
    let pieces = Tokenizer::from_section(&section)
        .map_err(|e| anyhow!("internal: {e}"))?
        .vocab_size();
    ensure!(
        pieces == vocab,
        "the tokenizer has {pieces} pieces but the model has {vocab} word embeddings \
         (config.json vocab_size): they must be the same vocabulary; give the tokenizer the \
         model was trained with (--tokenizer)"
    );
    Ok(Some(section))
}

/// Packs an interpreted model and proves the result loads. For int8, the
/// activation ranges come from `samples` (synthetic sequences when `None`).
pub fn finish(
    m: &Albert,
    precision: Precision,
    tokenizer: Option<&[u8]>,
    input_bytes: u64,
    samples: Option<&[Sample]>,
) -> Result<(Vec<u8>, Report)> {
    let stats = int8_stats(m, precision, samples)?;
    let parts = Parts::Choose(ActivationParts::default());
    finish_with_stats(
        m,
        precision,
        tokenizer,
        input_bytes,
        stats.as_ref(),
        parts,
        WeightPairs::Free,
    )
}

/// The activation ranges [`finish`] uses for int8 (`None` for f32).
pub fn int8_stats(
    m: &Albert,
    precision: Precision,
    samples: Option<&[Sample]>,
) -> Result<Option<ActStats>> {
    Ok(if precision == Precision::Int8 {
        let synthetic;
        let samples = match samples {
            Some(s) => s,
            None => {
                synthetic =
                    calibrate::synthetic(m.arch.vocab, m.arch.max_positions, m.arch.type_vocab);
                &synthetic
            }
        };
        Some(calibrate::collect(m, samples, |_| {})?)
    } else {
        None
    })
}

/// [`finish`] with activation ranges already collected, the activation parts
/// and the int8 weight values to use.
pub fn finish_with_stats(
    m: &Albert,
    precision: Precision,
    tokenizer: Option<&[u8]>,
    input_bytes: u64,
    stats: Option<&ActStats>,
    parts: Parts,
    pairs: WeightPairs,
) -> Result<(Vec<u8>, Report)> {
    let mut packed = pack::pack_with(m, precision, tokenizer, stats, pairs)?;
    let parts = if precision == Precision::Int8 {
        let r = match parts {
            Parts::Choose(mode) => choose_parts(m, &packed, mode)?,
            Parts::Chosen(r) => r,
        };
        if !r.two_parts.is_empty() {
            packed.bytes = packed.with_two_parts(&r.two_parts)?;
        }
        Some(r)
    } else {
        None
    };
    let model = Model::from_vec(&packed.bytes)
        .map_err(|e| anyhow::anyhow!("internal error: the written file does not load: {e}"))?;
    let max_seq = model.config().max_positions as usize;
    let report = Report {
        parameters: m.parameter_count(),
        input_bytes,
        file_bytes: packed.bytes.len(),
        workspace_bytes_max_seq: model.workspace_len(max_seq, 1),
        max_seq,
        has_tokenizer: tokenizer.is_some(),
        quant_errors: packed.quant_errors,
        before: None,
        heads: m.arch.heads,
        intermediate: m.arch.intermediate,
        vocab: None,
        parts,
    };
    Ok((packed.bytes, report))
}

/// The activation parts for [`finish_with_stats`]: to be chosen there, or
/// already chosen (on the model before vocabulary pruning, so that pruning the
/// vocabulary changes no result on the texts kept).
#[derive(Debug, Clone)]
pub enum Parts {
    /// Choose on the model being finished.
    Choose(ActivationParts),
    /// Use this choice.
    Chosen(PartsReport),
}

/// Applies `mode` to the int8 file `packed` of `m` (see [`ActivationParts`]).
pub fn choose_parts(
    m: &Albert,
    packed: &pack::Packed,
    mode: ActivationParts,
) -> Result<PartsReport> {
    let kinds = packed.int8_kinds();
    let report = |two_parts, one, chosen| PartsReport {
        mode,
        two_parts,
        cosine_one: one,
        cosine_chosen: chosen,
    };
    match mode {
        ActivationParts::One => return Ok(report(Vec::new(), None, None)),
        ActivationParts::Two => return Ok(report(kinds, None, None)),
        ActivationParts::Auto => {}
    }
    // The first four synthetic sequences (8, 24, 64 and 128 tokens, one with
    // a second segment): every length class for a quarter less work than all
    // eight, which matters where conversions run under emulation.
    let mut samples = calibrate::synthetic(m.arch.vocab, m.arch.max_positions, m.arch.type_vocab);
    samples.truncate(CHECK_SAMPLES);
    let f32_file = pack::pack(m, Precision::F32, None, None)?;
    let reference = run_samples(&f32_file.bytes, &samples)?;
    let worst = |bytes: &[u8]| -> Result<f64> {
        let got = run_samples(bytes, &samples)?;
        Ok(reference
            .iter()
            .zip(&got)
            .map(|(a, b)| cosine(&a.1, &b.1))
            .fold(f64::INFINITY, f64::min))
    };
    let one = worst(&packed.bytes)?;
    if one >= PARTS_TARGET {
        return Ok(report(Vec::new(), Some(one), Some(one)));
    }
    // When even two parts everywhere miss the target, that is the choice (and
    // the search below would end there too).
    let all = worst(&packed.with_two_parts(&kinds)?)?;
    if all < PARTS_TARGET {
        return Ok(report(kinds, Some(one), Some(all)));
    }
    let (mut chosen, mut best) = (Vec::new(), one);
    while best < PARTS_TARGET && chosen.len() < kinds.len() {
        let mut step: Option<(RoleKind, f64)> = None;
        for k in kinds.iter().filter(|k| !chosen.contains(*k)) {
            let mut with = chosen.clone();
            with.push(*k);
            let c = worst(&packed.with_two_parts(&with)?)?;
            if step.is_none_or(|(_, s)| c > s) {
                step = Some((*k, c));
            }
        }
        let Some((k, c)) = step else { break };
        chosen.push(k);
        best = c;
    }
    Ok(report(chosen, Some(one), Some(best)))
}

/// Cosine similarity in f64: 1 for two zero vectors, -1 when it is not a number.
fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    let c = if na == 0.0 && nb == 0.0 {
        1.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    };
    if c.is_nan() {
        -1.0
    } else {
        c
    }
}

/// Every output of the model file `bytes` on `samples`, per output name, the
/// samples' values concatenated.
fn run_samples(bytes: &[u8], samples: &[Sample]) -> Result<Vec<(String, Vec<f32>)>> {
    let model = Model::from_vec(bytes).map_err(|e| anyhow!("internal: {e}"))?;
    let max = samples.iter().map(|s| s.ids.len()).max().unwrap_or(1);
    let mut ws = model.new_workspace(max, 1);
    let mut out: Vec<(String, Vec<f32>)> = Vec::new();
    for s in samples {
        let o = model
            .run(&mut ws, &s.input())
            .map_err(|e| anyhow!("internal: {e}"))?;
        for t in o.iter() {
            match out.iter_mut().find(|(n, _)| n == t.name) {
                Some((_, v)) => v.extend_from_slice(t.data),
                None => out.push((t.name.to_string(), t.data.to_vec())),
            }
        }
    }
    Ok(out)
}

/// Converts a loaded checkpoint to model-file bytes.
pub fn convert(raw: &RawCheckpoint, precision: Precision) -> Result<(Vec<u8>, Report)> {
    let m = names::interpret(raw)?;
    let tok = tokenizer_section(raw, m.arch.vocab)?;
    finish(&m, precision, tok.as_deref(), raw.source_bytes, None)
}

/// Converts a loaded checkpoint with pruning (see [`Options`]):
/// interpret -> calibration samples -> head/FFN importance and pruning -> int8 activation
/// ranges -> vocabulary pruning -> pack. Calibration texts are tokenized with the full
/// vocabulary, so the activation ranges (and thus an int8 file) do not depend on
/// vocabulary pruning.
pub fn convert_with(
    raw: &RawCheckpoint,
    precision: Precision,
    o: &Options,
    progress: Progress<'_>,
) -> Result<(Vec<u8>, Report)> {
    let mut m = names::interpret(raw)?;
    let mut o = o.clone();
    if let Some(p) = o.preset {
        (o.heads, o.ffn_fraction) = p.for_model(&m);
    }
    let o = &o;
    check_options(&m, o)?;
    let tok = tokenizer_section(raw, m.arch.vocab)?;
    let samples = match &o.calibrate {
        None => None,
        Some(texts) => {
            let section = tok.as_deref().ok_or_else(|| {
                anyhow!("--calibrate needs a tokenizer (spiece.model next to the checkpoint or --tokenizer)")
            })?;
            let t = Tokenizer::from_section(section).map_err(|e| anyhow!("internal: {e}"))?;
            Some(corpus::tokenize(&t, texts, Some(m.arch.max_positions))?)
        }
    };
    let pruning = o.heads != Heads::Keep || o.ffn_fraction > 0.0 || o.keep_vocab.is_some();
    let before = if pruning {
        // Size only: the activation ranges change values, not sizes.
        let packed = pack::pack(&m, precision, tok.as_deref(), None)?;
        let model = Model::from_vec(&packed.bytes).map_err(|e| anyhow!("internal: {e}"))?;
        Some(Before {
            parameters: m.parameter_count(),
            file_bytes: packed.bytes.len(),
            workspace_bytes_max_seq: model.workspace_len(model.config().max_positions as usize, 1),
            heads: m.arch.heads,
            intermediate: m.arch.intermediate,
        })
    } else {
        None
    };
    if o.heads != Heads::Keep || o.ffn_fraction > 0.0 {
        // With calibration texts, the same f32 pass that scores importance measures the
        // input moments of the attention output and FFN output, which are then refitted
        // by least squares to the inputs they keep (`refit`).
        let (imp, moments) = match &samples {
            Some(s) => prune::activation_calibration(&m, s, prune::MOMENT_ROWS, |i| {
                progress("scoring", i, s.len())
            })?,
            None => (prune::weight_importance(&m), Vec::new()),
        };
        let refit = samples.as_ref().map(|_| prune::Refit {
            moments: &moments,
            damping: crate::refit::DAMPING,
            select: SELECT_BY_REFIT,
        });
        let (keep, remove) = match &o.heads {
            Heads::Keep => (None, 0),
            Heads::Count(n) => (None, *n),
            Heads::List(l) => {
                let keep: Vec<usize> = (0..m.arch.heads).filter(|h| !l.contains(h)).collect();
                (Some(vec![keep; m.layers.len()]), 0)
            }
        };
        progress("refitting", 0, 1);
        prune::apply_compensated(&mut m, &imp, keep, remove, o.ffn_fraction, refit)?;
    }
    let stats = if precision == Precision::Int8 {
        let synthetic;
        let s = match &samples {
            Some(s) => s.as_slice(),
            None => {
                synthetic =
                    calibrate::synthetic(m.arch.vocab, m.arch.max_positions, m.arch.type_vocab);
                &synthetic
            }
        };
        Some(calibrate::collect(&m, s, |i| {
            progress("calibrating", i, s.len())
        })?)
    } else {
        None
    };
    let mut parts = Parts::Choose(o.activation_parts);
    if precision == Precision::Int8 && o.keep_vocab.is_some() {
        progress("choosing activation parts", 0, 1);
        let packed = pack::pack_with(&m, precision, None, stats.as_ref(), o.weight_pairs)?;
        parts = Parts::Chosen(choose_parts(&m, &packed, o.activation_parts)?);
    }
    let mut vocab_report = None;
    let tok = match &o.keep_vocab {
        None => tok,
        Some(texts) => {
            let sp = raw.spiece.as_deref().ok_or_else(|| {
                anyhow!("--keep-vocab needs a tokenizer (spiece.model next to the checkpoint or --tokenizer)")
            })?;
            progress("pruning the vocabulary", 0, 1);
            let (section, r) =
                vocab::keep_vocab(&mut m, sp, raw.tokenizer_config.as_deref(), texts)?;
            vocab_report = Some(r);
            Some(section)
        }
    };
    let (bytes, mut report) = finish_with_stats(
        &m,
        precision,
        tok.as_deref(),
        raw.source_bytes,
        stats.as_ref(),
        parts,
        o.weight_pairs,
    )?;
    report.before = before;
    report.vocab = vocab_report;
    Ok((bytes, report))
}
