//! Text-in commands: tokenize, classify, embed, fill-mask, qa, tag.

use albert_edge::tokenizer::Encoding;
use albert_edge::{HeadKind, Input, Model, ProblemType, ScoreFunction, Workspace};
use clap::Args;
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `tokenize`.
#[derive(Args)]
pub struct TokenizeArgs {
    /// Model file.
    pub model: PathBuf,
    /// Text to tokenize (or use --jsonl).
    pub text: Option<String>,
    /// Second segment of a pair.
    #[arg(long)]
    pub pair: Option<String>,
    /// Truncate to this many tokens (longest-first for pairs).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Read {"text": ..., "text_pair": ...} lines from FILE, write one JSON line per input.
    #[arg(long, conflicts_with = "text")]
    pub jsonl: Option<PathBuf>,
}

/// Arguments shared by the single-text commands.
#[derive(Args)]
pub struct ClassifyArgs {
    /// Model file.
    pub model: PathBuf,
    /// Text to classify.
    pub text: String,
    /// Second segment of a pair.
    #[arg(long)]
    pub pair: Option<String>,
    /// Truncate to this many tokens (default: the model's maximum).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `embed`.
#[derive(Args)]
pub struct EmbedArgs {
    /// Model file.
    pub model: PathBuf,
    /// Text to embed.
    pub text: String,
    /// `pooler` (pooler_output, default when the model has one), `cls` or `mean` (of last_hidden_state).
    #[arg(long)]
    pub pooling: Option<String>,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `fill-mask`.
#[derive(Args)]
pub struct FillMaskArgs {
    /// Model file.
    pub model: PathBuf,
    /// Text with one or more [MASK].
    pub text: String,
    /// Candidates per mask.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `qa`.
#[derive(Args)]
pub struct QaArgs {
    /// Model file.
    pub model: PathBuf,
    /// The question.
    #[arg(long)]
    pub question: String,
    /// The context that holds the answer.
    #[arg(long)]
    pub context: String,
    /// Longest answer in tokens (15, as transformers' question-answering pipeline).
    #[arg(long, default_value_t = 15)]
    pub max_answer_len: usize,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `tag`.
#[derive(Args)]
pub struct TagArgs {
    /// Model file.
    pub model: PathBuf,
    /// Text to tag.
    pub text: String,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Tokenizes with the model's tokenizer.
pub fn encode(
    m: &Model<'_>,
    a: &str,
    b: Option<&str>,
    max_len: Option<usize>,
) -> Result<Encoding, String> {
    let tok = m
        .tokenizer()
        .ok_or("this model file has no tokenizer (convert it with spiece.model)")?;
    Ok(tok.encode_pair(a, b, max_len))
}

/// Encodes with truncation to the model's position table.
fn encode_for_model(
    m: &Model<'_>,
    a: &str,
    b: Option<&str>,
    max_len: Option<usize>,
) -> Result<Encoding, String> {
    let limit = m.config().max_positions as usize;
    encode(m, a, b, Some(max_len.unwrap_or(limit).min(limit)))
}

/// Every output as (name, shape, values).
pub type OwnedOutputs = Vec<(&'static str, Vec<usize>, Vec<f32>)>;

/// Runs one encoded sequence with a fresh workspace.
pub fn run_encoding(m: &Model<'_>, e: &Encoding) -> Result<(OwnedOutputs, f64), String> {
    run_encoding_in(m, e, &mut crate::new_workspace(m, e.ids.len(), 1))
}

/// Runs one encoded sequence in `ws`; returns the outputs as owned vectors and
/// the time taken by `run`.
pub fn run_encoding_in(
    m: &Model<'_>,
    e: &Encoding,
    ws: &mut Workspace<'_>,
) -> Result<(OwnedOutputs, f64), String> {
    let input = Input {
        batch: 1,
        seq: e.ids.len(),
        input_ids: &e.ids,
        attention_mask: None,
        token_type_ids: Some(&e.type_ids),
    };
    let t0 = Instant::now();
    let out = crate::run_model(m, ws, &input).map_err(|e| e.to_string())?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    Ok((
        out.iter()
            .map(|o| (o.name, o.shape().to_vec(), o.data.to_vec()))
            .collect(),
        ms,
    ))
}

fn output<'o>(
    outs: &'o [(&'static str, Vec<usize>, Vec<f32>)],
    name: &str,
) -> Result<&'o [f32], String> {
    outs.iter()
        .find(|o| o.0 == name)
        .map(|o| o.2.as_slice())
        .ok_or_else(|| format!("the model has no {name} output"))
}

fn need_head(m: &Model<'_>, head: HeadKind, cmd: &str) -> Result<(), String> {
    if m.config().head != head {
        return Err(format!(
            "`{cmd}` needs a {} model; this one is {}",
            head.name(),
            m.config().head.name()
        ));
    }
    Ok(())
}

/// The index of the largest value (the last of equals, as `Iterator::max_by`), 0 for none.
pub fn argmax<T: Copy + Into<f64>>(v: &[T]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|x, y| (*x.1).into().total_cmp(&(*y.1).into()))
        .map_or(0, |x| x.0)
}

/// Softmax in f64.
pub fn softmax(x: &[f32]) -> Vec<f64> {
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

fn encoding_json(e: &Encoding) -> Value {
    json!({"input_ids": e.ids, "token_type_ids": e.type_ids, "attention_mask": e.attention_mask, "pieces": e.pieces})
}

pub fn tokenize(m: &Model<'_>, a: &TokenizeArgs) -> Result<(), String> {
    if let Some(path) = &a.jsonl {
        let f = std::fs::File::open(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| format!("{}: line {}: {e}", path.display(), i + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line)
                .map_err(|e| format!("{}: line {}: {e}", path.display(), i + 1))?;
            let text = v
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{}: line {}: no \"text\" string", path.display(), i + 1))?;
            let pair = match v.get("text_pair") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_str()),
                Some(_) => {
                    return Err(format!(
                        "{}: line {}: \"text_pair\" must be a string",
                        path.display(),
                        i + 1
                    ))
                }
            };
            let e = encode(m, text, pair, a.max_len)?;
            use std::io::Write;
            writeln!(w, "{}", encoding_json(&e)).map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    let text = a.text.as_deref().ok_or("give a text or --jsonl FILE")?;
    let e = encode(m, text, a.pair.as_deref(), a.max_len)?;
    if a.json {
        println!("{}", encoding_json(&e));
    } else {
        println!("{} tokens", e.ids.len());
        for ((id, t), p) in e.ids.iter().zip(&e.type_ids).zip(&e.pieces) {
            println!("{id:>8}  {t}  {p}");
        }
    }
    Ok(())
}

