//! `albert-edge eval`: how well a sequence classifier does on a labelled TSV file:
//! accuracy (one class per row), exact match and micro F1 (multi-label),
//! correlations and squared error (regression), or accuracy over questions
//! (multiple choice).

use crate::text::{argmax, choice_logits, encode, need_choices, Scratch};
use albert_edge::{HeadKind, Model, ProblemType};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Model file.
    pub model: PathBuf,
    /// TSV with a header: `sentence` (or `sentence1`/`question`/`text`), `label` (a class
    /// index or one of the model's label names; for a multi-label model a comma-separated
    /// list of them, possibly empty; for a regression model a number), optionally a
    /// second text column (`sentence2`, `question2`, `hypothesis`, `text_pair`). For a
    /// multiple-choice model: a prompt column (`prompt`, `sent1`, `premise`, `context`,
    /// ...), numbered choice columns (`ending0`, `ending1`, ... or `choice1`, `choice2`,
    /// ...; with a `sent2` column, each choice follows it as in SWAG) and `label` (the
    /// right choice's position, from 0, or a letter).
    pub data: PathBuf,
    /// Another model to compare predictions with (agreement).
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Use at most this many rows.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Skip this many rows first (with --limit: evaluate a slice of the file).
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// Truncate every input to this many tokens, as the model's training did (e.g. 64);
    /// default: the model's position table size.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One labelled example.
pub struct Row {
    pub a: String,
    pub b: Option<String>,
    /// The `label` field as written (a class index or a label name), and its line.
    pub label: Option<(String, usize)>,
}

/// The class index `label` names: a number below `classes`, or one of the model's label
/// names (ASCII case ignored).
fn class_of(label: &str, classes: usize, name: &dyn Fn(usize) -> String) -> Result<usize, String> {
    let label = label.trim();
    if let Ok(i) = label.parse::<usize>() {
        return if i < classes {
            Ok(i)
        } else {
            Err(format!(
                "class index {i} is out of range (the model has {classes} classes)"
            ))
        };
    }
    (0..classes)
        .find(|&c| name(c).eq_ignore_ascii_case(label))
        .ok_or_else(|| {
            let names: Vec<String> = (0..classes).map(name).collect();
            format!(
                "label {label:?} is neither a class index (0..{classes}) nor one of the model's labels ({})",
                names.join(", ")
            )
        })
}

/// A TSV file with a header line.
struct Table {
    path: String,
    header: Vec<String>,
    /// Each non-empty line's fields, with its line number.
    lines: Vec<(usize, Vec<String>)>,
}

impl Table {
    fn read(path: &PathBuf) -> Result<Table, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // A byte-order mark (spreadsheet exports) is not part of the first column's name.
        let mut lines = text.strip_prefix('\u{feff}').unwrap_or(&text).lines();
        let header = lines
            .next()
            .ok_or_else(|| format!("{}: empty file", path.display()))?
            .split('\t')
            .map(|h| h.trim().to_string())
            .collect();
        Ok(Table {
            path: path.display().to_string(),
            header,
            lines: lines
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| (i + 2, l.split('\t').map(str::to_string).collect()))
                .collect(),
        })
    }

    /// The first column named one of `names`.
    fn col(&self, names: &[&str]) -> Option<usize> {
        self.header.iter().position(|h| names.contains(&h.as_str()))
    }

    /// Column `c` of a line.
    fn get(&self, (line, fields): &(usize, Vec<String>), c: usize) -> Result<String, String> {
        fields
            .get(c)
            .cloned()
            .ok_or_else(|| format!("{}: line {line}: missing column {}", self.path, c + 1))
    }
}

/// Reads a GLUE-style TSV.
pub fn read_tsv(path: &PathBuf) -> Result<Vec<Row>, String> {
    let t = Table::read(path)?;
    let a = t
        .col(&["sentence", "sentence1", "question", "text"])
        .ok_or_else(|| format!("{}: no `sentence` column in the header", t.path))?;
    let b = t.col(&["sentence2", "question2", "hypothesis", "text_pair"]);
    let l = t.col(&["label"]);
    t.lines
        .iter()
        .map(|line| {
            Ok(Row {
                a: t.get(line, a)?,
                b: b.map(|b| t.get(line, b)).transpose()?,
                label: l
                    .map(|l| Ok::<_, String>((t.get(line, l)?, line.0)))
                    .transpose()?,
            })
        })
        .collect()
}

