//! Multi-threaded runs (`Model::run_with` on a `ThreadPool`): bit-identical to
//! the single-threaded `run` for any thread count, allocation-free once the
//! pool exists, and a panicking job neither deadlocks nor breaks the pool.
//!
//! The allocation count is global (pool workers are other threads), so every
//! test in this file holds `SERIAL` and they run one at a time.

mod common;

use albert_edge::workspace::COLUMN_SPLIT_ROWS;
use albert_edge::{Input, Kernels, Model, Precision, RunError, ThreadPool};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One checkpoint per head, plus layer groups and E == H.
const CKPTS: &[&str] = &[
    "tiny-base/base",
    "tiny-base/seqcls2",
    "tiny-base/tokcls5",
    "tiny-base/qa",
    "tiny-base/mlm",
    "tiny-groups/seqcls2",
    "tiny-e-eq-h/base",
];

/// An input: `(batch, seq, ids, mask, token types)`.
type Case = (usize, usize, Vec<u32>, Option<Vec<u32>>, Option<Vec<u32>>);

/// seq 1, 7, 33, 136 (batch 1) and a padded pair batch of 2 x 33: runs of
/// few rows split linear layers by output columns, the 136-token one by rows
/// (`COLUMN_SPLIT_ROWS`).
fn cases() -> Vec<Case> {
    let ids = |n: usize, salt: u32| -> Vec<u32> {
        (0..n as u32)
            .map(|i| {
                if i == 0 {
                    2
                } else {
                    5 + (i * 131 + salt) % 7990
                }
            })
            .collect()
    };
    let mut v: Vec<Case> = [1usize, 7, 33, 136]
        .into_iter()
        .map(|s| (1, s, ids(s, 0), None, None))
        .collect();
    let s = 33;
    let batch_ids: Vec<u32> = ids(s, 0).into_iter().chain(ids(s, 17)).collect();
    let mask: Vec<u32> = (0..2 * s).map(|i| u32::from(i < s || i % s < 20)).collect();
    let types: Vec<u32> = (0..2 * s).map(|i| u32::from(i % s >= 12)).collect();
    v.push((2, s, batch_ids, Some(mask), Some(types)));
    v
}

fn input(c: &Case) -> Input<'_> {
    Input {
        batch: c.0,
        seq: c.1,
        input_ids: &c.2,
        attention_mask: c.3.as_deref(),
        token_type_ids: c.4.as_deref(),
    }
}