pub fn classify(m: &Model<'_>, a: &ClassifyArgs) -> Result<(), String> {
    need_head(m, HeadKind::SequenceClassification, "classify")?;
    if m.config().problem_type == ProblemType::MultipleChoice {
        return Err(
            "a multiple-choice model scores (prompt, choice) pairs against each other: use `albert-edge choose`"
                .into(),
        );
    }
    let e = encode_for_model(m, &a.text, a.pair.as_deref(), a.max_len)?;
    let (outs, ms) = run_encoding(m, &e)?;
    let logits = output(&outs, "logits")?;
    let cfg = m.config();
    let function = cfg.score_function();
    let scores = scores(function, logits);
    let best = argmax(&scores);
    let label = |i: usize| {
        m.label(i)
            .map_or_else(|| format!("LABEL_{i}"), str::to_string)
    };
    let multi = cfg.problem_type == ProblemType::MultiLabel;
    // Multi-label: every label whose sigmoid passes one half (logit > 0).
    let chosen: Vec<String> = (0..scores.len())
        .filter(|&i| multi && scores[i] > 0.5)
        .map(label)
        .collect();
    if a.json {
        let by_label: serde_json::Map<String, Value> = scores
            .iter()
            .enumerate()
            .map(|(i, v)| (label(i), json!(v)))
            .collect();
        let mut v = json!({"label": label(best), "label_id": best, "score": scores[best],
            "function": function.name(), "scores": by_label, "logits": logits,
            "tokens": e.ids.len(), "time_ms": ms});
        if function == ScoreFunction::Softmax {
            v["probabilities"] = v["scores"].clone();
        }
        if multi {
            v["labels"] = json!(chosen);
        }
        println!("{v}");
    } else {
        match function {
            ScoreFunction::Identity if scores.len() == 1 => {
                println!("{}  {:.6}", label(0), scores[0])
            }
            ScoreFunction::Identity => {
                println!("{}  {:.6} (largest output)", label(best), scores[best])
            }
            _ if multi => println!(
                "{}",
                if chosen.is_empty() {
                    "no label above 0.5".to_string()
                } else {
                    chosen.join(", ")
                }
            ),
            _ => println!("{}  ({:.1}%)", label(best), 100.0 * scores[best]),
        }
        for (i, v) in scores.iter().enumerate() {
            println!("  {:<16} {:.4}", label(i), v);
        }
        println!(
            "{} tokens, {:.2} ms ({} kernels, scores: {})",
            e.ids.len(),
            ms,
            m.kernels().tier.name(),
            function.name()
        );
    }
    Ok(())
}

