//! AVX-512 VNNI kernels: `gemm_i8_i8_8x48c4_avx512vnni` (and AVX2's
//! quantization).
//!
//! # The GEMM, first as pseudo-code
//!
//! ```text
//! for each group of NB = 3 n-blocks (48 outputs)
//!   for each tile of MR = 8 token rows
//!     acc[i][b] = 0                                (24 zmm of 16 x i32)
//!     for each chunk of up to KC_GROUPS k-groups
//!       u[i] = a[i][chunk] xor 0x80                (staged on the stack: s8 -> u8, a + 128)
//!       for each k-group g of the chunk
//!         w[b] = the 64 bytes of (n-block b, g)    (one zmm: 16 rows x 4 k, s8)
//!         for each row i
//!           acc[i][b] = vpdpbusd(acc[i][b], {1to16} u[i][4g..4g+4], w[b])
//!                                                  (per lane: 4 u8 x s8 products + acc)
//!     acc -= (zp[i] + 128) * row_sum[r]            (undo the +128 and the zero point)
//!     epilogue
//! ```
//!
//! `vpdpbusd` multiplies *unsigned* bytes by signed bytes. The activations take
//! the unsigned side, offset by 128 (`xor 0x80` maps -128..=127 to 0..=255),
//! and the weights the signed side as stored: `sum (a + 128) * w = sum a * w +
//! 128 * row_sum`, and the file stores every weight row's sum, so the epilogue
//! subtracts `(zp + 128) * row_sum` where the reference subtracts `zp *
//! row_sum`. The offset is applied once per row tile and chunk of the depth, to
//! a copy on the stack (`MR x KC_GROUPS x 4` bytes, 8 KiB; AVX2's staging, one
//! `vpxor` per 32 activations); the inner loop is then 3 weight loads, 8 broadcast loads
//! and 24 `vpdpbusd`, nothing else on the vector ports. (Offsetting the
//! weights instead, `(w + 128) * a`, costs 3 `vpxord` per 24 `vpdpbusd` in the
//! inner loop and a per-row activation sum; broadcasting first and offsetting
//! in the loop, 8.) The intermediate sums stay far below 2^31 (`|sum| <= 255 *
//! 127 * K` with `K < 2^16`), the i32 additions are exact in any order and
//! the corrected accumulator equals the scalar one modulo 2^32, so the result
//! is bit-identical. The float epilogue is the scalar one lane-wise (separate
//! `vmulps` and `vaddps`; `Activate` / `Tanh` 8 lanes at a time with AVX2's
//! functions, themselves the scalar reference lane for lane); partial n-blocks
//! use masked loads and stores.
//!
//! 24 accumulators, 3 weight vectors and a broadcast fit the 32 zmm registers.
//! `llvm-mca -mcpu=icelake-server` on the compiled inner loop (two ports
//! for 512-bit `vpdpbusd`): 12.0 cycles per k-group of 8 x 48 x 4 = 1536 MACs
//! (the 128 MACs per cycle of those ports), against 14.1 with the weights
//! offset in the loop.
//!
//! **Not measured on hardware yet**: the development machine has AVX2 but no
//! AVX-512. The tile shape follows the usual VNNI analysis, not a benchmark.
//! The kernel body is written once (`kernel_body`) and also instantiated over
//! a portable emulation of the intrinsics it uses (`emu`, tests only), so its
//! loops, tails, offsets and epilogue are tested against the scalar reference
//! on any x86-64 machine; only the intrinsics themselves are not.

use crate::kernels::{check_gemm_q8, Epilogue, Kernels, QMatrix, Tier};

/// Token rows per tile.
const MR: usize = 8;
/// n-blocks (of 16 outputs) per tile.
const NB: usize = 3;
/// k-groups per staged chunk and bytes per staged row: AVX2's, whose
/// staging (`stage_rows`) this tier shares.
use super::avx2::{KC, KC_GROUPS};

/// Proof that the CPU supports AVX-512 F/BW + VNNI and AVX2; the only way to
/// get this tier's table.
#[derive(Debug, Clone, Copy)]
pub struct Vnni512Kernels(());

crate::kernels::tier_constructors!(
    Vnni512Kernels,
    "The CPU must support AVX-512 F, BW and VNNI and AVX2, and the OS must save the ZMM state."
);

