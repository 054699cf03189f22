#!/usr/bin/env bash
# Run the test suite: creates/reuses .venv, installs pinned dependencies, then pytest.
# Data comes from $STUDY_DATA_DIR (default: data/ in the project). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Test kernels run in other folders: make relative data/cache folders absolute (before any cd).
if [[ -n "${STUDY_DATA_DIR:-}" ]]; then export STUDY_DATA_DIR="$(realpath -m "$STUDY_DATA_DIR")"; fi
if [[ -n "${STUDY_CACHE_DIR:-}" ]]; then export STUDY_CACHE_DIR="$(realpath -m "$STUDY_CACHE_DIR")"; fi
"$ROOT/scripts/setup_env.sh" --test
cd "$ROOT"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
# Parallel by default (pytest-xdist): one worker per core, at most 4 ($TEST_WORKERS overrides), and
# each worker's torch, with the notebook kernels it starts, gets cores/workers threads, so the
# workers share the CPU instead of oversubscribing it (a third worker on 2 cores was no faster: 999 s
# of pytest against 977 s for two, same commit, beside a running search). A test file runs whole on
# one worker (its module fixtures, which train, are built once); tests/conftest.py starts the longest
# files first. `-n 0` runs in one process (for --pdb), as does any explicit -n/--dist/-p no:xdist.
parallel=1
for arg in "$@"; do
    case "$arg" in -n|-n*|--numprocesses*|--dist*|no:xdist|-pno:xdist) parallel=0 ;; esac
done
if (( parallel )); then
    cores="$(nproc 2>/dev/null || echo 1)"
    workers="${TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}"
    if (( workers > 1 )); then
        export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( cores / workers > 1 ? cores / workers : 1 ))}"
        set -- -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
    fi
fi
exec "$ROOT/.venv/bin/python" -m pytest "$@"
