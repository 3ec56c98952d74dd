//! `Model::run` with arbitrary batch, sequence length, token ids, attention
//! masks, token types and workspace sizes on valid models (every head, int8 and
//! f32; synthetic weights with odd sizes). Invalid inputs must give a
//! `RunError`; valid ones must run, give finite outputs of the documented
//! shapes, and give bit-identical results on every kernel tier this CPU has
//! (the contract stated in `albert_edge::kernels`).
#![no_main]

use albert_edge::{HeadKind, Input, Kernels, Model, Precision, RunError, Workspace};
use fuzz_support::{Aligned, Knobs};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const HEADS: [HeadKind; 5] = [
    HeadKind::Base,
    HeadKind::SequenceClassification,
    HeadKind::TokenClassification,
    HeadKind::QuestionAnswering,
    HeadKind::MaskedLm,
];

/// For every (head, precision): the model with the detected kernels, then one
/// per available tier.
fn models() -> &'static [Vec<Model<'static>>] {
    static FILES: OnceLock<Vec<Aligned>> = OnceLock::new();
    static M: OnceLock<Vec<Vec<Model<'static>>>> = OnceLock::new();
    let files = FILES.get_or_init(|| {
        let mut v = Vec::new();
        for head in HEADS {
            for p in [Precision::Int8, Precision::F32] {
                v.push(Aligned::new(&fuzz_support::tiny_model(head, p, false)));
            }
        }
        v
    });
    M.get_or_init(|| {
        let mut v = Vec::new();
        for bytes in files {
            {
                let load = || Model::from_bytes(bytes.bytes()).expect("tiny model loads");
                let mut per_tier = vec![load()];
                for kern in Kernels::available() {
                    let mut m = load();
                    m.set_kernels(kern);
                    per_tier.push(m);
                }
                v.push(per_tier);
            }
        }
        v
    })
}

fuzz_target!(|data: &[u8]| {
    let mut k = Knobs::new(data);
    let which = k.byte() as usize % (2 * HEADS.len());
    let batch = (k.byte() % 4) as usize; // 0 is invalid on purpose
    let seq = (k.byte() % 48) as usize; // the position table has 40 entries
    let flags = k.byte();
    let ws_short = (k.byte() % 4) as usize; // bytes taken off the exact workspace size
    let model = &models()[which][0];
    let cfg = *model.config();
    let rest = k.rest();
    // Every value comes from two input bytes: mostly in range, sometimes not.
    let mut vals = rest
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32);
    let n = batch * seq + (flags >> 6) as usize; // sometimes a wrong length
    let ids: Vec<u32> = (0..n)
        .map(|_| vals.next().unwrap_or(2) % (cfg.vocab_size + 2))
        .collect();
    let mask: Vec<u32> = (0..n).map(|_| vals.next().unwrap_or(1) % 3).collect();
    let types: Vec<u32> = (0..n)
        .map(|_| vals.next().unwrap_or(0) % (cfg.type_vocab_size + 1))
        .collect();
    let input = Input {
        batch,
        seq,
        input_ids: &ids,
        attention_mask: (flags & 1 != 0).then_some(&mask[..]),
        token_type_ids: (flags & 2 != 0).then_some(&types[..]),
    };
    let need = model.workspace_len(seq.max(1), batch.max(1));
    let mut buf = vec![0u8; need.saturating_sub(ws_short)];
    // Borrowed workspaces may start anywhere: misalign on purpose.
    let off = (flags as usize >> 2) & 7;
    let len = buf.len();
    let mut ws = Workspace::from_bytes(&mut buf[off.min(len)..]);
    let valid = batch > 0
        && seq > 0
        && seq <= cfg.max_positions as usize
        && n == batch * seq
        && ids.iter().all(|&i| i < cfg.vocab_size)
        && (flags & 2 == 0 || types.iter().all(|&t| t < cfg.type_vocab_size));
    let first: Option<Vec<u32>> = match model.run(&mut ws, &input) {
        Ok(out) => {
            assert!(valid, "invalid input accepted");
            assert_eq!(
                ws_short + off,
                0,
                "a workspace below workspace_len was accepted"
            );
            let mut bits = Vec::new();
            for o in out.iter() {
                let shape_len: usize = o.shape().iter().product();
                assert_eq!(shape_len, o.data.len());
                assert_eq!(o.shape()[0], batch);
                assert!(
                    o.data.iter().all(|v| v.is_finite()),
                    "non-finite output {} for a valid input",
                    o.name
                );
                bits.extend(o.data.iter().map(|v| v.to_bits()));
            }
            Some(bits)
        }
        Err(RunError::WorkspaceTooSmall { .. }) => {
            assert!(ws_short + off > 0 || !valid, "exact workspace refused");
            None
        }
        Err(e) => {
            assert!(!valid, "valid input refused: {e}");
            None
        }
    };
    // Every tier gives the scalar tier's bits.
    if let Some(first) = first {
        let mut ws = model.new_workspace(seq, batch);
        for other in &models()[which][1..] {
            let out = other.run(&mut ws, &input).expect("ran once already");
            let bits: Vec<u32> = out
                .iter()
                .flat_map(|o| o.data.iter().map(|v| v.to_bits()))
                .collect();
            assert!(
                bits == first,
                "tier {} differs from the detected tier {}",
                other.kernels().tier.name(),
                model.kernels().tier.name()
            );
        }
    }
});
