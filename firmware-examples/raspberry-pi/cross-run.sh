#!/usr/bin/env bash
# Cross-builds the albert-edge CLI for 64-bit (aarch64, Pi 4/5 on a 64-bit OS)
# and 32-bit (armv7 hard-float, 32-bit Raspberry Pi OS) ARM Linux, runs
# `albert-edge info` and `albert-edge run` under QEMU user-mode emulation, and
# compares the results with the host (x86) build.
#
#   firmware-examples/raspberry-pi/cross-run.sh [MODEL.albert] [INPUT.json]
#
# Defaults: models/sst2-tiny.albert and example-input.json beside this script.
# Needs what .ci/cross-setup.sh installs. CARGO_TARGET_DIR is honoured; HOST_BIN
# names an already built host CLI (otherwise it is built).
#
# Emulated boards: Pi 4 (-cpu cortex-a72: NEON, no dot product), Pi 5
# (-cpu cortex-a76: NEON + sdot), and 32-bit Raspberry Pi OS (-cpu cortex-a7).
# Checks, for each board:
#   * `info --json` equals the host's, apart from the kernel tier;
#   * `run --tier scalar` prints exactly the host's `run --tier scalar` output
#     (the scalar kernels are the specification: bit-identical everywhere);
#   * `run` with each target's own dispatched kernels (NEON on aarch64, scalar
#     on armv7) is compared with the host's dispatched run and every difference
#     is reported (identical is expected for int8; exit code 3 if not).
# Exit codes: 0 all identical, 1 a failure, 3 only dispatched-tier differences.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
MODEL="$(realpath "${1:-$ROOT/models/sst2-tiny.albert}")"
INPUT="$(realpath "${2:-$HERE/example-input.json}")"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CARGO="${CARGO:-cargo}"

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}"
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER="${CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER:-arm-linux-gnueabihf-gcc}"

# Rust target | QEMU | sysroot for the dynamic loader
TRIPLES=(
    "aarch64-unknown-linux-gnu"
    "armv7-unknown-linux-gnueabihf"
)
# Emulated boards: Rust target | QEMU | sysroot | QEMU CPU | what it stands for
BOARDS=(
    "aarch64-unknown-linux-gnu qemu-aarch64 /usr/aarch64-linux-gnu cortex-a72 Pi-4-64-bit(Cortex-A72)"
    "aarch64-unknown-linux-gnu qemu-aarch64 /usr/aarch64-linux-gnu cortex-a76 Pi-5-64-bit(Cortex-A76)"
    "armv7-unknown-linux-gnueabihf qemu-arm /usr/arm-linux-gnueabihf cortex-a7 32-bit-Raspberry-Pi-OS(ARMv7)"
)

cd "$ROOT"
# HOST_BIN: an already built host albert-edge (the test suite passes its own).
if [ -n "${HOST_BIN:-}" ]; then
    host="$HOST_BIN"
else
    echo "== building the host CLI"
    "$CARGO" build --release --bin albert-edge --quiet
    host="$TARGET_DIR/release/albert-edge"
fi
for t in "${TRIPLES[@]}"; do
    echo "== cross-building for $t"
    "$CARGO" build --release --bin albert-edge --target "$t" --quiet
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
strip_tier() { sed 's/"tier":"[^"]*",\?//'; }

"$host" info --json "$MODEL" | strip_tier >"$TMP/host.info"
"$host" run "$MODEL" --input "$INPUT" >"$TMP/host.run"
"$host" --tier scalar run "$MODEL" --input "$INPUT" >"$TMP/host.scalar"
echo "host ($(uname -m)): tier $("$host" info --json "$MODEL" | sed 's/.*"tier":"\([^"]*\)".*/\1/')"
echo "host output: $(cat "$TMP/host.run")"

status=0
for b in "${BOARDS[@]}"; do
    set -- $b
    triple=$1 qemu=$2 sysroot=$3 cpu=$4 board=$5
    bin="$TARGET_DIR/$triple/release/albert-edge"
    emu() { "$qemu" -cpu "$cpu" -L "$sysroot" "$bin" "$@"; }
    echo "== $board: $triple under $qemu -cpu $cpu"
    file "$bin" 2>/dev/null | sed 's/^/   /' || true
    emu info "$MODEL" | sed 's/^/   /'
    emu info --json "$MODEL" | strip_tier >"$TMP/$cpu.info"
    if ! cmp -s "$TMP/host.info" "$TMP/$cpu.info"; then
        echo "MISMATCH: info --json differs from the host"; diff "$TMP/host.info" "$TMP/$cpu.info" || true; status=1
    fi
    emu --tier scalar run "$MODEL" --input "$INPUT" >"$TMP/$cpu.scalar"
    if cmp -s "$TMP/host.scalar" "$TMP/$cpu.scalar"; then
        echo "   scalar run: identical to the host's scalar run"
    else
        echo "MISMATCH: scalar run differs from the host"; diff "$TMP/host.scalar" "$TMP/$cpu.scalar" || true; status=1
    fi
    emu run "$MODEL" --input "$INPUT" >"$TMP/$cpu.run"
    echo "   output: $(cat "$TMP/$cpu.run")"
    if cmp -s "$TMP/host.run" "$TMP/$cpu.run"; then
        echo "   dispatched run: identical to the host's dispatched run"
    else
        echo "DIFFERENCE: dispatched run differs from the host's (report it)"
        diff "$TMP/host.run" "$TMP/$cpu.run" || true
        [ "$status" -ne 0 ] || status=3
    fi
done
if [ "$status" -eq 0 ]; then echo "cross-run: all identical"; fi
exit "$status"
