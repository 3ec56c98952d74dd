#!/usr/bin/env bash
# Miri (nightly) on the runtime: its unit tests, and the model-format tests
# (validation, loading from borrowed / owned bytes, and `run` end to end, i.e.
# every scalar kernel, the workspace carving and the byte casts) on a minimal
# model, plus the tokenizer property tests with inputs shrunk under cfg(miri).
#
# * libm's `force-soft-floats`: libm's x86 sqrt is inline assembly, which Miri
#   cannot run; the soft version computes the same correctly rounded result.
# * -Zmiri-disable-isolation: the tokenizer tests read shared fixture files.
# Under Miri no CPU feature is detected, so the scalar kernel tier runs.
set -euo pipefail
cd "$(dirname "$0")/.."

export ALBERT_EDGE_SHARED="${ALBERT_EDGE_SHARED:-$(cd .. && pwd)/shared}"
export CARGO_TERM_COLOR=never
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}"
start=$(date +%s)
stamp() { echo "== [miri $(( $(date +%s) - start ))s] $*"; }

stamp "installing miri"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup +nightly component add miri rust-src
cargo +nightly miri setup

stamp "miri: unit tests (with the C API's), tests/format.rs, tests/tokenizer_props.rs"
cargo +nightly miri test -p albert-edge --features capi,libm/force-soft-floats \
    --lib --test format --test tokenizer_props
stamp "done"
