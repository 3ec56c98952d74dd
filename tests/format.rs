//! Model files are untrusted: every truncation, bit flip and malformed field
//! must give a clear `Err`, never a panic or a wrong answer.

mod common;

use albert_edge::format::{self, LoadError};
use albert_edge::{Input, Model, RunError, Workspace};
use common::Aligned;

#[cfg(not(miri))]
fn tiny_int8() -> Vec<u8> {
    common::convert_fixture("tiny-base/seqcls2", albert_edge::Precision::Int8)
}

/// Under Miri (far too slow to convert a fixture), the minimal synthetic int8
/// classifier of the fuzz seeds (hidden size 8, vocabulary 10, 8 positions,
/// with a tokenizer; 10 KiB), written by the same converter.
#[cfg(miri)]
fn tiny_int8() -> Vec<u8> {
    include_bytes!("../fuzz/seeds/models/mini-int8.albert").to_vec()
}

/// A second, different model (f32).
#[cfg(not(miri))]
fn other_f32() -> Vec<u8> {
    common::convert_fixture("tiny-e-eq-h/seqcls2", albert_edge::Precision::F32)
}

#[cfg(miri)]
fn other_f32() -> Vec<u8> {
    include_bytes!("../fuzz/seeds/models/mini-f32.albert").to_vec()
}

/// Under Miri, one in `MIRI_STRIDE` of the exhaustive cases.
const MIRI_STRIDE: usize = if cfg!(miri) { 997 } else { 1 };

