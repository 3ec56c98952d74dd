//! AVX2 kernels: `quantize_i8_8x4_avx2` and `gemm_i8_i8_2x32c4_avx2`.
//!
//! # The GEMM, first as pseudo-code
//!
//! ```text
//! for each group of NB n-blocks (NB x 16 outputs; each n-block packed as
//!                                [k_groups][16 rows][4 k] bytes)
//!   for each block of up to TILES tiles of MR token rows
//!     acc[i][0..16 NB] = 0 for its rows            (2 NB ymm of 8 x i32 per row)
//!     for each chunk of the depth (its NB n-blocks' weights: 16 KiB at most)
//!       for each tile of the block                 (the chunk's weights now in L1)
//!         stage u[i] = a[i][chunk] + 128 (pair-bounded) or |a[i][chunk]|
//!         and its sign mask (any weights) on the stack
//!         for each k-group g (4 inputs), two per loop iteration
//!           w   = the 64 bytes of (nb .. nb+NB, g) (2 ymm per n-block: 8 rows x 4 k each)
//!           for each row i of the tile
//!             a  = broadcast a[i][4g..4g+4] as i32 (the same 4 bytes in every lane)
//!             acc[i] += dot4(a, w)                 (per lane: 4 products summed)
//!     epilogue(acc - zp[i] * row_sum, scales, bias) for its rows
//! ```
//!
//! `MR x NB` is 1 x 4 for either form (see `MR`): 8 accumulators.
//!
//! `dot4` is `vpmaddwd(vpmaddubsw(u, s), 1)`: `vpmaddubsw` multiplies
//! unsigned bytes by signed bytes and adds adjacent pairs into an i16 *with
//! saturation*, and `vpmaddwd` by 1 adds the two pairs into i32. Two exact
//! forms, chosen per matrix; both stage the u8 operand once per row tile and
//! chunk of the depth, into a stack copy the loop broadcasts from memory (per
//! k-group and row one broadcast load, where transforming each broadcast cost
//! a `vmovd`, an operation and a broadcast from a register: 3-8% more GMAC/s
//! on the albert-base shapes).
//!
//! - **Pair-bounded weights** (`QMatrix::pairs_bounded`, what `albert-convert
//!   --weight-pairs bounded` writes: `|w[2j] + w[2j+1]| <= 128` in every
//!   row): `u = a + 128` (the activation's sign bit flipped) and `s = w`.
//!   Each pair sum is at most `255 * 128 = 32640 < 32767`: exact. The
//!   epilogue subtracts `(zp + 128) * row_sum` instead of `zp * row_sum`,
//!   which removes the offset too. Per 32 MACs: `vpmaddubsw`, `vpmaddwd`,
//!   `vpaddd`.
//! - **Any weights**: `u = |a|` (as u8: `|-128| = 128` fits) and `s = w ^
//!   mask`, the row's sign mask of `a` (-1 where `a < 0`) staged beside `u`.
//!   Where `a < 0`, `w ^ -1 = -w - 1`, so the sum comes out short by exactly
//!   `sum_{a < 0} |a|`, a number of the activation row alone: staging adds it
//!   to the row's accumulators (see `stage_magnitudes`). Each product is in
//!   `128 * -128 ..= 127 * 127`, a pair sum in `-32768 ..= 32258`: exact for
//!   every i8 weight. Per 32 MACs one more instruction than above, a `vpxor`
//!   (with the weights as its memory operand). The sign trick this replaced
//!   (`vpmaddubsw(|a|, vpsignb(w, a))`) has the same count, but on Zen 3
//!   `vpsignb` (like `vpabsb`) competes with the two multiplies for their
//!   pipes and `vpxor` does not: a register-only loop of the 4-instruction
//!   mix ran at 1.21 cycles per 32 MACs with `vpsignb`, 1.07 with `vpxor`
//!   (1.02 for the pair-bounded 3-instruction mix).
//!
//! The i32 sums are exact in any order (and wrap identically), so both forms
//! are bit-identical to the scalar loop.
//!
//! The float epilogue is the scalar one lane-wise: `cvtdq2ps`, then
//! `(sa * sw)` and `y * that` and `+ bias` as separate `vmulps` / `vaddps`
//! (Rust never contracts them into an FMA), then `Store` / `Accumulate` /
//! `Activate` / `Tanh` on 8 lanes (the activations from `avx2_float`, the
//! lane-wise image of the scalar reference; tails per element with it).
//!
//! # Quantization
//!
//! Two passes per row, as in
//! [`scalar::quantize_row`](crate::kernels::scalar::quantize_row): `vminps` /
//! `vmaxps` of `x * smooth` (8 lanes; min and max are order-independent, and `vminps(y, lo)`
//! returns `lo` when `y` is NaN, which is what `f32::min` does), the same scalar
//! code for the scale and zero point, then per element `vmulps`, `vmulps`,
//! `vroundps` (round half to even), `vaddps zp`, NaN lanes forced to 0 (the
//! scalar `NaN as i8` is 0), clamp, `vcvttps2dq` and two saturating packs.

