#!/usr/bin/env bash
# Create or reuse the project's virtual environment in .venv and install the pinned
# dependencies. Called by run_all.sh and run_tests.sh; cheap when nothing changed (a stamp
# of the requirement files is kept inside .venv).
#   usage: scripts/setup_env.sh [--test]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/python" ]]; then
    # the code needs 3.10 or later (the pins are tested with 3.11); PYTHON=/path/to/python3.11 picks another
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        found=$("$PY" -c 'import sys; print("Python", sys.version.split()[0])' 2>/dev/null || echo "not a Python")
        echo "error: $PY is $found; the project needs Python 3.10 or later (tested with 3.11): set PYTHON, e.g. PYTHON=python3.11 ./run_all.sh" >&2
        exit 2
    fi
    echo "[setup] creating virtual environment in $VENV"
    "$PY" -m venv "$VENV"
fi
# pip byte-compiles what it installs one file at a time (about half of a fresh install here); the
# installs skip it and compile_venv does it once on every core, so no import later has to.
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check --no-compile -q "$@"; }
# Left out, two fifths of the source (37 s against 51 s beside a search): the packages' own test suites,
# the model families of transformers that no encoder here uses, and packages nothing here imports (sympy and
# networkx come with torch, pip with the venv; Ray's RLlib and LLM libraries). Whatever imports them still
# works: Python compiles a module without its .pyc on import.
COMPILE_SKIP='/tests/|/transformers/models/(?!(auto|bert|xlm_roberta|encoder_decoder)/|__init__\.py)|/site-packages/(sympy|networkx|pip)/|/ray/(rllib|llm)/'
compile_venv() {  # a few packages ship files that are not Python 3 (pip skips them too): not an error
    "$VENV/bin/python" -m compileall -q -j 0 -x "$COMPILE_SKIP" \
        "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null 2>&1 || true
}
stamp_of() { (cd "$ROOT" && cat "$@" | sha256sum | cut -d' ' -f1); }

new_stamps=()
base_stamp="$(stamp_of requirements.txt requirements-nodeps.txt pyproject.toml)"
test_reqs=()  # the test dependencies, when asked for and not installed yet
if [[ "${1:-}" == "--test" ]]; then
    test_stamp="$(stamp_of requirements-test.txt)"
    if [[ "$(cat "$VENV/.study-test" 2>/dev/null)" != "$test_stamp" ]]; then
        test_reqs=(-r "$ROOT/requirements-test.txt")
        new_stamps+=("$test_stamp:.study-test")
    fi
fi
if [[ "$(cat "$VENV/.study-base" 2>/dev/null)" != "$base_stamp" ]]; then
    echo "[setup] installing pinned dependencies (the first run takes a few minutes)"
    # torch first and pinned, so nothing later can resolve it to another build. On Linux, PyPI's torch
    # wheel brings the CUDA libraries (GBs): TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes
    # the CPU build of the same version instead.
    pip_install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$(grep -E '^torch==' "$ROOT/requirements.txt")"
    # the test dependencies in the same call: one resolution instead of two (about 10 s)
    pip_install -r "$ROOT/requirements.txt" ${test_reqs[@]+"${test_reqs[@]}"}
    test_reqs=()
    pip_install --no-deps -r "$ROOT/requirements-nodeps.txt"
    pip_install --no-deps --no-build-isolation -e "$ROOT"
    # The kernel the notebooks name, so they open in JupyterLab and run under papermill as they are.
    "$VENV/bin/python" -m ipykernel install --prefix "$VENV" --name emotion-study \
        --display-name "Python (emotion-study)" >/dev/null
    new_stamps+=("$base_stamp:.study-base")
fi
if (( ${#test_reqs[@]} )); then
    echo "[setup] installing test dependencies"
    pip_install "${test_reqs[@]}"
fi
# What was installed is compiled once, then stamped (an interrupted setup installs again next time).
if (( ${#new_stamps[@]} )); then
    compile_venv
    for entry in "${new_stamps[@]}"; do echo "${entry%%:*}" > "$VENV/${entry#*:}"; done
fi
