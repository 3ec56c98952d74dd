//! Pruning invariants on the fixtures.

use albert_convert::{calibrate, convert, load, names, pack, prune};
use albert_edge::{Input, Model, Precision};
use std::path::PathBuf;

fn shared() -> PathBuf {
    let p = std::env::var_os("ALBERT_EDGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")));
    assert!(
        p.join("fixtures").is_dir(),
        "fixtures not found at {} (set ALBERT_EDGE_SHARED)",
        p.display()
    );
    p
}

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
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared().join("fixtures").join(ckpt).join("reference.json"))
            .unwrap(),
    )
    .unwrap();
    let mut samples = Vec::new();
    for case in reference["cases"].as_array().unwrap() {
        let shape: Vec<usize> = case["input_ids"]["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let ids: Vec<u32> = case["input_ids"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let mask: Vec<u32> = case["attention_mask"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let types: Vec<u32> = case["token_type_ids"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        for b in 0..shape[0] {
            let row = b * shape[1]..(b + 1) * shape[1];
            let n = mask[row.clone()].iter().filter(|&&v| v != 0).count();
            samples.push(calibrate::Sample {
                ids: ids[row.clone()][..n].to_vec(),
                types: types[row][..n].to_vec(),
            });
        }
    }
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
fn mean_replacement_folds_removed_means_into_the_biases() {
    use albert_edge::format::{Role, RoleKind};
    let m = albert("tiny-groups/seqcls2");
    let imp = prune::weight_importance(&m);
    // Without statistics it is plain pruning.
    let (mut a, mut b) = (m.clone(), m.clone());
    prune::apply(&mut a, &imp, 1, 0.5).unwrap();
    prune::apply_compensated(&mut b, &imp, None, 1, 0.5, None).unwrap();
    assert_eq!(a, b);
    // With statistics: bias += W[:, removed] . mean[removed], for heads and neurons.
    let samples = calibrate::synthetic(m.arch.vocab, m.arch.max_positions, m.arch.type_vocab);
    let stats = calibrate::collect(&m, &samples, |_| {}).unwrap();
    let mut c = m.clone();
    prune::apply_compensated(&mut c, &imp, None, 1, 0.5, Some(&stats)).unwrap();
    assert_eq!((c.arch.heads, c.arch.intermediate), (3, 64));
    let d = m.arch.head_dim;
    for (l, layer) in m.layers.iter().enumerate() {
        let kept_heads = prune::top(&imp.heads[l], 3);
        let kept_neurons = prune::top(&imp.neurons[l], 64);
        let ctx = stats
            .mean(Role::layer(RoleKind::AttnOutWeight, l as u32).code())
            .unwrap();
        let act = stats
            .mean(Role::layer(RoleKind::FfnOutWeight, l as u32).code())
            .unwrap();
        for o in 0..m.arch.hidden {
            let w = layer.dense.w.row(o);
            let shift: f64 = (0..m.arch.heads)
                .filter(|h| !kept_heads.contains(h))
                .flat_map(|h| h * d..(h + 1) * d)
                .map(|c| w[c] as f64 * ctx[c])
                .sum();
            let want = (layer.dense.b[o] as f64 + shift) as f32;
            assert_eq!(c.layers[l].dense.b[o], want);
            let w = layer.ffn_output.w.row(o);
            let shift: f64 = (0..m.arch.intermediate)
                .filter(|n| !kept_neurons.contains(n))
                .map(|n| w[n] as f64 * act[n])
                .sum();
            let want = (layer.ffn_output.b[o] as f64 + shift) as f32;
            assert_eq!(c.layers[l].ffn_output.b[o], want);
        }
        assert!(shift_nonzero(
            &layer.ffn_output.b,
            &c.layers[l].ffn_output.b
        ));
    }
}

fn shift_nonzero(a: &[f32], b: &[f32]) -> bool {
    a.iter().zip(b).any(|(x, y)| x != y)
}