use super::{avx2_float, epilogue_lanes};
use crate::format::{Q8_K_GROUP, Q8_N_BLOCK};
use crate::kernels::{
    check_gemm_q8, quant_params, quantize_value, Epilogue, Kernels, QMatrix, Tier,
};
use core::arch::x86_64::*;

/// Tile geometry (token rows x n-blocks of 16 outputs), either form: 1 x 4.
/// The weights go from memory straight into `vpmaddubsw` (pair-bounded) or
/// into the `vpxor` with the row's sign mask (any weights), so one broadcast
/// (or pair of broadcasts) serves 8 products. `cargo bench --bench kernels
/// -- table`: pair-bounded 78-86 GMAC/s against 2 x 2's 76-83 (3 x 2 with 12
/// accumulators slower, 71-77 vs 74-80); any weights 72-81 against 2 x 2's
/// 67-76.
const MR: usize = 1;
/// n-blocks per tile.
const NB: usize = 4;

/// The accumulators of an `MR` rows x `NB` n-blocks tile: per row and
/// n-block, two vectors of 8 x i32 sums.
pub(super) type Acc<const MR: usize, const NB: usize> = [[[__m256i; 2]; NB]; MR];

/// Proof that the CPU supports AVX2; the only way to get this tier's table.
#[derive(Debug, Clone, Copy)]
pub struct Avx2Kernels(());

crate::kernels::tier_constructors!(
    Avx2Kernels,
    "The CPU must support AVX2 (and the OS save the YMM state): every kernel \
     reached through this value executes AVX2 instructions."
);

impl Avx2Kernels {
    /// Whether this CPU (and OS) can run AVX2 code. Without the `std` feature
    /// this is the compile-time `target_feature = "avx2"`.
    #[inline]
    pub fn is_available() -> bool {
        #[cfg(feature = "std")]
        {
            std::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(feature = "std"))]
        {
            cfg!(target_feature = "avx2")
        }
    }

    /// The kernel table: every entry replaced by its AVX2 version.
    pub fn kernels(self) -> Kernels {
        Kernels {
            tier: Tier::Avx2,
            quantize_rows: quantize_i8_8x4_avx2,
            gemm_q8: gemm_i8_i8_2x32c4_avx2,
            gemm_f32: super::avx2_float::gemm_f32_avx2,
            layer_norm: super::avx2_float::layer_norm_avx2,
            attention: super::avx2_float::attention_avx2,
            activate: activate_avx2,
        }
    }
}

/// [`crate::kernels::QuantizeRowsFn`] for AVX2. Private: reachable only through
/// [`Avx2Kernels::kernels`], so AVX2 is known to be available.
#[allow(clippy::too_many_arguments)]
fn quantize_i8_8x4_avx2(
    x: &[f32],
    ldx: usize,
    m: usize,
    smooth: &[f32],
    q: &mut [i8],
    ldq: usize,
    scales: &mut [f32],
    zps: &mut [i32],
) {
    // SAFETY: this function is only reachable through a table built from an
    // `Avx2Kernels`, whose existence proves AVX2 support.
    unsafe { quantize_rows(x, ldx, m, smooth, q, ldq, scales, zps) }
}

/// The row loop of [`quantize_i8_8x4_avx2`]; slicing is checked here, the
/// vector loop in [`quantize_row`] reads only within its slices.
///
/// # Safety
///
/// The CPU must support AVX2.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn quantize_rows(
    x: &[f32],
    ldx: usize,
    m: usize,
    smooth: &[f32],
    q: &mut [i8],
    ldq: usize,
    scales: &mut [f32],
    zps: &mut [i32],
) {
    let k = smooth.len();
    assert!(
        ldq >= k.div_ceil(Q8_K_GROUP) * Q8_K_GROUP,
        "quantize_rows: ldq too small"
    );
    for i in 0..m {
        let xr = &x[i * ldx..i * ldx + k];
        let qr = &mut q[i * ldq..i * ldq + ldq];
        // SAFETY: AVX2 is available (our caller's contract).
        (scales[i], zps[i]) = unsafe { quantize_row(xr, smooth, qr) };
    }
}

