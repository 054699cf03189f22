#!/usr/bin/env bash
# Run the test suite: creates/reuses .venv, installs pinned dependencies, then pytest.
# Data comes from $STUDY_DATA_DIR (default: data/ in the project). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$ROOT/scripts/setup_env.sh" --test
cd "$ROOT"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
