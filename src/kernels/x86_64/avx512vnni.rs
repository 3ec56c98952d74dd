//! AVX-512 VNNI kernels: `gemm_i8_i8_8x48c4_avx512vnni` (and AVX2's
//! quantization).
//!
//! # The GEMM, first as pseudo-code
//!
//! ```text
//! for each group of NB = 3 n-blocks (48 outputs)
//!   for each tile of MR = 8 token rows
//!     acc[i][b] = 0                                (24 zmm of 16 x i32)
//!     for each k-group g
//!       w[b] = the 64 bytes of (n-block b, g)      (one zmm: 16 rows x 4 k)
//!       for each row i
//!         u = broadcast (a[i][4g..4g+4] xor 0x80)  (s8 -> u8: a + 128)
//!         acc[i][b] = vpdpbusd(acc[i][b], u, w[b]) (per lane: 4 u8 x s8 products + acc)
//!     acc -= (zp[i] + 128) * row_sum[r]            (undo the +128 and the zero point)
//!     epilogue
//! ```
//!
//! `vpdpbusd` multiplies *unsigned* bytes by signed bytes, so activations are
//! offset by 128 (`xor 0x80` maps -128..=127 to 0..=255): `sum (a + 128) * w =
//! sum a * w + 128 * row_sum`, and the row sums are stored in the model file
//! for exactly this. The intermediate sums stay far below 2^31 (`|sum| <=
//! 255 * 127 * K` with `K < 2^16`), the i32 additions are exact in any order,
//! and the corrected accumulator equals the scalar one, so the result is
//! bit-identical. The float epilogue is the scalar one lane-wise (separate
//! `vmulps` and `vaddps`; `Activate` / `Tanh` 8 lanes at a time with AVX2's
//! functions, themselves the scalar reference lane for lane);
//! partial n-blocks use masked loads and stores.
//!
//! 24 accumulators + 3 weight vectors + the broadcast fit the 32 zmm registers.
//! Per k-group: 3 weight loads and 8 broadcasts feed 24 `vpdpbusd`.
//!
//! **Not measured on hardware yet**: the development machine has AVX2 but no
//! AVX-512. The tile shape follows the usual VNNI analysis, not a benchmark.

use super::epilogue16_avx2;
use crate::format::{Q8_K_GROUP, Q8_N_BLOCK};
use crate::kernels::{check_gemm_q8, Epilogue, Kernels, QMatrix, Tier};
use core::arch::x86_64::*;

/// Token rows per tile.
const MR: usize = 8;
/// n-blocks (of 16 outputs) per tile.
const NB: usize = 3;

/// Proof that the CPU supports AVX-512 F/BW + VNNI and AVX2; the only way to
/// get this tier's table.
#[derive(Debug, Clone, Copy)]
pub struct Vnni512Kernels(());

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

    /// The tier, or `None` when [`Vnni512Kernels::is_available`] is false.
    #[inline]
    pub fn new() -> Option<Self> {
        if Self::is_available() {
            // SAFETY: just checked.
            Some(unsafe { Self::new_unchecked() })
        } else {
            None
        }
    }

    /// The tier without checking.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX-512 F, BW and VNNI and AVX2, and the OS must
    /// save the ZMM state.
    #[inline]
    pub unsafe fn new_unchecked() -> Self {
        Vnni512Kernels(())
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
    unsafe { gemm(a, lda, a_scales, a_zps, m, w, bias, out, ldo, ep) }
}

/// Dispatches a tile of `$r` rows by `$b` n-blocks to its monomorphized loop.
macro_rules! tile_dispatch {
    ($r:expr, $b:expr, $args:expr, [$($rr:literal)*]) => {{
        let (a, lda, w, block, kg) = $args;
        match ($r, $b) {
            $(
                ($rr, 3) => widen(tile::<$rr, 3>(a, lda, w, block, kg)),
                ($rr, 2) => widen(tile::<$rr, 2>(a, lda, w, block, kg)),
                ($rr, _) => widen(tile::<$rr, 1>(a, lda, w, block, kg)),
            )*
            _ => unreachable!(),
        }
    }};
}

