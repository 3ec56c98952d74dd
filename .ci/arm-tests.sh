#!/usr/bin/env bash
# Cross-compiles the root crate's whole test suite for aarch64 Linux and runs it
# under qemu-user twice: as a Cortex-A72 (Raspberry Pi 4: NEON, no dot product,
# so the `neon` tier) and as a Cortex-A76 (dot product: the `neon-dot` tier);
# then the kernel-running suites as QEMU's `max` CPU (int8 matrix multiply:
# the `neon-i8mm` tier).
# The linker and the default runner come from .cargo/config.toml.
#
# Note: the tests' dev-dependencies (the converter, which pulls tract-onnx) are
# cross-compiled too, which takes a while on a small machine.
set -euo pipefail
cd "$(dirname "$0")/.."

export ALBERT_EDGE_SHARED="${ALBERT_EDGE_SHARED:-$(cd .. && pwd)/shared}"
export CARGO_TERM_COLOR=never
TARGET=aarch64-unknown-linux-gnu

if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null \
    || [ ! -d /usr/aarch64-linux-gnu/lib ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
fi
rustup target add "$TARGET"

# Convert every fixture once, natively, with the converter's defaults (the
# tests' `common::convert_fixture` reads these files instead of converting
# under emulation, where the converter's f64 work takes minutes per test
# binary): the device runs files converted on the big machine, as users do.
MODELS="$(mktemp -d)"
cargo build --release -p albert-convert
for cfg in "$ALBERT_EDGE_SHARED"/fixtures/*/*/config.json; do
    dir="$(dirname "$cfg")"
    name="$(basename "$(dirname "$dir")")__$(basename "$dir")"
    for p in int8 f32; do
        "${CARGO_TARGET_DIR:-target}/release/albert-convert" "$dir" -o "$MODELS/$name.$p.albert" --precision "$p" -q
    done
done
export ALBERT_EDGE_FIXTURE_MODELS="$MODELS"
echo "converted $(ls "$MODELS" | wc -l) fixture models natively into $MODELS"

# Prints which kernel tiers ran under `-cpu $1` (the suite prints them; a
# missing NEON tier fails it) and fails unless the expected one was picked.
show_tiers() {
    local want
    case "$1" in
        cortex-a72) want=neon ;;
        cortex-a76) want=neon-dot ;;
        *) want=neon-i8mm ;;
    esac
    local line
    line="$(CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu $1" \
        cargo test -p albert-edge --release --target "$TARGET" --test kernels -- --nocapture tiers_run_and_skipped 2>&1 \
        | grep '\[kernels\] tiers run')"
    echo "$line"
    case "$line" in
        *"detect() -> $want") ;;
        *) echo "expected the $want tier under -cpu $1" >&2; exit 1 ;;
    esac
}

for cpu in cortex-a72 cortex-a76; do
    echo "== aarch64 tests under qemu -cpu $cpu"
    export ALBERT_EDGE_TEST_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu $cpu"
    # The second CPU differs only in the kernel tier (neon-dot instead of neon);
    # the slowest tests under emulation exercise no kernel-tier code (file
    # validation at every truncation length and bit flip; conversions killed
    # or hitting a file-size limit) and already ran as cortex-a72: skipped there.
    # So is the whole-model thread-count comparison: what it relies on of a
    # tier (each output row and column computed independently of the others
    # in the call) is checked on both CPUs directly, kernel by kernel
    # (column_split_bit_exact in tests/kernels.rs, and
    # kernels_give_the_same_rows_whatever_the_split in tests/threads.rs).
    extra=()
    if [ "$cpu" = cortex-a76 ]; then
        extra=(--skip every_truncation_is_an_error --skip bit_flips_anywhere_are_errors
               --skip killing_the_conversion --skip file_size_limit
               --skip outputs_are_bit_identical_for_1_to_4_threads)
    fi
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$ALBERT_EDGE_TEST_RUNNER" \
        cargo test -p albert-edge --release --target "$TARGET" --no-fail-fast -- \
        --skip cli_on_arm_linux_under_qemu_matches_the_host --skip no_std_firmware_builds_and_runs_on_cortex_m4 \
        "${extra[@]}"
    # (Those two tests of tests/cross_cli.rs drive host-side cross builds and QEMU
    # themselves; they already ran in the x86 suite and would only repeat it here.)
    show_tiers "$cpu"
done

# Armv8.6 int8 matrix multiply (`smmla`, the neon-i8mm tier): QEMU's `max` CPU
# has it (no Raspberry Pi does; phones and servers since 2022 do). The tier
# replaces only `gemm_q8`, so the suites that run kernels are enough here: the
# kernel tests (every entry against the scalar reference, awkward shapes), the
# whole-model fidelity tests, the thread-split and no-allocation tests.
cpu=max
echo "== aarch64 kernel-tier tests under qemu -cpu $cpu"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu $cpu" \
    cargo test -p albert-edge --release --target "$TARGET" --no-fail-fast \
    --lib --test kernels --test fidelity --test threads --test no_alloc -- \
    --skip outputs_are_bit_identical_for_1_to_4_threads
show_tiers "$cpu"
