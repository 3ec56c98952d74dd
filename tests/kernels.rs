//! Every kernel tier against the scalar reference, with one suite written once
//! and instantiated per tier (like memchr's `define_memchr_quickcheck!` and
//! tract's `test_mmm_kernel_i32!`).
//!
//! * `quantize_rows` and `gemm_q8` must match **bit for bit** (the int8 path is
//!   specified by `kernels::scalar`; see the `kernels` module docs).
//! * The float entries (`gemm_f32`, `layer_norm`, `attention`, the activation
//!   epilogues) must match **bit for bit** too: the
//!   scalar reference is written as the fixed sequence of IEEE operations that
//!   the SIMD tiers evaluate lane by lane (see `docs/kernels.md`). Attention is
//!   checked on head sizes that are not multiples of 8, 1 / 7 / 33 / 128
//!   tokens, partial query ranges and masks up to all keys; the activations on
//!   huge, tiny, infinite and NaN inputs (any NaN equals any NaN: payloads are
//!   not specified).
//!
//! Shapes hit the edges: K and N not multiples of the 4 x 16 packing or of any
//! tile, M = 1, 7, 33, 128, K up to 3072. Data comes from a small
//! deterministic PRNG and includes all-zero rows, one huge outlier, rows at
//! -128 / 127, NaN and infinity. Each test prints which tier it ran, or that
//! it was skipped because this CPU cannot run it.

use albert_edge::format::{q8_pair_bounded, Activation, Q8_K_GROUP, Q8_N_BLOCK, Q8_PAIR_BOUND};
use albert_edge::kernels::{scalar, AttentionArgs, Epilogue, Kernels, QMatrix, Tier};

/// SplitMix64: tiny, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn int(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u64) as i32
    }
    /// Uniform in `[-1, 1)`.
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// The tier under test, or `None` (printed) when this CPU cannot run it.
fn tier_or_skip(tier: Tier, test: &str) -> Option<Kernels> {
    match Kernels::for_tier(tier) {
        Some(k) => {
            eprintln!("[kernels] {test}: running tier {}", tier.name());
            Some(k)
        }
        None => {
            eprintln!(
                "[kernels] {test}: SKIPPED tier {} (not supported by this CPU/build)",
                tier.name()
            );
            None
        }
    }
}

/// An owned packed Q8 matrix (see `format::q8_layout`).
struct OwnedQ {
    n: usize,
    k: usize,
    packed: Vec<i8>,
    scales: Vec<f32>,
    row_sums: Vec<i32>,
    smooth: Vec<f32>,
    pairs_bounded: bool,
}

impl OwnedQ {
    /// Random weights in -127..=127 with special rows: row 0 all +127, row 1
    /// all -127, row 2 all zero (when they exist). Not pair-bounded when
    /// `k >= 2` and `n >= 1` (row 0).
    fn random(rng: &mut Rng, n: usize, k: usize) -> OwnedQ {
        Self::build(rng, n, k, false)
    }

    /// Random pair-bounded weights (`format::Q8_PAIR_BOUND`), at the bound
    /// where possible: row 0 pairs (127, 1), row 1 pairs (-127, -1), row 2
    /// all zero, other rows random with the second of a pair clamped.
    fn random_bounded(rng: &mut Rng, n: usize, k: usize) -> OwnedQ {
        Self::build(rng, n, k, true)
    }

    fn build(rng: &mut Rng, n: usize, k: usize, bounded: bool) -> OwnedQ {
        let (nb, kg) = (n.div_ceil(Q8_N_BLOCK), k.div_ceil(Q8_K_GROUP));
        let mut packed = vec![0i8; nb * kg * Q8_N_BLOCK * Q8_K_GROUP];
        let mut scales = vec![0.0f32; nb * Q8_N_BLOCK];
        let mut row_sums = vec![0i32; nb * Q8_N_BLOCK];
        for r in 0..n {
            for c in 0..k {
                let idx = ((r / 16) * kg + c / 4) * 64 + (r % 16) * 4 + c % 4;
                let v = match (r, bounded && c % 2 == 1) {
                    (0, true) => 1,
                    (1, true) => -1,
                    (0, _) => 127,
                    (1, _) => -127,
                    (2, _) => 0,
                    (_, false) => rng.int(-127, 127),
                    (_, true) => {
                        // The pair's first weight is at idx - 1.
                        let first = packed[idx - 1];
                        let v = rng.int(-127, 127);
                        if q8_pair_bounded(first, v as i8) {
                            v
                        } else {
                            (Q8_PAIR_BOUND - (first as i32).abs()) * v.signum()
                        }
                    }
                };
                packed[idx] = v as i8;
                row_sums[r] += v;
            }
            scales[r] = (rng.unit().abs() + 0.01) * 0.02;
        }
        let mut smooth = vec![0.0f32; k.div_ceil(16) * 16];
        for s in &mut smooth[..k] {
            *s = 0.5 + rng.unit().abs() * 1.5;
        }
        let pairs_bounded = packed.chunks_exact(2).all(|p| q8_pair_bounded(p[0], p[1]));
        assert_eq!(pairs_bounded, bounded || k < 2 || n == 0);
        OwnedQ {
            n,
            k,
            packed,
            scales,
            row_sums,
            smooth,
            pairs_bounded,
        }
    }
    fn view(&self) -> QMatrix<'_> {
        QMatrix {
            n: self.n,
            k: self.k,
            k_groups: self.k.div_ceil(Q8_K_GROUP),
            packed: &self.packed,
            scales: &self.scales,
            row_sums: &self.row_sums,
            smooth: &self.smooth[..self.k],
            pairs_bounded: self.pairs_bounded,
        }
    }
}

