//! `albert-edge eval`: accuracy of a sequence classifier on a TSV file.

use crate::text::{encode, run_encoding_in};
use albert_edge::{HeadKind, Model};
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
    /// index or one of the model's label names), optionally a second text column
    /// (`sentence2`, `question2`, `hypothesis`, `text_pair`).
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

/// Reads a GLUE-style TSV.
pub fn read_tsv(path: &PathBuf) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // A byte-order mark (spreadsheet exports) is not part of the first column's name.
    let mut lines = text.strip_prefix('\u{feff}').unwrap_or(&text).lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| format!("{}: empty file", path.display()))?
        .split('\t')
        .map(str::trim)
        .collect();
    let col = |names: &[&str]| header.iter().position(|h| names.contains(h));
    let a = col(&["sentence", "sentence1", "question", "text"])
        .ok_or_else(|| format!("{}: no `sentence` column in the header", path.display()))?;
    let b = col(&["sentence2", "question2", "hypothesis", "text_pair"]);
    let l = col(&["label"]);
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let get = |c: usize| {
            f.get(c).map(|s| s.to_string()).ok_or_else(|| {
                format!(
                    "{}: line {}: missing column {}",
                    path.display(),
                    i + 2,
                    c + 1
                )
            })
        };
        let label = match l {
            Some(c) => Some((get(c)?, i + 2)),
            None => None,
        };
        rows.push(Row {
            a: get(a)?,
            b: b.map(get).transpose()?,
            label,
        });
    }
    Ok(rows)
}

fn predict(
    m: &Model<'_>,
    rows: &[Row],
    max_len: Option<usize>,
    pb: &ProgressBar,
) -> Result<(Vec<usize>, f64), String> {
    let positions = m.config().max_positions as usize;
    let max = max_len.map_or(positions, |l| l.min(positions));
    let mut preds = Vec::with_capacity(rows.len());
    let mut total_ms = 0.0;
    // One workspace for the whole file, grown only when a longer row comes.
    let (mut cap, mut ws) = (0usize, crate::new_workspace(m, 1, 1));
    for r in rows {
        let e = encode(m, &r.a, r.b.as_deref(), Some(max))?;
        if e.ids.len() > cap {
            cap = e.ids.len();
            ws = crate::new_workspace(m, cap, 1);
        }
        let (outs, ms) = run_encoding_in(m, &e, &mut ws)?;
        total_ms += ms;
        let logits = &outs
            .iter()
            .find(|o| o.0 == "logits")
            .ok_or("the model has no logits output")?
            .2;
        preds.push(
            logits
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .map_or(0, |x| x.0),
        );
        pb.inc(1);
    }
    Ok((preds, total_ms / rows.len().max(1) as f64))
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
    let truth = rows
        .iter()
        .map(|r| {
            r.label
                .as_ref()
                .map(|(y, line)| {
                    class_of(y, l, &label)
                        .map_err(|e| format!("{}: line {line}: {e}", a.data.display()))
                })
                .transpose()
        })
        .collect::<Result<Vec<Option<usize>>, String>>()?;
    let pb = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(rows.len() as u64)
    };
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed}").expect("valid template"),
    );
    let (preds, mean_ms) = predict(&m, &rows, a.max_len, &pb)?;
    let cmp = match &a.compare {
        Some(p) => {
            let other = crate::load(p, tier)?;
            Some(predict(&other, &rows, a.max_len, &pb)?.0)
        }
        None => None,
    };
    pb.finish_and_clear();
    let labelled: Vec<(usize, usize)> = truth
        .iter()
        .zip(&preds)
        .filter_map(|(y, &p)| y.map(|y| (y, p)))
        .collect();
    let correct = labelled.iter().filter(|(y, p)| y == p).count();
    let accuracy = if labelled.is_empty() {
        None
    } else {
        Some(correct as f64 / labelled.len() as f64)
    };
    let mut confusion = vec![vec![0usize; l]; l];
    for &(y, p) in &labelled {
        if y < l && p < l {
            confusion[y][p] += 1;
        }
    }
    let per_class: serde_json::Map<String, serde_json::Value> = (0..l)
        .map(|c| {
            let n = confusion[c].iter().sum::<usize>();
            (label(c), json!({"n": n, "correct": confusion[c][c], "predicted": confusion.iter().map(|r| r[c]).sum::<usize>()}))
        })
        .collect();
    let agreement = cmp.as_ref().map(|o| {
        o.iter().zip(&preds).filter(|(a, b)| a == b).count() as f64 / preds.len().max(1) as f64
    });
    if a.json {
        println!(
            "{}",
            json!({"accuracy": accuracy, "n": rows.len(), "correct": correct, "per_class": per_class, "agreement": agreement,
                   "mean_latency_ms": mean_ms, "predictions": preds, "tier": m.kernels().tier.name()})
        );
    } else {
        match accuracy {
            Some(acc) => println!("accuracy {:.4} ({correct}/{})", acc, labelled.len()),
            None => println!("{} rows, no labels", rows.len()),
        }
        for c in 0..l {
            let n = confusion[c].iter().sum::<usize>();
            println!(
                "  {:<16} {}/{} correct, predicted {} times",
                label(c),
                confusion[c][c],
                n,
                confusion.iter().map(|r| r[c]).sum::<usize>()
            );
        }
        if let Some(ag) = agreement {
            println!(
                "agreement with {}: {:.4}",
                a.compare
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
                ag
            );
        }
        println!(
            "mean latency {mean_ms:.3} ms per sentence ({})",
            m.kernels().tier.name()
        );
    }
    Ok(())
}