/// Every output's name and bit pattern.
fn bits(out: &albert_edge::Outputs<'_>) -> Vec<(&'static str, Vec<u32>)> {
    out.iter()
        .map(|o| (o.name, o.data.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn outputs_are_bit_identical_for_1_to_4_threads() {
    let _g = serial();
    let pools: Vec<ThreadPool> = (1..=4).map(|n| ThreadPool::new(n).unwrap()).collect();
    let cases = cases();
    let mut checked = 0;
    for ckpt in CKPTS {
        for precision in [Precision::F32, Precision::Int8] {
            let bytes = common::convert_fixture(ckpt, precision);
            let mut model = Model::from_vec(&bytes).unwrap();
            for kernels in Kernels::available() {
                model.set_kernels(kernels);
                let tier = kernels.tier.name();
                for case in &cases {
                    let inp = input(case);
                    let mut ws = model.new_workspace(case.1, case.0);
                    let want = bits(&model.run(&mut ws, &inp).unwrap());
                    assert!(!want.is_empty());
                    // The long case is there for the row split of threaded
                    // runs: 2 and 4 threads only, and no second full pass
                    // (it is the costliest case under emulation).
                    let long = case.0 * case.1 > COLUMN_SPLIT_ROWS;
                    // `run` skips what no output reads (sequence classification:
                    // all but the first token in the last layer); a traced run
                    // computes everything. Same outputs, bit for bit.
                    if !long {
                        let full = bits(&model.run_traced(&mut ws, &inp, &mut |_, _| {}).unwrap());
                        assert!(
                            full == want,
                            "{ckpt} {precision:?} {tier} batch {} seq {}: run differs from the full pass",
                            case.0,
                            case.1
                        );
                    }
                    for pool in pools.iter().filter(|p| !long || p.threads() % 2 == 0) {
                        let n = pool.threads();
                        let mut ws = model.new_workspace_threads(case.1, case.0, n);
                        let got = bits(&model.run_with(pool, &mut ws, &inp).unwrap());
                        assert!(
                            got == want,
                            "{ckpt} {precision:?} {tier} batch {} seq {}: {n} threads differ from run",
                            case.0,
                            case.1
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    eprintln!(
        "compared {checked} threaded runs; tiers: {:?}",
        Kernels::available()
            .map(|k| k.tier.name())
            .collect::<Vec<_>>()
    );
}

#[test]
fn threaded_run_allocates_nothing_once_the_pool_exists() {
    let _g = serial();
    let cases = cases();
    for ckpt in ["tiny-base/seqcls2", "tiny-base/mlm"] {
        for precision in [Precision::F32, Precision::Int8] {
            let bytes = common::convert_fixture(ckpt, precision);
            let model = Model::from_vec(&bytes).unwrap();
            for threads in [2, 3] {
                let pool = ThreadPool::new(threads).unwrap();
                // Count this thread and every worker of the pool: the threads
                // a run uses.
                let marked = std::sync::atomic::AtomicUsize::new(0);
                pool.broadcast(&|_| {
                    counting_alloc::count_this_thread();
                    marked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
                assert_eq!(marked.into_inner(), threads);
                let mut ws = model.new_workspace_threads(136, 2, threads);
                for case in &cases {
                    let inp = input(case);
                    // Twice: the first run on a fresh pool must not allocate either.
                    for _ in 0..2 {
                        let before = counting_alloc::allocations();
                        let out = model.run_with(&pool, &mut ws, &inp).unwrap();
                        let n = out.iter().count();
                        let after = counting_alloc::allocations();
                        assert_eq!(
                            after - before,
                            0,
                            "{ckpt} {precision:?} {threads} threads seq {}: run_with allocated",
                            case.1
                        );
                        assert!(n >= 1);
                    }
                }
            }
        }
    }
}

#[test]
fn workspace_for_fewer_threads_is_a_clear_error() {
    let _g = serial();
    let bytes = common::convert_fixture("tiny-base/seqcls2", Precision::Int8);
    let model = Model::from_vec(&bytes).unwrap();
    assert_eq!(
        model.workspace_len_threads(33, 2, 1),
        model.workspace_len(33, 2)
    );
    assert_eq!(
        model.workspace_len_threads(33, 2, 0),
        model.workspace_len(33, 2)
    );
    let need2 = model.workspace_len_threads(33, 1, 2);
    assert!(need2 > model.workspace_len(33, 1));
    let pool = ThreadPool::new(2).unwrap();
    let ids: Vec<u32> = (0..33).map(|i| 2 + i).collect();
    let mut ws = model.new_workspace(33, 1);
    let err = model
        .run_with(&pool, &mut ws, &Input::single(&ids))
        .unwrap_err();
    assert_eq!(
        err,
        RunError::WorkspaceTooSmall {
            needed: need2,
            got: ws.len()
        }
    );
    // Exactly `workspace_len_threads` bytes (at any alignment) is enough; one
    // byte less is not.
    let mut buf = vec![0u8; need2 + 1];
    for off in [0, 1] {
        let mut ws = albert_edge::Workspace::from_bytes(&mut buf[off..off + need2]);
        assert!(model.run_with(&pool, &mut ws, &Input::single(&ids)).is_ok());
        let mut ws = albert_edge::Workspace::from_bytes(&mut buf[off..off + need2 - 1]);
        assert!(matches!(
            model.run_with(&pool, &mut ws, &Input::single(&ids)),
            Err(RunError::WorkspaceTooSmall { .. })
        ));
    }
    // Bad input is the same error as on one thread.
    let mut ws = model.new_workspace_threads(33, 1, 2);
    assert!(matches!(
        model.run_with(&pool, &mut ws, &Input::single(&[9_999_999])),
        Err(RunError::TokenOutOfRange { .. })
    ));
}

#[test]
fn broadcast_runs_every_index_once_and_survives_panics() {
    let _g = serial();
    let pool = ThreadPool::new(3).unwrap();
    assert_eq!(pool.threads(), 3);
    let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
    pool.broadcast(&|i| {
        hits[i].fetch_add(1, Ordering::SeqCst);
    });
    assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));

    // A worker's panic reaches the caller once every thread has finished ...
    let finished = AtomicUsize::new(0);
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        pool.broadcast(&|i| {
            if i == 2 {
                panic!("job panics on a worker");
            }
            finished.fetch_add(1, Ordering::SeqCst);
        })
    }));
    assert!(r.is_err());
    assert_eq!(finished.load(Ordering::SeqCst), 2);
    // ... and so does the calling thread's own; the workers still finish.
    let finished = AtomicUsize::new(0);
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        pool.broadcast(&|i| {
            if i == 0 {
                panic!("job panics on the caller");
            }
            finished.fetch_add(1, Ordering::SeqCst);
        })
    }));
    assert!(r.is_err());
    assert_eq!(finished.load(Ordering::SeqCst), 2);

    // The pool still works afterwards.
    let mut items = [0u32; 10];
    pool.for_each_mut(&mut items, &|v| *v += 1);
    assert_eq!(items, [1; 10]);
    let total = AtomicUsize::new(0);
    pool.broadcast(&|i| {
        total.fetch_add(i + 1, Ordering::SeqCst);
    });
    assert_eq!(total.load(Ordering::SeqCst), 6);
}

#[test]
fn one_pool_shared_by_concurrent_runs() {
    let _g = serial();
    let bytes = common::convert_fixture("tiny-base/seqcls2", Precision::Int8);
    let model = Model::from_vec(&bytes).unwrap();
    let pool = ThreadPool::new(2).unwrap();
    let cases = cases();
    let want: Vec<_> = cases
        .iter()
        .map(|c| {
            let mut ws = model.new_workspace(c.1, c.0);
            bits(&model.run(&mut ws, &input(c)).unwrap())
        })
        .collect();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let mut ws = model.new_workspace_threads(136, 2, 2);
                for _ in 0..5 {
                    for (c, w) in cases.iter().zip(&want) {
                        let got = bits(&model.run_with(&pool, &mut ws, &input(c)).unwrap());
                        assert!(&got == w);
                    }
                }
            });
        }
    });
}

