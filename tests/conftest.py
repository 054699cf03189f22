"""Shared fixtures. Data come from $STUDY_DATA_DIR; by default the shared copy beside the project."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lib.paths import PROJECT_ROOT

if "STUDY_DATA_DIR" not in os.environ and (PROJECT_ROOT.parent / "shared" / "data").is_dir():
    os.environ["STUDY_DATA_DIR"] = str(PROJECT_ROOT.parent / "shared" / "data")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = Path(os.environ["STUDY_DATA_DIR"])
    assert (path / "README.md").exists() or any(path.iterdir()), f"STUDY_DATA_DIR={path} holds no data"
    return path


# A tiny but real training configuration: seconds on two CPU cores.
TINY = dict(dataset="ed6", encoder="minilm", epochs=1, batch_size=16, max_length=32, max_train_samples=48,
            max_eval_samples=48, quiet=None)


@pytest.fixture
def tiny_config():
    from lib.training.config import ExperimentConfig

    def make(**overrides):
        fields = {k: v for k, v in TINY.items() if k != "quiet"}
        fields.update(overrides)
        return ExperimentConfig(**fields)
    return make


# The longest test files first (measured, longest first), so that under pytest-xdist (run_tests.sh:
# --dist loadfile --no-loadscope-reorder, a file at a time per worker) the workers finish together
# instead of one starting an end-to-end file last. The rest keep their order; tests stay independent.
LONGEST_FIRST = (
    "tests/test_fanout.py",
    "tests/test_run_all.py",
    "tests/test_tuning.py",
    "tests/test_published_results.py",
    "tests/test_fresh_clone.py",
    "tests/test_interrupted_writes.py",
    "tests/test_train.py",
    "tests/test_jupyterlab_browser.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)),
                    len(LONGEST_FIRST))
    items.sort(key=rank)  # stable: within a rank, collection order
