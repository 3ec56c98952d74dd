#!/usr/bin/env bash
# Accuracy, size and latency of every model variant on SST-2 dev: the table of
# docs/accuracy.md. Rerun with
#
#   cargo build --release -p albert-convert -p albert-edge
#   scripts/accuracy.sh [tiny|base ...] > table.md
#
# Assumes ../shared (or $SHARED) holds models/ and data/sst2/, the binaries are in
# target/release (or $BIN), and jq is installed. Intermediate files go to $WORK
# (default: a fresh temporary directory); results already in $WORK are reused, so
# an interrupted run can be resumed with the same WORK. F32_LIMIT=N evaluates the f32
# files on the first N sentences only (default: all 872); CALIB=N sets the calibration
# size (default 436, the first half of dev; at most 436, so that calibration never sees
# the judged half).
#
# Protocol (see docs/accuracy.md):
# * every input is truncated to 64 tokens, as in training (`eval --max-len 64`);
# * f32 and int8 are judged on all 872 dev sentences against the recorded PyTorch
#   fp32 predictions (`predictions_dev.json`);
# * `--prune fast` computes importance, the least-squares refit and the int8 ranges on
#   the first $CALIB dev sentences (`--calibrate`, default 436: the first half) and is
#   judged on the second half of dev (rows 437-872), which calibration never saw;
# * `--keep-vocab dev` keeps the pieces the 872 dev sentences use and is judged on
#   them (same predictions expected); `--keep-vocab train` keeps the pieces of the
#   67,349 training sentences and is judged on all of dev (which it never saw);
#   `--keep-vocab dev[1st half]` is judged on the second half (text outside the corpus).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED:-$here/../shared}"
BIN="${BIN:-${CARGO_TARGET_DIR:-$here/target}/release}"
WORK="${WORK:-$(mktemp -d)}"
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(tiny base)
convert="$BIN/albert-convert"
edge="$BIN/albert-edge"
dev="$SHARED/data/sst2/dev.tsv"
train="$SHARED/data/sst2/train_full.tsv"
for f in "$convert" "$edge" "$dev" "$train"; do
    [ -e "$f" ] || { echo "missing $f" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "jq is required" >&2; exit 1; }
mkdir -p "$WORK"
echo "work directory: $WORK" >&2

# The two halves of dev, each with the header.
# (Written to a temporary file and renamed: two runs may share WORK.)
{ head -n 1 "$dev"; sed -n '2,437p' "$dev"; } > "$WORK/dev-a.tsv.$$" && mv "$WORK/dev-a.tsv.$$" "$WORK/dev-a.tsv"
{ head -n 1 "$dev"; sed -n '438,873p' "$dev"; } > "$WORK/dev-b.tsv.$$" && mv "$WORK/dev-b.tsv.$$" "$WORK/dev-b.tsv"
# Calibration: the first $CALIB dev sentences.
CALIB="${CALIB:-436}"
[ "$CALIB" -le 436 ] || { echo "CALIB must be at most 436 (the judged half starts at row 437)" >&2; exit 1; }
head -n $((CALIB + 1)) "$dev" > "$WORK/dev-cal.tsv.$$" && mv "$WORK/dev-cal.tsv.$$" "$WORK/dev-cal.tsv"

# convert NAME MODEL ARGS...: writes $WORK/NAME.albert and its summary.
convert_to() {
    local name=$1 model=$2; shift 2
    if [ ! -s "$WORK/$name.albert" ]; then
        echo "converting $name" >&2
        local t0=$SECONDS
        "$convert" "$SHARED/models/sst2-$model" -o "$WORK/$name.albert" "$@" > "$WORK/$name.summary"
        echo "$((SECONDS - t0))" > "$WORK/$name.seconds"
        echo "converted $name in $((SECONDS - t0)) s" >&2
    fi
}

# evaluate NAME DATA [LIMIT]: eval JSON of $WORK/NAME.albert on DATA (its first LIMIT
# rows), in $WORK/NAME.DATA[.LIMIT].json.
evaluate() {
    local name=$1 data=$2 limit=${3:-} out="$WORK/$1.$(basename "$2" .tsv)${3:+.$3}.json"
    if [ ! -s "$out" ]; then
        echo "evaluating $name on $(basename "$data")${limit:+ (first $limit rows)}" >&2
        "$edge" eval "$WORK/$name.albert" "$data" --max-len 64 --json ${limit:+--limit $limit} > "$out.tmp"
        mv "$out.tmp" "$out"
    fi
    echo "$out"
}

params() { "$edge" info "$WORK/$1.albert" | awk '/^parameters/ {print $2}'; }
bytes() { stat -c %s "$WORK/$1.albert"; }
mib() { awk -v b="$1" 'BEGIN {printf "%.2f", b / 1048576}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", 100 * a / b}'; }

# agree A B [FROM N]: fraction of equal entries of two JSON arrays (files with one array).
agree() {
    jq -n --slurpfile a "$1" --slurpfile b "$2" --argjson from "${3:-0}" --argjson n "${4:-100000}" \
        '[$a[0][$from:$from+$n], $b[0][$from:$from+$n]] | transpose
         | (map(select(.[0] == .[1])) | length) / length * 100 | . * 100 | round / 100'
}

