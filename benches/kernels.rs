//! Kernel benchmarks: every tier this CPU runs, side by side with scalar.
//!
//! ```text
//! cargo bench --bench kernels                 # peak + GMAC/s table, then criterion
//! cargo bench --bench kernels -- table        # only the peak and the tables
//! cargo bench --bench kernels -- gemm_q8/M32  # criterion groups matching a filter
//! ```
//!
//! The table reports `gemm_q8` throughput in GMAC/s (M * K * N multiply-adds
//! per second, one core) for albert-base shapes, and its share of two peaks:
//! the *measured* peak of the tier's inner instruction sequence (a
//! register-only loop, no memory) and the *nominal* peak (AVX-512 VNNI: 64 int8
//! MAC/cycle, AVX2: 32, at the clock read from `/proc/cpuinfo`'s `cpu MHz`,
//! which on a VM is the nominal clock, not the boost clock).
//!
//! A second table gives microseconds per call of the float kernels
//! (attention, LayerNorm, `gemm_f32`) and of `gemm_q8` with and without the
//! GELU epilogue, per tier.
//!
//! Criterion groups (`gemm_q8/M{m}_K{k}_N{n}`, `quantize_rows/M{m}_K{k}`) have
//! one entry per tier, with element throughput = MACs (or values quantized).

use albert_edge::format::{q8_pair_bounded, Q8_K_GROUP, Q8_N_BLOCK};
use albert_edge::kernels::{Epilogue, Kernels, QMatrix, Tier};
use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// albert-base linear layers: QKV (768 -> 2304), attention output and the FFN.
const SHAPES: &[(usize, usize)] = &[(768, 768), (768, 3072), (3072, 768), (768, 2304)];
const MS: &[usize] = &[8, 32, 128];

struct Data {
    m: usize,
    k: usize,
    n: usize,
    x: Vec<f32>,
    q: Vec<i8>,
    ldq: usize,
    scales: Vec<f32>,
    zps: Vec<i32>,
    packed: Vec<i8>,
    wscales: Vec<f32>,
    row_sums: Vec<i32>,
    smooth: Vec<f32>,
    bias: Vec<f32>,
    out: Vec<f32>,
    /// Passed as `QMatrix::pairs_bounded` (the weights are pair-bounded; false
    /// times the kernels' path for files without that property).
    pairs_bounded: bool,
}

impl Data {
    fn new(m: usize, k: usize, n: usize) -> Data {
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let (nb, kg) = (n.div_ceil(Q8_N_BLOCK), k.div_ceil(Q8_K_GROUP));
        let mut packed: Vec<i8> = (0..nb * kg * 64)
            .map(|_| ((rnd() % 255) as i32 - 127) as i8)
            .collect();
        // Pair-bounded, as the converter writes them (see format::Q8_PAIR_BOUND).
        for p in packed.chunks_exact_mut(2) {
            if !q8_pair_bounded(p[0], p[1]) {
                p[1] = ((128 - (p[0] as i32).abs()) * (p[1] as i32).signum()) as i8;
            }
        }
        let x: Vec<f32> = (0..m * k)
            .map(|_| (rnd() % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        let ldq = kg * 4;
        let mut d = Data {
            m,
            k,
            n,
            x,
            q: vec![0; m * ldq],
            ldq,
            scales: vec![0.0; m],
            zps: vec![0; m],
            packed,
            wscales: vec![0.01; nb * 16],
            row_sums: vec![0; nb * 16],
            smooth: vec![1.0; k],
            bias: vec![0.1; n],
            out: vec![0.0; m * n],
            pairs_bounded: true,
        };
        (Kernels::scalar().quantize_rows)(
            &d.x,
            k,
            m,
            &d.smooth,
            &mut d.q,
            ldq,
            &mut d.scales,
            &mut d.zps,
        );
        d
    }
    fn gemm(&mut self, kern: &Kernels) {
        self.gemm_ep(kern, Epilogue::Store)
    }
    fn gemm_ep(&mut self, kern: &Kernels, ep: Epilogue) {
        let w = QMatrix {
            n: self.n,
            k: self.k,
            k_groups: self.k.div_ceil(4),
            packed: &self.packed,
            scales: &self.wscales,
            row_sums: &self.row_sums,
            smooth: &self.smooth,
            pairs_bounded: self.pairs_bounded,
        };
        (kern.gemm_q8)(
            black_box(&self.q),
            self.ldq,
            &self.scales,
            &self.zps,
            self.m,
            &w,
            &self.bias,
            &mut self.out,
            self.n,
            ep,
        );
    }
    fn quantize(&mut self, kern: &Kernels) {
        (kern.quantize_rows)(
            black_box(&self.x),
            self.k,
            self.m,
            &self.smooth,
            &mut self.q,
            self.ldq,
            &mut self.scales,
            &mut self.zps,
        );
    }
}

/// The CPU time this thread has used, in ns (`CLOCK_THREAD_CPUTIME_ID`), so
/// that time slices given to other processes on a shared machine are not
/// counted; `None` where unavailable.
#[cfg(target_os = "linux")]
fn thread_cpu_ns() -> Option<u64> {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clk: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: libc's clock_gettime writes one timespec (two 64-bit fields on
    // 64-bit Linux) to the valid pointer we pass.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    (rc == 0 && cfg!(target_pointer_width = "64"))
        .then(|| t.sec as u64 * 1_000_000_000 + t.nsec as u64)
}
#[cfg(not(target_os = "linux"))]
fn thread_cpu_ns() -> Option<u64> {
    None
}

/// Best time of one call of `f` over repeated calls lasting about `budget` of
/// wall time: thread CPU time where available (see [`thread_cpu_ns`]), else
/// wall time.
fn best_time(budget: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    let mut best = Duration::MAX;
    while start.elapsed() < budget {
        let (c, t) = (thread_cpu_ns(), Instant::now());
        f();
        let wall = t.elapsed();
        let spent = match (c, thread_cpu_ns()) {
            (Some(a), Some(b)) => Duration::from_nanos(b - a),
            _ => wall,
        };
        best = best.min(spent);
    }
    best
}

/// The clock in GHz from `/proc/cpuinfo`, if readable.
fn cpu_ghz() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("cpu MHz"))?;
    Some(line.split(':').nth(1)?.trim().parse::<f64>().ok()? / 1000.0)
}

