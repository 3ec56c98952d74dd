//! `--weight-pairs bounded`: the int8 weights come out pair-bounded, the
//! runtime detects it at load, and every kernel tier computes the same bits.

use albert_convert::convert::{self, Options, WeightPairs};
use albert_convert::load;
use albert_edge::format::{q8_layout, q8_pair_bounded};
use albert_edge::kernels::Kernels;
use albert_edge::{Input, Model, Precision};

mod common;
use common::shared;

fn convert(ckpt: &str, pairs: WeightPairs) -> Vec<u8> {
    let raw = load::safetensors::load_dir(&shared().join(ckpt)).unwrap();
    let o = Options {
        weight_pairs: pairs,
        ..Options::default()
    };
    convert::convert_with(&raw, Precision::Int8, &o, &mut |_, _, _| {})
        .unwrap()
        .0
}

/// Every pair of stored weights of every int8 matrix, read from the file.
fn all_pairs_bounded(m: &Model<'_>) -> bool {
    m.tensors().filter(|t| t.dtype.is_q8()).all(|t| {
        let lay = q8_layout(t.rows as usize, t.cols as usize).unwrap();
        let packed = &m.bytes()[t.range.start..t.range.start + lay.packed_len];
        packed
            .chunks_exact(2)
            .all(|p| q8_pair_bounded(p[0] as i8, p[1] as i8))
    })
}

fn outputs(m: &Model<'_>, ids: &[u32]) -> Vec<u32> {
    let mut ws = m.new_workspace(ids.len(), 1);
    let out = m.run(&mut ws, &Input::single(ids)).unwrap();
    out.iter()
        .flat_map(|t| t.data.iter().map(|v| v.to_bits()))
        .collect()
}

#[test]
fn bounded_weights_are_detected_and_run_identically_on_every_tier() {
    for ckpt in ["fixtures/tiny-base/seqcls3", "models/sst2-tiny"] {
        let free = convert(ckpt, WeightPairs::Free);
        let bounded = convert(ckpt, WeightPairs::Bounded);
        let (mf, mut mb) = (
            Model::from_vec(&free).unwrap(),
            Model::from_vec(&bounded).unwrap(),
        );
        // The load-time flag is what the bytes say; free rounding of these
        // trained / random weights has some unbounded pairs.
        assert!(!mf.pairs_bounded() && !all_pairs_bounded(&mf), "{ckpt}");
        assert!(mb.pairs_bounded() && all_pairs_bounded(&mb), "{ckpt}");
        assert_eq!(free.len(), bounded.len(), "{ckpt}: same layout");
        assert_ne!(free, bounded, "{ckpt}");
        let vocab = mb.config().vocab_size;
        for len in [1usize, 7, 33, 70] {
            let ids: Vec<u32> = (0..len as u32).map(|i| (i * 37 + 5) % vocab).collect();
            let mut want = None;
            for k in Kernels::available() {
                println!("{ckpt} len {len}: {}", k.tier.name());
                mb.set_kernels(k);
                let got = outputs(&mb, &ids);
                match &want {
                    None => want = Some(got),
                    Some(w) => assert_eq!(&got, w, "{ckpt} len {len} tier {}", k.tier.name()),
                }
            }
        }
    }
}