/// One row: `x.len() == smooth.len() <= q.len()`.
///
/// # Safety
///
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
unsafe fn quantize_row(x: &[f32], smooth: &[f32], q: &mut [i8]) -> (f32, i32) {
    let k = x.len();
    debug_assert!(smooth.len() == k && q.len() >= k);
    let (xp, sp, qp) = (x.as_ptr(), smooth.as_ptr(), q.as_mut_ptr());
    // Pass 1: lo = min(0, min y), hi = max(0, max y).
    let mut lo = _mm256_setzero_ps();
    let mut hi = _mm256_setzero_ps();
    let mut c = 0;
    while c + 8 <= k {
        // SAFETY: c + 8 <= k = x.len() = smooth.len().
        let y = unsafe { _mm256_mul_ps(_mm256_loadu_ps(xp.add(c)), _mm256_loadu_ps(sp.add(c))) };
        // Operand order matters for NaN: the second operand is returned.
        lo = _mm256_min_ps(y, lo);
        hi = _mm256_max_ps(y, hi);
        c += 8;
    }
    let mut lanes_lo = [0.0f32; 8];
    let mut lanes_hi = [0.0f32; 8];
    // SAFETY: two 8-float arrays.
    unsafe {
        _mm256_storeu_ps(lanes_lo.as_mut_ptr(), lo);
        _mm256_storeu_ps(lanes_hi.as_mut_ptr(), hi);
    }
    let (mut lo, mut hi) = (0.0f32, 0.0f32);
    for l in 0..8 {
        lo = lo.min(lanes_lo[l]);
        hi = hi.max(lanes_hi[l]);
    }
    for (v, s) in x[c..].iter().zip(&smooth[c..]) {
        let y = v * s;
        lo = lo.min(y);
        hi = hi.max(y);
    }
    let Some((scale, inv, zp)) = quant_params(lo, hi) else {
        q.fill(0);
        return (0.0, 0);
    };
    // Pass 2: q = clamp(rhe(y * inv) + zp, -128, 127), 32 at a time.
    let invv = _mm256_set1_ps(inv);
    let zpv = _mm256_set1_ps(zp);
    // A macro, not a closure, so that the call stays inside this
    // `#[target_feature]` function and inlines.
    macro_rules! one {
        ($c:expr) => {
            // SAFETY: every use has $c + 8 <= k; AVX2 is available.
            unsafe { quant8(xp.add($c), sp.add($c), invv, zpv) }
        };
    }
    let mut c = 0;
    // Byte order after the two in-lane packs: [v0 0-3, v1 0-3, v2 0-3, v3 0-3 |
    // v0 4-7, ...] as 32-bit groups; this permutation restores 0..32.
    let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    while c + 32 <= k {
        let (v0, v1, v2, v3) = (one!(c), one!(c + 8), one!(c + 16), one!(c + 24));
        let p = _mm256_packs_epi16(_mm256_packs_epi32(v0, v1), _mm256_packs_epi32(v2, v3));
        let p = _mm256_permutevar8x32_epi32(p, perm);
        // SAFETY: c + 32 <= k <= q.len().
        unsafe { _mm256_storeu_si256(qp.add(c) as *mut __m256i, p) };
        c += 32;
    }
    while c + 8 <= k {
        let mut v = [0i32; 8];
        let v8 = one!(c);
        // SAFETY: an 8-lane i32 array.
        unsafe { _mm256_storeu_si256(v.as_mut_ptr() as *mut __m256i, v8) };
        for (l, &v) in v.iter().enumerate() {
            q[c + l] = v as i8; // already clamped to -128..=127
        }
        c += 8;
    }
    for ((d, &v), &s) in q[c..k].iter_mut().zip(&x[c..]).zip(&smooth[c..]) {
        *d = quantize_value(v, s, inv, zp);
    }
    q[k..].fill(0);
    (scale, zp as i32)
}

/// Eight quantized values (as i32 in -128..=127) of `x[0..8] * smooth[0..8]`.
///
/// # Safety
///
/// AVX2; 8 floats readable at `x` and at `s`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn quant8(x: *const f32, s: *const f32, inv: __m256, zp: __m256) -> __m256i {
    // SAFETY: 8 floats readable at each (our contract).
    let y = unsafe { _mm256_mul_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(s)) };
    let r =
        _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(y, inv));
    let r = _mm256_add_ps(r, zp);
    // NaN -> +0.0 (the ordered-compare mask is all zeros for NaN), as the
    // scalar `NaN as i8` gives 0.
    let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r));
    let r = _mm256_min_ps(
        _mm256_max_ps(r, _mm256_set1_ps(-128.0)),
        _mm256_set1_ps(127.0),
    );
    _mm256_cvttps_epi32(r)
}

