//! End-to-end `Model::run` / `Model::run_with` and load-time benchmarks on the
//! albert-base-shaped SST-2 model (`../shared/models/sst2-base`, converted here),
//! f32 and int8, batch 1, sequence lengths 8, 32 and 128, on 1 and 2 threads
//! (ids `1t/<seq>` use `run`, `2t/<seq>` use `run_with` on a 2-thread pool).
//!
//! `cargo bench --bench run` (set `ALBERT_EDGE_SHARED` if `../shared` is elsewhere;
//! filter with e.g. `cargo bench --bench run -- int8/avx2/2t`).

use albert_convert::{convert, load};
use albert_edge::{Input, Model, Precision, ThreadPool};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::path::PathBuf;

fn shared() -> PathBuf {
    std::env::var_os("ALBERT_EDGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")))
}

fn model_bytes(precision: Precision) -> Vec<u8> {
    let raw = load::safetensors::load_dir(&shared().join("models/sst2-base"))
        .expect("sst2-base checkpoint");
    convert::convert(&raw, precision).expect("convert").0
}

fn bench_run(c: &mut Criterion) {
    let pool = ThreadPool::new(2).expect("2-thread pool");
    for precision in [Precision::Int8, Precision::F32] {
        let bytes = model_bytes(precision);
        let model = Model::from_vec(&bytes).unwrap();
        let mut g = c.benchmark_group(format!(
            "run/sst2-base/{}/{}",
            precision.name(),
            model.kernels().tier.name()
        ));
        g.sample_size(10);
        for threads in [1usize, 2] {
            for seq in [8usize, 32, 128] {
                let ids: Vec<u32> = (0..seq as u32)
                    .map(|i| if i == 0 { 2 } else { 5 + (i * 131) % 7990 })
                    .collect();
                let mut ws = model.new_workspace_threads(seq, 1, threads);
                let id = BenchmarkId::new(format!("{threads}t"), seq);
                g.bench_with_input(id, &seq, |b, _| {
                    b.iter(|| {
                        let input = Input::single(black_box(&ids));
                        let out = if threads == 1 {
                            model.run(&mut ws, &input)
                        } else {
                            model.run_with(&pool, &mut ws, &input)
                        };
                        black_box(out.unwrap().get("logits").unwrap().data[0]);
                    })
                });
            }
        }
        g.finish();
    }
}

fn bench_load(c: &mut Criterion) {
    let bytes = model_bytes(Precision::Int8);
    let dir = tempfile_dir();
    let path = dir.join("sst2-base.albert");
    std::fs::write(&path, &bytes).unwrap();
    let mut g = c.benchmark_group("load/sst2-base/int8");
    g.bench_function("open (mmap + validate)", |b| {
        b.iter(|| black_box(Model::open(&path).unwrap().config().hidden_size))
    });
    g.bench_function("from_vec (copy + validate)", |b| {
        b.iter(|| black_box(Model::from_vec(&bytes).unwrap().config().hidden_size))
    });
    g.finish();
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("albert-edge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

criterion_group!(benches, bench_run, bench_load);
criterion_main!(benches);
