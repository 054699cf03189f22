#!/usr/bin/env bash
# Reproduce the study headless: creates/reuses .venv, installs pinned dependencies, then runs
# every notebook for every seed with papermill into results/. `./run_all.sh --help` lists options.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Notebooks run in notebooks/: make relative data/cache folders absolute.
if [[ -n "${STUDY_DATA_DIR:-}" ]]; then export STUDY_DATA_DIR="$(realpath -m "$STUDY_DATA_DIR")"; fi
if [[ -n "${STUDY_CACHE_DIR:-}" ]]; then export STUDY_CACHE_DIR="$(realpath -m "$STUDY_CACHE_DIR")"; fi
# --help first: it needs no environment (lib.runner's parser is standard library only), so nothing
# is created or installed just to print it. With the environment made, the other arguments go along:
# `--profile tune --help` prints the search's options (lib.study.tuning imports torch).
for arg in "$@"; do
    if [[ "$arg" == -h || "$arg" == --help ]]; then
        py="$ROOT/.venv/bin/python"
        if [[ ! -x "$py" ]]; then py="${PYTHON:-python3}"; set -- --help; fi
        exec env PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$py" -m lib.runner "$@"
    fi
done
"$ROOT/scripts/setup_env.sh"
export TOKENIZERS_PARALLELISM=false
exec "$ROOT/.venv/bin/python" -m lib.runner "$@"
