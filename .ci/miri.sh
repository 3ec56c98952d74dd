#!/usr/bin/env bash
# Miri (nightly) on the runtime: its unit tests, and the model-format tests
# (validation, loading from borrowed / owned bytes, and `run` end to end, i.e.
# every scalar kernel, the workspace carving and the byte casts) on a minimal
# model, plus the tokenizer's corrupted-section test on a tiny vocabulary.
# The other tokenizer property tests also shrink under cfg(miri) but take
# minutes there (run them by hand: `--test tokenizer_props`).
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

MIRI=(cargo +nightly miri test -p albert-edge --features capi,libm/force-soft-floats)
stamp "miri: unit tests (with the C API's) and tests/format.rs"
"${MIRI[@]}" --lib --test format
stamp "miri: tests/tokenizer_props.rs corrupted_sections_never_panic"
"${MIRI[@]}" --test tokenizer_props -- --exact corrupted_sections_never_panic
stamp "done"