impl Vnni512Kernels {
    /// Whether this CPU (and OS) can run the tier: `avx512f`, `avx512bw`,
    /// `avx512vnni` and `avx2` (for the shared quantization). Without the `std`
    /// feature, the compile-time `target_feature`s.
    #[inline]
    pub fn is_available() -> bool {
        #[cfg(feature = "std")]
        {
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(feature = "std"))]
        {
            cfg!(all(
                target_feature = "avx512f",
                target_feature = "avx512bw",
                target_feature = "avx512vnni",
                target_feature = "avx2"
            ))
        }
    }

    /// The kernel table: AVX2's, with this `gemm_q8`.
    pub fn kernels(self) -> Kernels {
        // SAFETY: this tier's CPU requirement includes AVX2.
        let avx2 = unsafe { super::avx2::Avx2Kernels::new_unchecked() }.kernels();
        Kernels {
            tier: Tier::Avx512Vnni,
            gemm_q8: gemm_i8_i8_8x48c4_avx512vnni,
            ..avx2
        }
    }
}

/// [`crate::kernels::GemmQ8Fn`] for AVX-512 VNNI. Private: reachable only
/// through [`Vnni512Kernels::kernels`].
#[allow(clippy::too_many_arguments)]
fn gemm_i8_i8_8x48c4_avx512vnni(
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
    // SAFETY: the features are available (only reachable through a
    // `Vnni512Kernels` table) and `check_gemm_q8` proved every access in bounds.
    unsafe { real::gemm(a, lda, a_scales, a_zps, m, w, bias, out, ldo, ep) }
}

/// Runs a tile of `$r` rows by `$b` n-blocks through its monomorphized loop.
macro_rules! tile_dispatch {
    ($r:expr, $b:expr, $args:expr, [$($rr:literal)*]) => {{
        let (acc, u, w, block, kg) = $args;
        match ($r, $b) {
            $(
                ($rr, 3) => tile::<$rr, 3>(acc, u, w, block, kg),
                ($rr, 2) => tile::<$rr, 2>(acc, u, w, block, kg),
                ($rr, _) => tile::<$rr, 1>(acc, u, w, block, kg),
            )*
            _ => unreachable!(),
        }
    }};
}

