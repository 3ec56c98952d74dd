//! AVX-VNNI tier: AVX2's table with `gemm_q8` on the 256-bit VEX `vpdpbusd`
//! (Intel Alder Lake and later client cores, among them the Atom-class
//! N100 / N97 / N305 of many small x86 boards, which have no AVX-512; AMD Zen 4
//! and later have it too, next to AVX-512 VNNI).
//!
//! `vpdpbusd acc, u, s` adds to each i32 lane the four products of unsigned
//! bytes `u` and signed bytes `s`, summed in i32 without saturation: one
//! instruction per 32 MACs, against AVX2's three or four. The tile is AVX2's
//! pair-bounded form with `vpdpbusd` in place of `vpmaddubsw` + `vpmaddwd` +
//! `vpaddd`: `u = a + 128` (the activation's sign bit flipped, staged on the
//! stack by AVX2's driver, so one broadcast load per row and k-group and
//! nothing else besides the weight loads and `vpdpbusd`s), `s = w` for
//! **any** int8 weights (nothing saturates), and
//! the epilogue subtracts `(zp + 128) * row_sum`, which removes the offset with
//! the zero point. The i32 sums are exact in any order, so the outputs are
//! the scalar reference's bits. The loops, the epilogue and the activation
//! pass are AVX2's ([`super::avx2`]'s `gemm_tiles`).
//!
//! Tiles are 5 token rows x 1 n-block: 10 accumulators, 2 weight vectors
//! (each used by all 5 rows) and a broadcast, 13 of the 16 registers.
//! `vpdpbusd` has a latency of about 5 cycles at 2 per cycle, so fewer than
//! 10 independent accumulators leave the ports idle: `llvm-mca
//! -mcpu=alderlake` on the compiled loops gives 5.05 cycles per 8 `vpdpbusd`
//! for a 2 x 2 tile (latency-bound) and 5.05 per 10 for 5 x 1, 25% more MACs
//! per cycle (6 x 1 spills: the compiler alternates two broadcast
//! registers). A model, not a measurement (no such CPU here).
//!
//! No CPU of this tier was at hand: the kernel body is written once in
//! `vnni_body` and built twice, over the real intrinsic and (in tests) over
//! an exact AVX2 emulation of `vpdpbusd`, which the unit tests below check
//! against its definition and, through the whole GEMM, against the scalar
//! reference on every shape class and epilogue.

use crate::kernels::{check_gemm_q8, Epilogue, Kernels, QMatrix, Tier};

/// Proof that the CPU supports AVX2 and AVX-VNNI; the only way to get this
/// tier's table.
#[derive(Debug, Clone, Copy)]
pub struct AvxVnniKernels(());

crate::kernels::tier_constructors!(
    AvxVnniKernels,
    "The CPU must support AVX2 and AVX-VNNI (and the OS save the YMM state)."
);

impl AvxVnniKernels {
    /// Whether this CPU (and OS) can run AVX2 and AVX-VNNI code. Without the
    /// `std` feature, the compile-time `target_feature`s.
    #[inline]
    pub fn is_available() -> bool {
        #[cfg(feature = "std")]
        {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("avxvnni")
        }
        #[cfg(not(feature = "std"))]
        {
            cfg!(all(target_feature = "avx2", target_feature = "avxvnni"))
        }
    }

    /// The kernel table: AVX2's, with this `gemm_q8`.
    pub fn kernels(self) -> Kernels {
        // SAFETY: this tier's CPU requirement includes AVX2.
        let avx2 = unsafe { super::avx2::Avx2Kernels::new_unchecked() }.kernels();
        Kernels {
            tier: Tier::AvxVnni,
            gemm_q8: gemm_i8_i8_5x16c4_avxvnni,
            ..avx2
        }
    }
}

/// [`crate::kernels::GemmQ8Fn`] for AVX-VNNI. Private: reachable only through
/// [`AvxVnniKernels::kernels`].
#[allow(clippy::too_many_arguments)]
fn gemm_i8_i8_5x16c4_avxvnni(
    a: &[i8],
    lda: usize,
    a_scales: &[f32],
    a_zps: &[i32],
    m: usize,
    w: &QMatrix<'_>,
    bias: &[f32],
    out: &mut [f32],
    ldo: usize,
    ep: Epilogue,
) {
    check_gemm_q8(a, lda, a_scales, a_zps, m, w, bias, out, ldo);
    // SAFETY: AVX2 and AVX-VNNI are available (only reachable through an
    // `AvxVnniKernels` table) and `check_gemm_q8` proved every access in bounds.
    unsafe { real::gemm(a, lda, a_scales, a_zps, m, w, bias, out, ldo, ep) }
}

