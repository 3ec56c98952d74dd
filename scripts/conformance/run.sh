#!/usr/bin/env bash
# Conformance against Hugging Face transformers on inputs the fixtures do not cover:
# random ALBERT shapes and heads (models.py), the classifiers' scores per problem type
# against transformers' text-classification pipeline (pipeline.py), and newly trained
# SentencePiece models (tokenizer.py). Needs Python 3 and PyPI (torch, transformers, onnx, sentencepiece:
# about 6 GB of wheels, installed on first use into target/conformance); not part of CI,
# which runs the fixture tests instead. Exit status 1 on any difference.
#
#   scripts/conformance/run.sh [models|pipeline|tokenizer]    (default: all three)
#
# SHARED (default ../shared) provides SST-2 sentences for the tokenizer check when present.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/scripts/conformance"
SHARED="${SHARED:-$ROOT/../shared}"
WORK="${CONFORMANCE_DIR:-$ROOT/target/conformance}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
what="${1:-all}"
mkdir -p "$WORK"

(cd "$ROOT" && cargo build --release -p albert-edge --bin albert-edge -p albert-convert --bin albert-convert) >&2

venv() { # venv DIR PACKAGES...: a virtual environment with PACKAGES, made once
    local dir=$1; shift
    if [ ! -x "$dir/bin/python" ]; then
        python3 -m venv "$dir"
        "$dir/bin/pip" install -q "$@" >&2
    fi
}

status=0
if [ "$what" = all ] || [ "$what" = models ]; then
    # transformers 5 and torch: the models, both ONNX exporters.
    venv "$WORK/venv-models" torch "transformers==5.24.0" safetensors numpy onnx onnxscript
    (cd "$HERE" && "$WORK/venv-models/bin/python" models.py "$TARGET/release" "$WORK/models") || status=1
fi
if [ "$what" = all ] || [ "$what" = pipeline ]; then
    venv "$WORK/venv-models" torch "transformers==5.24.0" safetensors numpy onnx onnxscript
    spiece="$WORK/tokenizer-spiece.model"
    if [ -f "$SHARED/fixtures/spiece/spiece.model" ]; then
        cp "$SHARED/fixtures/spiece/spiece.model" "$spiece"
    else
        # Without ../shared: the bundled demo model's tokenizer is not a spiece.model,
        # so train a small one (the tokenizer check's venv has sentencepiece).
        venv "$WORK/venv-tokenizer" "transformers==4.57.6" sentencepiece protobuf safetensors numpy
        "$WORK/venv-tokenizer/bin/python" -c "
import sentencepiece as s, random
random.seed(0)
words = ['good', 'bad', 'film', 'long', 'dull', 'fine', 'money', 'back', 'best', 'year', 'so', 'and', 'the', 'a', 'I', 'want', 'my', 'this', 'thing', 'then', 'some']
with open('$WORK/spm-text.txt', 'w') as f:
    for _ in range(3000):
        f.write(' '.join(random.choice(words) for _ in range(8)) + '.\n')
s.SentencePieceTrainer.train(input='$WORK/spm-text.txt', model_prefix='$WORK/tokenizer-spiece', vocab_size=40,
    pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece='<pad>', unk_piece='<unk>', bos_piece='[CLS]',
    eos_piece='[SEP]', user_defined_symbols=['[MASK]'])
" >&2
    fi
    (cd "$HERE" && "$WORK/venv-models/bin/python" pipeline.py "$TARGET/release" "$WORK/pipeline" "$spiece") || status=1
fi
if [ "$what" = all ] || [ "$what" = tokenizer ]; then
    # transformers 4.57 still has the sentencepiece-based AlbertTokenizer (no torch needed).
    venv "$WORK/venv-tokenizer" "transformers==4.57.6" sentencepiece protobuf safetensors numpy
    sst2=()
    for f in "$SHARED/data/sst2/train_full.tsv" "$SHARED/data/sst2/dev.tsv"; do
        [ -f "$f" ] && sst2+=("$f")
    done
    (cd "$HERE" && "$WORK/venv-tokenizer/bin/python" tokenizer.py "$TARGET/release" "$WORK/tokenizer" "${sst2[@]}") || status=1
fi
exit $status
