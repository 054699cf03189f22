"""Project-anchored paths: nothing here depends on the working directory."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where data files are looked up: $STUDY_DATA_DIR, else ``data/`` in the project."""
    env = os.environ.get("STUDY_DATA_DIR")
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / "data"


def cache_dir() -> Path:
    """Converted encoders and cached features: $STUDY_CACHE_DIR, else ``.cache/`` in the project."""
    env = os.environ.get("STUDY_CACHE_DIR")
    return Path(env).expanduser().resolve() if env else PROJECT_ROOT / ".cache"


def results_dir() -> Path:
    return PROJECT_ROOT / "results"
