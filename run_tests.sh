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
exec "$ROOT/.venv/bin/python" -m pytest "$@"
