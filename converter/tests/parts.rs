//! `--activation-parts`: which int8 matrices get two-part activations
//! (`DType::Q8R`), and that the choice is what runs.

use albert_convert::convert::{self, ActivationParts, Options, PARTS_TARGET};
use albert_convert::load;
use albert_edge::format::{DType, RoleKind};
use albert_edge::{Input, Model, Precision};

mod common;
use common::shared;

fn convert(dir: &std::path::Path, parts: ActivationParts) -> (Vec<u8>, convert::Report) {
    let raw = load::safetensors::load_dir(dir).unwrap();
    let o = Options {
        activation_parts: parts,
        ..Options::default()
    };
    convert::convert_with(&raw, Precision::Int8, &o, &mut |_, _, _| {}).unwrap()
}

fn dtypes(bytes: &[u8]) -> Vec<(RoleKind, DType)> {
    let m = Model::from_vec(bytes).unwrap();
    m.tensors()
        .filter(|t| t.dtype.is_q8())
        .map(|t| (t.role.kind, t.dtype))
        .collect()
}

fn logits(bytes: &[u8], ids: &[u32]) -> Vec<f32> {
    let m = Model::from_vec(bytes).unwrap();
    let mut ws = m.new_workspace(ids.len(), 1);
    let out = m.run(&mut ws, &Input::single(ids)).unwrap();
    out.get("logits").unwrap().data.to_vec()
}

#[test]
fn one_two_and_auto_on_a_hard_fixture() {
    let dir = shared().join("fixtures/tiny-base/seqcls3");
    let (one, r1) = convert(&dir, ActivationParts::One);
    let (two, r2) = convert(&dir, ActivationParts::Two);
    let (auto, ra) = convert(&dir, ActivationParts::Auto);
    // `1`: nothing has two parts; `2`: every int8 matrix but the embedding table.
    assert!(dtypes(&one).iter().all(|(_, d)| *d == DType::Q8));
    let d2 = dtypes(&two);
    assert!(d2.iter().any(|(_, d)| *d == DType::Q8R));
    for (k, d) in &d2 {
        let want = if *k == RoleKind::WordEmbeddings {
            DType::Q8
        } else {
            DType::Q8R
        };
        assert_eq!(*d, want, "{k:?}");
    }
    assert!(r1.parts.as_ref().unwrap().two_parts.is_empty());
    // The embedding projection, q|k|v, attention output, FFN, FFN output and
    // the pooler.
    assert_eq!(
        r2.parts.as_ref().unwrap().two_parts.len(),
        6,
        "{:?}",
        r2.parts
    );
    // Same weights either way: only the table's dtypes differ.
    assert_eq!(one.len(), two.len());
    // Auto measured one part below the target on this random-weight model and
    // chose kinds that raised the worst cosine.
    let p = ra.parts.unwrap();
    let (c1, cc) = (p.cosine_one.unwrap(), p.cosine_chosen.unwrap());
    println!("auto: {:?}, cosine {c1:.6} -> {cc:.6}", p.two_parts);
    assert!(c1 < PARTS_TARGET);
    assert!(!p.two_parts.is_empty() && cc > c1);
    let da = dtypes(&auto);
    for (k, d) in &da {
        assert_eq!(*d == DType::Q8R, p.two_parts.contains(k), "{k:?}");
    }
    // The files compute different, and with two parts closer, logits.
    let f32_bytes = {
        let raw = load::safetensors::load_dir(&dir).unwrap();
        convert::convert(&raw, Precision::F32).unwrap().0
    };
    let (mut e1, mut e2) = (0f64, 0f64);
    for seed in 0..6u32 {
        let ids: Vec<u32> = (0..40u32).map(|i| 5 + (i * 37 + seed * 101) % 90).collect();
        let want = logits(&f32_bytes, &ids);
        let (a, b) = (logits(&one, &ids), logits(&two, &ids));
        assert_ne!(a, b);
        for ((w, a), b) in want.iter().zip(&a).zip(&b) {
            e1 += ((w - a) as f64).powi(2);
            e2 += ((w - b) as f64).powi(2);
        }
    }
    println!("squared logit error: one part {e1:e}, two parts {e2:e}");
    assert!(e2 < e1);
}

/// A real trained model meets the target with one part: auto changes nothing.
#[test]
fn auto_keeps_one_part_on_a_trained_model() {
    let (bytes, r) = convert(&shared().join("models/sst2-tiny"), ActivationParts::Auto);
    let p = r.parts.unwrap();
    println!("sst2-tiny: worst cosine {:?}", p.cosine_one);
    assert!(p.cosine_one.unwrap() >= PARTS_TARGET);
    assert!(p.two_parts.is_empty());
    assert!(dtypes(&bytes).iter().all(|(_, d)| *d == DType::Q8));
}

/// When two parts everywhere would meet the target, auto adds kinds one at a
/// time and stops as soon as it is met: here fewer than all of them.
#[test]
fn auto_stops_at_the_target() {
    let dir = shared().join("fixtures/tiny-gelu/seqcls2");
    let (bytes, r) = convert(&dir, ActivationParts::Auto);
    let p = r.parts.unwrap();
    println!(
        "tiny-gelu/seqcls2: {:?}, {:?} -> {:?}",
        p.two_parts, p.cosine_one, p.cosine_chosen
    );
    assert!(p.cosine_one.unwrap() < PARTS_TARGET);
    assert!(p.cosine_chosen.unwrap() >= PARTS_TARGET);
    let int8_kinds = dtypes(&bytes).len() - 1; // all but the word embeddings
    assert!(!p.two_parts.is_empty() && p.two_parts.len() < int8_kinds);
}
