//! Accuracy / size trade-off of head and FFN pruning on a labelled TSV, without
//! fine-tuning: importance is scored once (from activations on a calibration TSV, as
//! `albert-convert --calibrate` does, or from the weights with `--weights`), then every
//! configuration is pruned, packed and evaluated in process.
//!
//! ```text
//! cargo run --release -p albert-convert --example prune_curve -- \
//!     CHECKPOINT CALIBRATION.tsv JUDGE.tsv [--int8] [--weights] [--refit [--select] [--damping X]] [--max-len 64] HEADS:FFN...
//! ```
//!
//! Prints one line per configuration: heads removed, FFN fraction removed, parameters
//! (and the fraction removed), file bytes, correct / rows, accuracy, agreement with the
//! unpruned model at the same precision.

use albert_convert::calibrate::{self, Sample};
use albert_convert::{convert, corpus, load, names, pack, prune};
use albert_edge::tokenizer::Tokenizer;
use albert_edge::{Model, Precision};
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;

fn labels(path: &PathBuf) -> Result<Vec<usize>> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty")?.split('\t').collect();
    let col = header
        .iter()
        .position(|h| h.trim() == "label")
        .context("no label column")?;
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split('\t')
                .nth(col)
                .and_then(|v| v.trim().parse().ok())
                .context("bad label")
        })
        .collect()
}

fn predict(bytes: &[u8], samples: &[Sample]) -> Result<Vec<usize>> {
    let model = Model::from_vec(bytes).map_err(|e| anyhow!("{e}"))?;
    let longest = samples.iter().map(|s| s.ids.len()).max().unwrap_or(1);
    let mut ws = model.new_workspace(longest, 1);
    samples
        .iter()
        .map(|s| {
            let input = s.input();
            let out = model.run(&mut ws, &input).map_err(|e| anyhow!("{e}"))?;
            let l = &out.get("logits").context("no logits")?.data;
            Ok(l.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |x| x.0))
        })
        .collect()
}

fn prune_damping() -> f64 {
    albert_convert::refit::DAMPING
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(ckpt), Some(calib), Some(judge)) = (args.next(), args.next(), args.next()) else {
        bail!("usage: prune_curve CHECKPOINT CALIBRATION.tsv JUDGE.tsv [--int8] [--weights] [--refit [--select] [--damping X]] [--max-len N] HEADS:FFN...");
    };
    let (mut precision, mut weights, mut max_len) = (Precision::F32, false, 64usize);
    let (mut refit, mut select, mut damping) = (false, false, prune_damping());
    let mut configs = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--int8" => precision = Precision::Int8,
            "--weights" => weights = true,
            "--refit" => refit = true,
            "--select" => select = true,
            "--damping" => damping = args.next().context("--damping X")?.parse()?,
            "--max-len" => max_len = args.next().context("--max-len N")?.parse()?,
            c => {
                let (h, f) = c.split_once(':').context("configurations are HEADS:FFN")?;
                configs.push((h.parse::<usize>()?, f.parse::<f64>()?));
            }
        }
    }
    let raw = load::safetensors::load_dir(&PathBuf::from(&ckpt))?;
    let m = names::interpret(&raw)?;
    let section = convert::tokenizer_section(&raw, m.arch.vocab)?.context("no tokenizer")?;
    let tok = Tokenizer::from_section(&section).map_err(|e| anyhow!("{e}"))?;
    let calib = corpus::tokenize(
        &tok,
        &corpus::read(calib.as_ref())?,
        Some(m.arch.max_positions),
    )?;
    let judge_path = PathBuf::from(&judge);
    let judged = corpus::tokenize(&tok, &corpus::read(&judge_path)?, Some(max_len))?;
    let gold = labels(&judge_path)?;
    let t0 = std::time::Instant::now();
    let (imp, moments) = if weights {
        (prune::weight_importance(&m), Vec::new())
    } else {
        let rows = if refit { prune::MOMENT_ROWS } else { 0 };
        prune::activation_calibration(&m, &calib, rows, |_| {})?
    };
    eprintln!("importance in {:.1} s", t0.elapsed().as_secs_f64());
    let refit = refit.then_some(prune::Refit {
        moments: &moments,
        damping,
        select,
    });
    let pack_it = |m: &albert_convert::model::Albert| -> Result<Vec<u8>> {
        let stats = if precision == Precision::Int8 {
            Some(calibrate::collect(m, &calib, |_| {})?)
        } else {
            None
        };
        Ok(pack::pack(m, precision, None, stats.as_ref())?.bytes)
    };
    let base_bytes = pack_it(&m)?;
    let base = predict(&base_bytes, &judged)?;
    let p0 = m.parameter_count();
    println!(
        "# {ckpt} {} importance={}{} judged on {} rows of {judge}",
        precision.name(),
        if weights { "weights" } else { "activations" },
        match refit {
            Some(r) if r.select => format!(" refit(damping {damping}) select-by-refit"),
            Some(_) => format!(" refit(damping {damping})"),
            None => String::new(),
        },
        judged.len()
    );
    println!("heads ffn   params   removed  file_bytes  correct  accuracy  agreement");
    for (h, f) in configs {
        let mut p = m.clone();
        let t = std::time::Instant::now();
        prune::apply_compensated(&mut p, &imp, None, h, f, refit)?;
        eprintln!("pruned {h}:{f} in {:.1} s", t.elapsed().as_secs_f64());
        let bytes = if (h, f) == (0, 0.0) {
            base_bytes.clone()
        } else {
            pack_it(&p)?
        };
        let pred = predict(&bytes, &judged)?;
        let correct = pred.iter().zip(&gold).filter(|(a, b)| a == b).count();
        let agree = pred.iter().zip(&base).filter(|(a, b)| a == b).count();
        println!(
            "{h:>5} {f:<4} {:>9} {:>7.1}% {:>11} {:>4}/{} {:>8.4} {:>9.4}",
            p.parameter_count(),
            100.0 * (1.0 - p.parameter_count() as f64 / p0 as f64),
            bytes.len(),
            correct,
            gold.len(),
            correct as f64 / gold.len() as f64,
            agree as f64 / gold.len() as f64
        );
    }
    Ok(())
}