/// One multiple-choice question.
pub struct Question {
    pub prompt: String,
    /// The non-empty choices, and each one's position among the choice columns.
    pub choices: Vec<String>,
    pub positions: Vec<usize>,
    /// The position of the right choice, if labelled.
    pub label: Option<usize>,
}

/// Reads a multiple-choice TSV: a prompt column, numbered choice columns
/// (`ending0`, `ending1`, ... as SWAG; `choice1`, `choice2`, ... as COPA; or
/// `option*`), and a `label` column (the right choice's position among the
/// choice columns, from 0, or a letter A, B, ...). With a `sent2` column (SWAG),
/// every choice is that text, a space and the ending, as transformers'
/// `run_swag.py` builds the second segment.
pub fn read_questions(path: &PathBuf) -> Result<Vec<Question>, String> {
    let t = Table::read(path)?;
    let prompt = t
        .col(&[
            "prompt", "sent1", "premise", "context", "sentence", "sentence1", "question", "text",
        ])
        .ok_or_else(|| {
            format!(
                "{}: no prompt column (`prompt`, `sent1`, `premise`, `context`, `sentence`, `question` or `text`) in the header",
                t.path
            )
        })?;
    let numbered = |prefix: &str| {
        let mut cols: Vec<(u32, usize)> = t
            .header
            .iter()
            .enumerate()
            .filter_map(|(c, h)| Some((h.strip_prefix(prefix)?.parse::<u32>().ok()?, c)))
            .collect();
        cols.sort();
        cols.into_iter().map(|(_, c)| c).collect::<Vec<usize>>()
    };
    let cols = ["ending", "choice", "option"]
        .iter()
        .map(|p| numbered(p))
        .find(|c| c.len() >= 2)
        .ok_or_else(|| {
            format!(
                "{}: no choice columns (two or more of `ending0`, `ending1`, ... or `choice1`, `choice2`, ... or `option*`) in the header; to score one question, use `albert-edge choose`",
                t.path
            )
        })?;
    let header = t.col(&["sent2"]);
    let label = t.col(&["label"]);
    let k = cols.len();
    t.lines
        .iter()
        .map(|line| {
            let at = |e: String| format!("{}: line {}: {e}", t.path, line.0);
            let lead = header.map(|c| t.get(line, c)).transpose()?;
            let (mut choices, mut positions) = (Vec::new(), Vec::new());
            for (i, &c) in cols.iter().enumerate() {
                let text = line.1.get(c).map_or("", |s| s.as_str());
                if text.trim().is_empty() {
                    continue;
                }
                choices.push(match &lead {
                    Some(h) => format!("{h} {text}"),
                    None => text.to_string(),
                });
                positions.push(i);
            }
            if choices.len() < 2 {
                return Err(at("fewer than two choices".into()));
            }
            let label = match label {
                Some(c) => {
                    let y = t.get(line, c)?;
                    let y = y.trim();
                    let i = match y.parse::<usize>() {
                        Ok(i) => i,
                        Err(_) if y.len() == 1 && y.as_bytes()[0].is_ascii_alphabetic() => {
                            usize::from(y.as_bytes()[0].to_ascii_uppercase() - b'A')
                        }
                        Err(_) => {
                            return Err(at(format!(
                                "label {y:?} is neither a choice position (0..{k}) nor a letter"
                            )))
                        }
                    };
                    if !positions.contains(&i) {
                        return Err(at(format!(
                            "label {y:?} names no choice of this row (positions 0..{k}, empty ones left out)"
                        )));
                    }
                    Some(i)
                }
                None => None,
            };
            Ok(Question {
                prompt: t.get(line, prompt)?,
                choices,
                positions,
                label,
            })
        })
        .collect()
}

