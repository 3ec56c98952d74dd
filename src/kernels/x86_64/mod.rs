//! x86-64 kernel tiers.
//!
//! * [`avx2`]: `quantize_rows` and `gemm_q8` with 256-bit AVX2 integer ops
//!   (`vpmaddubsw` of staged magnitudes or offsets, then `vpmaddwd` into
//!   i32); with `avx2_float`, the epilogue activations, `layer_norm` and
//!   `attention`.
//! * [`avx512vnni`]: `gemm_q8` with 512-bit `vpdpbusd`; reuses AVX2's
//!   `quantize_rows` (every AVX-512 CPU has AVX2, and the tier checks it).
//! * [`avxvnni`]: `gemm_q8` with the 256-bit VEX `vpdpbusd` of AVX-VNNI
//!   (client cores without AVX-512); everything else AVX2's.
//!
//! All are bit-identical to [`crate::kernels::scalar`]; see the module docs of
//! [`crate::kernels`] for the arithmetic they reproduce.
//!
//! Run-time detection needs the `std` feature (`is_x86_feature_detected!`,
//! which also checks through XGETBV that the OS saves the AVX / AVX-512
//! register state). Without `std`, a tier is available only when the build
//! enables its features at compile time (`-C target-feature=+avx2`, or a
//! `target-cpu` that has them), like memchr without its `std` feature.

pub mod avx2;
pub(crate) mod avx2_float;
// The AVX-512 intrinsics and `target_feature`s are stable since Rust 1.89, above
// the crate's `rust-version` (1.85): building this tier needs 1.89.
#[allow(clippy::incompatible_msrv)]
pub mod avx512vnni;
// The AVX-VNNI intrinsic and `target_feature` are stable since Rust 1.89 too.
#[allow(clippy::incompatible_msrv)]
pub mod avxvnni;

use crate::kernels::{scalar, Epilogue};

/// Applies `ep` to `count` consecutive outputs at `out` whose pre-epilogue
/// values are `y[..count]`, one element at a time with the scalar epilogue
/// (the tails).
///
/// # Safety
///
/// `out..out + count` must be valid for reads and writes and not aliased.
#[inline]
unsafe fn epilogue_lanes(out: *mut f32, y: &[f32], count: usize, ep: Epilogue) {
    for (l, &v) in y.iter().enumerate().take(count) {
        // SAFETY: `l < count`, and the caller guarantees `out..out + count`
        // is valid and unaliased.
        scalar::epilogue(unsafe { &mut *out.add(l) }, v, ep);
    }
}

/// [`epilogue_lanes`] for up to 16 outputs, with the `Activate` / `Tanh`
/// functions evaluated 8 lanes at a time by AVX2's (lane for lane the scalar
/// reference, so bit-identical to [`epilogue_lanes`]); `Store` /
/// `Accumulate` per element. The AVX-512 tier's epilogue for those two, and the
/// AVX2 f32 GEMM's.
///
/// # Safety
///
/// AVX2 must be available; `count <= 16`; `out..out + count` must be valid for
/// reads and writes and not aliased.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn epilogue16_avx2(out: *mut f32, y: &[f32; 16], count: usize, ep: Epilogue) {
    use core::arch::x86_64::*;
    debug_assert!(count <= 16);
    for half in 0..2 {
        let n = count.saturating_sub(8 * half).min(8);
        if n == 0 {
            break;
        }
        // SAFETY: 8 of the 16 floats of `y`.
        let v = unsafe { _mm256_loadu_ps(y.as_ptr().add(8 * half)) };
        let r = match ep {
            // SAFETY: AVX2 is available (our contract).
            Epilogue::Activate(a) => unsafe { avx2_float::activate(v, a) },
            // SAFETY: as above.
            Epilogue::Tanh => unsafe { avx2_float::tanh(v) },
            Epilogue::Store | Epilogue::Accumulate => {
                // SAFETY: out + 8 * half .. + n lies within out .. out + count.
                unsafe { epilogue_lanes(out.add(8 * half), &y[8 * half..], n, ep) };
                continue;
            }
        };
        let mut t = [0.0f32; 8];
        // SAFETY: an 8-float array.
        unsafe { _mm256_storeu_ps(t.as_mut_ptr(), r) };
        for (l, &v) in t.iter().enumerate().take(n) {
            // SAFETY: 8 * half + l < count: within our contract's range.
            unsafe { *out.add(8 * half + l) = v };
        }
    }
}

/// Every epilogue, for the x86-64 kernels' unit tests.
#[cfg(test)]
pub(super) const ALL_EPILOGUES: [Epilogue; 6] = {
    use crate::format::Activation;
    [
        Epilogue::Store,
        Epilogue::Accumulate,
        Epilogue::Tanh,
        Epilogue::Activate(Activation::GeluNew),
        Epilogue::Activate(Activation::Gelu),
        Epilogue::Activate(Activation::Relu),
    ]
};

/// Shared by the unit tests of the tiers whose GEMM is also built over an
/// emulation (no CPU of the tier at hand).
#[cfg(test)]
pub(super) mod test_support {
    use super::ALL_EPILOGUES;
    use crate::format::{Q8_K_GROUP, Q8_N_BLOCK};
    use crate::kernels::{check_gemm_q8, scalar, Epilogue, QMatrix};