/// [`crate::kernels::GemmQ8Fn`] for AVX2 (2 token rows x 32 outputs, k in
/// groups of 4). Private: reachable only through [`Avx2Kernels::kernels`].
#[allow(clippy::too_many_arguments)]
fn gemm_i8_i8_2x32c4_avx2(
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
    // SAFETY: AVX2 is available (this function is only reachable through an
    // `Avx2Kernels` table) and `check_gemm_q8` proved every access in bounds.
    unsafe {
        if w.pairs_bounded {
            // Activations offset to u8 (`a + 128`, staged), no sign step; the
            // offset comes off with the zero point (`zp + 128`).
            form::<true>(a, lda, a_scales, a_zps, m, w, bias, out, ldo, ep)
        } else {
            // `|a|` and the sign masks staged; the short sum corrected there.
            form::<false>(a, lda, a_scales, a_zps, m, w, bias, out, ldo, ep)
        }
    }
}

/// [`gemm_tiles`] with the staging and tiles of one form: pair-bounded
/// (`U8`: [`Stage::Flip`]) or any weights ([`Stage::Magnitude`]).
///
/// # Safety
///
/// The CPU must support AVX2, the arguments must pass [`check_gemm_q8`], and
/// `U8` only for pair-bounded weights.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn form<const U8: bool>(
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
    let stage = if U8 { Stage::Flip } else { Stage::Magnitude };
    // `gemm_tiles` calls each tile closure with a chunk of `c.rows` rows and
    // `c.kg` k-groups: `c.kg * 4` readable staged bytes per row at `c.u` and
    // `c.s` (stride KC), and `c.nbs` n-blocks of `c.kg * 64` readable bytes
    // from `c.w` (stride `block`), as `tile` requires.
    let run = |acc: &mut Acc<MR, NB>, c: &Chunk| {
        // SAFETY: see above; AVX2 is available (our contract).
        unsafe { tiles::<U8>(acc, c, block) }
    };
    // SAFETY: AVX2 is available and the arguments pass check_gemm_q8 (our
    // contract).
    unsafe {
        gemm_tiles(
            a, lda, a_scales, a_zps, m, w, bias, out, ldo, ep, stage, run,
        )
    }
}

/// [`tile`] for the chunk's `c.nbs <= NB` n-blocks (one row).
///
/// # Safety
///
/// As [`tile`] with `R = 1`, `B = c.nbs`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tiles<const U8: bool>(acc: &mut Acc<MR, NB>, c: &Chunk, block: usize) {
    // SAFETY: our contract.
    unsafe {
        match c.nbs {
            4 => tile::<1, 4, U8, MR, NB>(acc, c, block),
            3 => tile::<1, 3, U8, MR, NB>(acc, c, block),
            2 => tile::<1, 2, U8, MR, NB>(acc, c, block),
            _ => tile::<1, 1, U8, MR, NB>(acc, c, block),
        }
    }
}

/// k-groups (of 4 inputs) per staged chunk of a row tile's activations, at
/// most: [`gemm_tiles`] takes fewer when its n-block group's weights for that
/// many k-groups would not fit [`WEIGHT_CHUNK`].
pub(super) const KC_GROUPS: usize = 256;
/// Bytes of one staged row (whole 32-byte vectors).
pub(super) const KC: usize = KC_GROUPS * 4;
/// Bytes of the weights one depth chunk of an n-block group spans: half of a
/// 32 KiB L1 data cache, so that they stay there while every row tile of a
/// row block passes (the rest holds the staged rows and the accumulators).
const WEIGHT_CHUNK: usize = 16 * 1024;
/// Row tiles per row block of [`gemm_tiles`]: the tiles whose accumulators
/// are kept (on the stack) while the depth chunks pass.
const TILES: usize = 16;

/// What [`gemm_tiles`] stages for its tiles.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// `a + 128` (the sign bit flipped) as the u8 operand; zero points get 128
    /// more.
    Flip,
    /// `|a|` as the u8 operand and the sign mask of `a` (`-1` where `a < 0`,
    /// else 0) beside it, for `vpmaddubsw(|a|, w ^ mask)`; each row's
    /// accumulators start the chunk with `sum_{a < 0} |a|` over it added (see
    /// [`stage_magnitudes`]).
    Magnitude,
}

/// One call of a tile: `rows` token rows by `nbs` n-blocks over the `kg`
/// k-groups of one depth chunk.
pub(super) struct Chunk {
    /// The staged u8 operand of the same inputs (row stride [`KC`]).
    pub u: *const u8,
    /// The staged sign masks of the same inputs (row stride [`KC`]; with
    /// [`Stage::Magnitude`] only).
    pub s: *const i8,
    pub rows: usize,
    pub nbs: usize,
    /// The first n-block's weights at the chunk's first k-group (n-block
    /// stride: the GEMM's `block`).
    pub w: *const i8,
    pub kg: usize,
}