/// Recomputes the section and header checksums after a deliberate edit, so the
/// edit reaches the structural checks.
fn reseal(b: &mut [u8]) {
    let n = u32::from_le_bytes(b[24..28].try_into().unwrap()) as usize;
    for i in 0..n {
        let e = 64 + i * 32;
        let off = u64::from_le_bytes(b[e + 8..e + 16].try_into().unwrap()) as usize;
        let len = u64::from_le_bytes(b[e + 16..e + 24].try_into().unwrap()) as usize;
        let crc = crc32(&b[off..off + len]);
        b[e + 24..e + 28].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32(&b[0..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
}

fn crc32(b: &[u8]) -> u32 {
    albert_convert::pack::crc32(b)
}

fn section(b: &[u8], kind: u32) -> std::ops::Range<usize> {
    let n = u32::from_le_bytes(b[24..28].try_into().unwrap()) as usize;
    for i in 0..n {
        let e = 64 + i * 32;
        if u32::from_le_bytes(b[e..e + 4].try_into().unwrap()) == kind {
            let off = u64::from_le_bytes(b[e + 8..e + 16].try_into().unwrap()) as usize;
            let len = u64::from_le_bytes(b[e + 16..e + 24].try_into().unwrap()) as usize;
            return off..off + len;
        }
    }
    panic!("no section {kind}")
}

fn load(b: &[u8]) -> Result<(), LoadError> {
    let a = Aligned::new(b);
    Model::from_bytes(a.bytes()).map(|_| ())
}

#[test]
fn valid_file_loads_from_borrowed_aligned_bytes() {
    let b = tiny_int8();
    let a = Aligned::new(&b);
    let m = Model::from_bytes(a.bytes()).unwrap();
    assert_eq!(m.config().hidden_size, if cfg!(miri) { 8 } else { 64 });
    assert_eq!(m.bytes().len(), b.len());
}

#[test]
fn every_truncation_is_an_error() {
    let b = tiny_int8();
    let a = Aligned::new(&b);
    let bytes = a.bytes();
    for len in (0..bytes.len()).step_by(MIRI_STRIDE) {
        let r = Model::from_bytes(&bytes[..len]);
        assert!(r.is_err(), "truncated to {len} bytes loaded");
    }
}

#[test]
fn bit_flips_anywhere_are_errors() {
    let b = tiny_int8();
    // Every bit of the header, section table, config, labels and tensor table
    // (and the padding between them), and one bit every 61 bytes through the
    // tokenizer section and the tensor data.
    let data = section(&b, format::section::TENSOR_DATA);
    let tok = section(&b, format::section::TOKENIZER);
    let table = section(&b, format::section::TENSOR_TABLE);
    let mut positions: Vec<usize> = (0..tok.start).collect();
    positions.extend((tok.start..tok.end).step_by(61));
    positions.extend(tok.end..data.start);
    positions.extend((data.start..b.len()).step_by(61));
    assert!(table.end <= data.start);
    // One aligned copy, flipped and restored in place (no per-flip copies: this
    // test also runs under qemu).
    let mut a = Aligned::new(&b);
    let mut tried = 0;
    for &pos in positions.iter().step_by(MIRI_STRIDE) {
        for bit in 0..8 {
            let sampled = pos >= data.start || (tok.start..tok.end).contains(&pos);
            if (sampled || cfg!(miri)) && bit != pos % 8 {
                continue;
            }
            a.bytes_mut()[pos] ^= 1 << bit;
            assert!(
                Model::from_bytes(a.bytes()).is_err(),
                "flip of bit {bit} at byte {pos} was accepted"
            );
            a.bytes_mut()[pos] ^= 1 << bit;
            tried += 1;
        }
    }
    assert_eq!(a.bytes(), &b[..]);
    println!("{tried} bit flips, all rejected");
}

#[test]
fn wrong_magic_future_version_misalignment_and_trailing_bytes() {
    let b = tiny_int8();
    let mut m = b.clone();
    m[0] = b'X';
    assert_eq!(load(&m), Err(LoadError::BadMagic));

    let mut m = b.clone();
    m[8..12].copy_from_slice(&2u32.to_le_bytes());
    reseal(&mut m);
    assert_eq!(
        load(&m),
        Err(LoadError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    );
    assert!(LoadError::UnsupportedVersion {
        found: 2,
        supported: 1
    }
    .to_string()
    .contains("version 2"));

    // Misaligned: the same bytes one byte into an aligned buffer.
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&b);
    let a = Aligned::new(&shifted);
    assert_eq!(
        Model::from_bytes(&a.bytes()[1..]).unwrap_err(),
        LoadError::Misaligned { align: 64 }
    );

    let mut m = b.clone();
    m.extend_from_slice(&[0u8; 64]);
    assert!(matches!(load(&m), Err(LoadError::TrailingBytes { .. })));
}

#[test]
fn oversized_dimensions_are_rejected_before_use() {
    let b = tiny_int8();
    let cfg = section(&b, format::section::CONFIG);
    // vocab_size = u32::MAX (an allocation bomb if anything were sized from it).
    let mut m = b.clone();
    m[cfg.start..cfg.start + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut m);
    assert!(matches!(
        load(&m),
        Err(LoadError::DimensionOutOfRange {
            field: "vocab_size",
            ..
        })
    ));
    // ALBERT shares its layers: the layer count sizes nothing, but bounds the
    // time of every run, so it is bounded too.
    let layers = |n: u32| {
        let mut m = b.clone();
        m[cfg.start + 24..cfg.start + 28].copy_from_slice(&n.to_le_bytes());
        reseal(&mut m);
        load(&m)
    };
    assert!(layers(format::MAX_LAYER_CALLS).is_ok());
    assert_eq!(
        layers(format::MAX_LAYER_CALLS + 1),
        Err(LoadError::DimensionOutOfRange {
            field: "num_layers * inner_group_num (layer applications)",
            value: format::MAX_LAYER_CALLS + 1,
        })
    );
    // A plausible but wrong size: the tensors no longer match the config.
    let mut m = b.clone();
    m[cfg.start + 8..cfg.start + 12].copy_from_slice(&(1u32 << 20).to_le_bytes());
    reseal(&mut m);
    assert!(
        matches!(load(&m), Err(LoadError::BadTensor { .. })),
        "{:?}",
        load(&m)
    );
    // Unknown activation and head codes.
    let mut m = b.clone();
    m[cfg.start + 36..cfg.start + 40].copy_from_slice(&9u32.to_le_bytes());
    reseal(&mut m);
    assert_eq!(
        load(&m),
        Err(LoadError::UnknownCode {
            field: "activation",
            value: 9
        })
    );
    let mut m = b.clone();
    m[cfg.start + 52..cfg.start + 56].copy_from_slice(&7u32.to_le_bytes());
    reseal(&mut m);
    assert_eq!(
        load(&m),
        Err(LoadError::UnknownCode {
            field: "head",
            value: 7
        })
    );
}

/// CONFIG field 17, `problem_type`: a known code, and only on a sequence
/// classifier; the fields after it stay reserved.
#[test]
fn problem_type_is_checked() {
    let b = tiny_int8(); // a sequence classifier
    let cfg = section(&b, format::section::CONFIG);
    let with = |field: usize, v: u32, b: &[u8]| {
        let mut m = b.to_vec();
        m[cfg.start + 4 * field..cfg.start + 4 * field + 4].copy_from_slice(&v.to_le_bytes());
        reseal(&mut m);
        m
    };
    for (code, want) in [
        (1, albert_edge::ProblemType::MultiLabel),
        (2, albert_edge::ProblemType::Regression),
    ] {
        let m = with(17, code, &b);
        let a = Aligned::new(&m);
        assert_eq!(
            Model::from_bytes(a.bytes()).unwrap().config().problem_type,
            want
        );
    }
    assert_eq!(
        load(&with(17, 4, &b)),
        Err(LoadError::UnknownCode {
            field: "problem_type",
            value: 4
        })
    );
    // Multiple choice has one output; this classifier has two.
    assert!(matches!(
        load(&with(17, 3, &b)),
        Err(LoadError::Inconsistent(r)) if r.contains("one output")
    ));
    assert!(matches!(
        load(&with(18, 1, &b)),
        Err(LoadError::BadSection {
            section: "config",
            ..
        })
    ));
    // A token classifier (head 2, same labels) cannot carry one.
    let token = with(13, 2, &b);
    assert!(matches!(
        load(&with(17, 1, &token)),
        Err(LoadError::Inconsistent(r)) if r.contains("problem_type")
    ));
}

#[test]
fn corrupted_int8_weights_are_caught_even_with_valid_checksums() {
    let b = tiny_int8();
    let a = Aligned::new(&b);
    let model = Model::from_bytes(a.bytes()).unwrap();
    let word = model
        .tensors()
        .find(|t| t.dtype == format::DType::Q8)
        .unwrap();
    drop(model);
    // -128 is outside the weight range the kernels rely on.
    let mut m = b.clone();
    m[word.range.start] = 0x80;
    reseal(&mut m);
    assert!(matches!(load(&m), Err(LoadError::BadTensor { .. })));
    // A changed weight no longer matches its stored row sum.
    let mut m = b.clone();
    m[word.range.start] = m[word.range.start].wrapping_add(1) & 0x3f;
    reseal(&mut m);
    assert!(load(&m).is_err());
    // A value in the padding (a row past n, or an input past k) of any int8
    // matrix, in the small synthetic model (hidden size 8, vocabulary 10),
    // whose matrices have padding.
    let b = include_bytes!("../fuzz/seeds/models/mini-int8.albert").to_vec();
    let a = Aligned::new(&b);
    let model = Model::from_bytes(a.bytes()).unwrap();
    let padded: Vec<_> = model
        .tensors()
        .filter(|t| t.dtype.is_q8())
        .filter_map(|t| {
            let (n, k) = (t.rows as usize, t.cols as usize);
            let kg = k.div_ceil(4);
            if n % 16 != 0 {
                Some((t.clone(), ((n / 16) * kg) * 64 + (n % 16) * 4)) // row n, input 0
            } else if k % 4 != 0 {
                Some((t.clone(), (k / 4) * 64 + k % 4)) // row 0, input k
            } else {
                None
            }
        })
        .collect();
    drop(model);
    assert!(
        !padded.is_empty(),
        "no int8 matrix with padding in the test model"
    );
    for (t, at) in padded {
        let mut m = b.clone();
        m[t.range.start + at] = 1;
        reseal(&mut m);
        assert!(
            matches!(
                load(&m),
                Err(LoadError::BadTensor {
                    reason: "int8 padding is not zero",
                    ..
                })
            ),
            "{:?}: {:?}",
            t.role,
            load(&m)
        );
    }
}

#[test]
fn run_errors_are_reported_not_panics() {
    let b = tiny_int8();
    let model = Model::from_vec(&b).unwrap();
    let (vocab, max) = (model.config().vocab_size, model.config().max_positions);
    let ids = [2u32, 100 % vocab, 3];
    let need = model.workspace_len(3, 1);
    // A workspace one byte too small fails cleanly; the exact size works.
    let mut small = vec![0u8; need - 1];
    let mut ws = Workspace::from_bytes(&mut small);
    assert!(matches!(
        model.run(&mut ws, &Input::single(&ids)),
        Err(RunError::WorkspaceTooSmall { .. })
    ));
    let mut exact = vec![0u8; need];
    let mut ws = Workspace::from_bytes(&mut exact);
    assert!(model.run(&mut ws, &Input::single(&ids)).is_ok());
    // Input errors.
    let mut ws = model.new_workspace(max as usize + 1, 1);
    assert!(matches!(
        model.run(&mut ws, &Input::single(&[2, vocab, 3])),
        Err(RunError::TokenOutOfRange {
            position: 1,
            id,
            ..
        }) if id == vocab
    ));
    let long: Vec<u32> = vec![5; max as usize + 1];
    assert!(matches!(
        model.run(&mut ws, &Input::single(&long)),
        Err(RunError::SequenceTooLong { seq, max: m }) if seq == max as usize + 1 && m == max as usize
    ));
    assert_eq!(
        model.run(&mut ws, &Input::single(&[])).unwrap_err(),
        RunError::EmptyInput
    );
    let bad_types = [0u32, 2, 0];
    let inp = Input {
        token_type_ids: Some(&bad_types),
        ..Input::single(&ids)
    };
    assert!(matches!(
        model.run(&mut ws, &inp),
        Err(RunError::TokenTypeOutOfRange {
            position: 1,
            id: 2,
            ..
        })
    ));
    let short_mask = [1u32, 1];
    let inp = Input {
        attention_mask: Some(&short_mask),
        ..Input::single(&ids)
    };
    assert!(matches!(
        model.run(&mut ws, &inp),
        Err(RunError::ShapeMismatch {
            input: "attention_mask",
            ..
        })
    ));
    let inp = Input {
        batch: 2,
        seq: 2,
        input_ids: &ids,
        attention_mask: None,
        token_type_ids: None,
    };
    assert!(matches!(
        model.run(&mut ws, &inp),
        Err(RunError::ShapeMismatch {
            input: "input_ids",
            ..
        })
    ));
}

#[test]
fn a_workspace_can_be_reused_across_models() {
    let a = Model::from_vec(&tiny_int8()).unwrap();
    let b = Model::from_vec(&other_f32()).unwrap();
    let v = a.config().vocab_size;
    let ids = [2u32, 77 % v, 1234 % v, 3];
    let mut ws = Workspace::new(a.workspace_len(4, 1).max(b.workspace_len(4, 1)));
    let mut logits = |m: &Model<'_>| -> Vec<f32> {
        m.run(&mut ws, &Input::single(&ids))
            .unwrap()
            .get("logits")
            .unwrap()
            .data
            .to_vec()
    };
    let first = logits(&a);
    let other = logits(&b);
    let again = logits(&a);
    assert_eq!(first, again);
    assert_ne!(first, other);
}

/// The two-part activation dtype (`Q8R`, 3) is checked like `Q8`: never on the
/// word embeddings, never in an f32 file; an unknown dtype code is named.
#[test]
fn two_part_dtype_is_only_accepted_where_it_can_run() {
    let b = tiny_int8();
    let table = section(&b, format::section::TENSOR_TABLE);
    let count = u32::from_le_bytes(b[table.start..table.start + 4].try_into().unwrap()) as usize;
    let entry = |b: &[u8], i: usize| {
        let e = table.start + 8 + i * 32;
        let role = u32::from_le_bytes(b[e..e + 4].try_into().unwrap());
        let dtype = u32::from_le_bytes(b[e + 4..e + 8].try_into().unwrap());
        (e, role, dtype)
    };
    let set = |b: &mut Vec<u8>, e: usize, dtype: u32| {
        b[e + 4..e + 8].copy_from_slice(&dtype.to_le_bytes());
        reseal(b);
    };
    let word = (0..count).map(|i| entry(&b, i)).find(|t| t.1 == 1).unwrap();
    assert_eq!(word.2, 2, "word embeddings are Q8");
    let mut m = b.clone();
    set(&mut m, word.0, 3);
    assert!(
        matches!(load(&m), Err(LoadError::BadTensor { .. })),
        "{:?}",
        load(&m)
    );
    // Every other int8 matrix may switch between one and two parts.
    let mut switched = 0;
    for i in 0..count {
        let (e, role, dtype) = entry(&b, i);
        if role != 1 && (dtype == 2 || dtype == 3) {
            let mut m = b.clone();
            set(&mut m, e, 5 - dtype);
            assert_eq!(load(&m), Ok(()), "role {role:#x}");
            set(&mut m, e, 4);
            assert_eq!(
                load(&m),
                Err(LoadError::UnknownCode {
                    field: "tensor dtype",
                    value: 4
                })
            );
            switched += 1;
        }
    }
    assert!(switched >= 4);
    let f = other_f32();
    let table_f = section(&f, format::section::TENSOR_TABLE);
    let e = table_f.start + 8;
    let mut m = f.clone();
    m[e + 4..e + 8].copy_from_slice(&3u32.to_le_bytes());
    reseal(&mut m);
    assert!(load(&m).is_err());
}