/// A sequence classifier's scores from its logits ([`ScoreFunction`]), in f64.
pub fn scores(function: ScoreFunction, logits: &[f32]) -> Vec<f64> {
    match function {
        ScoreFunction::Softmax => softmax(logits),
        ScoreFunction::Sigmoid => logits
            .iter()
            .map(|&x| 1.0 / (1.0 + (-(x as f64)).exp()))
            .collect(),
        ScoreFunction::Identity => logits.iter().map(|&x| x as f64).collect(),
        // Here the values are one logit per choice.
        ScoreFunction::ChoiceSoftmax => softmax(logits),
    }
}

/// Arguments of `choose`.
#[derive(Args)]
pub struct ChooseArgs {
    /// Model file (converted from an `AlbertForMultipleChoice` checkpoint).
    pub model: PathBuf,
    /// The prompt (context and question), the first segment of every pair.
    pub prompt: String,
    /// A candidate answer, the second segment of its pair (two or more).
    #[arg(long = "choice", required = true, num_args = 1)]
    pub choices: Vec<String>,
    /// Truncate every pair to this many tokens (default: the model's maximum).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A workspace for one sequence at a time, grown only when a longer one
/// comes (for commands that run many sequences).
pub struct Scratch {
    seq: usize,
    ws: Workspace<'static>,
}

impl Scratch {
    pub fn new(m: &Model<'_>) -> Scratch {
        Scratch {
            seq: 1,
            ws: crate::new_workspace(m, 1, 1),
        }
    }