/// Measured peak (GMAC/s) of a tier's inner-loop instruction mix, without
/// memory traffic: independent accumulator chains in registers.
fn measured_peak(tier: Tier) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        match tier {
            Tier::Avx2 if std::is_x86_feature_detected!("avx2") => Some(peak::run(
                |iters| {
                    // SAFETY: AVX2 is available (checked above).
                    unsafe { peak::avx2(iters) }
                },
                peak::AVX2_MACS,
            )),
            Tier::AvxVnni
                if albert_edge::kernels::x86_64::avxvnni::AvxVnniKernels::is_available() =>
            {
                Some(peak::run(
                    |iters| {
                        // SAFETY: AVX-VNNI is available (checked above).
                        unsafe { peak::avx_vnni(iters) }
                    },
                    peak::AVX_VNNI_MACS,
                ))
            }
            Tier::Avx512Vnni
                if albert_edge::kernels::x86_64::avx512vnni::Vnni512Kernels::is_available() =>
            {
                Some(peak::run(
                    |iters| {
                        // SAFETY: AVX-512 VNNI is available (checked above).
                        unsafe { peak::vnni(iters) }
                    },
                    peak::VNNI_MACS,
                ))
            }
            _ => None,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        use albert_edge::kernels::aarch64::{neon_dot::NeonDotKernels, neon_i8mm::NeonI8mmKernels};
        match tier {
            Tier::Neon => Some(peak::run(
                |iters| {
                    // SAFETY: NEON is baseline on aarch64.
                    unsafe { peak::neon(iters) }
                },
                peak::NEON_MACS,
            )),
            Tier::NeonDot if NeonDotKernels::is_available() => Some(peak::run(
                |iters| {
                    // SAFETY: the dot-product extension is available (checked above).
                    unsafe { peak::neon_dot(iters) }
                },
                peak::DOT_MACS,
            )),
            Tier::NeonI8mm if NeonI8mmKernels::is_available() => Some(peak::run(
                |iters| {
                    // SAFETY: the int8 matrix multiply is available (checked above).
                    unsafe { peak::i8mm(iters) }
                },
                peak::I8MM_MACS,
            )),
            _ => None,
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = tier;
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod peak {
    use std::arch::asm;
    /// MACs per iteration of [`avx2`]: 8 chains x (maddubs, madd, add) x 32.
    pub const AVX2_MACS: u64 = 8 * 32;
    /// MACs per iteration of [`vnni`]: 16 chains x 64.
    pub const VNNI_MACS: u64 = 16 * 64;
    /// MACs per iteration of [`avx_vnni`]: 12 chains x 32.
    pub const AVX_VNNI_MACS: u64 = 12 * 32;

    /// GMAC/s of `f(iters)` doing `macs` MACs per iteration (best of many
    /// short runs, timed in thread CPU time).
    pub fn run(f: impl Fn(u64), macs: u64) -> f64 {
        let iters = 200_000u64;
        let t = super::best_time(std::time::Duration::from_millis(500), || f(iters));
        (iters * macs) as f64 / t.as_secs_f64() / 1e9
    }

    /// A register-only AVX2 loop: `ymm15` holds i16 ones (for `vpmaddwd`),
    /// then the given instructions run `iters` times; every ymm register is
    /// declared as clobbered.
    macro_rules! avx2_loop {
        ($(#[$doc:meta])* $name:ident, $($ins:literal,)*) => {
            $(#[$doc])*
            ///
            /// # Safety
            ///
            /// The CPU must support AVX2.
            #[target_feature(enable = "avx2")]
            pub unsafe fn $name(iters: u64) {
                // SAFETY: register-only AVX2 instructions (the caller
                // guarantees AVX2); every register written is declared as
                // clobbered.
                unsafe {
                    asm!(
                        "vpcmpeqw ymm15, ymm15, ymm15",
                        "vpabsw ymm15, ymm15",
                        "2:",
                        $($ins,)*
                        "dec {n}",
                        "jnz 2b",
                        n = inout(reg) iters => _,
                        out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                        out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                        out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                        out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                        options(nostack, nomem),
                    );
                }
            }
        };
    }

    avx2_loop!(
        /// The AVX2 kernel's per-32-MAC sequence for pair-bounded weights
        /// (`vpmaddubsw`, `vpmaddwd`, `vpaddd`) on 8 independent accumulators.
        avx2,
                "vpmaddubsw ymm8, ymm14, ymm12",
                "vpmaddubsw ymm9, ymm14, ymm13",
                "vpmaddubsw ymm10, ymm14, ymm12",
                "vpmaddubsw ymm11, ymm14, ymm13",
                "vpmaddwd ymm8, ymm8, ymm15",
                "vpmaddwd ymm9, ymm9, ymm15",
                "vpmaddwd ymm10, ymm10, ymm15",
                "vpmaddwd ymm11, ymm11, ymm15",
                "vpaddd ymm0, ymm0, ymm8",
                "vpaddd ymm1, ymm1, ymm9",
                "vpaddd ymm2, ymm2, ymm10",
                "vpaddd ymm3, ymm3, ymm11",
                "vpmaddubsw ymm8, ymm13, ymm12",
                "vpmaddubsw ymm9, ymm13, ymm14",
                "vpmaddubsw ymm10, ymm13, ymm12",
                "vpmaddubsw ymm11, ymm13, ymm14",
                "vpmaddwd ymm8, ymm8, ymm15",
                "vpmaddwd ymm9, ymm9, ymm15",
                "vpmaddwd ymm10, ymm10, ymm15",
                "vpmaddwd ymm11, ymm11, ymm15",
                "vpaddd ymm4, ymm4, ymm8",
                "vpaddd ymm5, ymm5, ymm9",
                "vpaddd ymm6, ymm6, ymm10",
                "vpaddd ymm7, ymm7, ymm11",
    );

    avx2_loop!(
        /// The AVX2 kernel's per-32-MAC sequence for any weights (`vpxor` of
        /// the weights with the activations' sign mask, then as [`avx2`]) on 8
        /// independent accumulators.
        avx2_any,
                "vpxor ymm8, ymm12, ymm13",
                "vpxor ymm9, ymm13, ymm12",
                "vpxor ymm10, ymm12, ymm14",
                "vpxor ymm11, ymm13, ymm14",
                "vpmaddubsw ymm8, ymm14, ymm8",
                "vpmaddubsw ymm9, ymm14, ymm9",
                "vpmaddubsw ymm10, ymm14, ymm10",
                "vpmaddubsw ymm11, ymm14, ymm11",
                "vpmaddwd ymm8, ymm8, ymm15",
                "vpmaddwd ymm9, ymm9, ymm15",
                "vpmaddwd ymm10, ymm10, ymm15",
                "vpmaddwd ymm11, ymm11, ymm15",
                "vpaddd ymm0, ymm0, ymm8",
                "vpaddd ymm1, ymm1, ymm9",
                "vpaddd ymm2, ymm2, ymm10",
                "vpaddd ymm3, ymm3, ymm11",
                "vpxor ymm8, ymm14, ymm13",
                "vpxor ymm9, ymm12, ymm13",
                "vpxor ymm10, ymm13, ymm14",
                "vpxor ymm11, ymm12, ymm14",
                "vpmaddubsw ymm8, ymm13, ymm8",
                "vpmaddubsw ymm9, ymm13, ymm9",
                "vpmaddubsw ymm10, ymm13, ymm10",
                "vpmaddubsw ymm11, ymm13, ymm11",
                "vpmaddwd ymm8, ymm8, ymm15",
                "vpmaddwd ymm9, ymm9, ymm15",
                "vpmaddwd ymm10, ymm10, ymm15",
                "vpmaddwd ymm11, ymm11, ymm15",
                "vpaddd ymm4, ymm4, ymm8",
                "vpaddd ymm5, ymm5, ymm9",
                "vpaddd ymm6, ymm6, ymm10",
                "vpaddd ymm7, ymm7, ymm11",
    );

    /// `vpdpbusd` (VEX, 256-bit) on 12 independent ymm accumulators.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX-VNNI.
    #[target_feature(enable = "avx2,avxvnni")]
    pub unsafe fn avx_vnni(iters: u64) {
        // SAFETY: register-only AVX-VNNI instructions (the caller guarantees
        // them); every register written is declared as clobbered.
        unsafe {
            asm!(
                "2:",
                "{{vex}} vpdpbusd ymm0, ymm12, ymm13",
                "{{vex}} vpdpbusd ymm1, ymm12, ymm13",
                "{{vex}} vpdpbusd ymm2, ymm12, ymm13",
                "{{vex}} vpdpbusd ymm3, ymm12, ymm13",
                "{{vex}} vpdpbusd ymm4, ymm12, ymm13",
                "{{vex}} vpdpbusd ymm5, ymm12, ymm13",
                "{{vex}} vpdpbusd ymm6, ymm12, ymm13",
                "{{vex}} vpdpbusd ymm7, ymm12, ymm13",
                "{{vex}} vpdpbusd ymm8, ymm12, ymm13",
                "{{vex}} vpdpbusd ymm9, ymm12, ymm13",
                "{{vex}} vpdpbusd ymm10, ymm12, ymm13",
                "{{vex}} vpdpbusd ymm11, ymm12, ymm13",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iters => _,
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                options(nostack, nomem),
            );
        }
    }

    /// `vpdpbusd` on 16 independent zmm accumulators.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX-512 F and VNNI.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn vnni(iters: u64) {
        // SAFETY: register-only AVX-512 VNNI instructions (the caller
        // guarantees them); every register written is declared as clobbered.
        unsafe {
            asm!(
                "2:",
                "vpdpbusd zmm0, zmm16, zmm17",
                "vpdpbusd zmm1, zmm16, zmm17",
                "vpdpbusd zmm2, zmm16, zmm17",
                "vpdpbusd zmm3, zmm16, zmm17",
                "vpdpbusd zmm4, zmm16, zmm17",
                "vpdpbusd zmm5, zmm16, zmm17",
                "vpdpbusd zmm6, zmm16, zmm17",
                "vpdpbusd zmm7, zmm16, zmm17",
                "vpdpbusd zmm8, zmm16, zmm17",
                "vpdpbusd zmm9, zmm16, zmm17",
                "vpdpbusd zmm10, zmm16, zmm17",
                "vpdpbusd zmm11, zmm16, zmm17",
                "vpdpbusd zmm12, zmm16, zmm17",
                "vpdpbusd zmm13, zmm16, zmm17",
                "vpdpbusd zmm14, zmm16, zmm17",
                "vpdpbusd zmm15, zmm16, zmm17",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) iters => _,
                out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
                out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
                out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
                out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _,
                options(nostack, nomem),
            );
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod peak {
    use std::arch::asm;
    /// MACs per iteration of [`neon`]: 4 x (`smull`, `smlal`, `smull2`,
    /// `smlal2`: 4 x 8 MACs).
    pub const NEON_MACS: u64 = 4 * 32;
    /// MACs per iteration of [`neon_dot`]: 16 chains x 16.
    pub const DOT_MACS: u64 = 16 * 16;
    /// MACs per iteration of [`i8mm`]: 16 chains x 32.
    pub const I8MM_MACS: u64 = 16 * 32;

    /// GMAC/s of `f(iters)` doing `macs` MACs per iteration (best of many
    /// short runs, timed in thread CPU time).
    pub fn run(f: impl Fn(u64), macs: u64) -> f64 {
        let iters = 200_000u64;
        let t = super::best_time(std::time::Duration::from_millis(500), || f(iters));
        (iters * macs) as f64 / t.as_secs_f64() / 1e9
    }

    /// A register-only loop of the given instructions, run `iters` times;
    /// every vector register is declared as clobbered.
    macro_rules! arm_loop {
        ($(#[$doc:meta])* $name:ident, $features:literal, $($ins:literal,)*) => {
            $(#[$doc])*
            ///
            /// # Safety
            ///
            /// The CPU must support the target features named on it.
            #[target_feature(enable = $features)]
            pub unsafe fn $name(iters: u64) {
                // SAFETY: register-only instructions (the caller guarantees
                // the features); every register written is declared as
                // clobbered.
                unsafe {
                    asm!(
                        "2:",
                        $($ins,)*
                        "subs {n}, {n}, #1",
                        "b.ne 2b",
                        n = inout(reg) iters => _,
                        out("v0") _, out("v1") _, out("v2") _, out("v3") _,
                        out("v16") _, out("v17") _, out("v18") _, out("v19") _,
                        out("v20") _, out("v21") _, out("v22") _, out("v23") _,
                        out("v24") _, out("v25") _, out("v26") _, out("v27") _,
                        out("v28") _, out("v29") _, out("v30") _, out("v31") _,
                        options(nostack, nomem),
                    );
                }
            }
        };
    }

    arm_loop!(
        /// The NEON kernel's sequence (`smull` + `smlal` of two k-groups into
        /// i16, `sadalp` into i32, low and high halves) on 8 accumulators.
        neon, "neon",
        "smull v16.8h, v0.8b, v1.8b", "smull2 v17.8h, v0.16b, v1.16b",
        "smull v18.8h, v0.8b, v2.8b", "smull2 v19.8h, v0.16b, v2.16b",
        "smull v20.8h, v3.8b, v1.8b", "smull2 v21.8h, v3.16b, v1.16b",
        "smull v22.8h, v3.8b, v2.8b", "smull2 v23.8h, v3.16b, v2.16b",
        "smlal v16.8h, v2.8b, v3.8b", "smlal2 v17.8h, v2.16b, v3.16b",
        "smlal v18.8h, v1.8b, v3.8b", "smlal2 v19.8h, v1.16b, v3.16b",
        "smlal v20.8h, v2.8b, v0.8b", "smlal2 v21.8h, v2.16b, v0.16b",
        "smlal v22.8h, v1.8b, v0.8b", "smlal2 v23.8h, v1.16b, v0.16b",
        "sadalp v24.4s, v16.8h", "sadalp v25.4s, v17.8h",
        "sadalp v26.4s, v18.8h", "sadalp v27.4s, v19.8h",
        "sadalp v28.4s, v20.8h", "sadalp v29.4s, v21.8h",
        "sadalp v30.4s, v22.8h", "sadalp v31.4s, v23.8h",
    );

    arm_loop!(
        /// `sdot` (by element, as the kernel) on 16 accumulators.
        neon_dot, "neon,dotprod",
        "sdot v16.4s, v0.16b, v1.4b[0]", "sdot v17.4s, v2.16b, v1.4b[0]",
        "sdot v18.4s, v3.16b, v1.4b[0]", "sdot v19.4s, v0.16b, v1.4b[1]",
        "sdot v20.4s, v0.16b, v2.4b[1]", "sdot v21.4s, v1.16b, v2.4b[1]",
        "sdot v22.4s, v3.16b, v2.4b[2]", "sdot v23.4s, v0.16b, v2.4b[2]",
        "sdot v24.4s, v0.16b, v3.4b[0]", "sdot v25.4s, v1.16b, v3.4b[0]",
        "sdot v26.4s, v2.16b, v3.4b[3]", "sdot v27.4s, v0.16b, v3.4b[3]",
        "sdot v28.4s, v1.16b, v0.4b[0]", "sdot v29.4s, v2.16b, v0.4b[1]",
        "sdot v30.4s, v3.16b, v0.4b[2]", "sdot v31.4s, v1.16b, v0.4b[3]",
    );

    arm_loop!(
        /// `smmla` on 16 accumulators.
        i8mm, "neon,i8mm",
        "smmla v16.4s, v0.16b, v1.16b", "smmla v17.4s, v2.16b, v1.16b",
        "smmla v18.4s, v3.16b, v1.16b", "smmla v19.4s, v0.16b, v2.16b",
        "smmla v20.4s, v1.16b, v2.16b", "smmla v21.4s, v3.16b, v2.16b",
        "smmla v22.4s, v0.16b, v3.16b", "smmla v23.4s, v1.16b, v3.16b",
        "smmla v24.4s, v2.16b, v3.16b", "smmla v25.4s, v0.16b, v0.16b",
        "smmla v26.4s, v1.16b, v1.16b", "smmla v27.4s, v2.16b, v2.16b",
        "smmla v28.4s, v3.16b, v3.16b", "smmla v29.4s, v1.16b, v0.16b",
        "smmla v30.4s, v2.16b, v0.16b", "smmla v31.4s, v3.16b, v0.16b",
    );
}

/// Nominal int8 MACs per cycle of a tier (one core).
fn nominal_macs_per_cycle(tier: Tier) -> Option<f64> {
    match tier {
        Tier::Avx512Vnni => Some(64.0),
        Tier::AvxVnni => Some(64.0), // 2 x 256-bit vpdpbusd per cycle (Golden Cove)
        Tier::Avx2 => Some(32.0),
        Tier::NeonDot => Some(32.0), // 2 x 128-bit sdot per cycle (A76-class)
        Tier::NeonI8mm => Some(64.0), // 2 x 128-bit smmla per cycle (A710-class)
        Tier::Neon => Some(16.0),
        Tier::Scalar => None,
    }
}

/// The peak and GMAC/s table (plain timing, best of many runs).
fn table() {
    let ghz = cpu_ghz();
    println!("# gemm_q8 throughput, one core (clock from /proc/cpuinfo: {ghz:?} GHz)");
    let tiers: Vec<Kernels> = Kernels::available().collect();
    let mut peaks = Vec::new();
    for k in &tiers {
        let p = measured_peak(k.tier);
        let nominal = nominal_macs_per_cycle(k.tier).zip(ghz).map(|(m, g)| m * g);
        println!(
            "peak {:<11} measured {:>7} GMAC/s   nominal {:>7} GMAC/s",
            k.tier.name(),
            p.map_or("-".into(), |v| format!("{v:.1}")),
            nominal.map_or("-".into(), |v| format!("{v:.1}")),
        );
        peaks.push((p, nominal));
        #[cfg(target_arch = "x86_64")]
        if k.tier == Tier::Avx2 {
            let any = peak::run(
                |iters| {
                    // SAFETY: AVX2 is available (the tier is in the table).
                    unsafe { peak::avx2_any(iters) }
                },
                peak::AVX2_MACS,
            );
            println!(
                "peak avx2 mix for unbounded weights (one more vpxor per 32 MACs): measured {any:.1} GMAC/s"
            );
        }
    }
    println!("| M | K x N | tier | GMAC/s | % measured peak | % nominal peak |");
    println!("|---|-------|------|--------|-----------------|----------------|");
    for &m in MS {
        for &(k, n) in SHAPES {
            let mut d = Data::new(m, k, n);
            for (kern, (p, nom)) in tiers.iter().zip(&peaks) {
                // AVX2 has a second path for weights that are not pair-bounded.
                let variants: &[(bool, &str)] = if kern.tier == Tier::Avx2 {
                    &[(true, ""), (false, " (unbounded)")]
                } else {
                    &[(true, "")]
                };
                for &(bounded, label) in variants {
                    d.pairs_bounded = bounded;
                    let budget = if kern.tier == Tier::Scalar { 300 } else { 1500 };
                    let t = best_time(Duration::from_millis(budget), || d.gemm(kern));
                    let g = (m * k * n) as f64 / t.as_secs_f64() / 1e9;
                    let pct = |p: &Option<f64>| {
                        p.map_or("-".into(), |p| format!("{:.0}%", 100.0 * g / p))
                    };
                    println!(
                        "| {m} | {k} x {n} | {}{label} | {g:.1} | {} | {} |",
                        kern.tier.name(),
                        pct(p),
                        pct(nom)
                    );
                }
                d.pairs_bounded = true;
            }
        }
    }
    // One encoder layer's four matrices in turn (QKV, attention output, FFN in,
    // FFN out), as a run streams them: each call finds its weights evicted
    // from L1/L2 by the others, unlike the repeated single shape above.
    println!(
        "| M | layer (4 matrices in turn) | tier | GMAC/s | % measured peak | % nominal peak |"
    );
    for &m in MS {
        let mut layer: Vec<Data> = [(768, 2304), (768, 768), (768, 3072), (3072, 768)]
            .iter()
            .map(|&(k, n)| Data::new(m, k, n))
            .collect();
        let macs: usize = layer.iter().map(|d| d.m * d.k * d.n).sum();
        for (kern, (p, nom)) in tiers.iter().zip(&peaks) {
            let variants: &[(bool, &str)] = if kern.tier == Tier::Avx2 {
                &[(true, ""), (false, " (unbounded)")]
            } else {
                &[(true, "")]
            };
            for &(bounded, label) in variants {
                for d in layer.iter_mut() {
                    d.pairs_bounded = bounded;
                }
                let budget = if kern.tier == Tier::Scalar { 300 } else { 1500 };
                let t = best_time(Duration::from_millis(budget), || {
                    for d in layer.iter_mut() {
                        d.gemm(kern);
                    }
                });
                let g = macs as f64 / t.as_secs_f64() / 1e9;
                let pct =
                    |p: &Option<f64>| p.map_or("-".into(), |p| format!("{:.0}%", 100.0 * g / p));
                println!(
                    "| {m} | 768 x 2304, 768 x 768, 768 x 3072, 3072 x 768 | {}{label} | {g:.1} | {} | {} |",
                    kern.tier.name(),
                    pct(p),
                    pct(nom)
                );
            }
            for d in layer.iter_mut() {
                d.pairs_bounded = true;
            }
        }
    }
}

/// Microseconds per call of the float kernels (and of the GELU epilogue on
/// top of a plain GEMM), per tier: best of many runs in thread CPU time.
fn float_table() {
    use albert_edge::format::Activation;
    use albert_edge::kernels::AttentionArgs;
    let tiers: Vec<Kernels> = Kernels::available().collect();
    println!("# float kernels, one core: microseconds per call (best run)");
    println!(
        "| kernel | shape | {} |",
        tiers
            .iter()
            .map(|k| k.tier.name())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|--------|-------|{}", "---|".repeat(tiers.len()));
    let row = |name: &str, shape: &str, f: &mut dyn FnMut(&Kernels)| {
        let cells: Vec<String> = tiers
            .iter()
            .map(|k| {
                let budget = if k.tier == Tier::Scalar { 300 } else { 800 };
                let t = best_time(Duration::from_millis(budget), || f(k));
                format!("{:.1}", t.as_secs_f64() * 1e6)
            })
            .collect();
        println!("| {name} | {shape} | {} |", cells.join(" | "));
    };
    for &seq in &[32usize, 128] {
        let (heads, d) = (12, 64);
        let a = heads * d;
        let qkv: Vec<f32> = (0..seq * 3 * a)
            .map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        let mask = vec![0.0f32; seq];
        let args = AttentionArgs {
            qkv: &qkv,
            ld_qkv: 3 * a,
            seq,
            q_begin: 0,
            q_end: seq,
            heads,
            head_dim: d,
            scale: 0.125,
            mask_bias: &mask,
            ld_ctx: a,
        };
        // The scores scratch a model run gives each chunk (room for
        // `ATTN_ROWS` query rows).
        let scores = albert_edge::workspace::ATTN_ROWS * seq;
        let (mut sc, mut ctx) = (vec![0.0f32; scores], vec![0.0f32; seq * a]);
        row("attention", &format!("seq {seq}, 12 x 64"), &mut |k| {
            (k.attention)(black_box(&args), &mut sc, &mut ctx)
        });
    }
    let (m, n) = (128, 768);
    let mut x: Vec<f32> = (0..m * n).map(|i| (i % 17) as f32 * 0.1).collect();
    let (g, b) = (vec![1.0f32; n], vec![0.0f32; n]);
    row("layer_norm", "128 rows x 768", &mut |k| {
        for r in x.chunks_mut(n) {
            (k.layer_norm)(black_box(r), &g, &b, 1e-12)
        }
    });
    let mut d = Data::new(128, 768, 3072);
    row("gemm_q8 Store", "128 x 768 x 3072", &mut |k| {
        d.gemm_ep(k, Epilogue::Store)
    });
    row("gemm_q8 gelu_new", "128 x 768 x 3072", &mut |k| {
        d.gemm_ep(k, Epilogue::Activate(Activation::GeluNew))
    });
    // The activation pass alone, in place over one FFN output.
    let mut y: Vec<f32> = (0..128 * 3072)
        .map(|i| (i % 97) as f32 * 0.06 - 3.0)
        .collect();
    let y0 = y.clone();
    row("activate gelu_new", "128 x 3072", &mut |k| {
        y.copy_from_slice(&y0);
        (k.activate)(black_box(&mut y), Epilogue::Activate(Activation::GeluNew))
    });
    // Inputs 30x wider (-90..84): most lanes' exp underflows (the subnormal
    // product that path once formed cost x86 a microcode assist per vector).
    let wide: Vec<f32> = y0.iter().map(|v| v * 30.0).collect();
    row("activate gelu_new, 30x wider", "128 x 3072", &mut |k| {
        y.copy_from_slice(&wide);
        (k.activate)(black_box(&mut y), Epilogue::Activate(Activation::GeluNew))
    });
    row("copy only (subtract)", "128 x 3072", &mut |_| {
        y.copy_from_slice(black_box(&y0));
    });
    // K = 4: the epilogue dominates.
    let mut d = Data::new(128, 4, 3072);
    row("gemm_q8 Store", "128 x 4 x 3072", &mut |k| {
        d.gemm_ep(k, Epilogue::Store)
    });
    row("gemm_q8 gelu_new", "128 x 4 x 3072", &mut |k| {
        d.gemm_ep(k, Epilogue::Activate(Activation::GeluNew))
    });
    row("gemm_q8 tanh", "128 x 4 x 3072", &mut |k| {
        d.gemm_ep(k, Epilogue::Tanh)
    });
    // The embedding projection of int8 files (128 -> 768), and an f32 file's
    // encoder matrices (the FFN's with its GELU).
    for (kk, n, ep) in [
        (128, 768, Epilogue::Store),
        (768, 768, Epilogue::Store),
        (768, 3072, Epilogue::Activate(Activation::GeluNew)),
        (3072, 768, Epilogue::Store),
    ] {
        let m = 128;
        let xa: Vec<f32> = (0..m * kk).map(|i| (i % 13) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..n * kk).map(|i| (i % 11) as f32 * 0.01).collect();
        let bias = vec![0.0f32; n];
        let mut out = vec![0.0f32; m * n];
        let name = if ep == Epilogue::Store {
            "gemm_f32"
        } else {
            "gemm_f32 gelu_new"
        };
        row(name, &format!("{m} x {kk} x {n}"), &mut |k| {
            (k.gemm_f32)(black_box(&xa), kk, m, &w, n, kk, &bias, &mut out, n, ep)
        });
    }
}

fn criterion_groups(c: &mut Criterion) {
    for &m in MS {
        for &(k, n) in SHAPES {
            let mut g = c.benchmark_group(format!("gemm_q8/M{m}_K{k}_N{n}"));
            g.throughput(Throughput::Elements((m * k * n) as u64));
            g.sample_size(10).measurement_time(Duration::from_secs(2));
            let mut d = Data::new(m, k, n);
            for kern in Kernels::available() {
                g.bench_function(BenchmarkId::from_parameter(kern.tier.name()), |b| {
                    b.iter(|| d.gemm(&kern))
                });
            }
            g.finish();
        }
    }
    for &m in MS {
        let k = 768;
        let mut g = c.benchmark_group(format!("quantize_rows/M{m}_K{k}"));
        g.throughput(Throughput::Elements((m * k) as u64));
        g.sample_size(10).measurement_time(Duration::from_secs(1));
        let mut d = Data::new(m, k, 16);
        for kern in Kernels::available() {
            g.bench_function(BenchmarkId::from_parameter(kern.tier.name()), |b| {
                b.iter(|| d.quantize(&kern))
            });
        }
        g.finish();
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // `table`: both tables, no criterion; `floats`: the float table alone.
    let only_table = args.iter().any(|a| a == "table");
    let only_floats = args.iter().any(|a| a == "floats");
    if args.is_empty() || only_table {
        table();
    }
    if args.is_empty() || only_table || only_floats {
        float_table();
    }
    if !only_table && !only_floats {
        let mut c = Criterion::default().configure_from_args();
        criterion_groups(&mut c);
        c.final_summary();
    }
}
