#!/usr/bin/env bash
# Reproduce the study headless: creates/reuses .venv, installs pinned dependencies, then runs
# every notebook for every seed with papermill into results/. `./run_all.sh --help` lists options.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Notebooks run in notebooks/: make relative data/cache folders absolute.
if [[ -n "${STUDY_DATA_DIR:-}" ]]; then export STUDY_DATA_DIR="$(realpath -m "$STUDY_DATA_DIR")"; fi
if [[ -n "${STUDY_CACHE_DIR:-}" ]]; then export STUDY_CACHE_DIR="$(realpath -m "$STUDY_CACHE_DIR")"; fi
"$ROOT/scripts/setup_env.sh"
export TOKENIZERS_PARALLELISM=false
exec "$ROOT/.venv/bin/python" -m lib.runner "$@"