/// The n-block-group, row-block, depth-chunk and row-tile loops around
/// `tile(acc, chunk)`, which adds to `acc` the i32 sums of `chunk.rows <= MR`
/// token rows times `chunk.nbs <= NB` packed n-blocks over the chunk's
/// k-groups. A row block is up to [`TILES`] row tiles, whose accumulators
/// wait on the stack while the depth chunks pass; a chunk spans at most
/// [`WEIGHT_CHUNK`] bytes of weights (and [`KC_GROUPS`] k-groups), read from
/// L2 once per row block and from L1 by its tiles. Each tile's activations
/// are staged chunk by chunk as `stage` names, in stack copies (`MR * KC`
/// bytes each) that the tiles broadcast from memory: no per-broadcast offset
/// or `vpabsb`, and no broadcast from a register, in the inner loops. With
/// [`Stage::Flip`] every zero point gets 128 more.
///
/// # Safety
///
/// The CPU must support AVX2, the arguments must pass [`check_gemm_q8`], and
/// `tile` must be sound for every row tile and n-block group of the GEMM.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn gemm_tiles<const MR: usize, const NB: usize>(
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
    stage: Stage,
    tile: impl Fn(&mut Acc<MR, NB>, &Chunk),
) {
    let kg = w.k_groups;
    let block = kg * Q8_N_BLOCK * Q8_K_GROUP;
    let za_off = if stage == Stage::Flip { 128 } else { 0 };
    let mut staged = [[_mm256_setzero_si256(); KC / 32]; MR];
    let u = staged.as_mut_ptr() as *mut u8;
    let mut masks = [[_mm256_setzero_si256(); KC / 32]; MR];
    let s = masks.as_mut_ptr() as *mut i8;
    let n_blocks = w.n.div_ceil(Q8_N_BLOCK);
    let outp = out.as_mut_ptr();
    // An activation is applied in a pass of its own over each n-block group's
    // outputs (still in cache), not in each tile's epilogue: there its long
    // dependency chains (exp, division) stall the next tile's k-loop, while a
    // pass over many independent vectors runs at the instruction throughput.
    // Same operations on the same values, so the same bits.
    let (tile_ep, act) = ep.split_activation();
    // Weights of NB n-blocks for `kc` k-groups: at most WEIGHT_CHUNK bytes.
    let kc = (WEIGHT_CHUNK / (NB * Q8_N_BLOCK * Q8_K_GROUP)).clamp(1, KC_GROUPS);
    let mut nb = 0;
    while nb < n_blocks {
        let nbs = (n_blocks - nb).min(NB);
        // SAFETY: nb < n_blocks, and packed holds n_blocks * block bytes.
        let wp = unsafe { w.packed.as_ptr().add(nb * block) };
        // Row blocks of up to TILES row tiles; in each, the depth chunk
        // outermost: one chunk's weights are read from L2 once per row block
        // and then from L1 by its every tile (the 1 x 4 pair-bounded tile
        // needs 256 bytes of weights per k-group: 32 bytes per cycle from L2
        // is its whole compute time, so it waited on them).
        let mut i0 = 0;
        while i0 < m {
            let block_rows = (m - i0).min(TILES * MR);
            let tiles = block_rows.div_ceil(MR);
            // Ask for the block's output lines now, so that their misses (the
            // output of a wide GEMM does not fit the cache) overlap the
            // k-loop instead of stalling the epilogue. A prefetch never
            // faults (a safe intrinsic); the addresses are in bounds anyway.
            for row in i0..i0 + block_rows {
                let o = row * ldo + nb * Q8_N_BLOCK;
                for c in (0..nbs * Q8_N_BLOCK).step_by(16) {
                    _mm_prefetch::<_MM_HINT_T0>(outp.wrapping_add(o + c) as *const i8);
                }
            }
            let mut accs = [[[[_mm256_setzero_si256(); 2]; NB]; MR]; TILES];
            let mut g0 = 0;
            while g0 < kg {
                let gs = (kg - g0).min(kc);
                for (t, acc) in accs.iter_mut().enumerate().take(tiles) {
                    let i = i0 + t * MR;
                    let rows = (m - i).min(MR);
                    // SAFETY: rows i..i+rows have kg * 4 readable bytes
                    // (check_gemm_q8), so bytes 4 g0 .. 4 (g0 + gs) of each;
                    // `staged` holds MR rows of KC >= 4 gs bytes; AVX2.
                    let ac = unsafe { a.as_ptr().add(i * lda + g0 * Q8_K_GROUP) };
                    match stage {
                        // SAFETY: see above.
                        Stage::Flip => unsafe { stage_rows(ac, lda, rows, gs * Q8_K_GROUP, u) },
                        Stage::Magnitude => {
                            for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                                // SAFETY: see above (row r < rows; `masks`
                                // is laid out as `staged`).
                                let neg = unsafe {
                                    stage_magnitudes(
                                        ac.add(r * lda),
                                        gs * Q8_K_GROUP,
                                        u.add(r * KC),
                                        s.add(r * KC),
                                    )
                                };
                                for v in acc.iter_mut().flatten() {
                                    *v = _mm256_add_epi32(*v, neg);
                                }
                            }
                        }
                    }
                    let chunk = Chunk {
                        u,
                        s,
                        rows,
                        nbs,
                        // SAFETY: g0 < kg: within the first n-block's bytes.
                        w: unsafe { wp.add(g0 * Q8_N_BLOCK * Q8_K_GROUP) },
                        kg: gs,
                    };
                    tile(acc, &chunk);
                }
                g0 += gs;
            }
            for (t, acc) in accs.iter().enumerate().take(tiles) {
                let i = i0 + t * MR;
                for (r, acc) in acc.iter().enumerate().take((m - i).min(MR)) {
                    let row = i + r;
                    for (b, acc) in acc.iter().enumerate().take(nbs) {
                        // SAFETY: row < m; the outputs of n-block nb + b in
                        // this row are in bounds (check_gemm_q8); AVX2.
                        unsafe {
                            store_row(
                                acc,
                                a_scales[row],
                                a_zps[row] + za_off,
                                w,
                                nb + b,
                                bias,
                                outp.add(row * ldo),
                                tile_ep,
                            )
                        };
                    }
                }
            }
            i0 += block_rows;
        }
        if let Some(ep) = act {
            let (c0, c1) = (nb * Q8_N_BLOCK, ((nb + nbs) * Q8_N_BLOCK).min(w.n));
            for row in 0..m {
                // SAFETY: outputs c0..c1 of row < m are in bounds (check_gemm_q8)
                // and hold the stored `y`; AVX2 is available.
                unsafe { activate_run(outp.add(row * ldo + c0), c1 - c0, ep) };
            }
        }
        nb += nbs;
    }
}

