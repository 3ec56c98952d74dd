//! Tokenizer throughput on SST-2 dev sentences, and its cost relative to one int8
//! inference of the bundled demo model (`models/sst2-tiny.albert`) at the same length.
//!
//! `cargo bench --bench tokenizer` prints criterion's figures (tokens per second for the
//! whole dev set through the allocation-free `encode_into`), then a table: for each length
//! bucket, the median time to tokenize one sentence, the median time of one `run` on those
//! ids, and the ratio (the target is under 5%). Without `../shared` (or
//! `ALBERT_EDGE_SHARED`), a few built-in sentences stand in for the dev set.

use albert_edge::{Input, Model};
use criterion::{Criterion, Throughput};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/sst2-tiny.albert");

fn sentences() -> Vec<String> {
    let shared = std::env::var_os("ALBERT_EDGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")));
    match std::fs::read_to_string(shared.join("data/sst2/dev.tsv")) {
        Ok(tsv) => tsv
            .lines()
            .skip(1)
            .filter_map(|l| l.split('\t').next())
            .map(String::from)
            .collect(),
        Err(_) => [
            "a gorgeous, witty, seductive movie.",
            "the worst movie i have ever seen, boring and stupid.",
            "one of the best films of the year: moving, funny and beautifully acted, \
             with a score that lingers long after the credits roll.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bytes = std::fs::read(MODEL).expect("models/sst2-tiny.albert");
    let model = Model::from_vec(&bytes).expect("load the demo model");
    let tok = model.tokenizer().expect("the demo model has a tokenizer");
    let texts = sentences();
    let longest = texts.iter().map(|t| t.len()).max().unwrap_or(1);
    let mut scratch = vec![0u8; tok.scratch_len(longest)];
    let cap = longest * 12 + 3;
    let (mut ids, mut types) = (vec![0u32; cap], vec![0u32; cap]);
    let total_tokens: usize = texts
        .iter()
        .map(|t| {
            tok.encode_into(t, None, None, &mut scratch, &mut ids, &mut types)
                .unwrap()
        })
        .sum();

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("tokenize/sst2-dev");
    g.throughput(Throughput::Elements(total_tokens as u64));
    g.bench_function(
        format!("{} sentences, {total_tokens} tokens", texts.len()),
        |b| {
            b.iter(|| {
                for t in &texts {
                    let n = tok
                        .encode_into(black_box(t), None, None, &mut scratch, &mut ids, &mut types)
                        .unwrap();
                    black_box(ids[n - 1]);
                }
            })
        },
    );
    g.finish();
    c.final_summary();

    // Per sentence: tokenization vs one inference on the same ids, bucketed by length.
    let max_seq = 128;
    let mut ws = model.new_workspace(max_seq, 1);
    let buckets = [(1usize, 16usize), (17, 32), (33, 64), (65, 128)];
    let mut rows = vec![(Vec::new(), Vec::new()); buckets.len()];
    let reps = 5;
    for t in &texts {
        let n = tok
            .encode_into(t, None, Some(max_seq), &mut scratch, &mut ids, &mut types)
            .unwrap();
        let Some(b) = buckets.iter().position(|&(lo, hi)| (lo..=hi).contains(&n)) else {
            continue;
        };
        let mut tt = Vec::new();
        let mut rt = Vec::new();
        for _ in 0..reps {
            let start = Instant::now();
            let m = tok
                .encode_into(
                    black_box(t),
                    None,
                    Some(max_seq),
                    &mut scratch,
                    &mut ids,
                    &mut types,
                )
                .unwrap();
            tt.push(start.elapsed().as_secs_f64());
            let input = Input {
                batch: 1,
                seq: m,
                input_ids: &ids[..m],
                attention_mask: None,
                token_type_ids: Some(&types[..m]),
            };
            let start = Instant::now();
            let out = model.run(&mut ws, &input).unwrap();
            black_box(out.get("logits").unwrap().data[0]);
            rt.push(start.elapsed().as_secs_f64());
        }
        rows[b].0.push(median(tt));
        rows[b].1.push(median(rt));
    }
    println!(
        "\ntokenize vs run (int8 {}, tier {}, one thread), per sentence, medians:",
        MODEL.rsplit('/').next().unwrap_or(MODEL),
        model.kernels().tier.name()
    );
    println!(
        "{:>10} {:>10} {:>14} {:>12} {:>8}",
        "tokens", "sentences", "tokenize_us", "run_us", "ratio"
    );
    for (&(lo, hi), (tt, rt)) in buckets.iter().zip(rows) {
        if tt.is_empty() {
            continue;
        }
        let n = tt.len();
        let (t, r) = (median(tt) * 1e6, median(rt) * 1e6);
        println!(
            "{:>10} {n:>10} {t:>14.1} {r:>12.1} {:>7.2}%",
            format!("{lo}-{hi}"),
            100.0 * t / r
        );
    }
}