/// `m` rows of `k` activations with row stride `ld`, row `i` of kind `i % 9`.
fn activations(rng: &mut Rng, m: usize, k: usize, ld: usize) -> Vec<f32> {
    let mut x = vec![f32::NAN; m * ld]; // the stride gap must never be read
    for i in 0..m {
        let row = &mut x[i * ld..i * ld + k];
        match i % 9 {
            0 => row.iter_mut().for_each(|v| *v = rng.unit() * 3.0),
            1 => row.fill(0.0),
            2 => {
                // one huge outlier
                row.iter_mut().for_each(|v| *v = rng.unit());
                let j = (rng.next() as usize) % k;
                row[j] = if i % 2 == 0 { 1.0e6 } else { -1.0e6 };
            }
            3 => row.iter_mut().for_each(|v| *v = -rng.unit().abs() - 0.5), // all negative: lots of -128
            4 => row.iter_mut().for_each(|v| *v = rng.unit().abs() + 1e-3), // all positive
            5 => {
                // NaN in the middle of ordinary values
                row.iter_mut().for_each(|v| *v = rng.unit());
                let j = (rng.next() as usize) % k;
                row[j] = f32::NAN;
            }
            6 => {
                row.iter_mut().for_each(|v| *v = rng.unit());
                let j = (rng.next() as usize) % k;
                row[j] = f32::INFINITY;
            }
            7 => row.iter_mut().for_each(|v| *v = rng.unit() * 1e-38), // subnormal-ish
            _ => {
                // values on exact rounding ties for a range of 255: integers
                row.iter_mut()
                    .for_each(|v| *v = rng.int(-100, 155) as f32 + 0.5);
            }
        }
    }
    x
}

