#!/usr/bin/env bash
# Two ways to train faster on a CPU that the study does not use, measured on the primary study's model
# (me5-small fine-tuned on ko6, fp32, batch 32; docs/speed.md quotes the figures):
#   1. threads: one run on all (default 2) cores against that many concurrent one-thread runs (as a
#      search could run its trials): training sentences/s summed over the runs, from each run's history.csv;
#   2. torch.compile(dynamic=True) of the encoder's training step against eager mode, same batches.
#   benchmarks/cpu_training_options.sh [THREADS]   on an otherwise idle machine; about 5 minutes on 2 cores
# Needs STUDY_DATA_DIR (ko6); $SAMPLES (default 640) training sentences a run, $STEPS (default 30) timed
# steps after 10 of warm-up (compilation happens there).
set -euo pipefail
if [[ -z "${STUDY_DATA_DIR:-}" ]]; then echo "error: set STUDY_DATA_DIR to the data folder" >&2; exit 2; fi
export STUDY_DATA_DIR="$(realpath -m "$STUDY_DATA_DIR")"
cd "$(dirname "$0")/.."
THREADS="${1:-2}"; SAMPLES="${SAMPLES:-640}"; STEPS="${STEPS:-30}"
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || { echo "error: THREADS must be a positive whole number, got $THREADS" >&2; exit 2; }
PY="${PYTHON:-.venv/bin/python}"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT

run() {  # run <threads> <seed> <name>: one epoch on SAMPLES sentences; its training sentences/s
  "$PY" -m lib.run --dataset ko6 --encoder me5-small --loss ce --bf16 false --epochs 1 --quiet \
    --max-train-samples "$SAMPLES" --max-eval-samples 64 --num-threads "$1" --seed "$2" --out "$WORK/$3" >/dev/null
  "$PY" -c 'import csv, sys; print(next(csv.DictReader(open(sys.argv[1])))["sentences_per_second"])' "$WORK/$3/history.csv"
}
one=$(run "$THREADS" 1 all-cores)
pids=(); for ((i = 1; i <= THREADS; i++)); do run 1 "$i" "one-thread-$i" > "$WORK/rate-$i" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
"$PY" - "$THREADS" "$one" "$WORK"/rate-* <<'PY'
import sys
threads, one = sys.argv[1], float(sys.argv[2])
summed = sum(float(open(path).read()) for path in sys.argv[3:])
print(f"threads: one run on {threads} threads {one:.1f} sentences/s; {threads} one-thread runs at once {summed:.1f} "
      f"in all: ratio {summed / one:.2f}")
PY

"$PY" - "$THREADS" "$STEPS" <<'PY'
import sys
import time

import numpy as np
import torch

from lib.data.datasets import load_dataset
from lib.model.encoders import load

threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
spec, tokenizer, encoder = load("me5-small")
texts = [spec.query_prefix + t for t in load_dataset("ko6").train["text"][:32 * (steps + 10)]]
ids = tokenizer(texts, truncation=True, max_length=128)["input_ids"]
ids = [s for g in range(0, len(ids), 320) for s in sorted(ids[g:g + 320], key=len)]  # length-grouped, as in training
labels = np.random.default_rng(0).integers(0, 6, len(ids))
batches = []
for i in range(0, len(ids), 32):
    chunk = ids[i:i + 32]
    x = torch.zeros(len(chunk), max(map(len, chunk)), dtype=torch.long)
    for j, s in enumerate(chunk):
        x[j, :len(s)] = torch.tensor(s)
    batches.append((x, (x != 0).long(), torch.from_numpy(labels[i:i + 32])))


def rate(compiled: bool) -> float:
    torch.manual_seed(0)
    _, _, model = load("me5-small")
    model.get_input_embeddings().weight.requires_grad_(False)  # as the study trains it
    head = torch.nn.Linear(model.config.hidden_size, 6)

    def forward(x, mask):
        hidden = model(input_ids=x, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        return head((hidden * m).sum(1) / m.sum(1))

    step_forward = torch.compile(forward, dynamic=True) if compiled else forward
    params = [p for p in [*model.parameters(), *head.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-5)
    model.train()

    def step(batch):
        x, mask, y = batch
        loss = torch.nn.functional.cross_entropy(step_forward(x, mask), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for b in batches[:10]:  # warm-up: compilation happens here
        step(b)
    start = time.perf_counter()
    for b in batches[10:10 + steps]:
        step(b)
    return sum(len(b[2]) for b in batches[10:10 + steps]) / (time.perf_counter() - start)


eager, compiled = rate(False), rate(True)
print(f"torch.compile: eager {eager:.1f} sentences/s, compiled {compiled:.1f}: ratio {compiled / eager:.2f} "
      f"({steps} steps of 32 after 10 of warm-up, {threads} threads)")
PY
