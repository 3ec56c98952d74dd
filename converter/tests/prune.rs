//! Pruning invariants on the fixtures.

use albert_convert::{calibrate, convert, load, names, pack, prune, refit};
use albert_edge::{Input, Model, Precision};

mod common;
use common::shared;

fn albert(ckpt: &str) -> albert_convert::model::Albert {
    let raw = load::safetensors::load_dir(&shared().join("fixtures").join(ckpt)).unwrap();
    names::interpret(&raw).unwrap()
}

fn logits(m: &albert_convert::model::Albert, ids: &[u32]) -> Vec<f32> {
    let bytes = pack::pack(m, Precision::F32, None, None).unwrap().bytes;
    let model = Model::from_vec(&bytes).unwrap();
    let mut ws = model.new_workspace(ids.len(), 1);
    model
        .run(&mut ws, &Input::single(ids))
        .unwrap()
        .get("logits")
        .unwrap()
        .data
        .to_vec()
}

fn dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn pruning_nothing_is_bit_identical() {
    let m = albert("tiny-base/seqcls2");
    let mut p = m.clone();
    let imp = prune::weight_importance(&m);
    prune::apply(&mut p, &imp, 0, 0.0).unwrap();
    assert_eq!(
        pack::pack(&m, Precision::Int8, None, None).unwrap().bytes,
        pack::pack(&p, Precision::Int8, None, None).unwrap().bytes
    );
}

/// Importance from calibration on the reference sentences; the cost of removing
/// a head is measured on the same sentences (as `--calibrate` does).
#[test]
fn least_important_head_costs_less_than_most_important() {
    let ckpt = "tiny-base/seqcls2";
    let m = albert(ckpt);
    let samples = reference_samples(ckpt);
    let imp = prune::activation_importance(&m, &samples, |_| {}).unwrap();
    let scores = &imp.heads[0];
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (least, most) = (order[0], *order.last().unwrap());
    let without = |h: usize| {
        let mut p = m.clone();
        let keep: Vec<usize> = (0..m.arch.heads).filter(|&x| x != h).collect();
        prune::prune_heads(&mut p, &[keep]).unwrap();
        assert_eq!(p.arch.heads, m.arch.heads - 1);
        p
    };
    let (pl, pm) = (without(least), without(most));
    let (mut d_least, mut d_most) = (0f64, 0f64);
    for s in &samples {
        let base = logits(&m, &s.ids);
        d_least += dist(&base, &logits(&pl, &s.ids));
        d_most += dist(&base, &logits(&pm, &s.ids));
    }
    println!("scores {scores:?}: removing head {least} (least important) moves logits by {d_least:.5} in total; head {most} (most) by {d_most:.5}");
    assert!(d_least < d_most);
}

#[test]
fn pruned_models_shrink_and_still_run() {
    let m = albert("tiny-groups/seqcls2");
    let before = pack::pack(&m, Precision::Int8, None, None).unwrap();
    let mut p = m.clone();
    let imp = prune::weight_importance(&m);
    prune::apply(&mut p, &imp, 1, 0.5).unwrap();
    assert_eq!(p.arch.heads, 3);
    assert_eq!(p.arch.intermediate, 64);
    assert!(p.parameter_count() < m.parameter_count());
    let (bytes, report) = convert::finish(&p, Precision::Int8, None, 0, None).unwrap();
    assert!(bytes.len() < before.bytes.len());
    let model = Model::from_vec(&bytes).unwrap();
    assert_eq!(model.config().num_heads, 3);
    assert!(report.workspace_bytes_max_seq > 0);
    assert_finite_logits(&model);
    assert!(
        prune::apply(&mut p.clone(), &imp, 4, 0.0).is_err(),
        "removing every head must be refused"
    );
}

#[test]
fn fast_preset_scales_with_the_head_count() {
    use albert_convert::convert::{Heads, FAST};
    assert_eq!(FAST.options(12), (Heads::Count(2), 0.4));
    assert_eq!(FAST.options(4), (Heads::Count(1), 0.4));
    // Never every head: a one-head model keeps its head.
    assert_eq!(FAST.options(1), (Heads::Keep, 0.4));
}