/// Raw int8 activations, with all -128 and all 127 rows.
fn q_activations(rng: &mut Rng, m: usize, kpad: usize, ld: usize, k: usize) -> Vec<i8> {
    let mut a = vec![0x55i8; m * ld];
    for i in 0..m {
        let row = &mut a[i * ld..i * ld + kpad];
        match i % 5 {
            1 => row[..k].fill(-128),
            2 => row[..k].fill(127),
            3 => row[..k].fill(0),
            _ => row[..k]
                .iter_mut()
                .for_each(|v| *v = rng.int(-128, 127) as i8),
        }
        row[k..].fill(0); // quantize_rows zeroes the padding
    }
    a
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

const EPILOGUES: [Epilogue; 6] = [
    Epilogue::Store,
    Epilogue::Accumulate,
    Epilogue::Activate(Activation::GeluNew),
    Epilogue::Activate(Activation::Gelu),
    Epilogue::Activate(Activation::Relu),
    Epilogue::Tanh,
];

/// `quantize_rows` of `kern` equals the scalar one for `m x k`.
fn check_quantize(kern: &Kernels, rng: &mut Rng, m: usize, k: usize) {
    let ldx = k + 3;
    let kpad = k.div_ceil(4) * 4;
    let ldq = kpad + 4; // a gap beyond the padding
    let x = activations(rng, m, k, ldx);
    let smooth: Vec<f32> = (0..k).map(|_| 0.25 + rng.unit().abs() * 2.0).collect();
    let run = |f: albert_edge::kernels::QuantizeRowsFn| {
        let mut q = vec![0x33i8; m * ldq];
        let mut s = vec![-1.0f32; m];
        let mut z = vec![-999i32; m];
        f(&x, ldx, m, &smooth, &mut q, ldq, &mut s, &mut z);
        (q, bits(&s), z)
    };
    let want = run(scalar::quantize_rows);
    let got = run(kern.quantize_rows);
    for i in 0..m {
        assert_eq!(got.1[i], want.1[i], "scale of row {i} (m={m} k={k})");
        assert_eq!(got.2[i], want.2[i], "zero point of row {i} (m={m} k={k})");
        assert_eq!(
            got.0[i * ldq..(i + 1) * ldq],
            want.0[i * ldq..(i + 1) * ldq],
            "q of row {i} (m={m} k={k})"
        );
    }
}

/// `gemm_q8` of `kern` equals the scalar one for `m x k` by `n`, every epilogue.
fn check_gemm(kern: &Kernels, rng: &mut Rng, m: usize, k: usize, n: usize) {
    // Both AVX2 paths: any weights (magnitudes and sign masks) and
    // pair-bounded (u8 offset).
    let w = OwnedQ::random(rng, n, k);
    check_gemm_with(kern, rng, m, &w);
    let w = OwnedQ::random_bounded(rng, n, k);
    check_gemm_with(kern, rng, m, &w);
}

fn check_gemm_with(kern: &Kernels, rng: &mut Rng, m: usize, w: &OwnedQ) {
    let (k, n) = (w.k, w.n);
    let kpad = k.div_ceil(4) * 4;
    let lda = kpad + 8;
    let a = q_activations(rng, m, kpad, lda, k);
    let sa: Vec<f32> = (0..m)
        .map(|i| {
            if i % 7 == 6 {
                0.0
            } else {
                rng.unit().abs() * 0.05 + 1e-4
            }
        })
        .collect();
    let za: Vec<i32> = (0..m)
        .map(|i| if i % 3 == 0 { -128 } else { rng.int(-128, 127) })
        .collect();
    let bias: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
    let ldo = n + 5;
    let init: Vec<f32> = (0..m * ldo).map(|_| rng.unit() * 4.0).collect();
    for ep in EPILOGUES {
        let run = |f: albert_edge::kernels::GemmQ8Fn| {
            let mut out = init.clone();
            f(&a, lda, &sa, &za, m, &w.view(), &bias, &mut out, ldo, ep);
            bits(&out)
        };
        let want = run(scalar::gemm_q8);
        let got = run(kern.gemm_q8);
        if got != want {
            let at = got.iter().zip(&want).position(|(g, w)| g != w).unwrap();
            panic!(
                "gemm_q8 {} differs (m={m} k={k} n={n} ep={ep:?} pairs_bounded={}) at row {} col {}: {} vs scalar {}",
                kern.tier.name(),
                w.pairs_bounded,
                at / ldo,
                at % ldo,
                f32::from_bits(got[at]),
                f32::from_bits(want[at])
            );
        }
    }
}

/// Outputs computed in column parts (whole 16-output blocks, as threaded runs
/// split a layer) equal the outputs of one call, for `gemm_q8` and `gemm_f32`
/// with every epilogue: each output depends only on its own weight row.
fn check_column_split(kern: &Kernels, rng: &mut Rng, m: usize, k: usize, n: usize) {
    let w = OwnedQ::random(rng, n, k);
    let wf: Vec<f32> = (0..n * k).map(|_| rng.unit()).collect();
    let kpad = k.div_ceil(4) * 4;
    let a = q_activations(rng, m, kpad, kpad, k);
    let af = activations(rng, m, k, k);
    let sa: Vec<f32> = (0..m).map(|_| rng.unit().abs() * 0.05 + 1e-4).collect();
    let za: Vec<i32> = (0..m).map(|_| rng.int(-128, 127)).collect();
    let bias: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
    let ldo = n + 3;
    let init: Vec<f32> = (0..m * ldo).map(|_| rng.unit()).collect();
    let cuts: Vec<usize> = [0, 16, 48, 64, 112]
        .into_iter()
        .filter(|&c| c < n)
        .chain([n])
        .collect();
    for ep in EPILOGUES {
        let q8 = |parts: &[usize]| {
            let mut out = init.clone();
            for p in parts.windows(2) {
                let (c0, c1) = (p[0], p[1]);
                let full = w.view();
                let block = full.k_groups * Q8_K_GROUP * Q8_N_BLOCK;
                let part = QMatrix {
                    n: c1 - c0,
                    packed: &full.packed[c0 / Q8_N_BLOCK * block..],
                    scales: &full.scales[c0..],
                    row_sums: &full.row_sums[c0..],
                    ..full
                };
                let out = &mut out[c0..];
                (kern.gemm_q8)(&a, kpad, &sa, &za, m, &part, &bias[c0..c1], out, ldo, ep);
            }
            bits(&out)
        };
        let f32s = |parts: &[usize]| {
            let mut out = init.clone();
            for p in parts.windows(2) {
                let (c0, c1) = (p[0], p[1]);
                let (wp, bp) = (&wf[c0 * k..c1 * k], &bias[c0..c1]);
                (kern.gemm_f32)(&af, k, m, wp, c1 - c0, k, bp, &mut out[c0..], ldo, ep);
            }
            bits(&out)
        };
        let tier = kern.tier.name();
        assert!(
            q8(&cuts) == q8(&[0, n]),
            "{tier} gemm_q8 m={m} k={k} n={n} {ep:?}"
        );
        assert!(
            f32s(&cuts) == f32s(&[0, n]),
            "{tier} gemm_f32 m={m} k={k} n={n} {ep:?}"
        );
    }
}

/// Quantize then multiply, the way `Model::linear` calls them.
fn check_linear(kern: &Kernels, rng: &mut Rng, m: usize, k: usize, n: usize) {
    let w = OwnedQ::random(rng, n, k);
    let x = activations(rng, m, k, k);
    let ldq = k.div_ceil(4) * 4;
    let bias: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
    let run = |kk: &Kernels| {
        let (mut q, mut s, mut z) = (vec![0i8; m * ldq], vec![0.0; m], vec![0; m]);
        (kk.quantize_rows)(&x, k, m, &w.smooth[..k], &mut q, ldq, &mut s, &mut z);
        let mut out = vec![0.0f32; m * n];
        (kk.gemm_q8)(
            &q,
            ldq,
            &s,
            &z,
            m,
            &w.view(),
            &bias,
            &mut out,
            n,
            Epilogue::Store,
        );
        bits(&out)
    };
    assert_eq!(
        run(kern),
        run(&Kernels::scalar()),
        "linear m={m} k={k} n={n}"
    );
}

/// The float entries: bit-exact with the reference on every tier.
fn check_float(kern: &Kernels, rng: &mut Rng) {
    for &(m, k, n) in &[
        (7, 37, 19),
        (1, 1, 1),
        (2, 8, 4),
        (3, 7, 5),
        (5, 128, 33),
        (2, 768, 9),
        // Several of the x86 gemm_f32's row blocks (256 KiB of input rows,
        // at most 255 rows), with partial tiles of rows and outputs.
        (45, 3072, 7),
        (261, 64, 5),
    ] {
        let lda = k + 2;
        let a: Vec<f32> = (0..m * lda).map(|_| rng.unit()).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.unit()).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
        let ldo = n + 1;
        for ep in EPILOGUES {
            let run = |f: albert_edge::kernels::GemmF32Fn| {
                let mut out = vec![0.5f32; m * ldo];
                f(&a, lda, m, &w, n, k, &bias, &mut out, ldo, ep);
                bits(&out)
            };
            assert_eq!(
                run(kern.gemm_f32),
                run(scalar::gemm_f32),
                "gemm_f32 m={m} k={k} n={n} {ep:?}"
            );
        }
    }
    for &n in &[1, 3, 7, 8, 9, 26, 64, 312, 768, 1000] {
        let g: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
        for kind in 0..4 {
            let x: Vec<f32> = (0..n)
                .map(|_| match kind {
                    0 => rng.unit(),
                    1 => 1.0e4 + rng.unit(), // large offset, small spread
                    2 => 0.25,               // constant row: variance 0
                    _ => rng.unit() * 1.0e-20,
                })
                .collect();
            let (mut x1, mut x2) = (x.clone(), x);
            (kern.layer_norm)(&mut x1, &g, &b, 1e-12);
            scalar::layer_norm(&mut x2, &g, &b, 1e-12);
            assert_eq!(bits(&x1), bits(&x2), "layer_norm n={n} kind={kind}");
        }
    }
}

