//! The kernel table: every numeric operation the model calls, as plain `fn`
//! pointers, filled once per [`crate::Model`].
//!
//! [`Kernels::scalar`] is the reference (`scalar.rs`): plain, readable code that
//! *defines* the int8 arithmetic. Faster tiers start from that table and replace
//! the entries they do better; each replacement must give bit-identical results
//! for the integer parts (quantization, int8 GEMM accumulation and its epilogue)
//! and is tested against the reference in `tests/kernels.rs`.
//!
//! # The int8 arithmetic (the rounding rule)
//!
//! * **Weights** (converter, offline): per output row `r`,
//!   `scale[r] = max_c |w[r][c]| / 127` and `q = round_half_even(w / scale)`
//!   clamped to `-127..=127` (a zero row has scale 0 and all-zero values).
//! * **Activations** (run time, [`scalar::quantize_rows`]): asymmetric, per
//!   token row. First `y[c] = x[c] * smooth[c]` (f32 multiply; `smooth` is stored
//!   with the matrix, see [`crate::format::Q8Layout`]); `lo = min(0, min y)`,
//!   `hi = max(0, max y)`, `range = hi - lo`. If `range` is 0 or not finite the
//!   row is all zeros with scale 0 and zero point 0. Otherwise
//!   `inv = 255.0f32 / range`, `zp = clamp(rhe(-lo * inv) - 128, -128, 127)` and
//!   `q[c] = clamp(rhe(y[c] * inv) + zp, -128, 127)`, where `rhe` is
//!   round-half-to-even (what `cvtps2dq` and `fcvtns` do) and every operation is
//!   one IEEE f32 operation in the order written; `scale = range / 255.0f32`.
//! * **GEMM** ([`scalar::gemm_q8`]): `acc = sum_c q_x[c] * q_w[r][c] - zp * row_sum[r]`
//!   in i32 (exact, no saturation: activations are in -128..=127, weights in
//!   -127..=127, and K < 2^16), then
//!   `y = (acc as f32) * (scale_x * scale_w[r])` (the two scales multiplied first,
//!   in f32), then `y = y + bias[r]`, each a separate IEEE f32 operation (never
//!   fused into an FMA), then the [`Epilogue`].
//!
//! # Tiers: which entries each one replaces
//!
//! | tier | `quantize_rows` | `gemm_q8` | `layer_norm`, `attention`, epilogue activations | end-to-end output |
//! |------|-----------------|-----------|--------------------------------------------------|-------------------|
//! | `scalar` | reference | reference | reference | (the reference) |
//! | `avx2` (x86-64) | `quantize_i8_8x4_avx2` | `gemm_i8_i8_2x32c4_avx2` | 8-lane AVX2 | bit-identical |
//! | `avx512vnni` (x86-64) | AVX2's | `gemm_i8_i8_8x48c4_avx512vnni` | AVX2's | bit-identical |
//! | `avxvnni` (x86-64) | AVX2's | `gemm_i8_i8_5x16c4_avxvnni` (256-bit `vpdpbusd`) | AVX2's | bit-identical |
//! | `neon` (aarch64) | `quantize_i8_4x4_neon` | `gemm_i8_i8_2x16c4_neon` (SMULL/SMLAL + SADALP) | NEON | bit-identical |
//! | `neon-dot` (aarch64) | NEON's | `gemm_i8_i8_4x16c4_neondot` (`sdot`) | NEON's | bit-identical |
//! | `neon-i8mm` (aarch64) | NEON's | `gemm_i8_i8_4x16c8_i8mm` (`smmla`) | NEON's | bit-identical |
//!
//! `gemm_f32` (f32 model files, and the f32 parts of int8 ones) is vectorized
//! on x86-64 (AVX2's, also in the AVX-512 tier) and aarch64 (NEON's, also in
//! the NEON-dot and NEON-i8mm tiers).
//!
//! Every tier reproduces every entry bit for bit (including NaN inputs,
//! infinities, all-zero rows and every [`Epilogue`]), so **every tier's
//! whole-model output is bit-identical to the scalar tier's**, on x86-64 and
//! aarch64 alike. For the float entries this holds because the scalar
//! reference is itself written as a fixed sequence of single IEEE f32
//! operations that SIMD code can evaluate lane by lane: `exp` / `tanh` / `erf`
//! by fixed polynomials with exponent-bit scaling (never libm, never FMA),
//! sums over 8 lanes with one fixed reduction tree ([`scalar::reduce8`]),
//! min / max with the x86 `minps` / `maxps` NaN rule. The algorithms, their
//! accuracy against the true functions and the special-value policy are in
//! `docs/kernels.md`.
//!
//! # Dispatch
//!
//! Following memchr, each ISA has a type whose value proves the CPU supports
//! it (`is_available()`, a safe `new() -> Option<Self>`, an
//! `unsafe new_unchecked()`), and the only way to obtain that ISA's function
//! pointers is through such a value ([`Kernels::for_tier`]). [`Kernels::detect`]
//! takes the best tier the CPU supports: with the `std` feature by run-time
//! probing (`is_x86_feature_detected!`, `is_aarch64_feature_detected!`), without
//! it only from the compile-time `target_feature`s. NEON is part of the aarch64
//! baseline, so the `neon` tier is always available there.