/// The n-block-group and row-tile loops.
///
/// # Safety
///
/// The CPU must support the tier's features, and the arguments must pass
/// [`check_gemm_q8`].
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn gemm(
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
            // SAFETY: rows i..i+rows have kg * 4 readable bytes, n-blocks
            // nb..nb+nbs have `block` readable bytes each; features available.
            let acc: [[__m512i; NB]; MR] =
                unsafe { tile_dispatch!(rows, nbs, (ap, lda, wp, block, kg), [8 7 6 5 4 3 2 1]) };
            for (t, acc) in acc.iter().enumerate().take(rows) {
                let row = i + t;
                for (b, &acc) in acc.iter().enumerate().take(nbs) {
                    // SAFETY: row < m and n-block nb + b exists; the outputs
                    // of this row are in bounds (check_gemm_q8).
                    unsafe {
                        store16(
                            acc,
                            a_scales[row],
                            a_zps[row],
                            w,
                            nb + b,
                            bias,
                            outp.add(row * ldo),
                            ep,
                        )
                    };
                }
            }
            i += rows;
        }
        nb += nbs;
    }
}

/// Pads a smaller tile's accumulators to `MR x NB` (the extra entries unused).
#[inline(always)]
fn widen<const R: usize, const B: usize>(acc: [[__m512i; B]; R]) -> [[__m512i; NB]; MR] {
    // SAFETY: `__m512i` is plain data; an all-zero value is valid.
    let mut out = [[unsafe { core::mem::zeroed::<__m512i>() }; NB]; MR];
    for (o, a) in out.iter_mut().zip(&acc) {
        o[..B].copy_from_slice(a);
    }
    out
}

/// `R` rows x `B` n-blocks of `vpdpbusd` sums (with the +128 offset) over all
/// `kg` k-groups.
///
/// # Safety
///
/// AVX-512 F/BW/VNNI; `a + r * lda .. + kg * 4` readable for `r < R`;
/// `w + b * block .. + kg * 64` readable for `b < B`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn tile<const R: usize, const B: usize>(
    a: *const i8,
    lda: usize,
    w: *const i8,
    block: usize,
    kg: usize,
) -> [[__m512i; B]; R] {
    let mut acc = [[_mm512_setzero_si512(); B]; R];
    for g in 0..kg {
        let mut wv = [_mm512_setzero_si512(); B];
        for (b, wv) in wv.iter_mut().enumerate() {
            // SAFETY: b < B, g < kg: 64 readable bytes.
            *wv = unsafe { _mm512_loadu_si512(w.add(b * block + g * 64) as *const _) };
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: r < R, g < kg: 4 readable bytes.
            let a4 = unsafe { (a.add(r * lda + g * 4) as *const u32).read_unaligned() };
            let u = _mm512_set1_epi32((a4 ^ 0x8080_8080) as i32);
            for (acc, &wv) in acc.iter_mut().zip(&wv) {
                *acc = _mm512_dpbusd_epi32(*acc, u, wv);
            }
        }
    }
    acc
}

/// The epilogue of one row's 16 outputs of n-block `nb`.
///
/// # Safety
///
/// AVX-512 F; `out + nb * 16 .. out + min(n, nb * 16 + 16)` writable; the
/// weight vectors hold `ceil(n / 16) * 16` values; `bias` holds `n`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn store16(
    acc: __m512i,
    sa: f32,
    za: i32,
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
    // acc - 128 * rs - za * rs, as one product: (za + 128) is in 0..=255.
    let acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_set1_epi32(za + 128), rs));
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
            // SAFETY: `count` outputs at `o` are writable; the tier requires
            // AVX2 (`Vnni512Kernels::is_available`).
            unsafe { epilogue16_avx2(o, &t, count, ep) };
        }
    }
}