/// Bits, with every NaN mapped to one value (payloads are not specified).
fn bits_nan(v: &[f32]) -> Vec<u32> {
    v.iter()
        .map(|f| if f.is_nan() { 0x7fc0_0000 } else { f.to_bits() })
        .collect()
}

/// The in-place activation entry (the two-part activations' epilogue) against
/// the scalar reference: every length 0..=37 (vector bodies and tails), every
/// activation and tanh, ordinary and special values; `Store` / `Accumulate`
/// leave the values unchanged.
fn check_activate(kern: &Kernels, rng: &mut Rng) {
    let specials = [
        0.0f32,
        -0.0,
        1e-40,
        -1e-40,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        -f32::MAX,
        f32::NAN,
        9.0,
        -9.0,
        0.625,
        -0.625,
    ];
    let eps = [
        Epilogue::Activate(Activation::GeluNew),
        Epilogue::Activate(Activation::Gelu),
        Epilogue::Activate(Activation::Relu),
        Epilogue::Tanh,
        Epilogue::Store,
        Epilogue::Accumulate,
    ];
    for len in 0..=37 {
        let x: Vec<f32> = (0..len)
            .map(|i| {
                if i % 5 == 4 {
                    specials[(rng.next() % specials.len() as u64) as usize]
                } else {
                    rng.unit() * 6.0
                }
            })
            .collect();
        for ep in eps {
            let (mut got, mut want) = (x.clone(), x.clone());
            (kern.activate)(&mut got, ep);
            scalar::activate_in_place(&mut want, ep);
            assert_eq!(bits_nan(&got), bits_nan(&want), "{ep:?}, length {len}");
            if matches!(ep, Epilogue::Store | Epilogue::Accumulate) {
                assert_eq!(bits_nan(&got), bits_nan(&x), "{ep:?} changed the values");
            }
        }
    }
}