#[test]
fn dropping_an_idle_or_fresh_pool_joins_its_workers() {
    let _g = serial();
    for n in [0, 1, 2, 5] {
        let pool = ThreadPool::new(n).unwrap();
        assert_eq!(pool.threads(), n.max(1));
        drop(pool);
    }
}

/// The CLI, run through `$ALBERT_EDGE_TEST_RUNNER` when the tests run under emulation.
fn cli() -> std::process::Command {
    let exe = env!("CARGO_BIN_EXE_albert-edge");
    match std::env::var("ALBERT_EDGE_TEST_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut parts = runner.split_whitespace();
            let mut c = std::process::Command::new(parts.next().unwrap());
            c.args(parts).arg(exe);
            c
        }
        _ => std::process::Command::new(exe),
    }
}

fn cli_ok(args: &[&std::ffi::OsStr]) -> String {
    let out = cli().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cli_threads_flag_gives_the_same_output_and_is_reported_by_bench() {
    let _g = serial();
    let dir = std::env::temp_dir().join(format!("albert-edge-threads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("mlm.albert");
    std::fs::write(
        &model,
        common::convert_fixture("tiny-base/mlm", Precision::Int8),
    )
    .unwrap();
    let (_, reference) = common::reference("tiny-base/mlm");
    let input = dir.join("case.json");
    let case = &reference["cases"][1];
    std::fs::write(&input, serde_json::to_string(case).unwrap()).unwrap();
    let run = |threads: &str| {
        cli_ok(&[
            "run".as_ref(),
            model.as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
            "--threads".as_ref(),
            threads.as_ref(),
        ])
    };
    let one = run("1");
    assert!(one.contains("\"logits\""));
    for t in ["2", "3", "0"] {
        assert_eq!(run(t), one, "--threads {t}");
    }
    let bench = |threads: &str| -> serde_json::Value {
        let out = cli_ok(&[
            "bench".as_ref(),
            model.as_os_str(),
            "--seq".as_ref(),
            "20".as_ref(),
            "--runs".as_ref(),
            "2".as_ref(),
            "--warmup".as_ref(),
            "0".as_ref(),
            "--threads".as_ref(),
            threads.as_ref(),
            "--json".as_ref(),
        ]);
        serde_json::from_str(&out).unwrap()
    };
    assert_eq!(bench("2")["threads"], 2);
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(bench("0")["threads"], all as u64);
    for key in [
        "median_ms",
        "p90_ms",
        "runs",
        "threads",
        "tier",
        "peak_rss_bytes",
    ] {
        assert!(!bench("1")[key].is_null(), "{key}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Small deterministic generator for kernel inputs.
fn lcg_values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The contract threaded runs rely on, per kernel tier: a row's result does
/// not depend on the other rows passed in the same call (float GEMM), and a
/// query row's attention output does not depend on where the query range
/// starts, for ranges split at multiples of `ATTN_ROWS` (how chunks split it).
/// The integer kernels get this from matching the scalar reference bit for bit
/// (`tests/kernels.rs`).
#[test]
fn kernels_give_the_same_rows_whatever_the_split() {
    use albert_edge::kernels::{AttentionArgs, Epilogue};
    use albert_edge::workspace::ATTN_ROWS;
    let _g = serial();
    for kern in Kernels::available() {
        let tier = kern.tier.name();
        let (k, n) = (37, 35);
        let w = lcg_values(n * k, 1);
        let bias = lcg_values(n, 2);
        for m in 1..=13 {
            let a = lcg_values(m * k, 3 + m as u64);
            let full = {
                let mut out = vec![0.25f32; m * n];
                (kern.gemm_f32)(&a, k, m, &w, n, k, &bias, &mut out, n, Epilogue::Accumulate);
                out
            };
            for split in 1..m {
                let mut out = vec![0.25f32; m * n];
                let (lo, hi) = out.split_at_mut(split * n);
                (kern.gemm_f32)(&a, k, split, &w, n, k, &bias, lo, n, Epilogue::Accumulate);
                (kern.gemm_f32)(
                    &a[split * k..],
                    k,
                    m - split,
                    &w,
                    n,
                    k,
                    &bias,
                    hi,
                    n,
                    Epilogue::Accumulate,
                );
                assert!(
                    bits_of(&out) == bits_of(&full),
                    "{tier} gemm_f32: {m} rows split at {split}"
                );
            }
        }
        let (seq, heads, d) = (3 * ATTN_ROWS - 3, 3, 12);
        let ld = 3 * heads * d;
        let qkv = lcg_values(seq * ld, 9);
        let mask: Vec<f32> = (0..seq)
            .map(|j| if j % 5 == 4 { f32::MIN } else { 0.0 })
            .collect();
        let attend = |q_begin: usize, q_end: usize| {
            let args = AttentionArgs {
                qkv: &qkv,
                ld_qkv: ld,
                seq,
                q_begin,
                q_end,
                heads,
                head_dim: d,
                scale: 1.0 / (d as f32).sqrt(),
                mask_bias: &mask,
                ld_ctx: heads * d,
            };
            let mut scores = vec![0.0f32; ATTN_ROWS * seq];
            let mut ctx = vec![0.0f32; (q_end - q_begin) * heads * d];
            (kern.attention)(&args, &mut scores, &mut ctx);
            ctx
        };
        let full = attend(0, seq);
        let mut parts = Vec::new();
        for b in (0..seq).step_by(ATTN_ROWS) {
            parts.extend(attend(b, (b + ATTN_ROWS).min(seq)));
        }
        assert!(
            bits_of(&parts) == bits_of(&full),
            "{tier} attention: query rows split at multiples of {ATTN_ROWS}"
        );
    }
}

fn bits_of(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
