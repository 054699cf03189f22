#!/usr/bin/env bash
# Epoch time of the primary study's model shape on a GPU: me5-small's architecture and tokenizer with
# random weights (speed depends on shapes, not values; a GPU machine that can download nothing gets
# only config.json and the tokenizer files), `ko6`, batch 32, max length 128, word embeddings frozen,
# 2 epochs each of CE (bf16) and the combined loss (bf16, then fp32).
#   benchmarks/gpu_epoch_time.sh [FOLDER]   FOLDER holds config.json and tokenizer files
#                                           (default: the converted me5-small in the cache)
# Needs STUDY_DATA_DIR and a CUDA GPU; $PYTHON overrides the interpreter. README's "On a GPU"
# paragraph quotes its output on an H200
# (benchmarks/gpu_epoch_time_h200.txt).
set -euo pipefail
if [[ -z "${STUDY_DATA_DIR:-}" ]]; then echo "error: set STUDY_DATA_DIR to the data folder" >&2; exit 2; fi
export STUDY_DATA_DIR="$(realpath -m "$STUDY_DATA_DIR")"  # before the cd below
SRC="$(realpath -m "${1:-${STUDY_CACHE_DIR:-$(dirname "$0")/../.cache}/encoders/me5-small}")"
cd "$(dirname "$0")/.."  # lib is imported from the project root
# the project's environment where there is one, else the machine's python (a GPU machine's own torch)
PY="${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}"
"$PY" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null ||
  { echo "error: $PY's torch sees no CUDA GPU" >&2; exit 2; }
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
ENC="$WORK/me5-small-shape"  # "e5" in the name: the "query: " prefix, as for me5-small
mkdir -p "$ENC" && cp "$SRC"/config.json "$SRC"/tokenizer* "$ENC"/
"$PY" - "$ENC" <<'PY'
import sys
from transformers import BertConfig, BertModel
BertModel(BertConfig.from_pretrained(sys.argv[1]), add_pooling_layer=False).save_pretrained(sys.argv[1])
PY
for spec in "ce true" "combined true" "combined false"; do
  set -- $spec
  "$PY" -m lib.run --dataset ko6 --encoder "$ENC" --loss "$1" --bf16 "$2" --epochs 2 \
    --freeze-word-embeddings true --device cuda --quiet --out "$WORK/run-$1-$2" > /dev/null
  "$PY" - "$WORK/run-$1-$2" "$1" "$2" <<'PY'
import json, sys
import pandas as pd
out, loss, bf16 = sys.argv[1:]
h = pd.read_csv(f"{out}/history.csv")
t = json.load(open(f"{out}/metrics.json"))["timings"]
print(f"loss={loss} bf16={bf16}: epoch train seconds {h['train_seconds'].round(1).tolist()}, "
      f"sentences/s {h['sentences_per_second'].round(0).tolist()}, timings {({k: round(v, 1) for k, v in t.items()})}")
PY
done