/// One attention call of `kern` against the scalar reference.
#[allow(clippy::too_many_arguments)]
fn check_attention_case(
    kern: &Kernels,
    rng: &mut Rng,
    seq: usize,
    heads: usize,
    d: usize,
    (q_begin, q_end): (usize, usize),
    mask_kind: usize,
    magnitude: f32,
) {
    let a = heads * d;
    let ld = 3 * a + 5; // a gap after v, never read
    let mut qkv: Vec<f32> = (0..seq * ld).map(|_| rng.unit() * magnitude).collect();
    for row in qkv.chunks_mut(ld) {
        row[3 * a..].fill(f32::NAN);
    }
    if magnitude == 8.0 && seq > 2 {
        qkv[(seq - 1) * ld + a] = f32::INFINITY; // one infinite key value
    }
    let mask: Vec<f32> = (0..seq)
        .map(|j| {
            let masked = match mask_kind {
                0 => false,
                1 => j % 3 == 2,
                2 => j != seq / 2, // all but one masked
                _ => true,         // all masked
            };
            if masked {
                f32::MIN
            } else {
                0.0
            }
        })
        .collect();
    let ld_ctx = a + 3;
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
        ld_ctx,
    };
    let rows = q_end - q_begin;
    // The scores scratch: one row (the minimum), or room for several rows
    // (what the workspace gives; a kernel may then score query rows in blocks).
    let run = |f: albert_edge::kernels::AttentionFn, scores: usize| {
        let (mut sc, mut ctx) = (vec![0.0; scores], vec![-7.0; rows * ld_ctx]);
        f(&args, &mut sc, &mut ctx);
        bits_nan(&ctx)
    };
    let want = run(scalar::attention, seq);
    for scores in [seq, 2 * seq + 1, 4 * seq, 8 * seq] {
        let got = run(kern.attention, scores);
        if got != want {
            let at = got.iter().zip(&want).position(|(g, w)| g != w).unwrap();
            panic!(
                "attention {} differs (seq={seq} heads={heads} d={d} q={q_begin}..{q_end} \
             mask={mask_kind} mag={magnitude} scores={scores}) at row {} col {}: {} vs scalar {}",
                kern.tier.name(),
                at / ld_ctx,
                at % ld_ctx,
                f32::from_bits(got[at]),
                f32::from_bits(want[at])
            );
        }
    }
}

/// Attention on awkward shapes: head sizes that are not multiples of 8,
/// 1 / 7 / 33 / 128 tokens, partial query ranges, masks up to all keys,
/// large and tiny scores, and a non-finite value.
fn check_attention(kern: &Kernels, rng: &mut Rng) {
    for &(seq, heads, d) in &[
        (1, 1, 8),
        (7, 2, 26),
        (8, 1, 64),
        (9, 3, 3),
        (33, 2, 64),
        (33, 1, 65),
        (16, 2, 128),
        (128, 2, 64),
        (17, 1, 130),
    ] {
        for mask_kind in 0..4 {
            for &mag in &[1.0f32, 8.0, 1.0e-3] {
                check_attention_case(kern, rng, seq, heads, d, (0, seq), mask_kind, mag);
            }
        }
        let (b, e) = (seq / 3, seq - seq / 4);
        check_attention_case(kern, rng, seq, heads, d, (b, e.max(b)), 1, 2.0);
        check_attention_case(kern, rng, seq, heads, d, (seq - 1, seq), 0, 2.0);
    }
}

/// The activation epilogues on huge, tiny and non-finite values: the GEMM's
/// `y = acc * (sa * sw) + bias` is steered with extreme row scales and biases.
fn check_epilogue_specials(kern: &Kernels, rng: &mut Rng) {
    let (k, n) = (8, 40);
    let w = OwnedQ::random(rng, n, k);
    let sas = [
        0.0f32,
        1.0e-30,
        1.0e-3,
        0.02,
        0.2,
        1.0,
        30.0,
        1.0e3,
        1.0e30,
        f32::MAX,
    ];
    let m = sas.len();
    let kpad = k.div_ceil(4) * 4;
    let a = q_activations(rng, m, kpad, kpad, k);
    let za: Vec<i32> = (0..m).map(|_| rng.int(-128, 127)).collect();
    let bias: Vec<f32> = (0..n)
        .map(|j| match j % 10 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => f32::MAX,
            4 => -f32::MAX,
            5 => -0.0,
            6 => 1.0e-40,
            _ => rng.unit() * 20.0,
        })
        .collect();
    for ep in EPILOGUES {
        let run = |f: albert_edge::kernels::GemmQ8Fn| {
            let mut out = vec![1.0f32; m * n];
            f(&a, kpad, &sas, &za, m, &w.view(), &bias, &mut out, n, ep);
            bits_nan(&out)
        };
        assert_eq!(
            run(kern.gemm_q8),
            run(scalar::gemm_q8),
            "gemm_q8 {} specials, {ep:?}",
            kern.tier.name()
        );
    }
}