/// Every row's logits, and the mean latency in ms.
fn predict(
    m: &Model<'_>,
    rows: &[Row],
    max_len: Option<usize>,
    pb: &ProgressBar,
) -> Result<(Vec<Vec<f32>>, f64), String> {
    let positions = m.config().max_positions as usize;
    let max = max_len.map_or(positions, |l| l.min(positions));
    let mut logits = Vec::with_capacity(rows.len());
    let mut total_ms = 0.0;
    let mut scratch = Scratch::new(m);
    for r in rows {
        let e = encode(m, &r.a, r.b.as_deref(), Some(max))?;
        let (outs, ms) = scratch.run(m, &e)?;
        total_ms += ms;
        let l = &outs
            .iter()
            .find(|o| o.0 == "logits")
            .ok_or("the model has no logits output")?
            .2;
        logits.push(l.to_vec());
        pb.inc(1);
    }
    Ok((logits, total_ms / rows.len().max(1) as f64))
}

/// What `eval` measures, from the model's problem type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Task {
    /// Accuracy of the largest logit.
    SingleLabel,
    /// The labels whose sigmoid passes one half (logit > 0), against a
    /// comma-separated label set per row.
    MultiLabel,
    /// Correlations and errors of the one output against a number per row.
    Regression,
}

impl Task {
    fn of(m: &Model<'_>) -> Result<Task, String> {
        let c = m.config();
        // transformers trains a one-output classifier without a problem type
        // as a regression (`AlbertForSequenceClassification.forward`).
        Ok(match c.problem_type {
            // Questions, not rows: `eval_choices`.
            ProblemType::MultipleChoice => return Err("a multiple-choice model".into()),
            ProblemType::MultiLabel => Task::MultiLabel,
            ProblemType::Regression if c.num_labels != 1 => {
                return Err(format!(
                    "`eval` measures regression models with one output; this one has {}",
                    c.num_labels
                ))
            }
            ProblemType::Regression => Task::Regression,
            ProblemType::SingleLabel if c.num_labels == 1 => Task::Regression,
            ProblemType::SingleLabel => Task::SingleLabel,
        })
    }
}