/// The kernel: `gemm` (the n-block-group, row-tile and chunk loops, staging
/// with AVX2's `stage_rows`), `tile` and `store16`, over whatever `__m512i`, `__m512` and `_mm512_*` are
/// in scope, each function with the given attributes (the target features for
/// the real intrinsics, none for the emulation).
macro_rules! kernel_body {
    ($(#[$feat:meta])*) => {
        use super::{KC, KC_GROUPS, MR, NB};
        use crate::kernels::x86_64::avx2::stage_rows;
        use crate::format::{Q8_K_GROUP, Q8_N_BLOCK};
        use crate::kernels::{x86_64::epilogue16_avx2, Epilogue, QMatrix};

        /// The n-block-group, row-tile and chunk loops.
        ///
        /// # Safety
        ///
        /// The CPU must support the tier's features, and the arguments must
        /// pass [`check_gemm_q8`](crate::kernels::check_gemm_q8).
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
            let kg = w.k_groups;
            let block = kg * Q8_N_BLOCK * Q8_K_GROUP;
            let n_blocks = w.n.div_ceil(Q8_N_BLOCK);
            let outp = out.as_mut_ptr();
            // The offset activations of one row tile and chunk: row t at
            // byte t * KC (whole vectors, so staging stores never mask).
            let mut staged = [_mm512_setzero_si512(); MR * KC / 64];
            let u = staged.as_mut_ptr() as *mut u8;
            // Activations in a pass per n-block group after its tiles, as in
            // the AVX2 GEMM (same operations, same bits).
            let (tile_ep, act) = ep.split_activation();
            let mut nb = 0;
            while nb < n_blocks {
                let nbs = (n_blocks - nb).min(NB);
                // SAFETY: nb < n_blocks; packed holds n_blocks * block bytes.
                let wp = unsafe { w.packed.as_ptr().add(nb * block) };
                let mut i = 0;
                while i < m {
                    let rows = (m - i).min(MR);
                    // SAFETY: rows i..i+rows exist.
                    let ap = unsafe { a.as_ptr().add(i * lda) };
                    let mut acc = [[_mm512_setzero_si512(); NB]; MR];
                    let mut g0 = 0;
                    while g0 < kg {
                        let gs = (kg - g0).min(KC_GROUPS);
                        // SAFETY: rows i..i+rows have kg * 4 readable bytes
                        // (check_gemm_q8), so bytes 4 g0 .. 4 (g0 + gs) of
                        // each; `staged` holds MR rows of KC >= 4 gs bytes;
                        // the features are available.
                        unsafe {
                            stage_rows(ap.add(g0 * Q8_K_GROUP), lda, rows, gs * Q8_K_GROUP, u)
                        };
                        // SAFETY: the staged rows hold gs * 4 bytes each;
                        // n-blocks nb..nb+nbs have `block` readable bytes
                        // each, of which k-groups g0..g0+gs start at
                        // g0 * 64; the features are available.
                        unsafe {
                            tile_dispatch!(
                                rows,
                                nbs,
                                (&mut acc, u as *const u8, wp.add(g0 * 64), block, gs),
                                [8 7 6 5 4 3 2 1]
                            )
                        };
                        g0 += gs;
                    }
                    for (t, acc) in acc.iter().enumerate().take(rows) {
                        let row = i + t;
                        for (b, &acc) in acc.iter().enumerate().take(nbs) {
                            // SAFETY: row < m and n-block nb + b exists; the
                            // outputs of this row are in bounds (check_gemm_q8).
                            unsafe {
                                store16(
                                    acc,
                                    (a_scales[row], a_zps[row]),
                                    w,
                                    nb + b,
                                    bias,
                                    outp.add(row * ldo),
                                    tile_ep,
                                )
                            };
                        }
                    }
                    i += rows;
                }
                if let Some(ep) = act {
                    let (c0, c1) = (nb * Q8_N_BLOCK, ((nb + nbs) * Q8_N_BLOCK).min(w.n));
                    for row in 0..m {
                        // SAFETY: outputs c0..c1 of row < m are in bounds
                        // (check_gemm_q8) and hold the stored `y`; the tier
                        // requires AVX2.
                        unsafe {
                            crate::kernels::x86_64::avx2::activate_run(
                                outp.add(row * ldo + c0),
                                c1 - c0,
                                ep,
                            )
                        };
                    }
                }
                nb += nbs;
            }
        }

        /// Adds to the first `R` rows x `B` n-blocks of `acc` the `vpdpbusd`
        /// sums of `u * w` over `kg` k-groups.
        ///
        /// # Safety
        ///
        /// The tier's features; `u + r * KC .. + kg * 4` readable for `r <
        /// R`; `w + b * block .. + kg * 64` readable for `b < B`.
        $(#[$feat])*
        #[inline]
        unsafe fn tile<const R: usize, const B: usize>(
            acc: &mut [[__m512i; NB]; MR],
            u: *const u8,
            w: *const i8,
            block: usize,
            kg: usize,
        ) {
            let mut sums: [[__m512i; B]; R] = core::array::from_fn(|r| {
                core::array::from_fn(|b| acc[r][b])
            });
            for g in 0..kg {
                let mut wv = [_mm512_setzero_si512(); B];
                for (b, wv) in wv.iter_mut().enumerate() {
                    // SAFETY: b < B, g < kg: 64 readable bytes.
                    *wv = unsafe { _mm512_loadu_si512(w.add(b * block + g * 64) as *const _) };
                }
                for (r, sums) in sums.iter_mut().enumerate() {
                    // SAFETY: r < R, g < kg: 4 readable bytes.
                    let u4 = unsafe { (u.add(r * KC + g * 4) as *const i32).read_unaligned() };
                    let uv = _mm512_set1_epi32(u4);
                    for (s, &wv) in sums.iter_mut().zip(&wv) {
                        *s = _mm512_dpbusd_epi32(*s, uv, wv);
                    }
                }
            }
            for (acc, sums) in acc.iter_mut().zip(&sums) {
                acc[..B].copy_from_slice(sums);
            }
        }

        /// The epilogue of one row's 16 outputs of n-block `nb`; `(sa, za)`
        /// are the row's scale and zero point.
        ///
        /// # Safety
        ///
        /// The tier's features and AVX2; `out + nb * 16 .. out + min(n, nb * 16 + 16)`
        /// writable; the weight vectors hold `ceil(n / 16) * 16` values;
        /// `bias` holds `n`.
        #[allow(clippy::too_many_arguments)]
        $(#[$feat])*
        #[inline]
        unsafe fn store16(
            acc: __m512i,
            (sa, za): (f32, i32),
            w: &QMatrix<'_>,
            nb: usize,
            bias: &[f32],
            out: *mut f32,
            ep: Epilogue,
        ) {
            let r0 = nb * Q8_N_BLOCK;
            let count = (w.n - r0).min(16);
            let mask: __mmask16 = if count == 16 {
                0xffff
            } else {
                (1u16 << count) - 1
            };
            // SAFETY: r0 + 16 <= the padded length of scales and row sums.
            let (rs, sw) = unsafe {
                (
                    _mm512_loadu_si512(w.row_sums.as_ptr().add(r0) as *const _),
                    _mm512_loadu_ps(w.scales.as_ptr().add(r0)),
                )
            };
            // acc - (za + 128) * rs (i32, wrapping: equal to the reference's
            // acc - za * rs, the +128 * rs the offset added included).
            let acc = _mm512_sub_epi32(
                acc,
                _mm512_mullo_epi32(_mm512_set1_epi32(za.wrapping_add(128)), rs),
            );
            let s = _mm512_mul_ps(_mm512_set1_ps(sa), sw);
            let y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), s);
            // SAFETY: the masked lanes r0..r0+count are below n <= bias.len().
            let b = unsafe { _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(r0)) };
            let y = _mm512_add_ps(y, b);
            // SAFETY: out + r0 .. + count is writable (our contract).
            let o = unsafe { out.add(r0) };
            match ep {
                // SAFETY: only the `count` writable lanes are stored.
                Epilogue::Store => unsafe { _mm512_mask_storeu_ps(o, mask, y) },
                // SAFETY: only the `count` valid lanes are loaded and stored.
                Epilogue::Accumulate => unsafe {
                    _mm512_mask_storeu_ps(o, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, o), y))
                },
                _ => {
                    let mut t = [0.0f32; 16];
                    // SAFETY: a 16-float array.
                    unsafe { _mm512_storeu_ps(t.as_mut_ptr(), y) };
                    // SAFETY: `count` outputs at `o` are writable; the tier
                    // requires AVX2 (`Vnni512Kernels::is_available`).
                    unsafe { epilogue16_avx2(o, &t, count, ep) };
                }
            }
        }
    };
}