#[test]
fn fast_preset_removes_a_quarter_of_the_parameters_where_the_ffn_allows() {
    use albert_convert::convert::{Heads, FAST};
    // The fixtures (mostly embeddings: the FFN cap binds) and the two SST-2 models
    // (albert-base shape: 2 heads and 40% reach it; sst2-tiny needs more FFN).
    let models = [
        "fixtures/tiny-base/seqcls2",
        "fixtures/tiny-groups/seqcls2",
        "models/sst2-base",
        "models/sst2-tiny",
    ];
    for ckpt in models {
        let raw = load::safetensors::load_dir(&shared().join(ckpt)).unwrap();
        let m = names::interpret(&raw).unwrap();
        if ckpt == "models/sst2-base" {
            assert_eq!(FAST.for_model(&m), (Heads::Count(2), 0.4));
        }
        let (heads, ffn) = FAST.for_model(&m);
        assert!((0.4..=0.75).contains(&ffn), "{ckpt}: {ffn}");
        let remove = match heads {
            Heads::Count(n) => n,
            Heads::Keep => 0,
            Heads::List(_) => unreachable!(),
        };
        let mut p = m.clone();
        prune::apply(&mut p, &prune::weight_importance(&m), remove, ffn).unwrap();
        let removed = 1.0 - p.parameter_count() as f64 / m.parameter_count() as f64;
        println!(
            "{ckpt}: {remove} heads, FFN {ffn:.4}: {:.2}% of the parameters",
            100.0 * removed
        );
        if ckpt.starts_with("models/") {
            assert!(removed >= 0.25, "{ckpt}");
        }
        // Either the quarter is reached or the FFN is at its cap.
        assert!(
            removed >= 0.25
                || ffn == (m.arch.intermediate as f64 * 0.75).floor() / m.arch.intermediate as f64
        );
        // And no more FFN than needed (beyond the 40% floor): one neuron fewer misses it.
        if ffn > 0.4 + 1.0 / m.arch.intermediate as f64 && removed >= 0.25 {
            let mut q = m.clone();
            let fewer = ffn - 1.0 / m.arch.intermediate as f64;
            prune::apply(&mut q, &prune::weight_importance(&m), remove, fewer).unwrap();
            assert!(1.0 - (q.parameter_count() as f64) / (m.parameter_count() as f64) < 0.25);
        }
    }
}

/// Deterministic pseudo-random numbers in [-1, 1).
fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// `rows` inputs of size `k` driven by 4 latent factors plus a little noise and a
/// non-zero mean: strongly correlated inputs, as activated FFN neurons are.
fn correlated_inputs(rows: usize, k: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = rng(99);
    let mix: Vec<f32> = (0..4 * k).map(|_| r()).collect();
    let mut r = rng(seed);
    (0..rows)
        .map(|_| {
            let u: Vec<f32> = (0..4).map(|_| r()).collect();
            (0..k)
                .map(|c| 0.5 + (0..4).map(|f| mix[f * k + c] * u[f]).sum::<f32>() + 0.05 * r())
                .collect()
        })
        .collect()
}

fn outputs(w: &[f32], b: &[f32], k: usize, xs: &[Vec<f32>]) -> Vec<Vec<f64>> {
    xs.iter()
        .map(|x| {
            b.iter()
                .enumerate()
                .map(|(o, &bo)| {
                    bo as f64
                        + w[o * k..(o + 1) * k]
                            .iter()
                            .zip(x)
                            .map(|(&a, &v)| a as f64 * v as f64)
                            .sum::<f64>()
                })
                .collect()
        })
        .collect()
}

fn mse(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let n: usize = a.iter().map(Vec::len).sum();
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q) * (p - q)))
        .sum::<f64>()
        / n as f64
}

fn moments(xs: &[Vec<f32>], k: usize) -> Vec<f64> {
    let mut m = refit::Moments::new(k);
    for x in xs {
        m.add(x);
    }
    assert_eq!(m.rows(), xs.len());
    m.finish().unwrap()
}

#[test]
fn refit_keeping_every_input_reproduces_the_linear() {
    let (k, out) = (24, 5);
    let xs = correlated_inputs(300, k, 1);
    let mut r = rng(7);
    let w: Vec<f32> = (0..out * k).map(|_| r()).collect();
    let b: Vec<f32> = (0..out).map(|_| r()).collect();
    // Inputs independent enough for an undamped solve: add strong per-input noise.
    let xs: Vec<Vec<f32>> = xs
        .iter()
        .map(|x| x.iter().map(|v| v + r()).collect())
        .collect();
    let g = moments(&xs, k);
    let all: Vec<usize> = (0..k).collect();
    let (mut w2, mut b2) = (w.clone(), b.clone());
    refit::refit(&mut w2, &mut b2, k, &g, &all, 0.0).unwrap();
    for (a, c) in w.iter().chain(&b).zip(w2.iter().chain(&b2)) {
        assert!((a - c).abs() < 1e-4, "{a} vs {c}");
    }
    // Its objective: nothing left to explain.
    let obj = refit::Objective::new(&w, &b, k, &g).unwrap();
    let energy = mse(&outputs(&w, &b, k, &xs), &vec![vec![0.0; out]; xs.len()]);
    assert!(obj.residual(&all, 0.0).unwrap() < 1e-9 * energy);
}