/// The kernel: `gemm` (AVX2's loops around this tier's tile) and `tile`, over
/// whatever `dpbusd(acc, u, s)` is in scope, each function with the given
/// attributes (the target features).
macro_rules! vnni_body {
    ($(#[$feat:meta])*) => {
        use crate::format::{Q8_K_GROUP, Q8_N_BLOCK};
        use crate::kernels::x86_64::avx2::{gemm_tiles, Acc, Chunk, Stage, KC};
        use crate::kernels::{Epilogue, QMatrix};
        use core::arch::x86_64::*;

        /// Token rows per tile.
        const MR: usize = 5;
        /// n-blocks (16 outputs) per tile.
        const NB: usize = 1;

        /// The GEMM over tiles of `MR x NB` n-blocks.
        ///
        /// # Safety
        ///
        /// The CPU must support the tier's features (AVX2 included), and the
        /// arguments must pass [`check_gemm_q8`](crate::kernels::check_gemm_q8).
        #[allow(clippy::too_many_arguments)]
        $(#[$feat])*
        pub(super) unsafe fn gemm(
            a: &[i8],
            lda: usize,
            a_scales: &[f32],
            a_zps: &[i32],
            m: usize,
            w: &QMatrix<'_>,
            bias: &[f32],
            out: &mut [f32],
            ldo: usize,
            ep: Epilogue,
        ) {
            let block = w.k_groups * Q8_N_BLOCK * Q8_K_GROUP;
            let run = |acc: &mut Acc<MR, NB>, c: &Chunk| {
                // SAFETY: `gemm_tiles` passes chunks of `c.rows <= MR` staged
                // rows (`c.kg * 4` readable bytes each at `c.u`, stride KC)
                // and `c.nbs` n-blocks of `c.kg * 64` readable bytes from
                // `c.w` (stride `block`); the features are available (our
                // contract).
                unsafe {
                    match c.rows {
                        5 => tile::<5, 1>(acc, c, block),
                        4 => tile::<4, 1>(acc, c, block),
                        3 => tile::<3, 1>(acc, c, block),
                        2 => tile::<2, 1>(acc, c, block),
                        _ => tile::<1, 1>(acc, c, block),
                    }
                }
            };
            // SAFETY: the features include AVX2 and the arguments pass
            // check_gemm_q8 (our contract); `run` is sound for every chunk
            // `gemm_tiles` gives it (above). The tiles sum `(a + 128) * w`
            // from the staged `a + 128` (`Stage::Flip`: the zero points get
            // 128 more).
            unsafe {
                gemm_tiles(a, lda, a_scales, a_zps, m, w, bias, out, ldo, ep, Stage::Flip, run)
            }
        }

        /// Adds to the first `R` rows x `B` n-blocks of `acc` the sums `(a +
        /// 128) * w` over the chunk's k-groups, one `dpbusd` per 32 MACs.
        ///
        /// # Safety
        ///
        /// The tier's features; `c.u + r * KC .. + c.kg * 4` readable for `r <
        /// R`; `c.w + b * block .. + c.kg * 64` readable for `b < B`.
        $(#[$feat])*
        #[inline]
        unsafe fn tile<const R: usize, const B: usize>(
            acc: &mut Acc<MR, NB>,
            c: &Chunk,
            block: usize,
        ) {
            let (u, w) = (c.u, c.w);
            let mut sums: Acc<R, B> =
                core::array::from_fn(|r| core::array::from_fn(|b| acc[r][b]));
            for g in 0..c.kg {
                let mut wv = [[_mm256_setzero_si256(); 2]; B];
                for (b, wv) in wv.iter_mut().enumerate() {
                    // SAFETY: b < B and g < kg: the 64 bytes at
                    // w + b * block + g * 64 are readable.
                    unsafe {
                        let p = w.add(b * block + g * 64) as *const __m256i;
                        *wv = [_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1))];
                    }
                }
                for (r, sums) in sums.iter_mut().enumerate() {
                    // SAFETY: r < R and g < kg: 4 readable staged bytes.
                    let u4 = unsafe { (u.add(r * KC + g * 4) as *const i32).read_unaligned() };
                    let ua = _mm256_set1_epi32(u4);
                    for (sums, wv) in sums.iter_mut().zip(&wv) {
                        for (s, &wv) in sums.iter_mut().zip(wv) {
                            // SAFETY: the features are available (our contract).
                            *s = unsafe { dpbusd(*s, ua, wv) };
                        }
                    }
                }
            }
            for (acc, sums) in acc.iter_mut().zip(&sums) {
                acc[..B].copy_from_slice(sums);
            }
        }
    };
}

/// The kernel over the real `vpdpbusd` (VEX-encoded, 256-bit).
mod real {
    use core::arch::x86_64::{__m256i, _mm256_dpbusd_avx_epi32};

    /// `acc + sum of the four u8 x i8 products` per i32 lane.
    ///
    /// # Safety
    ///
    /// AVX-VNNI.
    #[target_feature(enable = "avx2,avxvnni")]
    #[inline]
    unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_avx_epi32(acc, u, s)
    }

    vnni_body!(#[target_feature(enable = "avx2,avxvnni")]);
}

/// The kernel over an exact AVX2 emulation of `vpdpbusd`, for tests on any
/// x86-64 CPU with AVX2. Built without the AVX-VNNI feature, so the compiler
/// cannot fuse the emulation back into the real instruction.
#[cfg(test)]
mod emulated {
    // The intrinsics come from `vnni_body`'s glob import.

    /// `vpdpbusd` from AVX2: the even and odd bytes of each 16-bit half, `u`
    /// zero-extended and `s` sign-extended to i16, then `vpmaddwd` adds each
    /// pair of (at most 255 x 128) products into i32 exactly.
    ///
    /// # Safety
    ///
    /// AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(super) unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        let u_even = _mm256_and_si256(u, _mm256_set1_epi16(0x00ff));
        let u_odd = _mm256_srli_epi16::<8>(u);
        let s_even = _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(s));
        let s_odd = _mm256_srai_epi16::<8>(s);
        let even = _mm256_madd_epi16(u_even, s_even);
        let odd = _mm256_madd_epi16(u_odd, s_odd);
        _mm256_add_epi32(acc, _mm256_add_epi32(even, odd))
    }

    vnni_body!(#[target_feature(enable = "avx2")]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::x86_64::test_support::{gemm_matches_scalar, RawGemm, Rng};
    use core::arch::x86_64::*;

    /// The emulation is `vpdpbusd` by its definition (Intel's intrinsics
    /// guide: per i32 lane, `acc + sum_j u8(u[4l + j]) * i8(s[4l + j])`,
    /// wrapping), on extreme and random bytes.
    #[test]
    fn emulated_dpbusd_is_the_definition() {
        if !std::is_x86_feature_detected!("avx2") {
            println!("AVX2 not available: skipped");
            return;
        }
        let mut rng = Rng(7);
        for round in 0..2000 {
            let mut u = [0u8; 32];
            let mut s = [0i8; 32];
            let mut acc = [0i32; 8];
            for j in 0..32 {
                (u[j], s[j]) = match (round + j) % 5 {
                    0 => (255, -128),
                    1 => (255, 127),
                    2 => (0, -128),
                    _ => (rng.i8_in(-128, 127) as u8, rng.i8_in(-128, 127)),
                };
            }
            for (l, a) in acc.iter_mut().enumerate() {
                *a = match round % 3 {
                    0 => i32::MAX - l as i32,
                    1 => i32::MIN + l as i32,
                    _ => rng.i8_in(-128, 127) as i32 * 1_000_003,
                };
            }
            let want: Vec<i32> = (0..8)
                .map(|l| {
                    (0..4).fold(acc[l], |t, j| {
                        t.wrapping_add(u[4 * l + j] as i32 * s[4 * l + j] as i32)
                    })
                })
                .collect();
            let mut got = [0i32; 8];
            // SAFETY: AVX2 checked above; 32-byte arrays.
            unsafe {
                let r = emulated::dpbusd(
                    _mm256_loadu_si256(acc.as_ptr() as *const __m256i),
                    _mm256_loadu_si256(u.as_ptr() as *const __m256i),
                    _mm256_loadu_si256(s.as_ptr() as *const __m256i),
                );
                _mm256_storeu_si256(got.as_mut_ptr() as *mut __m256i, r);
            }
            assert_eq!(&got[..], &want[..], "round {round}");
        }
    }

    /// The kernel body over the emulated `vpdpbusd` gives the scalar
    /// reference's bits: row counts 1..=19 (full and partial row tiles) and
    /// 83 (a second row block of one partial tile),
    /// widths that leave 1 or 2 n-blocks and partial blocks, depths with a
    /// partial k-group and of one to three staged chunks, extreme activations
    /// and weights (runs of +-127: any
    /// weights, far beyond AVX2's pair bound), every zero point, every
    /// epilogue.
    #[test]
    fn kernel_body_matches_the_scalar_reference() {
        if !std::is_x86_feature_detected!("avx2") {
            println!("AVX2 not available: skipped");
            return;
        }
        let shapes = [
            (1usize, 1usize, 1usize),
            (2, 32, 64),
            (3, 33, 65),
            (19, 40, 260),
            (4, 16, 7),
            (16, 97, 129),
            (7, 48, 300),
            (5, 150, 768),
            (2, 5, 3),
            (3, 33, 4 * super::super::avx2::KC_GROUPS + 6),
            (2, 20, 8 * super::super::avx2::KC_GROUPS + 1),
            (83, 24, 2 * super::super::avx2::KC_GROUPS + 3),
        ];
        let weight = |rng: &mut Rng, r: usize, c: usize| match (r + c) % 13 {
            0..=2 => 127,
            3..=5 => -127,
            _ => rng.i8_in(-127, 127),
        };
        let gemm: RawGemm = emulated::gemm;
        // SAFETY: the emulated body needs only AVX2 (checked above).
        let cases = unsafe { gemm_matches_scalar(0x5851_F42D_4C95_7F2D, &shapes, weight, gemm) };
        println!("{cases} cases, emulated AVX-VNNI kernel = scalar");
    }
}