pub fn eval(a: &EvalArgs, tier: &Option<String>) -> Result<(), String> {
    let m = crate::load(&a.model, tier)?;
    if m.config().head != HeadKind::SequenceClassification {
        return Err(format!(
            "`eval` needs a sequence-classification model; this one is {}",
            m.config().head.name()
        ));
    }
    if a.max_len.is_some_and(|l| l < 3) {
        return Err("--max-len must be at least 3 ([CLS], a token, [SEP])".into());
    }
    if m.config().problem_type == ProblemType::MultipleChoice {
        return eval_choices(a, &m, tier);
    }
    let task = Task::of(&m)?;
    let mut rows = read_tsv(&a.data)?;
    rows.drain(..a.skip.min(rows.len()));
    if let Some(n) = a.limit {
        rows.truncate(n);
    }
    let l = m.config().num_labels as usize;
    let label = |i: usize| {
        m.label(i)
            .map_or_else(|| format!("LABEL_{i}"), str::to_string)
    };
    // Every label is checked before anything runs.
    let at = |line: usize, e: String| format!("{}: line {line}: {e}", a.data.display());
    let truth = rows
        .iter()
        .map(|r| {
            let Some((y, line)) = &r.label else {
                return Ok(None);
            };
            let t = match task {
                Task::SingleLabel => {
                    Truth::Class(class_of(y, l, &label).map_err(|e| at(*line, e))?)
                }
                Task::MultiLabel => {
                    let mut set = vec![false; l];
                    for part in y.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        set[class_of(part, l, &label).map_err(|e| at(*line, e))?] = true;
                    }
                    Truth::Set(set)
                }
                Task::Regression => Truth::Value(
                    y.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| {
                            at(
                                *line,
                                format!("label {y:?} is not a number (a regression model)"),
                            )
                        })?,
                ),
            };
            Ok(Some(t))
        })
        .collect::<Result<Vec<Option<Truth>>, String>>()?;
    let pb = progress(a.json, rows.len());
    let (logits, mean_ms) = predict(&m, &rows, a.max_len, &pb)?;
    let cmp = match &a.compare {
        Some(p) => {
            let other = crate::load(p, tier)?;
            let (oc, mc) = (other.config(), m.config());
            if oc.head != mc.head
                || oc.num_labels != mc.num_labels
                || Task::of(&other).ok() != Some(task)
            {
                return Err(format!(
                    "{} is not a classifier of the same kind and labels as {}",
                    p.display(),
                    a.model.display()
                ));
            }
            Some(predict(&other, &rows, a.max_len, &pb)?.0)
        }
        None => None,
    };
    pb.finish_and_clear();
    let tier_name = m.kernels().tier.name();
    let compare_name = a
        .compare
        .as_ref()
        .map_or(String::new(), |p| p.display().to_string());
    match task {
        Task::SingleLabel => {
            let preds: Vec<usize> = logits.iter().map(|v| argmax(v)).collect();
            let labelled: Vec<(usize, usize)> = truth
                .iter()
                .zip(&preds)
                .filter_map(|(y, &p)| match y {
                    Some(Truth::Class(y)) => Some((*y, p)),
                    _ => None,
                })
                .collect();
            let correct = labelled.iter().filter(|(y, p)| y == p).count();
            let accuracy = ratio(correct, labelled.len());
            let mut confusion = vec![vec![0usize; l]; l];
            for &(y, p) in &labelled {
                if y < l && p < l {
                    confusion[y][p] += 1;
                }
            }
            let class = |c: usize| {
                (
                    confusion[c].iter().sum::<usize>(),
                    confusion[c][c],
                    confusion.iter().map(|r| r[c]).sum::<usize>(),
                )
            };
            let agreement = cmp.as_ref().map(|o| {
                let same = o
                    .iter()
                    .zip(&preds)
                    .filter(|(x, &p)| argmax(x) == p)
                    .count();
                same as f64 / preds.len().max(1) as f64
            });
            if a.json {
                let per_class = per_class_json(l, &label, &class);
                println!(
                    "{}",
                    json!({"accuracy": accuracy, "n": rows.len(), "correct": correct, "per_class": per_class, "agreement": agreement,
                           "mean_latency_ms": mean_ms, "predictions": preds, "tier": tier_name})
                );
                return Ok(());
            }
            match accuracy {
                Some(acc) => println!("accuracy {:.4} ({correct}/{})", acc, labelled.len()),
                None => println!("{} rows, no labels", rows.len()),
            }
            print_classes(l, &label, &class);
            if let Some(ag) = agreement {
                println!("agreement with {compare_name}: {ag:.4}");
            }
        }
        Task::MultiLabel => {
            let preds: Vec<Vec<bool>> = logits
                .iter()
                .map(|v| v.iter().map(|&x| x > 0.0).collect())
                .collect();
            let labelled: Vec<(&Vec<bool>, &Vec<bool>)> = truth
                .iter()
                .zip(&preds)
                .filter_map(|(y, p)| match y {
                    Some(Truth::Set(y)) => Some((y, p)),
                    _ => None,
                })
                .collect();
            let exact = labelled.iter().filter(|(y, p)| y == p).count();
            let accuracy = ratio(exact, labelled.len());
            let (mut n, mut tp, mut predicted) = (vec![0; l], vec![0; l], vec![0; l]);
            for (y, p) in &labelled {
                for c in 0..l {
                    n[c] += usize::from(y[c]);
                    tp[c] += usize::from(y[c] && p[c]);
                    predicted[c] += usize::from(p[c]);
                }
            }
            let (tps, ns, ps) = (
                tp.iter().sum::<usize>(),
                n.iter().sum::<usize>(),
                predicted.iter().sum::<usize>(),
            );
            let micro_f1 = (!labelled.is_empty()).then(|| {
                if ns + ps == 0 {
                    1.0
                } else {
                    2.0 * tps as f64 / (ns + ps) as f64
                }
            });
            let class = |c: usize| (n[c], tp[c], predicted[c]);
            let agreement = cmp.as_ref().map(|o| {
                let same = o
                    .iter()
                    .zip(&preds)
                    .filter(|(x, p)| x.iter().map(|&v| v > 0.0).eq(p.iter().copied()))
                    .count();
                same as f64 / preds.len().max(1) as f64
            });
            let pred_ids: Vec<Vec<usize>> = preds
                .iter()
                .map(|p| (0..l).filter(|&c| p[c]).collect())
                .collect();
            if a.json {
                let per_class = per_class_json(l, &label, &class);
                println!(
                    "{}",
                    json!({"accuracy": accuracy, "micro_f1": micro_f1, "n": rows.len(), "correct": exact, "per_class": per_class,
                           "agreement": agreement, "mean_latency_ms": mean_ms, "predictions": pred_ids, "tier": tier_name})
                );
                return Ok(());
            }
            match (accuracy, micro_f1) {
                (Some(acc), Some(f1)) => println!(
                    "exact-match accuracy {acc:.4} ({exact}/{}), micro F1 {f1:.4} (labels whose sigmoid passes 0.5)",
                    labelled.len()
                ),
                _ => println!("{} rows, no labels", rows.len()),
            }
            print_classes(l, &label, &class);
            if let Some(ag) = agreement {
                println!("agreement with {compare_name}: {ag:.4} (same label sets)");
            }
        }
        Task::Regression => {
            let preds: Vec<f64> = logits.iter().map(|v| v[0] as f64).collect();
            let (ys, ps): (Vec<f64>, Vec<f64>) = truth
                .iter()
                .zip(&preds)
                .filter_map(|(y, &p)| match y {
                    Some(Truth::Value(y)) => Some((*y, p)),
                    _ => None,
                })
                .unzip();
            let k = ys.len();
            let mse = (k > 0).then(|| {
                ys.iter()
                    .zip(&ps)
                    .map(|(y, p)| (y - p) * (y - p))
                    .sum::<f64>()
                    / k as f64
            });
            let (pear, spear) = (pearson(&ys, &ps), spearman(&ys, &ps));
            let other: Option<Vec<f64>> = cmp
                .as_ref()
                .map(|o| o.iter().map(|v| v[0] as f64).collect());
            let max_diff = other.as_ref().map(|o| {
                o.iter()
                    .zip(&preds)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max)
            });
            if a.json {
                println!(
                    "{}",
                    json!({"pearson": pear, "spearman": spear, "mse": mse, "n": rows.len(), "labelled": k,
                           "compare_max_abs_diff": max_diff, "compare_pearson": other.as_ref().and_then(|o| pearson(o, &preds)),
                           "mean_latency_ms": mean_ms, "predictions": preds, "tier": tier_name})
                );
                return Ok(());
            }
            match (pear, spear, mse) {
                (Some(p), Some(s), Some(e)) => {
                    println!("pearson {p:.4}, spearman {s:.4}, mse {e:.4} ({k} rows)")
                }
                (_, _, Some(e)) => {
                    println!("mse {e:.4} ({k} rows; correlations undefined: a constant column)")
                }
                _ => println!("{} rows, no labels", rows.len()),
            }
            if let (Some(d), Some(o)) = (max_diff, &other) {
                let p = pearson(o, &preds).map_or("undefined".into(), |p| format!("{p:.6}"));
                println!("against {compare_name}: largest difference {d:.6}, pearson {p}");
            }
        }
    }
    println!("mean latency {mean_ms:.3} ms per sentence ({tier_name})");
    Ok(())
}