#[test]
fn refit_beats_plain_removal_and_mean_replacement_on_held_out_rows() {
    let (k, out) = (32, 6);
    let calib = correlated_inputs(2000, k, 1);
    let held_out = correlated_inputs(500, k, 2);
    let mut r = rng(3);
    let w: Vec<f32> = (0..out * k).map(|_| r()).collect();
    let b: Vec<f32> = (0..out).map(|_| r()).collect();
    let g = moments(&calib, k);
    let keep: Vec<usize> = (0..k).filter(|c| c % 2 == 0).collect();
    let want = outputs(&w, &b, k, &held_out);
    // Plain removal: the removed columns' weights are zeroed.
    let mut plain = w.clone();
    for o in 0..out {
        for c in (0..k).filter(|c| c % 2 == 1) {
            plain[o * k + c] = 0.0;
        }
    }
    let e_plain = mse(&outputs(&plain, &b, k, &held_out), &want);
    // Mean replacement: their mean contribution is folded into the bias.
    let mean: Vec<f64> = (0..k).map(|c| g[c * (k + 1) + k]).collect();
    let folded: Vec<f32> = (0..out)
        .map(|o| {
            b[o] + (0..k)
                .filter(|c| c % 2 == 1)
                .map(|c| w[o * k + c] as f64 * mean[c])
                .sum::<f64>() as f32
        })
        .collect();
    let e_mean = mse(&outputs(&plain, &folded, k, &held_out), &want);
    let (mut w2, mut b2) = (w.clone(), b.clone());
    refit::refit(&mut w2, &mut b2, k, &g, &keep, refit::DAMPING).unwrap();
    for o in 0..out {
        for c in (0..k).filter(|c| c % 2 == 1) {
            assert_eq!(w2[o * k + c], 0.0, "removed inputs must get zero weight");
        }
    }
    let e_refit = mse(&outputs(&w2, &b2, k, &held_out), &want);
    println!(
        "held-out output MSE: plain {e_plain:.5}, mean replacement {e_mean:.5}, refit {e_refit:.5}"
    );
    assert!(e_mean < e_plain);
    assert!(
        e_refit < 0.1 * e_mean,
        "refit {e_refit} vs mean replacement {e_mean}"
    );
    // Undamped, the objective is exactly the refit's error on the calibration rows.
    let (mut w3, mut b3) = (w.clone(), b.clone());
    refit::refit(&mut w3, &mut b3, k, &g, &keep, 0.0).unwrap();
    let obj = refit::Objective::new(&w, &b, k, &g).unwrap();
    let predicted = obj.residual(&keep, 0.0).unwrap() / out as f64;
    let measured = mse(&outputs(&w3, &b3, k, &calib), &outputs(&w, &b, k, &calib));
    assert!(
        (predicted - measured).abs() <= 1e-3 * measured + 1e-9,
        "predicted {predicted} vs measured {measured}"
    );
}

#[test]
fn obs_saliency_is_small_for_a_redundant_input() {
    // Input 1 is a copy of input 0; inputs 2.. are independent. Removing the copy
    // costs nothing once input 0 is refitted; its plain energy says otherwise.
    let k = 6;
    let mut r = rng(5);
    let xs: Vec<Vec<f32>> = (0..1000)
        .map(|_| {
            let mut x: Vec<f32> = (0..k).map(|_| r()).collect();
            x[1] = x[0];
            x
        })
        .collect();
    let g = moments(&xs, k);
    let w: Vec<f32> = vec![1.0; 2 * k];
    let b = vec![0.0; 2];
    let s = refit::obs_saliency(&w, &b, k, &g, 1e-6).unwrap();
    for j in 2..k {
        assert!(s[1] < 0.01 * s[j], "{s:?}");
        assert!(s[0] < 0.01 * s[j], "{s:?}");
    }
}