    /// xorshift64.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub fn i8_in(&mut self, lo: i32, hi: i32) -> i8 {
            (lo + (self.next() % (hi - lo + 1) as u64) as i32) as i8
        }
        pub fn f32(&mut self) -> f32 {
            (self.next() % 2001) as f32 / 1000.0 - 1.0
        }
    }

    /// An unsafe [`crate::kernels::GemmQ8Fn`] (a kernel body's `gemm`).
    pub type RawGemm = unsafe fn(
        &[i8],
        usize,
        &[f32],
        &[i32],
        usize,
        &QMatrix<'_>,
        &[f32],
        &mut [f32],
        usize,
        Epilogue,
    );

    /// Runs `gemm` and the scalar reference on every `(m, n, k)` shape and
    /// every epilogue and asserts the same output bits: activations with
    /// -128 and 127 among random values, weights from `weight(rng, row,
    /// col)`, zero points including -128, 127 and 0, outputs with a stride
    /// wider than `n`. Returns the number of cases.
    ///
    /// # Safety
    ///
    /// `gemm` must be sound to call on this CPU with arguments that pass
    /// [`check_gemm_q8`].
    pub unsafe fn gemm_matches_scalar(
        seed: u64,
        shapes: &[(usize, usize, usize)],
        weight: impl Fn(&mut Rng, usize, usize) -> i8,
        gemm: RawGemm,
    ) -> usize {
        let mut rng = Rng(seed);
        let mut cases = 0;
        for &(m, n, k) in shapes {
            let kg = k.div_ceil(Q8_K_GROUP);
            let nbl = n.div_ceil(Q8_N_BLOCK);
            let lda = kg * Q8_K_GROUP + 3;
            let a: Vec<i8> = (0..m * lda)
                .map(|i| match i % 11 {
                    0 => -128,
                    1 => 127,
                    _ => rng.i8_in(-128, 127),
                })
                .collect();
            let mut packed = vec![0i8; nbl * kg * Q8_N_BLOCK * Q8_K_GROUP];
            let mut row_sums = vec![0i32; nbl * Q8_N_BLOCK];
            for (r, sum) in row_sums.iter_mut().enumerate().take(n) {
                for c in 0..k {
                    let v = weight(&mut rng, r, c);
                    let idx = ((r / Q8_N_BLOCK * kg + c / Q8_K_GROUP) * Q8_N_BLOCK
                        + r % Q8_N_BLOCK)
                        * Q8_K_GROUP
                        + c % Q8_K_GROUP;
                    packed[idx] = v;
                    *sum += v as i32;
                }
            }
            let scales: Vec<f32> = (0..nbl * Q8_N_BLOCK)
                .map(|_| rng.f32().abs() * 0.01)
                .collect();
            let smooth = vec![1.0f32; k];
            let w = QMatrix {
                n,
                k,
                k_groups: kg,
                packed: &packed,
                scales: &scales,
                row_sums: &row_sums,
                smooth: &smooth,
                pairs_bounded: false,
            };
            let a_scales: Vec<f32> = (0..m).map(|_| rng.f32().abs() * 0.05).collect();
            let a_zps: Vec<i32> = (0..m)
                .map(|i| [-128, 127, 0][i % 3].max(rng.i8_in(-128, 127) as i32 * (i % 2) as i32))
                .collect();
            let bias: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
            let ldo = n + 2;
            for ep in ALL_EPILOGUES {
                let init: Vec<f32> = (0..m * ldo).map(|_| rng.f32()).collect();
                let (mut want, mut got) = (init.clone(), init);
                scalar::gemm_q8(&a, lda, &a_scales, &a_zps, m, &w, &bias, &mut want, ldo, ep);
                check_gemm_q8(&a, lda, &a_scales, &a_zps, m, &w, &bias, &got, ldo);
                // SAFETY: the arguments passed `check_gemm_q8`; `gemm` is sound
                // on this CPU (our contract).
                unsafe { gemm(&a, lda, &a_scales, &a_zps, m, &w, &bias, &mut got, ldo, ep) };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "m {m} n {n} k {k} {ep:?}");
                cases += 1;
            }
        }
        cases
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 tier's vectorized epilogue gives the scalar epilogue's bits
    /// for every epilogue, every output count and special values.
    #[test]
    fn epilogue16_matches_the_scalar_epilogue() {
        if !std::is_x86_feature_detected!("avx2") {
            println!("AVX2 not available: skipped");
            return;
        }
        let specials = [
            0.0f32,
            -0.0,
            1e-40,
            -3.5,
            2.75,
            9.5,
            -12.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            f32::NAN,
            0.3,
            -0.61,
            4.0e-3,
            88.0,
        ];
        for ep in ALL_EPILOGUES {
            for rot in 0..16 {
                let mut y = [0.0f32; 16];
                for (l, v) in y.iter_mut().enumerate() {
                    *v = specials[(l + rot) % 16] * if rot % 2 == 0 { 1.0 } else { -0.7 };
                }
                for count in 0..=16 {
                    let init: Vec<f32> = (0..17).map(|i| i as f32 * 0.25 - 1.0).collect();
                    let (mut want, mut got) = (init.clone(), init.clone());
                    // SAFETY: both buffers hold 17 >= count floats; AVX2 checked above.
                    unsafe {
                        epilogue_lanes(want.as_mut_ptr(), &y, count, ep);
                        epilogue16_avx2(got.as_mut_ptr(), &y, count, ep);
                    }
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{ep:?}, count {count}, rotation {rot}"
                    );
                }
            }
        }
    }
}