/// [`crate::kernels::ActivateFn`] for AVX2. Private: reachable only through
/// [`Avx2Kernels::kernels`].
fn activate_avx2(x: &mut [f32], ep: Epilogue) {
    if ep.is_activation() {
        // SAFETY: AVX2 is available (only reachable through an `Avx2Kernels`
        // table); `x` is valid for `x.len()` reads and writes.
        unsafe { activate_run(x.as_mut_ptr(), x.len(), ep) }
    }
}

/// `out[j] = ep(out[j])` for `j < count` (`ep` an activation or tanh), 8
/// lanes at a time with AVX2's functions, the tail with the scalar reference
/// (lane for lane the same).
///
/// # Safety
///
/// AVX2; `out..out + count` valid for reads and writes.
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn activate_run(out: *mut f32, count: usize, ep: Epilogue) {
    let mut j = 0;
    while j + 8 <= count {
        // SAFETY: j + 8 <= count.
        unsafe {
            let o = out.add(j);
            let y = _mm256_loadu_ps(o);
            let v = match ep {
                Epilogue::Activate(a) => avx2_float::activate(y, a),
                _ => avx2_float::tanh(y),
            };
            _mm256_storeu_ps(o, v);
        }
        j += 8;
    }
    while j < count {
        // SAFETY: j < count.
        let o = unsafe { &mut *out.add(j) };
        crate::kernels::scalar::epilogue(o, *o, ep);
        j += 1;
    }
}

/// `u[t * KC + c] = a[t * lda + c] + 128` (as u8: the sign bit flipped) for
/// `t < rows`, `c < len`; the rest of each row's last vector gets 128.
///
/// # Safety
///
/// AVX2; `a + t * lda .. + len` readable for `t < rows`; `len` a multiple of
/// 4, at most [`KC`]; `u` writable for `rows * KC` bytes and 32-byte aligned.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn stage_rows(a: *const i8, lda: usize, rows: usize, len: usize, u: *mut u8) {
    let flip = _mm256_set1_epi8(i8::MIN);
    for t in 0..rows {
        let mut c = 0;
        while c < len {
            // SAFETY: t < rows, c < len: `load_upto` reads only bytes below
            // len (`len % 4 == 0`); t * KC + c + 32 <= rows * KC, 32-byte
            // aligned (c % 32 == 0).
            unsafe {
                let v = load_upto(a.add(t * lda + c), len - c);
                _mm256_store_si256(u.add(t * KC + c) as *mut __m256i, _mm256_xor_si256(v, flip));
            }
            c += 32;
        }
    }
}