#[test]
fn refit_pruning_keeps_the_invariants() {
    let m = albert("tiny-groups/seqcls2");
    let samples = calibrate::synthetic(m.arch.vocab, m.arch.max_positions, m.arch.type_vocab);
    let (imp, moments) =
        prune::activation_calibration(&m, &samples, prune::MOMENT_ROWS, |_| {}).unwrap();
    assert_eq!(moments.len(), m.layers.len());
    for select in [false, true] {
        let refit = prune::Refit {
            moments: &moments,
            damping: refit::DAMPING,
            select,
        };
        // Nothing removed: bit-identical, refit or not.
        let mut p = m.clone();
        prune::apply_compensated(&mut p, &imp, None, 0, 0.0, Some(refit)).unwrap();
        assert_eq!(p, m);
        let mut p = m.clone();
        prune::apply_compensated(&mut p, &imp, None, 1, 0.5, Some(refit)).unwrap();
        assert_eq!((p.arch.heads, p.arch.intermediate), (3, 64));
        assert_eq!(p.parameter_count(), {
            let mut q = m.clone();
            prune::apply(&mut q, &imp, 1, 0.5).unwrap();
            q.parameter_count()
        });
        let (bytes, _) = convert::finish(&p, Precision::Int8, None, 0, None).unwrap();
        let model = Model::from_vec(&bytes).unwrap();
        assert_finite_logits(&model);
        // Without select, the same units go as without the refit; only the kept
        // output weights and biases change.
        if !select {
            let mut q = m.clone();
            prune::apply(&mut q, &imp, 1, 0.5).unwrap();
            for (a, b) in p.layers.iter().zip(&q.layers) {
                assert_eq!(
                    (&a.query, &a.key, &a.value, &a.ffn),
                    (&b.query, &b.key, &b.value, &b.ffn)
                );
                assert_ne!(a.ffn_output, b.ffn_output);
                assert_ne!(a.dense, b.dense);
            }
        }
    }
    // Moments for another layer count are refused.
    let mut p = m.clone();
    let bad = prune::Refit {
        moments: &moments[..0],
        damping: refit::DAMPING,
        select: false,
    };
    assert!(prune::apply_compensated(&mut p, &imp, None, 1, 0.5, Some(bad)).is_err());
}

/// On the fixture, with calibration on its reference sentences: the refit brings the
/// pruned model's logits closer to the unpruned ones than plain pruning.
#[test]
fn refit_moves_logits_less_than_plain_pruning() {
    let m = albert("tiny-base/seqcls2");
    let samples = reference_samples("tiny-base/seqcls2");
    let (imp, moments) =
        prune::activation_calibration(&m, &samples, prune::MOMENT_ROWS, |_| {}).unwrap();
    let mut plain = m.clone();
    prune::apply(&mut plain, &imp, 1, 0.5).unwrap();
    let mut fitted = m.clone();
    let refit = prune::Refit {
        moments: &moments,
        damping: refit::DAMPING,
        select: false,
    };
    prune::apply_compensated(&mut fitted, &imp, None, 1, 0.5, Some(refit)).unwrap();
    let (mut d_plain, mut d_refit) = (0f64, 0f64);
    for s in &samples {
        let base = logits(&m, &s.ids);
        d_plain += dist(&base, &logits(&plain, &s.ids));
        d_refit += dist(&base, &logits(&fitted, &s.ids));
    }
    println!("logit distance: plain pruning {d_plain:.5}, refit {d_refit:.5}");
    assert!(d_refit < d_plain);
}

/// A short sentence runs and gives finite logits.
fn assert_finite_logits(model: &Model<'_>) {
    let mut ws = model.new_workspace(5, 1);
    let out = model
        .run(&mut ws, &Input::single(&[2, 10, 11, 12, 3]))
        .unwrap();
    assert!(out
        .get("logits")
        .unwrap()
        .data
        .iter()
        .all(|v| v.is_finite()));
}

/// The reference sentences of a fixture, as calibration samples.
fn reference_samples(ckpt: &str) -> Vec<calibrate::Sample> {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared().join("fixtures").join(ckpt).join("reference.json"))
            .unwrap(),
    )
    .unwrap();
    let numbers = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    let mut samples = Vec::new();
    for case in reference["cases"].as_array().unwrap() {
        let shape: Vec<usize> = numbers(&case["input_ids"]["shape"])
            .into_iter()
            .map(|v| v as usize)
            .collect();
        let [ids, mask, types]: [Vec<u32>; 3] = ["input_ids", "attention_mask", "token_type_ids"]
            .map(|k| {
                numbers(&case[k]["data"])
                    .into_iter()
                    .map(|v| v as u32)
                    .collect()
            });
        for b in 0..shape[0] {
            let row = b * shape[1]..(b + 1) * shape[1];
            let n = mask[row.clone()].iter().filter(|&&v| v != 0).count();
            samples.push(calibrate::Sample {
                ids: ids[row.clone()][..n].to_vec(),
                types: types[row][..n].to_vec(),
            });
        }
    }
    samples
}
