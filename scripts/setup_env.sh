#!/usr/bin/env bash
# Create or reuse the project's virtual environment in .venv and install the pinned
# dependencies. Sourced by run_all.sh and run_tests.sh; safe to run again (it only
# reinstalls when a requirements file changed).
#   usage: scripts/setup_env.sh [--test]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "[setup] creating virtual environment in $VENV"
    "$PY" -m venv "$VENV"
fi

files=(requirements.txt requirements-nodeps.txt pyproject.toml)
(( WITH_TEST )) && files+=(requirements-test.txt)
stamp_file="$VENV/.study-installed-$WITH_TEST"
stamp="$(cd "$ROOT" && cat "${files[@]}" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]]; then
    exit 0
fi

pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }
echo "[setup] installing pinned dependencies (first run takes a few minutes)"
# torch first and pinned, so nothing later can resolve it to a CUDA build.
pip_install "$(grep -E '^torch==' "$ROOT/requirements.txt")"
pip_install -r "$ROOT/requirements.txt"
pip_install --no-deps -r "$ROOT/requirements-nodeps.txt"
(( WITH_TEST )) && pip_install -r "$ROOT/requirements-test.txt"
pip_install --no-deps --no-build-isolation -e "$ROOT"
# A Jupyter kernel named after the project, so the notebooks open in JupyterLab as they are.
"$VENV/bin/python" -m ipykernel install --prefix "$VENV" --name emotion-study \
    --display-name "Python (emotion-study)" >/dev/null
echo "$stamp" > "$stamp_file"
echo "[setup] environment ready: $VENV"