/// `new()` and `unsafe new_unchecked()` for a SIMD tier's proof type
/// `$ty(())`, whose `is_available()` each tier writes itself; `$safety` is
/// what the CPU must support.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_macros)
)]
macro_rules! tier_constructors {
    ($ty:ident, $safety:literal) => {
        impl $ty {
            /// The tier, or `None` when `is_available()` is false.
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
            #[doc = $safety]
            #[inline]
            pub unsafe fn new_unchecked() -> Self {
                $ty(())
            }
        }
    };
}
// Unused on targets without a SIMD tier (e.g. Cortex-M).
#[allow(unused_imports)]
pub(crate) use tier_constructors;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

/// Instruction-set tier of a kernel table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Portable reference code.
    Scalar,
    /// x86-64 AVX2.
    Avx2,
    /// x86-64 AVX-512 with VNNI.
    Avx512Vnni,
    /// x86-64 AVX2 with AVX-VNNI (256-bit `vpdpbusd`, no AVX-512).
    AvxVnni,
    /// aarch64 NEON without the dot-product extension.
    Neon,
    /// aarch64 NEON with `sdot`.
    NeonDot,
    /// aarch64 NEON with `smmla` (int8 matrix multiply).
    NeonI8mm,
}

impl Tier {
    /// Every tier, reference first.
    pub const ALL: [Tier; 7] = [
        Tier::Scalar,
        Tier::Avx2,
        Tier::Avx512Vnni,
        Tier::AvxVnni,
        Tier::Neon,
        Tier::NeonDot,
        Tier::NeonI8mm,
    ];
    /// Lower-case name used by the CLI and `ALBERT_EDGE_TIER`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Scalar => "scalar",
            Tier::Avx2 => "avx2",
            Tier::Avx512Vnni => "avx512vnni",
            Tier::AvxVnni => "avxvnni",
            Tier::Neon => "neon",
            Tier::NeonDot => "neon-dot",
            Tier::NeonI8mm => "neon-i8mm",
        }
    }
    /// Parses a [`Tier::name`].
    pub fn from_name(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// A packed int8 weight matrix of `n` outputs by `k` inputs (layout:
/// [`crate::format::q8_layout`]).
#[derive(Debug, Clone, Copy)]
pub struct QMatrix<'a> {
    /// Output rows.
    pub n: usize,
    /// Inputs per row.
    pub k: usize,
    /// `ceil(k / 4)`.
    pub k_groups: usize,
    /// `[ceil(n/16)][k_groups][16][4]` values.
    pub packed: &'a [i8],
    /// One scale per (padded) row.
    pub scales: &'a [f32],
    /// Sum of each row's int8 values (for kernels that offset activations to u8).
    pub row_sums: &'a [i32],
    /// Per-input multiplier applied to activations before quantization (`k` values).
    pub smooth: &'a [f32],
    /// Every row's inputs `2j, 2j + 1` satisfy [`crate::format::q8_pair_bounded`]
    /// (see [`crate::format::Q8_PAIR_BOUND`]): kernels may then use pairwise
    /// multiplies that saturate to i16 on activations offset to u8 (AVX2).
    /// Set it only when it holds (a model sets it from its load-time check):
    /// if it does not, such a kernel's sums saturate and differ from the
    /// reference (wrong numbers, never undefined behaviour).
    pub pairs_bounded: bool,
}