/// The 32 bytes at `p`, or (`rem < 32`) its first `rem` bytes and zeros.
///
/// # Safety
///
/// AVX2; `rem` a multiple of 4; `p .. p + min(rem, 32)` readable.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load_upto(p: *const i8, rem: usize) -> __m256i {
    // SAFETY: 32 readable bytes, or a masked load of the rem / 4 whole
    // dwords below rem (our contract).
    unsafe {
        if rem >= 32 {
            _mm256_loadu_si256(p as *const __m256i)
        } else {
            let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let m = _mm256_cmpgt_epi32(_mm256_set1_epi32((rem / 4) as i32), lane);
            _mm256_maskload_epi32(p as *const i32, m)
        }
    }
}

/// Stages one row for [`Stage::Magnitude`]: `u[c] = |a[c]|` (as u8: `|-128|
/// = 128`) and `s[c] = -1` where `a[c] < 0`, else 0, for `c < len`, 0 for the
/// rest of the last vector; returns `sum_{c < len, a[c] < 0} |a[c]|` in every
/// i32 lane.
///
/// That sum is the whole difference between `sum |a| * (w ^ s)` and `sum a *
/// w`: where `a < 0`, `w ^ -1 = -w - 1`, so `|a| * (w ^ -1) = a * w - |a|`
/// (for every i8 `w`, -128 included). `vpmaddubsw` keeps those pairs exact:
/// each product is in `128 * -128 ..= 127 * 127`, a pair in `-32768 ..=
/// 32258`, inside i16.
///
/// # Safety
///
/// AVX2; `a .. a + len` readable; `len` a multiple of 4, at most [`KC`]; `u`
/// and `s` writable for `ceil(len / 32) * 32` bytes and 32-byte aligned.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn stage_magnitudes(a: *const i8, len: usize, u: *mut u8, s: *mut i8) -> __m256i {
    let zero = _mm256_setzero_si256();
    // Sums of 8 bytes in each u64 lane (`vpsadbw` against 0).
    let mut neg = zero;
    let mut c = 0;
    while c < len {
        // SAFETY: `load_upto` reads only bytes below len (`len % 4 == 0`);
        // c + 32 <= ceil(len / 32) * 32 bytes written at u + c and s + c,
        // 32-byte aligned (c % 32 == 0).
        unsafe {
            let v = load_upto(a.add(c), len - c);
            let mag = _mm256_abs_epi8(v);
            let sign = _mm256_cmpgt_epi8(zero, v);
            _mm256_store_si256(u.add(c) as *mut __m256i, mag);
            _mm256_store_si256(s.add(c) as *mut __m256i, sign);
            neg = _mm256_add_epi64(neg, _mm256_sad_epu8(_mm256_and_si256(mag, sign), zero));
        }
        c += 32;
    }
    // At most 128 * KC < 2^31: the low i32 of each u64 lane holds it.
    let half = _mm_add_epi64(
        _mm256_castsi256_si128(neg),
        _mm256_extracti128_si256::<1>(neg),
    );
    let total = _mm_add_epi64(half, _mm_unpackhi_epi64(half, half));
    _mm256_set1_epi32(_mm_cvtsi128_si32(total))
}

