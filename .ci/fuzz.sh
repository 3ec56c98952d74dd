#!/usr/bin/env bash
# Short, bounded fuzzing of every non-ONNX target (see fuzz/README.md): builds
# the targets with cargo-fuzz (nightly, AddressSanitizer, debug assertions),
# runs each one from its committed seeds for FUZZ_SECONDS (default 30), two at
# a time, and fails on any crash, panic, leak, timeout or out-of-memory.
# New corpus entries go to a temporary folder, so the committed seeds stay as
# they are; crash inputs are kept in fuzz/artifacts/<target>/ for reproduction.
#
# The ONNX reader's target (convert_onnx) needs tract (a ~13 min build): it is
# not run here; see fuzz/README.md to run it by hand.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

export CARGO_TERM_COLOR=never
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
TARGETS=(model_load model_resealed model_run tokenizer_text tokenizer_section
         convert_config convert_safetensors convert_spiece)
start=$(date +%s)
stamp() { echo "== [fuzz $(( $(date +%s) - start ))s] $*"; }

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! command -v cargo-fuzz >/dev/null; then
    stamp "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Without a target name, cargo fuzz builds every target whose features are on:
# all but convert_onnx.
stamp "building the fuzz targets"
TDIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo +nightly fuzz build --target-dir "$TDIR"
BIN="$TDIR/x86_64-unknown-linux-gnu/release"
for t in "${TARGETS[@]}"; do
    [ -x "$BIN/$t" ] || { echo "fuzz: $BIN/$t was not built" >&2; exit 1; }
done

seeds() {
    case "$1" in
        model_load|model_resealed) echo seeds/models ;;
        *) echo "seeds/$1" ;;
    esac
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() {
    local t=$1
    mkdir -p "$work/$t" "artifacts/$t"
    # -rss_limit_mb: any input that needs more is a bug (an allocation bomb);
    # -timeout: any single input slower than this is a hang.
    if "$BIN/$t" "$work/$t" "$(seeds "$t")" \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=20 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$work/$t.log" 2>&1; then
        echo "fuzz: $t ok: $(grep -E '^stat::number_of_executed_units' "$work/$t.log" | awk '{print $2}') executions in ${SECONDS_PER_TARGET}s"
    else
        echo "fuzz: $t FAILED; last lines of its log:" >&2
        tail -n 60 "$work/$t.log" >&2
        return 1
    fi
}

stamp "running each target for ${SECONDS_PER_TARGET}s, two at a time"
status=0
for ((i = 0; i < ${#TARGETS[@]}; i += 2)); do
    pids=()
    for t in "${TARGETS[@]:i:2}"; do
        run "$t" & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || status=1; done
done
stamp "done"
exit $status