/// What a GEMM does with `y = acc * scale + bias` for each output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// `out = y`.
    Store,
    /// `out = out + y` (a fused residual add).
    Accumulate,
    /// `out = act(y)`.
    Activate(crate::format::Activation),
    /// `out = tanh(y)` (the pooler).
    Tanh,
}

impl Epilogue {
    /// Whether this is an activation or tanh: a function of each output's
    /// value alone, which the GEMMs may apply in a pass after their tiles.
    pub fn is_activation(self) -> bool {
        matches!(self, Epilogue::Activate(_) | Epilogue::Tanh)
    }

    /// What a SIMD GEMM's tiles store (`Store` for an activation, else the
    /// epilogue itself), and the activation its pass applies afterwards.
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(dead_code)
    )]
    pub(crate) fn split_activation(self) -> (Epilogue, Option<Epilogue>) {
        if self.is_activation() {
            (Epilogue::Store, Some(self))
        } else {
            (self, None)
        }
    }
}

/// `quantize_rows(x, ldx, m, smooth, q, ldq, scales, zero_points)`: quantizes `m`
/// rows of `k = smooth.len()` values (row stride `ldx`), each first multiplied
/// by its channel's `smooth` factor, into `q` (row stride `ldq >= round_up(k, 4)`;
/// the padding columns are zeroed) and one scale and zero point per row.
pub type QuantizeRowsFn =
    fn(&[f32], usize, usize, &[f32], &mut [i8], usize, &mut [f32], &mut [i32]);
/// `gemm_q8(a, lda, a_scales, a_zero_points, m, w, bias, out, ldo, epilogue)`: `m`
/// quantized rows times `w` transposed, `out` row stride `ldo`.
pub type GemmQ8Fn =
    fn(&[i8], usize, &[f32], &[i32], usize, &QMatrix<'_>, &[f32], &mut [f32], usize, Epilogue);
/// `gemm_f32(a, lda, m, w, n, k, bias, out, ldo, epilogue)`: `w` is `[n][k]` row-major.
pub type GemmF32Fn =
    fn(&[f32], usize, usize, &[f32], usize, usize, &[f32], &mut [f32], usize, Epilogue);
/// `layer_norm(x, gamma, beta, eps)`: normalizes one row in place.
pub type LayerNormFn = fn(&mut [f32], &[f32], &[f32], f32);
/// Attention for one sequence, all heads: see [`scalar::attention`].
pub type AttentionFn = fn(&AttentionArgs<'_>, &mut [f32], &mut [f32]);
/// `activate(x, ep)`: `x[j] = ep(x[j])` in place for an activation or tanh
/// epilogue (`Epilogue::Activate`, `Epilogue::Tanh`; the others leave `x`
/// unchanged): see [`scalar::activate_in_place`].
pub type ActivateFn = fn(&mut [f32], Epilogue);

/// Inputs of the attention kernel for one sequence of the batch.
#[derive(Debug)]
pub struct AttentionArgs<'a> {
    /// `[seq][ld_qkv]` rows holding q (`0..A`), k (`A..2A`), v (`2A..3A`).
    pub qkv: &'a [f32],
    /// Row stride of `qkv`.
    pub ld_qkv: usize,
    /// Tokens in this sequence (keys and values).
    pub seq: usize,
    /// First query row this call computes (`q_begin..q_end`, within `0..seq`);
    /// lets threads split one sequence by query rows.
    pub q_begin: usize,
    /// One past the last query row this call computes.
    pub q_end: usize,
    /// Heads.
    pub heads: usize,
    /// Size of one head.
    pub head_dim: usize,
    /// Multiplier applied to `q . k` (`head_dim^-0.5` as f32).
    pub scale: f32,
    /// Additive bias per key position: 0 or `f32::MIN` for masked keys.
    pub mask_bias: &'a [f32],
    /// Row stride of the output context `[q_end - q_begin][ld_ctx]` (its row 0
    /// is query row `q_begin`).
    pub ld_ctx: usize,
}

/// The kernel table. Cheap to copy; stored in each [`crate::Model`].
#[derive(Clone, Copy)]
pub struct Kernels {
    /// Which tier filled the table (the highest one that replaced any entry).
    pub tier: Tier,
    /// Per-token activation quantization.
    pub quantize_rows: QuantizeRowsFn,
    /// int8 x int8 GEMM with f32 epilogue.
    pub gemm_q8: GemmQ8Fn,
    /// f32 GEMM.
    pub gemm_f32: GemmF32Fn,
    /// Row LayerNorm.
    pub layer_norm: LayerNormFn,
    /// Multi-head attention (scores, softmax, weighted sum of values).
    pub attention: AttentionFn,
    /// An activation applied in place (two-part activations' epilogue).
    pub activate: ActivateFn,
}

impl core::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Kernels").field("tier", &self.tier).finish()
    }
}

