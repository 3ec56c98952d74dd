//! `albert-edge bench`: latency of `run` on a batch-1 input.

use albert_edge::{Input, Model};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Model file.
    pub model: PathBuf,
    /// Tokens in the input sequence.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Timed runs (after warm-up).
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// One JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Peak resident set size of this process (Linux `VmHWM`), 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub fn bench(m: &Model<'_>, a: &BenchArgs) -> Result<(), String> {
    if a.seq == 0 || a.runs == 0 {
        return Err("--seq and --runs must be at least 1".into());
    }
    let v = m.config().vocab_size;
    let ids: Vec<u32> = (0..a.seq as u32)
        .map(|i| {
            if i == 0 {
                2.min(v - 1)
            } else {
                (5 + i * 131) % v
            }
        })
        .collect();
    let threads = crate::threads();
    let mut ws = crate::new_workspace(m, a.seq, 1);
    let input = Input::single(&ids);
    for _ in 0..a.warmup {
        crate::run_model(m, &mut ws, &input).map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(a.runs);
    for _ in 0..a.runs {
        let t0 = Instant::now();
        let out = crate::run_model(m, &mut ws, &input).map_err(|e| e.to_string())?;
        std::hint::black_box(out.iter().count());
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    let (median, p90) = (pct(0.5), pct(0.9));
    let rss = peak_rss_bytes();
    let tier = m.kernels().tier.name();
    if a.json {
        println!(
            "{}",
            json!({"median_ms": median, "p90_ms": p90, "min_ms": times[0], "runs": a.runs, "seq": a.seq, "threads": threads, "tier": tier, "precision": m.config().precision.name(), "peak_rss_bytes": rss})
        );
    } else {
        println!("seq {} | {} runs | {threads} thread(s) | median {median:.3} ms | p90 {p90:.3} ms | min {:.3} ms | {tier} | peak RSS {:.1} MB", a.seq, a.runs, times[0], rss as f64 / 1e6);
    }
    Ok(())
}