/// The kernel over the real intrinsics.
mod real {
    use core::arch::x86_64::*;
    kernel_body!(#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]);
}

/// The kernel over [`emu`]'s portable intrinsics, for tests on any x86-64 CPU
/// with AVX2 (the activation epilogues are AVX2's).
#[cfg(test)]
mod emulated {
    use super::emu::*;
    kernel_body!();
}

/// Portable stand-ins for the AVX-512 intrinsics `kernel_body` uses, written
/// from their definitions in Intel's intrinsics guide (lane 0 = lowest
/// address; masks select lane `l` by bit `l`).
#[cfg(test)]
#[allow(non_camel_case_types)]
mod emu {
    #[derive(Clone, Copy, Debug, PartialEq)]
    #[repr(C, align(64))]
    pub struct __m512i(pub [u8; 64]);
    #[derive(Clone, Copy, Debug)]
    pub struct __m512(pub [f32; 16]);
    pub type __mmask16 = u16;

    fn lanes(v: __m512i) -> [i32; 16] {
        core::array::from_fn(|l| i32::from_le_bytes(v.0[4 * l..4 * l + 4].try_into().unwrap()))
    }
    fn from_lanes(x: [i32; 16]) -> __m512i {
        let mut v = [0u8; 64];
        for (l, x) in x.iter().enumerate() {
            v[4 * l..4 * l + 4].copy_from_slice(&x.to_le_bytes());
        }
        __m512i(v)
    }
    pub fn _mm512_setzero_si512() -> __m512i {
        __m512i([0; 64])
    }
    pub fn _mm512_set1_epi32(x: i32) -> __m512i {
        from_lanes([x; 16])
    }
    pub fn _mm512_sub_epi32(a: __m512i, b: __m512i) -> __m512i {
        let (a, b) = (lanes(a), lanes(b));
        from_lanes(core::array::from_fn(|l| a[l].wrapping_sub(b[l])))
    }
    pub fn _mm512_mullo_epi32(a: __m512i, b: __m512i) -> __m512i {
        let (a, b) = (lanes(a), lanes(b));
        from_lanes(core::array::from_fn(|l| a[l].wrapping_mul(b[l])))
    }
    /// Per 32-bit lane: `src + sum_{j<4} u8(a byte j) * i8(b byte j)`, wrapping.
    pub fn _mm512_dpbusd_epi32(src: __m512i, a: __m512i, b: __m512i) -> __m512i {
        let s = lanes(src);
        from_lanes(core::array::from_fn(|l| {
            (0..4).fold(s[l], |acc, j| {
                acc.wrapping_add(a.0[4 * l + j] as i32 * b.0[4 * l + j] as i8 as i32)
            })
        }))
    }
    /// # Safety
    ///
    /// 64 bytes readable at `p`.
    pub unsafe fn _mm512_loadu_si512(p: *const __m512i) -> __m512i {
        // SAFETY: our contract.
        __m512i(unsafe { (p as *const [u8; 64]).read_unaligned() })
    }
    pub fn _mm512_set1_ps(x: f32) -> __m512 {
        __m512([x; 16])
    }
    pub fn _mm512_mul_ps(a: __m512, b: __m512) -> __m512 {
        __m512(core::array::from_fn(|l| a.0[l] * b.0[l]))
    }
    pub fn _mm512_add_ps(a: __m512, b: __m512) -> __m512 {
        __m512(core::array::from_fn(|l| a.0[l] + b.0[l]))
    }
    pub fn _mm512_cvtepi32_ps(a: __m512i) -> __m512 {
        let a = lanes(a);
        __m512(core::array::from_fn(|l| a[l] as f32))
    }
    /// # Safety
    ///
    /// 16 floats readable at `p`.
    pub unsafe fn _mm512_loadu_ps(p: *const f32) -> __m512 {
        // SAFETY: our contract.
        __m512(unsafe { (p as *const [f32; 16]).read_unaligned() })
    }
    /// # Safety
    ///
    /// The floats of the set mask bits readable at `p`.
    pub unsafe fn _mm512_maskz_loadu_ps(k: __mmask16, p: *const f32) -> __m512 {
        __m512(core::array::from_fn(|l| {
            if k >> l & 1 == 1 {
                // SAFETY: a selected float, readable (our contract).
                unsafe { *p.add(l) }
            } else {
                0.0
            }
        }))
    }
    /// # Safety
    ///
    /// 16 floats writable at `p`.
    pub unsafe fn _mm512_storeu_ps(p: *mut f32, a: __m512) {
        // SAFETY: our contract.
        unsafe { (p as *mut [f32; 16]).write_unaligned(a.0) }
    }
    /// # Safety
    ///
    /// The floats of the set mask bits writable at `p`.
    pub unsafe fn _mm512_mask_storeu_ps(p: *mut f32, k: __mmask16, a: __m512) {
        for l in 0..16 {
            if k >> l & 1 == 1 {
                // SAFETY: a selected float (our contract).
                unsafe { *p.add(l) = a.0[l] };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::x86_64::test_support::{gemm_matches_scalar, RawGemm, Rng};

    /// The kernel body over the emulated intrinsics gives the scalar
    /// reference's bits: row counts 1..=19 (every tile height and a partial
    /// second tile), widths that leave 1, 2 or 3 n-blocks and partial blocks,
    /// depths with and without a masked staging tail and of one, two and
    /// three staged chunks (the last one partial), extreme activations and
    /// weights, every zero point, every epilogue.
    #[test]
    fn kernel_body_matches_the_scalar_reference() {
        if !std::is_x86_feature_detected!("avx2") {
            println!("AVX2 not available (the activation epilogues use it): skipped");
            return;
        }
        let shapes = [
            (1usize, 1usize, 1usize),
            (8, 48, 64),
            (9, 49, 65),
            (19, 40, 260),
            (3, 16, 7),
            (16, 97, 129),
            (7, 33, 300),
            (5, 150, 768),
            (2, 5, 3),
            (9, 50, 1030),
            (3, 17, 4 * super::KC_GROUPS),
            (10, 33, 8 * super::KC_GROUPS + 5),
        ];
        let weight = |rng: &mut Rng, r: usize, c: usize| match (r + c) % 13 {
            0 => 127,
            1 => -127,
            _ => rng.i8_in(-127, 127),
        };
        let gemm: RawGemm = super::emulated::gemm;
        // SAFETY: the emulated body needs only AVX2 (checked above).
        let cases = unsafe { gemm_matches_scalar(0x9E37_79B9_7F4A_7C15, &shapes, weight, gemm) };
        println!("{cases} cases, emulated AVX-512 VNNI kernel = scalar");
    }
}