impl Kernels {
    /// The portable reference table.
    pub fn scalar() -> Kernels {
        Kernels {
            tier: Tier::Scalar,
            quantize_rows: scalar::quantize_rows,
            gemm_q8: scalar::gemm_q8,
            gemm_f32: scalar::gemm_f32,
            layer_norm: scalar::layer_norm,
            attention: scalar::attention,
            activate: scalar::activate_in_place,
        }
    }

    /// The best table this CPU supports. With the `std` feature, the environment
    /// variable `ALBERT_EDGE_TIER` (e.g. `scalar`) forces a tier when supported.
    pub fn detect() -> Kernels {
        #[cfg(feature = "std")]
        if let Ok(name) = std::env::var("ALBERT_EDGE_TIER") {
            if let Some(k) = Tier::from_name(&name).and_then(Kernels::for_tier) {
                return k;
            }
        }
        Kernels::best()
    }

    /// The best table this CPU supports, ignoring `ALBERT_EDGE_TIER`.
    pub fn best() -> Kernels {
        [
            Tier::Avx512Vnni,
            Tier::AvxVnni,
            Tier::Avx2,
            Tier::NeonI8mm,
            Tier::NeonDot,
            Tier::Neon,
        ]
        .into_iter()
        .find_map(Kernels::for_tier)
        .unwrap_or_else(Kernels::scalar)
    }