    /// Runs one encoded sequence: its outputs and the time taken by `run`.
    pub fn run(&mut self, m: &Model<'_>, e: &Encoding) -> Result<(OwnedOutputs, f64), String> {
        if e.ids.len() > self.seq {
            self.seq = e.ids.len();
            self.ws = crate::new_workspace(m, self.seq, 1);
        }
        run_encoding_in(m, e, &mut self.ws)
    }
}

/// Refuses a model that is not a multiple-choice one.
pub fn need_choices(m: &Model<'_>, cmd: &str) -> Result<(), String> {
    need_head(m, HeadKind::SequenceClassification, cmd)?;
    if m.config().problem_type != ProblemType::MultipleChoice {
        return Err(format!(
            "`{cmd}` needs a multiple-choice model (from AlbertForMultipleChoice); this one is a {} classifier: use `classify`",
            m.config().problem_type.name()
        ));
    }
    Ok(())
}

/// The logit of every (prompt, choice) pair of a multiple-choice model, the
/// pairs' token counts, and the time taken by the runs. Each pair runs alone:
/// padding them into one batch, as `AlbertForMultipleChoice` takes them, gives
/// the same logits (padded positions are masked out) with more work.
pub fn choice_logits(
    m: &Model<'_>,
    prompt: &str,
    choices: &[String],
    max_len: Option<usize>,
    scratch: &mut Scratch,
) -> Result<(Vec<f32>, Vec<usize>, f64), String> {
    let (mut logits, mut tokens, mut total_ms) = (Vec::new(), Vec::new(), 0.0);
    for c in choices {
        let e = encode_for_model(m, prompt, Some(c), max_len)?;
        let (outs, ms) = scratch.run(m, &e)?;
        logits.push(output(&outs, "logits")?[0]);
        tokens.push(e.ids.len());
        total_ms += ms;
    }
    Ok((logits, tokens, total_ms))
}

/// `choose`: scores every (prompt, choice) pair with a multiple-choice model
/// and takes a softmax over the choices, as `AlbertForMultipleChoice` does
/// over its `num_choices` rows.
pub fn choose(m: &Model<'_>, a: &ChooseArgs) -> Result<(), String> {
    need_choices(m, "choose")?;
    if a.choices.len() < 2 {
        return Err("give two or more --choice".into());
    }
    let (logits, tokens, total_ms) =
        choice_logits(m, &a.prompt, &a.choices, a.max_len, &mut Scratch::new(m))?;
    let scores = scores(ScoreFunction::ChoiceSoftmax, &logits);
    let best = argmax(&scores);
    if a.json {
        println!(
            "{}",
            json!({"choice": a.choices[best], "choice_id": best, "score": scores[best], "scores": scores,
                   "logits": logits, "tokens": tokens, "time_ms": total_ms})
        );
    } else {
        println!("{}  ({:.1}%)", a.choices[best], 100.0 * scores[best]);
        for (c, s) in a.choices.iter().zip(&scores) {
            println!("  {s:.4}  {c}");
        }
        println!(
            "{} pairs, {total_ms:.2} ms ({} kernels)",
            a.choices.len(),
            m.kernels().tier.name()
        );
    }
    Ok(())
}

pub fn embed(m: &Model<'_>, a: &EmbedArgs) -> Result<(), String> {
    need_head(m, HeadKind::Base, "embed")?;
    let e = encode_for_model(m, &a.text, None, None)?;
    let (outs, ms) = run_encoding(m, &e)?;
    let h = m.config().hidden_size as usize;
    let pooling = a.pooling.clone().unwrap_or_else(|| {
        if m.config().has_pooler {
            "pooler".into()
        } else {
            "cls".into()
        }
    });
    let v: Vec<f32> = match pooling.as_str() {
        "pooler" => output(&outs, "pooler_output")?.to_vec(),
        "cls" => output(&outs, "last_hidden_state")?[..h].to_vec(),
        "mean" => {
            let hs = output(&outs, "last_hidden_state")?;
            let n = hs.len() / h;
            (0..h)
                .map(|c| (0..n).map(|t| hs[t * h + c]).sum::<f32>() / n as f32)
                .collect()
        }
        other => return Err(format!("unknown pooling {other:?} (pooler, cls, mean)")),
    };
    if a.json {
        println!(
            "{}",
            json!({"pooling": pooling, "embedding": v, "tokens": e.ids.len(), "time_ms": ms})
        );
    } else {
        println!(
            "{} values ({pooling} pooling, {} tokens, {ms:.2} ms)",
            v.len(),
            e.ids.len()
        );
        println!(
            "{}",
            v.iter()
                .map(|x| format!("{x:.5}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

fn top_k(p: &[f64], k: usize) -> Vec<(usize, f64)> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, p[i])).collect()
}

pub fn fill_mask(m: &Model<'_>, a: &FillMaskArgs) -> Result<(), String> {
    need_head(m, HeadKind::MaskedLm, "fill-mask")?;
    let tok = m.tokenizer().ok_or("this model file has no tokenizer")?;
    let mask = tok.mask_id().ok_or("the tokenizer has no [MASK] piece")?;
    let e = encode_for_model(m, &a.text, None, None)?;
    let (outs, ms) = run_encoding(m, &e)?;
    let logits = output(&outs, "logits")?;
    let v = m.config().vocab_size as usize;
    let mut masks = Vec::new();
    for (pos, &id) in e.ids.iter().enumerate() {
        if id != mask {
            continue;
        }
        let p = softmax(&logits[pos * v..(pos + 1) * v]);
        let cands: Vec<Value> = top_k(&p, a.top_k).into_iter().map(|(i, pr)| json!({"id": i, "piece": tok.piece(i as u32).unwrap_or("?"), "probability": pr})).collect();
        masks.push(json!({"position": pos, "candidates": cands}));
    }
    if masks.is_empty() {
        return Err("the text has no [MASK]".into());
    }
    if a.json {
        println!("{}", json!({"masks": masks, "time_ms": ms}));
    } else {
        for mk in &masks {
            println!("[MASK] at token {}:", mk["position"]);
            for c in mk["candidates"].as_array().into_iter().flatten() {
                println!(
                    "  {:<20} {:.4}",
                    c["piece"].as_str().unwrap_or(""),
                    c["probability"].as_f64().unwrap_or(0.0)
                );
            }
        }
    }
    Ok(())
}

/// Joins surface pieces into text (`▁` starts a word).
pub fn detokenize(pieces: &[String]) -> String {
    pieces.concat().replace('\u{2581}', " ").trim().to_string()
}

pub fn qa(m: &Model<'_>, a: &QaArgs) -> Result<(), String> {
    need_head(m, HeadKind::QuestionAnswering, "qa")?;
    let e = encode_for_model(m, &a.question, Some(&a.context), None)?;
    let (outs, ms) = run_encoding(m, &e)?;
    let (start, end) = (output(&outs, "start_logits")?, output(&outs, "end_logits")?);
    // Candidate positions: the context tokens (type 1), without the final [SEP].
    let n = e.ids.len();
    let ctx: Vec<usize> = (0..n.saturating_sub(1))
        .filter(|&i| e.type_ids[i] == 1)
        .collect();
    let mut best: Option<(usize, usize, f32)> = None;
    for &s in &ctx {
        for &t in ctx
            .iter()
            .filter(|&&t| t >= s && t < s + a.max_answer_len.max(1))
        {
            let score = start[s] + end[t];
            if best.is_none_or(|b| score > b.2) {
                best = Some((s, t, score));
            }
        }
    }
    let (s, t, score) = best.ok_or("the context is empty after tokenization")?;
    let answer = detokenize(&e.pieces[s..=t]);
    if a.json {
        println!(
            "{}",
            json!({"answer": answer, "start_token": s, "end_token": t, "score": score, "time_ms": ms})
        );
    } else {
        println!("{answer}");
        println!("(tokens {s}..={t}, score {score:.3}, {ms:.2} ms)");
    }
    Ok(())
}

pub fn tag(m: &Model<'_>, a: &TagArgs) -> Result<(), String> {
    need_head(m, HeadKind::TokenClassification, "tag")?;
    let e = encode_for_model(m, &a.text, None, None)?;
    let (outs, ms) = run_encoding(m, &e)?;
    let logits = output(&outs, "logits")?;
    let l = m.config().num_labels as usize;
    let mut rows = Vec::new();
    for (i, piece) in e.pieces.iter().enumerate() {
        if i == 0 || i + 1 == e.pieces.len() {
            continue; // [CLS] and [SEP]
        }
        let p = softmax(&logits[i * l..(i + 1) * l]);
        let best = argmax(&p);
        let label = m
            .label(best)
            .map_or_else(|| format!("LABEL_{best}"), str::to_string);
        rows.push(json!({"piece": piece, "label": label, "probability": p[best]}));
    }
    if a.json {
        println!("{}", json!({"tokens": rows, "time_ms": ms}));
    } else {
        for r in &rows {
            println!(
                "{:<20} {}",
                r["piece"].as_str().unwrap_or(""),
                r["label"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}