/// The K values: around the 4-grouping, the 8/16/32/64 vector widths, and the
/// ALBERT sizes.
const KS: &[usize] = &[
    1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 130, 768,
];
/// The N values: around the 16-row blocks and the 48-output tiles.
const NS: &[usize] = &[1, 3, 8, 15, 16, 17, 31, 32, 33, 47, 48, 49, 64, 97];
const MS: &[usize] = &[1, 2, 3, 4, 5, 7, 8, 9, 33];

/// Instantiates the whole suite for one tier.
macro_rules! kernel_suite {
    ($module:ident, $tier:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn quantize_rows_bit_exact() {
                let Some(k) = tier_or_skip($tier, "quantize_rows_bit_exact") else {
                    return;
                };
                let mut rng = Rng(1);
                for &kk in KS.iter().chain(&[1000, 3072]) {
                    for &m in &[1, 7, 33] {
                        check_quantize(&k, &mut rng, m, kk);
                    }
                }
                check_quantize(&k, &mut rng, 128, 768);
            }

            #[test]
            fn gemm_q8_small_shapes_bit_exact() {
                let Some(k) = tier_or_skip($tier, "gemm_q8_small_shapes_bit_exact") else {
                    return;
                };
                let mut rng = Rng(2);
                for &kk in KS {
                    for &n in NS {
                        let m = MS[(kk + n) % MS.len()];
                        check_gemm(&k, &mut rng, m, kk, n);
                    }
                }
                for &m in MS {
                    check_gemm(&k, &mut rng, m, 33, 50);
                }
            }

            #[test]
            fn gemm_q8_albert_shapes_bit_exact() {
                let Some(k) = tier_or_skip($tier, "gemm_q8_albert_shapes_bit_exact") else {
                    return;
                };
                let mut rng = Rng(3);
                for &(m, kk, n) in &[
                    (1, 768, 768),
                    (7, 768, 100),
                    (33, 3072, 50),
                    (128, 768, 113),
                    (128, 3072, 40),
                    (8, 128, 768),
                    (3, 3072, 17),
                    // Depths of several of the x86 tiers' staged chunks
                    // (1024 bytes), with a partial k-group at the end.
                    (9, 2053, 37),
                    (2, 4101, 20),
                ] {
                    check_gemm(&k, &mut rng, m, kk, n);
                }
            }

            #[test]
            fn linear_bit_exact() {
                let Some(k) = tier_or_skip($tier, "linear_bit_exact") else {
                    return;
                };
                let mut rng = Rng(4);
                for &(m, kk, n) in &[(1, 5, 3), (7, 128, 48), (33, 768, 33), (128, 312, 65)] {
                    check_linear(&k, &mut rng, m, kk, n);
                }
            }

            #[test]
            fn column_split_bit_exact() {
                let Some(k) = tier_or_skip($tier, "column_split_bit_exact") else {
                    return;
                };
                let mut rng = Rng(8);
                for &(m, kk, n) in &[(1, 9, 17), (7, 100, 70), (20, 300, 130)] {
                    check_column_split(&k, &mut rng, m, kk, n);
                }
            }

            #[test]
            fn float_entries() {
                let Some(k) = tier_or_skip($tier, "float_entries") else {
                    return;
                };
                check_float(&k, &mut Rng(5));
            }

            #[test]
            fn attention_awkward_shapes_bit_exact() {
                let Some(k) = tier_or_skip($tier, "attention_awkward_shapes_bit_exact") else {
                    return;
                };
                check_attention(&k, &mut Rng(6));
            }

            #[test]
            fn epilogue_special_values_bit_exact() {
                let Some(k) = tier_or_skip($tier, "epilogue_special_values_bit_exact") else {
                    return;
                };
                check_epilogue_specials(&k, &mut Rng(7));
            }

            #[test]
            fn activate_in_place_bit_exact() {
                let Some(k) = tier_or_skip($tier, "activate_in_place_bit_exact") else {
                    return;
                };
                check_activate(&k, &mut Rng(8));
            }

            #[test]
            fn table_reports_its_tier() {
                let Some(k) = tier_or_skip($tier, "table_reports_its_tier") else {
                    return;
                };
                assert_eq!(k.tier, $tier);
            }
        }
    };
}

kernel_suite!(scalar_tier, Tier::Scalar);
kernel_suite!(avx2, Tier::Avx2);
kernel_suite!(avx512vnni, Tier::Avx512Vnni);
kernel_suite!(avxvnni, Tier::AvxVnni);
kernel_suite!(neon, Tier::Neon);
kernel_suite!(neon_dot, Tier::NeonDot);
kernel_suite!(neon_i8mm, Tier::NeonI8mm);