    /// The table for `tier`, or `None` when this CPU (or build) cannot run it.
    pub fn for_tier(tier: Tier) -> Option<Kernels> {
        match tier {
            Tier::Scalar => Some(Kernels::scalar()),
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => x86_64::avx2::Avx2Kernels::new().map(|k| k.kernels()),
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512Vnni => x86_64::avx512vnni::Vnni512Kernels::new().map(|k| k.kernels()),
            #[cfg(target_arch = "x86_64")]
            Tier::AvxVnni => x86_64::avxvnni::AvxVnniKernels::new().map(|k| k.kernels()),
            #[cfg(target_arch = "aarch64")]
            Tier::Neon => aarch64::neon::NeonKernels::new().map(|k| k.kernels()),
            #[cfg(target_arch = "aarch64")]
            Tier::NeonDot => aarch64::neon_dot::NeonDotKernels::new().map(|k| k.kernels()),
            #[cfg(target_arch = "aarch64")]
            Tier::NeonI8mm => aarch64::neon_i8mm::NeonI8mmKernels::new().map(|k| k.kernels()),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Every tier this CPU can run, reference first (for tests and benches).
    pub fn available() -> impl Iterator<Item = Kernels> {
        Tier::ALL.into_iter().filter_map(Kernels::for_tier)
    }
}

/// Panics unless the arguments of a [`GemmQ8Fn`] call are in bounds.
///
/// The scalar reference gets this from slice indexing; the SIMD tiers call it
/// once per GEMM and then read and write through raw pointers, so this check is
/// what their `// SAFETY:` comments rely on. Every product is checked, so a
/// caller cannot make it pass by overflow.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn check_gemm_q8(
    a: &[i8],
    lda: usize,
    a_scales: &[f32],
    a_zps: &[i32],
    m: usize,
    w: &QMatrix<'_>,
    bias: &[f32],
    out: &[f32],
    ldo: usize,
) {
    use crate::format::{Q8_K_GROUP, Q8_N_BLOCK};
    if m == 0 || w.n == 0 {
        return;
    }
    let row = w
        .k_groups
        .checked_mul(Q8_K_GROUP)
        .expect("gemm_q8: k_groups overflows");
    let need = |ld: usize, len: usize| (m - 1).checked_mul(ld).and_then(|v| v.checked_add(len));
    let n_blocks = w.n.div_ceil(Q8_N_BLOCK);
    let padded_n = n_blocks * Q8_N_BLOCK;
    let packed = n_blocks
        .checked_mul(row)
        .and_then(|v| v.checked_mul(Q8_N_BLOCK))
        .expect("gemm_q8: packed size overflows");
    assert!(lda >= row, "gemm_q8: lda < k_groups * 4");
    assert!(
        need(lda, row).is_some_and(|v| a.len() >= v),
        "gemm_q8: activations too short"
    );
    assert!(
        a_scales.len() >= m && a_zps.len() >= m,
        "gemm_q8: scales too short"
    );
    assert!(
        w.packed.len() >= packed,
        "gemm_q8: packed weights too short"
    );
    assert!(
        w.scales.len() >= padded_n && w.row_sums.len() >= padded_n,
        "gemm_q8: weight scales / row sums too short"
    );
    assert!(bias.len() >= w.n, "gemm_q8: bias too short");
    assert!(
        need(ldo, w.n).is_some_and(|v| out.len() >= v),
        "gemm_q8: output too short"
    );
}

/// Panics unless the arguments of a [`GemmF32Fn`] call are in bounds (what
/// the SIMD tiers' raw-pointer loops rely on, as for [`check_gemm_q8`]).
/// Returns `false` for an empty call.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn check_gemm_f32(
    a: &[f32],
    lda: usize,
    m: usize,
    w: &[f32],
    n: usize,
    k: usize,
    bias: &[f32],
    out: &[f32],
    ldo: usize,
) -> bool {
    if m == 0 || n == 0 {
        return false;
    }
    let need = |ld: usize, len: usize| (m - 1).checked_mul(ld).and_then(|v| v.checked_add(len));
    assert!(lda >= k && ldo >= n, "gemm_f32: row stride too small");
    assert!(
        need(lda, k).is_some_and(|v| a.len() >= v),
        "gemm_f32: input too short"
    );
    assert!(
        n.checked_mul(k).is_some_and(|v| w.len() >= v),
        "gemm_f32: weights too short"
    );
    assert!(bias.len() >= n, "gemm_f32: bias too short");
    assert!(
        need(ldo, n).is_some_and(|v| out.len() >= v),
        "gemm_f32: output too short"
    );
    true
}

/// `block(out, i, rows, r)` of [`gemm_f32_blocks`].
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub(crate) type F32Block<'a> = dyn FnMut(&mut [f32], usize, usize, usize) + 'a;