/// `eval` on a multiple-choice model: accuracy of the best-scoring choice.
fn eval_choices(a: &EvalArgs, m: &Model<'_>, tier: &Option<String>) -> Result<(), String> {
    let mut questions = read_questions(&a.data)?;
    questions.drain(..a.skip.min(questions.len()));
    if let Some(n) = a.limit {
        questions.truncate(n);
    }
    let other = match &a.compare {
        Some(p) => {
            let other = crate::load(p, tier)?;
            if need_choices(&other, "eval").is_err() {
                return Err(format!(
                    "{} is not a multiple-choice model as {} is",
                    p.display(),
                    a.model.display()
                ));
            }
            Some(other)
        }
        None => None,
    };
    let pb = progress(a.json, questions.len());
    // The position (among the choice columns) of each question's best choice.
    let pick = |m: &Model<'_>| -> Result<(Vec<usize>, f64), String> {
        let mut scratch = Scratch::new(m);
        let (mut picks, mut total_ms) = (Vec::with_capacity(questions.len()), 0.0);
        for q in &questions {
            let (logits, _, ms) = choice_logits(m, &q.prompt, &q.choices, a.max_len, &mut scratch)?;
            picks.push(q.positions[argmax(&logits)]);
            total_ms += ms;
            pb.inc(1);
        }
        Ok((picks, total_ms / questions.len().max(1) as f64))
    };
    let (preds, mean_ms) = pick(m)?;
    let agreement = match &other {
        Some(o) => {
            let theirs = pick(o)?.0;
            Some(ratio(
                theirs.iter().zip(&preds).filter(|(x, y)| x == y).count(),
                preds.len(),
            ))
        }
        None => None,
    }
    .flatten();
    pb.finish_and_clear();
    let labelled: Vec<(usize, usize)> = questions
        .iter()
        .zip(&preds)
        .filter_map(|(q, &p)| Some((q.label?, p)))
        .collect();
    let correct = labelled.iter().filter(|(y, p)| y == p).count();
    let accuracy = ratio(correct, labelled.len());
    let tier_name = m.kernels().tier.name();
    if a.json {
        println!(
            "{}",
            json!({"accuracy": accuracy, "n": questions.len(), "correct": correct, "agreement": agreement,
                   "mean_latency_ms": mean_ms, "predictions": preds, "tier": tier_name})
        );
        return Ok(());
    }
    match accuracy {
        Some(acc) => println!("accuracy {acc:.4} ({correct}/{})", labelled.len()),
        None => println!("{} questions, no labels", questions.len()),
    }
    if let (Some(ag), Some(p)) = (agreement, &a.compare) {
        println!("agreement with {}: {ag:.4}", p.display());
    }
    println!("mean latency {mean_ms:.3} ms per question, all its choices ({tier_name})");
    Ok(())
}

