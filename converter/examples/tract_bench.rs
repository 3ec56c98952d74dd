//! Times tract on an ONNX export, for `benches/compare` (not part of the converter CLI).
//!
//! `cargo run --release -p albert-convert --example tract_bench -- model.onnx --seq 32 --runs 20`
//! prints one JSON line: `engine`, `seq`, `runs`, `median_ms`, `p90_ms`, `peak_rss_bytes`.
//! Inputs are batch 1 with the same ids as `albert-edge bench` (`[2, 5 + 131 i mod vocab]`),
//! an all-ones mask and zero token types; the graph is specialized to `[1, seq]` and
//! optimized once before timing.

use anyhow::{anyhow, bail, Context, Result};
use std::time::Instant;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

fn arg(args: &[String], name: &str, default: usize) -> Result<usize> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .ok_or_else(|| anyhow!("{name} needs a value"))?
            .parse()
            .with_context(|| name.to_string()),
        None => Ok(default),
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), 0 elsewhere.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first().filter(|a| !a.starts_with("--")) else {
        bail!("usage: tract_bench model.onnx [--seq N] [--runs R] [--warmup W] [--vocab V]");
    };
    let (seq, runs) = (arg(&args, "--seq", 32)?, arg(&args, "--runs", 20)?);
    let (warmup, vocab) = (
        arg(&args, "--warmup", 3)?,
        arg(&args, "--vocab", 8000)? as i64,
    );
    if seq == 0 || runs == 0 {
        bail!("--seq and --runs must be at least 1");
    }
    let mut model = tract_onnx::onnx().model_for_path(path)?;
    let names: Vec<String> = model
        .input_outlets()?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    // Shapes declared for intermediate values (ONNX Runtime's quantizer writes some with
    // symbolic dims) can conflict with the concrete input shape: let tract infer them.
    let input_nodes: Vec<usize> = model.input_outlets()?.iter().map(|o| o.node).collect();
    for id in 0..model.nodes().len() {
        if input_nodes.contains(&id) {
            continue;
        }
        for slot in 0..model.node(id).outputs.len() {
            let outlet = OutletId::new(id, slot);
            if model.outlet_fact(outlet)?.value.concretize().is_none() {
                model.set_outlet_fact(outlet, InferenceFact::default())?;
            }
        }
    }
    let mut inputs = TVec::new();
    for (ix, name) in names.iter().enumerate() {
        let data: Vec<i64> = (0..seq as i64)
            .map(|i| match name.as_str() {
                "input_ids" if i == 0 => 2,
                "input_ids" => (5 + i * 131) % vocab,
                "attention_mask" => 1,
                _ => 0,
            })
            .collect();
        model.set_input_fact(ix, InferenceFact::dt_shape(i64::datum_type(), [1, seq]))?;
        inputs.push(Tensor::from_shape(&[1, seq], &data)?.into_tvalue());
    }
    let plan = model.into_optimized()?.into_runnable()?;
    for _ in 0..warmup {
        plan.run(inputs.clone())?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = plan.run(inputs.clone())?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(out.len());
    }
    times.sort_by(f64::total_cmp);
    let p90 = times[((times.len() * 9).div_ceil(10)).saturating_sub(1)];
    println!(
        "{{\"engine\":\"tract\",\"seq\":{seq},\"runs\":{runs},\"threads\":1,\"median_ms\":{},\"p90_ms\":{p90},\"peak_rss_bytes\":{}}}",
        times[times.len() / 2],
        peak_rss_bytes()
    );
    Ok(())
}