/// The loop order of the NEON `gemm_f32`: blocks of 4 outputs outermost
/// (their 4 weight rows stay in cache while every input row passes), input
/// rows two at a time, `block(out, i, rows, r)` computing outputs `r..r + 4`
/// of rows `i..i + rows` (`rows` 2, or 1 for an odd last row); then the
/// outputs past the last whole block with the scalar reference.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub(crate) fn gemm_f32_blocks(
    a: &[f32],
    lda: usize,
    m: usize,
    w: &[f32],
    n: usize,
    k: usize,
    bias: &[f32],
    out: &mut [f32],
    ldo: usize,
    ep: Epilogue,
    block: &mut F32Block<'_>,
) {
    let mut r = 0;
    while r + 4 <= n {
        let mut i = 0;
        while i + 2 <= m {
            block(out, i, 2, r);
            i += 2;
        }
        if i < m {
            block(out, i, 1, r);
        }
        r += 4;
    }
    for i in 0..m {
        let x = &a[i * lda..i * lda + k];
        for r in r..n {
            let y = scalar::dot_f32(x, &w[r * k..(r + 1) * k]) + bias[r];
            scalar::epilogue(&mut out[i * ldo + r], y, ep);
        }
    }
}

/// Panics unless every access of an attention call is in bounds (what the
/// raw-pointer loops below rely on). Returns `false` for an empty call.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn check_attention(args: &AttentionArgs<'_>, scores: &[f32], ctx: &[f32]) -> bool {
    let (s, d, heads) = (args.seq, args.head_dim, args.heads);
    assert!(
        args.q_begin <= args.q_end && args.q_end <= s,
        "attention: query range outside the sequence"
    );
    if s == 0 || d == 0 || heads == 0 || args.q_begin == args.q_end {
        return false;
    }
    let a = heads
        .checked_mul(d)
        .expect("attention: heads * head_dim overflows");
    let row = a
        .checked_mul(3)
        .expect("attention: 3 * heads * head_dim overflows");
    assert!(
        args.ld_qkv >= row,
        "attention: ld_qkv < 3 * heads * head_dim"
    );
    let need = (s - 1)
        .checked_mul(args.ld_qkv)
        .and_then(|v| v.checked_add(row));
    assert!(
        need.is_some_and(|v| args.qkv.len() >= v),
        "attention: qkv too short"
    );
    assert!(args.mask_bias.len() >= s, "attention: mask_bias too short");
    assert!(scores.len() >= s, "attention: scores too short");
    assert!(args.ld_ctx >= a, "attention: ld_ctx < heads * head_dim");
    let need = (args.q_end - args.q_begin - 1)
        .checked_mul(args.ld_ctx)
        .and_then(|v| v.checked_add(a));
    assert!(
        need.is_some_and(|v| ctx.len() >= v),
        "attention: ctx too short"
    );
    true
}

/// One quantized value, exactly as [`scalar::quantize_row`] computes it:
/// `clamp(rhe(y * inv) + zp, -128, 127)` with `y = v * s` (NaN gives 0, like
/// the scalar `as i8` cast). The SIMD tiers use it for their tails.
#[inline]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn quantize_value(v: f32, s: f32, inv: f32, zp: f32) -> i8 {
    let r = scalar::round_half_even((v * s) * inv) + zp;
    r.clamp(-128.0, 127.0) as i8
}

/// The scale and zero point of a row whose `min(0, min y)` and `max(0, max y)`
/// are `lo` and `hi`, exactly as [`scalar::quantize_row`] computes them:
/// `None` for a row that quantizes to all zeros, else `(scale, inv, zp)` with
/// `zp` still in f32.
#[inline]
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn quant_params(lo: f32, hi: f32) -> Option<(f32, f32, f32)> {
    let range = hi - lo;
    if !(range > 0.0 && range.is_finite()) {
        return None;
    }
    let inv = 255.0f32 / range;
    let zp = (scalar::round_half_even(-lo * inv) - 128.0).clamp(-128.0, 127.0);
    Some((range / 255.0f32, inv, zp))
}