/// A row's label, read for the model's [`Task`].
enum Truth {
    Class(usize),
    Set(Vec<bool>),
    Value(f64),
}

/// A progress bar over `n` items, hidden for JSON output.
fn progress(hidden: bool, n: usize) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed}").expect("valid template"),
    );
    pb
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// `class(c)` = (rows with label c, of them predicted c, rows predicted c).
fn per_class_json(
    l: usize,
    label: &dyn Fn(usize) -> String,
    class: &dyn Fn(usize) -> (usize, usize, usize),
) -> serde_json::Map<String, serde_json::Value> {
    (0..l)
        .map(|c| {
            let (n, correct, predicted) = class(c);
            (
                label(c),
                json!({"n": n, "correct": correct, "predicted": predicted}),
            )
        })
        .collect()
}

fn print_classes(
    l: usize,
    label: &dyn Fn(usize) -> String,
    class: &dyn Fn(usize) -> (usize, usize, usize),
) {
    for c in 0..l {
        let (n, correct, predicted) = class(c);
        println!(
            "  {:<16} {correct}/{n} correct, predicted {predicted} times",
            label(c)
        );
    }
}

/// Pearson's correlation; `None` for fewer than two values or a constant side.
fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 2 || y.len() != n {
        return None;
    }
    let (mx, my) = (
        x.iter().sum::<f64>() / n as f64,
        y.iter().sum::<f64>() / n as f64,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Spearman's correlation: Pearson's of the ranks, ties given their mean rank.
fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&ranks(x), &ranks(y))
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        // Ranks i + 1 ..= j + 1 share their mean.
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlations() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&x, &[2.0, 4.0, 6.0, 8.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&x, &[8.0, 6.0, 4.0, 2.0]).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&x, &[1.0; 4]), None);
        assert_eq!(pearson(&[1.0], &[1.0]), None);
        // Monotone but not linear: Spearman 1, Pearson below 1.
        let y = [1.0, 10.0, 100.0, 1000.0];
        assert!((spearman(&x, &y).unwrap() - 1.0).abs() < 1e-12);
        assert!(pearson(&x, &y).unwrap() < 0.99);
        // Ties take their mean rank (scipy.stats.rankdata's default).
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        // scipy.stats.pearsonr([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) = 0.8.
        let p = pearson(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 4.0, 3.0, 5.0]).unwrap();
        assert!((p - 0.8).abs() < 1e-12, "{p}");
    }
}