/// Prints which tiers this machine runs and which `detect` picks; fails if the
/// architecture's baseline SIMD tier is missing (NEON on aarch64, AVX2 on any
/// x86-64 CPU that reports it).
#[test]
fn tiers_run_and_skipped() {
    let ran: Vec<&str> = Kernels::available().map(|k| k.tier.name()).collect();
    let skipped: Vec<&str> = Tier::ALL
        .into_iter()
        .filter(|t| Kernels::for_tier(*t).is_none())
        .map(|t| t.name())
        .collect();
    eprintln!(
        "[kernels] tiers run: {ran:?}; skipped: {skipped:?}; detect() -> {}",
        Kernels::best().tier.name()
    );
    if cfg!(target_arch = "aarch64") {
        assert!(ran.contains(&"neon"), "NEON is baseline on aarch64");
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        assert!(ran.contains(&"avx2"));
    }
    assert_eq!(
        Kernels::best().tier,
        *Kernels::available()
            .map(|k| k.tier)
            .collect::<Vec<_>>()
            .last()
            .unwrap()
    );
}

/// Sweeps `f` over `[lo, hi]` (plus exact endpoints) and returns the largest
/// absolute and relative error against the f64 reference `r`, and where the
/// largest relative error occurred.
fn sweep(
    f: impl Fn(f32) -> f32,
    r: impl Fn(f64) -> f64,
    lo: f32,
    hi: f32,
    n: usize,
) -> (f64, f64, f32) {
    let (mut abs_err, mut rel_err, mut at) = (0.0f64, 0.0f64, lo);
    for i in 0..=n {
        let x = lo + (hi - lo) * (i as f32 / n as f32);
        let (got, want) = (f(x) as f64, r(x as f64));
        let e = (got - want).abs();
        abs_err = abs_err.max(e);
        if want.abs() > 1e-30 && e / want.abs() > rel_err {
            rel_err = e / want.abs();
            at = x;
        }
    }
    (abs_err, rel_err, at)
}

/// The float building blocks stay close to the correctly rounded functions
/// (the bounds are the ones `docs/kernels.md` states).
#[test]
fn float_math_accuracy() {
    let ulp = f32::EPSILON as f64; // relative size of one ulp at 1.0
    let (a, r, at) = sweep(scalar::exp, f64::exp, -87.0, 88.0, 2_000_000);
    eprintln!(
        "[kernels] exp on [-87, 88]: max rel err {:.3} ulp at {at} (abs {a:e})",
        r / ulp
    );
    assert!(r < 2.0 * ulp);
    let (a, r, at) = sweep(scalar::tanh, f64::tanh, -10.0, 10.0, 2_000_000);
    eprintln!(
        "[kernels] tanh on [-10, 10]: max rel err {:.3} ulp at {at} (abs {a:e})",
        r / ulp
    );
    assert!(r < 3.0 * ulp);
    let (a, r, at) = sweep(scalar::erf, libm::erf, -6.0, 6.0, 2_000_000);
    eprintln!(
        "[kernels] erf on [-6, 6]: max rel err {:.3} ulp at {at} (abs {a:e})",
        r / ulp
    );
    assert!(r < 5.0 * ulp && a < 1e-6);
    // References without cancellation: x * sigmoid(2u) and 0.5 x erfc(-x / sqrt 2).
    let gelu_tanh = |x: f64| {
        let u = (2.0 / core::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
        x / (1.0 + (-2.0 * u).exp())
    };
    // For negative x the result is tiny and inherits the rounding of u
    // amplified by exp (as any f32 evaluation does): bound the absolute error
    // there, the relative error where the result is not tiny.
    let (a, _, _) = sweep(scalar::gelu_tanh, gelu_tanh, -12.0, 12.0, 2_000_000);
    eprintln!("[kernels] gelu_tanh on [-12, 12]: max abs err {a:e}");
    assert!(a < 1e-6);
    let (a, r, at) = sweep(scalar::gelu_tanh, gelu_tanh, -2.0, 12.0, 2_000_000);
    eprintln!(
        "[kernels] gelu_tanh on [-2, 12]: max rel err {:.3} ulp at {at} (abs {a:e})",
        r / ulp
    );
    assert!(r < 8.0 * ulp);
    let gelu_erf = |x: f64| 0.5 * x * libm::erfc(-x / core::f64::consts::SQRT_2);
    let (a, r, at) = sweep(scalar::gelu_erf, gelu_erf, 0.0, 12.0, 1_000_000);
    eprintln!(
        "[kernels] gelu_erf on [0, 12]: max rel err {:.3} ulp at {at} (abs {a:e})",
        r / ulp
    );
    assert!(r < 4.0 * ulp);
    let (a, _, _) = sweep(scalar::gelu_erf, gelu_erf, -12.0, 0.0, 1_000_000);
    eprintln!("[kernels] gelu_erf on [-12, 0]: max abs err {a:e}");
    assert!(a < 2e-6);
}

/// The reference rounding (two f32 additions, no call) equals `libm::rintf` on
/// every 61st f32 bit pattern (every sign, exponent and fraction position; all
/// 2^32 were checked once, in 21 s),
/// every exact half up to 2^24 on either side of each power of two, and the
/// special values.
#[test]
fn round_half_even_matches_rintf() {
    let check = |v: f32| {
        let (got, want) = (scalar::round_half_even(v), libm::rintf(v));
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "round_half_even({v:e} = {:#x}) = {got:e}, rintf = {want:e}",
            v.to_bits()
        );
    };
    for bits in (0..=u32::MAX).step_by(61) {
        check(f32::from_bits(bits));
    }
    for e in 0..25 {
        let p = (1u32 << e) as f32;
        for d in -3i32..=3 {
            for v in [p + d as f32 + 0.5, p + d as f32 - 0.5, p + d as f32] {
                check(v);
                check(-v);
            }
        }
    }
    for v in [
        0.0f32,
        -0.0,
        0.5,
        -0.5,
        1.5,
        2.5,
        -2.5,
        8_388_607.5,
        8_388_608.0,
        -8_388_607.5,
        f32::MIN_POSITIVE,
        1e-45,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ] {
        check(v);
    }
}

