#!/usr/bin/env bash
# Memory traffic of one inference on a small-cache device, simulated: the
# last-level-cache data misses of `albert-edge bench` under valgrind's
# cachegrind with a Raspberry-Pi-like hierarchy (32 KiB L1 data, 1 MiB last
# level shared by all threads; a Pi 4 / Pi 5 has no L3), i.e. the 64-byte
# lines read from or written to DRAM. Not part of CI.
#
#   benches/traffic.sh MODEL.albert [SEQS] [THREADS]
#   e.g. benches/traffic.sh model.albert "8 32 128" "1 2 4"
#
# Each figure is (misses of 3 runs - misses of 1 run) / 2, so loading the
# model does not count. cachegrind runs the threads one at a time on one
# simulated cache, as a cache shared by the cores sees them. Needs valgrind
# (`apt-get install valgrind`) and a release build (`cargo build --release`).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${ALBERT_EDGE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/albert-edge}"
MODEL="$1"
SEQS="${2:-8 32 128}"
THREADS="${3:-1 2 4}"
misses() { # seq threads runs
    valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/dev/null \
        --I1=32768,8,64 --D1=32768,4,64 --LL=1048576,16,64 \
        "$BIN" bench "$MODEL" --seq "$1" --threads "$2" --runs "$3" --warmup 0 2>&1 \
        | awk '/LLd misses/ { gsub(",", "", $4); print $4 }'
}
printf "%6s %8s %14s %12s\n" seq threads "LL misses/run" "MB/run"
for s in $SEQS; do
    for t in $THREADS; do
        one=$(misses "$s" "$t" 1)
        three=$(misses "$s" "$t" 3)
        per=$(( (three - one) / 2 ))
        printf "%6s %8s %14s %12s\n" "$s" "$t" "$per" "$(( per * 64 / 1000000 ))"
    done
done