/// Adds to the first `R` rows x `B` n-blocks of `acc` the i32 dot products
/// of the chunk's k-groups: `sum |a| * (w ^ mask)` (`U8 = false`, from the
/// staged [`Stage::Magnitude`] operands: `sum a * w` less the staged
/// correction), or `sum (a + 128) * w` (`U8 = true`, from the staged `a +
/// 128`; pair-bounded weights only).
///
/// # Safety
///
/// AVX2; `c.rows >= R`, `c.nbs >= B`; for `r < R`, the `c.kg * 4` bytes at
/// `c.u + r * KC` readable, and (`U8 = false`) those at `c.s + r * KC`;
/// `c.w + b * block .. + c.kg * 64` readable for `b < B`.
// The innermost loops index the weight vectors, broadcasts and sums together.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile<const R: usize, const B: usize, const U8: bool, const MR: usize, const NB: usize>(
    acc: &mut Acc<MR, NB>,
    c: &Chunk,
    block: usize,
) {
    let (u, sm, w, kg) = (c.u, c.s, c.w, c.kg);
    let ones = _mm256_set1_epi16(1);
    let mut sums: [[[__m256i; 2]; B]; R] =
        core::array::from_fn(|r| core::array::from_fn(|b| acc[r][b]));
    // One k-group's products into `sums`.
    let mut step = |g: usize| {
        // The rows' broadcasts first, then each weight vector loaded and used
        // by every row in turn (one weight register live at a time).
        let mut ua = [_mm256_setzero_si256(); R];
        let mut ms = [_mm256_setzero_si256(); R];
        for r in 0..R {
            // SAFETY: r < R and g < kg: 4 readable bytes of the staged
            // operand and (not U8) of the staged masks.
            unsafe {
                ua[r] = _mm256_set1_epi32((u.add(r * KC + g * 4) as *const i32).read_unaligned());
                if !U8 {
                    ms[r] =
                        _mm256_set1_epi32((sm.add(r * KC + g * 4) as *const i32).read_unaligned());
                }
            }
        }
        for b in 0..B {
            for h in 0..2 {
                // SAFETY: b < B and g < kg, so the 64 bytes at
                // w + b * block + g * 64 are readable.
                let wv = unsafe {
                    _mm256_loadu_si256((w.add(b * block + g * 64) as *const __m256i).add(h))
                };
                for r in 0..R {
                    let sw = if U8 { wv } else { _mm256_xor_si256(wv, ms[r]) };
                    let p = _mm256_maddubs_epi16(ua[r], sw);
                    sums[r][b][h] = _mm256_add_epi32(sums[r][b][h], _mm256_madd_epi16(p, ones));
                }
            }
        }
    };
    // Two k-groups per iteration: the loop runs near the core's dispatch
    // width, and this halves the counter, the branch and the reload of
    // `ones` that register pressure forces into each iteration.
    let mut g = 0;
    while g + 2 <= kg {
        step(g);
        step(g + 1);
        g += 2;
    }
    if g < kg {
        step(g);
    }
    for (acc, sums) in acc.iter_mut().zip(&sums) {
        acc[..B].copy_from_slice(sums);
    }
}

/// The epilogue of one row's 16 outputs of n-block `nb`.
///
/// # Safety
///
/// AVX2; `out + nb * 16 .. out + min(n, nb * 16 + 16)` writable; the weight
/// vectors hold `ceil(n / 16) * 16` values; `bias` holds `n`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store_row(
    acc: &[__m256i; 2],
    sa: f32,
    za: i32,
    w: &QMatrix<'_>,
    nb: usize,
    bias: &[f32],
    out: *mut f32,
    ep: Epilogue,
) {
    for (h, &acc) in acc.iter().enumerate() {
        let r0 = nb * Q8_N_BLOCK + h * 8;
        if r0 >= w.n {
            break;
        }
        let count = (w.n - r0).min(8);
        // SAFETY: r0 + 8 <= the padded length of scales and row sums.
        let (rs, sw) = unsafe {
            (
                _mm256_loadu_si256(w.row_sums.as_ptr().add(r0) as *const __m256i),
                _mm256_loadu_ps(w.scales.as_ptr().add(r0)),
            )
        };
        let acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(_mm256_set1_epi32(za), rs));
        let s = _mm256_mul_ps(_mm256_set1_ps(sa), sw);
        let y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), s);
        let b = if count == 8 {
            // SAFETY: r0 + 8 <= n <= bias.len().
            unsafe { _mm256_loadu_ps(bias.as_ptr().add(r0)) }
        } else {
            let mut t = [0.0f32; 8];
            t[..count].copy_from_slice(&bias[r0..r0 + count]);
            // SAFETY: an 8-float array.
            unsafe { _mm256_loadu_ps(t.as_ptr()) }
        };
        let y = _mm256_add_ps(y, b);
        // SAFETY: out + r0 .. + count is writable (our contract).
        let o = unsafe { out.add(r0) };
        match ep {
            // SAFETY: count == 8 outputs at `o` are writable.
            Epilogue::Store if count == 8 => unsafe { _mm256_storeu_ps(o, y) },
            // SAFETY: count == 8 outputs at `o` are readable and writable.
            Epilogue::Accumulate if count == 8 => unsafe {
                _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), y))
            },
            // SAFETY: count == 8 outputs at `o` are writable; AVX2 is available.
            Epilogue::Activate(a) if count == 8 => unsafe {
                _mm256_storeu_ps(o, avx2_float::activate(y, a))
            },
            // SAFETY: as above.
            Epilogue::Tanh if count == 8 => unsafe { _mm256_storeu_ps(o, avx2_float::tanh(y)) },
            _ => {
                let mut t = [0.0f32; 8];
                // SAFETY: an 8-float array.
                unsafe { _mm256_storeu_ps(t.as_mut_ptr(), y) };
                // SAFETY: `count` outputs at `o` are writable.
                unsafe { epilogue_lanes(o, &t, count, ep) };
            }
        }
    }
}