echo "| model | variant | parameters | file | accuracy (dev rows) | vs fp32 | agreement with fp32 | latency, 32 tokens (min / median of 30) |"
echo "| --- | --- | ---: | ---: | --- | --- | --- | ---: |"
for model in "${models[@]}"; do
    preds="$SHARED/models/sst2-$model/predictions_dev.json"
    jq -c '.pred_fp32' "$preds" > "$WORK/$model.ref.json.$$" && mv "$WORK/$model.ref.json.$$" "$WORK/$model.ref.json"
    jq -c '.labels' "$preds" > "$WORK/$model.labels.json.$$" && mv "$WORK/$model.labels.json.$$" "$WORK/$model.labels.json"
    ref_all=$(jq '[.pred_fp32, .labels] | transpose | map(select(.[0] == .[1])) | length' "$preds")
    ref_b=$(jq '[.pred_fp32[436:], .labels[436:]] | transpose | map(select(.[0] == .[1])) | length' "$preds")
    p0=""

    row() { # name label data-json rows-label ref-correct ref-preds-from
        local name=$1 label=$2 json=$3 rows=$4 ref=$5 from=$6 n=$7
        local correct acc lat p b
        correct=$(jq .correct "$json")
        acc=$(pct "$correct" "$n")
        if [ ! -s "$WORK/$name.bench.json" ]; then
            "$edge" bench "$WORK/$name.albert" --seq 32 --runs 30 --json > "$WORK/$name.bench.json"
        fi
        lat=$(jq -r '"\(.min_ms * 100 | round / 100) / \(.median_ms * 100 | round / 100)"' "$WORK/$name.bench.json")
        p=$(params "$name"); b=$(bytes "$name")
        jq -c '.predictions' "$json" > "$json.preds"
        jq -c ".[$from:$from+$n]" "$WORK/$model.ref.json" > "$json.ref"
        local ag delta removed=""
        ag=$(agree "$json.preds" "$json.ref")
        delta=$(awk -v c="$correct" -v r="$ref" -v n="$n" 'BEGIN {printf "%+.2f pt", 100 * (c - r) / n}')
        [ -n "$p0" ] && [ "$p" != "$p0" ] && removed=" (-$(awk -v a="$p" -v b="$p0" 'BEGIN {printf "%.1f", 100 * (1 - a / b)}')%)"
        echo "| sst2-$model | $label | $p$removed | $(mib "$b") MiB | $acc% ($correct/$n, $rows) | $delta | $ag% | $lat ms |"
    }

    convert_to "$model-f32" "$model" --precision f32
    p0=$(params "$model-f32")
    if [ -n "${F32_LIMIT:-}" ]; then
        # F32_LIMIT=N judges f32 on the first N sentences only (for quick runs).
        ref_n=$(jq --argjson n "$F32_LIMIT" '[.pred_fp32[:$n], .labels[:$n]] | transpose | map(select(.[0] == .[1])) | length' "$preds")
        row "$model-f32" "f32" "$(evaluate "$model-f32" "$dev" "$F32_LIMIT")" "first $F32_LIMIT" "$ref_n" 0 "$F32_LIMIT"
    else
        row "$model-f32" "f32" "$(evaluate "$model-f32" "$dev")" "all" "$ref_all" 0 872
    fi
    convert_to "$model-int8" "$model" --precision int8
    row "$model-int8" "int8" "$(evaluate "$model-int8" "$dev")" "all" "$ref_all" 0 872
    convert_to "$model-int8-vocab-dev" "$model" --keep-vocab "$dev"
    row "$model-int8-vocab-dev" "int8, \`--keep-vocab dev\`" \
        "$(evaluate "$model-int8-vocab-dev" "$dev")" "all" "$ref_all" 0 872
    # int8 on the second half: the same per-sentence predictions as above.
    jq --slurpfile l "$WORK/$model.labels.json" '{predictions: .predictions[436:], mean_latency_ms,
        correct: ([.predictions[436:], $l[0][436:]] | transpose | map(select(.[0] == .[1])) | length)}' \
        "$WORK/$model-int8.dev.json" > "$WORK/$model-int8.dev-b.json"
    row "$model-int8" "int8" "$WORK/$model-int8.dev-b.json" "2nd half" "$ref_b" 436 436
    convert_to "$model-int8-fast" "$model" --prune fast --calibrate "$WORK/dev-cal.tsv"
    row "$model-int8-fast" "int8, \`--prune fast --calibrate dev[1-$CALIB]\`" \
        "$(evaluate "$model-int8-fast" "$WORK/dev-b.tsv")" "2nd half" "$ref_b" 436 436
    convert_to "$model-int8-vocab-train" "$model" --keep-vocab "$train"
    row "$model-int8-vocab-train" "int8, \`--keep-vocab train\`" \
        "$(evaluate "$model-int8-vocab-train" "$dev")" "all" "$ref_all" 0 872
    convert_to "$model-int8-fast-vocab-a" "$model" --prune fast --calibrate "$WORK/dev-cal.tsv" --keep-vocab "$WORK/dev-a.tsv"
    row "$model-int8-fast-vocab-a" "int8, \`--prune fast --calibrate dev[1-$CALIB] --keep-vocab dev[1st half]\`" \
        "$(evaluate "$model-int8-fast-vocab-a" "$WORK/dev-b.tsv")" "2nd half" "$ref_b" 436 436
    # ONNX Runtime int8, as recorded in metrics.json (for the drop comparison).
    jq -r --arg m "$model" '"| sst2-\($m) | ONNX Runtime int8 (recorded in metrics.json) | | \(.onnx.int8.bytes / 1048576 * 100 | round / 100) MiB | \(.onnx.int8.dev.accuracy * 10000 | round / 100)% (\(.onnx.int8.dev.accuracy * .dev.n | round)/\(.dev.n), all) | \((.onnx.int8.dev.accuracy - .dev.accuracy) * 10000 | round / 100) pt | \(.onnx.int8.dev.agreement_with_fp32_torch * 10000 | round / 100)% | |"' \
        "$SHARED/models/sst2-$model/metrics.json"
done
echo
echo "Measured with $("$edge" --version) ($("$edge" info "$WORK/${models[0]}-int8.albert" | awk '/^kernel tier/ {print $3}') kernels) at commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%Y-%m-%d)."
