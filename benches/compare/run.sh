#!/usr/bin/env bash
# Side-by-side benchmark: albert-edge (int8, f32) vs ONNX Runtime (fp32, int8) vs tract,
# same model, same inputs, same machine, one run. Not part of CI.
#
#   benches/compare/run.sh [HF_MODEL_DIR] [-- compare.py options]
#
# HF_MODEL_DIR defaults to ../shared/models/sst2-base (config.json, model.safetensors,
# model.onnx, and optionally model.int8.onnx; without it, the script makes one with
# onnxruntime's quantize_dynamic, per-tensor QInt8 like the shipped file).
# Options after `--` go to compare.py, e.g. `-- --seq 8,32 --threads 1 --rounds 5 --no-tract`.
# Installs onnxruntime into target/compare/venv (PyPI) on first use.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SHARED="${ALBERT_EDGE_SHARED:-$ROOT/../shared}"
MODEL_DIR="$SHARED/models/sst2-base"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then MODEL_DIR="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
WORK="${COMPARE_DIR:-$ROOT/target/compare}"
mkdir -p "$WORK"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

echo "== building albert-edge, albert-convert and the tract bench (release)" >&2
(cd "$ROOT" && cargo build --release --bin albert-edge -p albert-edge \
    && cargo build --release -p albert-convert --bin albert-convert --example tract_bench) >&2

if [ ! -x "$WORK/venv/bin/python" ]; then
    echo "== installing onnxruntime into $WORK/venv" >&2
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install -q onnxruntime numpy onnx >&2
fi
PY="$WORK/venv/bin/python"

name="$(basename "$MODEL_DIR")"
for p in int8 f32; do
    if [ ! -f "$WORK/$name.$p.albert" ] || [ "$MODEL_DIR/model.safetensors" -nt "$WORK/$name.$p.albert" ]; then
        "$TARGET/release/albert-convert" "$MODEL_DIR" -o "$WORK/$name.$p.albert" --precision "$p" >&2
    fi
done
ONNX="$MODEL_DIR/model.onnx"
ONNX_INT8="$MODEL_DIR/model.int8.onnx"
if [ ! -f "$ONNX_INT8" ]; then
    ONNX_INT8="$WORK/$name.int8.onnx"
    [ -f "$ONNX_INT8" ] || "$PY" -c "
from onnxruntime.quantization import quantize_dynamic, QuantType
quantize_dynamic('$ONNX', '$ONNX_INT8', weight_type=QuantType.QInt8)" >&2
fi
VOCAB="$("$PY" -c "import json; print(json.load(open('$MODEL_DIR/config.json'))['vocab_size'])")"

echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; $(git -C "$ROOT" rev-parse --short HEAD)" >&2
exec "$PY" "$ROOT/benches/compare/compare.py" \
    --albert-edge "$TARGET/release/albert-edge" --tract-bench "$TARGET/release/examples/tract_bench" \
    --int8 "$WORK/$name.int8.albert" --f32 "$WORK/$name.f32.albert" \
    --onnx "$ONNX" --onnx-int8 "$ONNX_INT8" --vocab "$VOCAB" "$@"