/// Two-part activations (`DType::Q8R`): the second part quantizes what the
/// first leaves out, so the two together reproduce every finite row to within
/// half a step of the second part, a step about 255 times finer than the
/// first's; rows the first part zeroes (non-finite, constant) have a zero
/// second part too.
#[test]
fn residual_quantization_refines_the_first_part() {
    let mut rng = Rng(7);
    let (m, k) = (45, 77);
    let x = activations(&mut rng, m, k, k);
    let smooth: Vec<f32> = (0..k).map(|_| 0.25 + rng.unit().abs() * 4.0).collect();
    let ld = k.div_ceil(Q8_K_GROUP) * Q8_K_GROUP;
    let (mut q1, mut s1, mut z1) = (vec![0i8; m * ld], vec![0f32; m], vec![0i32; m]);
    scalar::quantize_rows(&x, k, m, &smooth, &mut q1, ld, &mut s1, &mut z1);
    let (mut q2, mut s2, mut z2) = (vec![1i8; m * ld], vec![0f32; m], vec![0i32; m]);
    let first = (&q1[..], &s1[..], &z1[..]);
    scalar::quantize_residual_rows(&x, k, m, &smooth, first, ld, &mut q2, &mut s2, &mut z2);
    let mut refined = 0;
    for i in 0..m {
        let row = &x[i * k..(i + 1) * k];
        assert!(
            q2[i * ld + k..(i + 1) * ld].iter().all(|&v| v == 0),
            "row {i}: padding"
        );
        if s1[i] == 0.0 {
            assert_eq!((s2[i], z2[i]), (0.0, 0), "row {i}");
            assert!(q2[i * ld..i * ld + k].iter().all(|&v| v == 0), "row {i}");
            continue;
        }
        if s1[i] < f32::MIN_POSITIVE * 1e6 {
            // Near-subnormal rows: f32 itself has too few bits left to refine.
            continue;
        }
        // The residual spans at most one step of the first part.
        assert!(
            s2[i] <= s1[i] / 255.0 * 1.001,
            "row {i}: {} vs {}",
            s2[i],
            s1[i]
        );
        let (mut err1, mut err2) = (0f64, 0f64);
        for c in 0..k {
            let v = (row[c] * smooth[c]) as f64;
            let a = s1[i] as f64 * (q1[i * ld + c] as i32 - z1[i]) as f64;
            let b = s2[i] as f64 * (q2[i * ld + c] as i32 - z2[i]) as f64;
            err1 = err1.max((v - a).abs());
            err2 = err2.max((v - a - b).abs());
        }
        // Half a step of part 2, plus the f32 rounding of the residual itself
        // (products of the row's largest magnitude).
        let vmax = (0..k)
            .map(|c| (row[c] * smooth[c]).abs())
            .fold(0f32, f32::max) as f64;
        let bound = 0.5 * s2[i] as f64 * 1.01 + 4.0 * f32::EPSILON as f64 * vmax;
        assert!(
            err2 <= bound,
            "row {i}: two parts off by {err2:e} > {bound:e} (s1 {} s2 {} err1 {err1:e})",
            s1[i],
            s2[i]
        );
        if err1 > 0.0 {
            assert!(err2 < err1 / 50.0, "row {i}: {err2:e} vs one part {err1:e}");
            refined += 1;
        }
    }
    assert!(refined >= m / 2, "only {refined} rows refined");
}
