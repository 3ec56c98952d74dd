//! x86-64 kernel tiers.
//!
//! * [`avx2`]: `quantize_rows` and `gemm_q8` with 256-bit AVX2 integer ops
//!   (`vpmaddubsw` with the sign trick, then `vpmaddwd` into i32); with
//!   `avx2_float`, the epilogue activations, `layer_norm` and `attention`.
//! * [`avx512vnni`]: `gemm_q8` with 512-bit `vpdpbusd`; reuses AVX2's
//!   `quantize_rows` (every AVX-512 CPU has AVX2, and the tier checks it).
//!
//! Both are bit-identical to [`crate::kernels::scalar`]; see the module docs of
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
