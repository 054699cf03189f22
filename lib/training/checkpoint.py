"""A run's state at the end of an epoch, so that a run killed mid-way goes on where it stopped.

On 2 CPU cores a fine-tuned ``ko6`` run lasts about an hour and a working session a few; a run that
restarts from epoch 1 after every stop loses what it had done. With ``resume`` (lib.training.train),
a run keeps ``<run>.resume/`` beside its folder: everything the next epoch depends on, written after
every epoch, deleted once the run folder is published.

What "everything" means: the trained weights (a frozen part is reloaded from the encoder, as at the
start), the loss's own parameters, the optimizer's moments, the schedule's step, the data-order
generator, the global random states (dropout draws from torch's), the best epoch's weights, the
history and the early-stopping count. A resumed run therefore computes the same numbers, bit for
bit on the same machine, as one never stopped (tests/test_resume.py). It resumes only the same
configuration, from the same commit of the code, on the same kind of device: anything else starts anew.

A kill can come at any moment: each epoch's state goes to a file of its own, and only then does
``resume.json`` (written whole or not at all) name it; the file it named before is deleted after.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from lib.ownership import check_owned, json_object, remove_owned
from lib.training.results import git, git_state, write_json

SUFFIX = ".resume"
MARKER = "resume.json"  # the epoch, the state file of that epoch, what the run is: for a reader and for ownership


def folder(run: Path) -> Path:
    """Where the checkpoint of the run folder ``run`` lives (beside it: the run's .partial folder is
    replaced whenever a run starts)."""
    run = Path(run)
    return run.with_name(run.name + SUFFIX)


def identity(cfg, device_type: str) -> dict:
    """What must be the same for a run to resume: its validated configuration, the code (the commit and,
    in a changed checkout, a hash of its changes), the kind of device. JSON's own types, so that it
    compares equal after a round trip through resume.json."""
    state = git_state()
    changes = None
    if state["dirty"]:
        diff = git("diff", "HEAD", "--", ".", ":(exclude)results")
        untracked = git("ls-files", "--others", "--exclude-standard", "--", ".", ":(exclude)results")
        changes = hashlib.sha256(((diff.stdout if diff else "") + (untracked.stdout if untracked else "")).encode()
                                 ).hexdigest()[:16]
    # the device as it resolved, not as it was asked for: "auto" and "cpu" on a machine without a GPU are one
    config = {k: v for k, v in cfg.to_dict().items() if k != "device"}
    return json.loads(json.dumps({"config": config, "commit": state["commit"], "changes": changes,
                                  "device": device_type}))


def is_checkpoint(path: Path) -> bool:
    return path.is_dir() and _marker(path) is not None


def _marker(where: Path) -> dict | None:
    return json_object(where / MARKER, "epoch", "state", "valid_macro_f1", "config", "commit", "changes", "device")


def _is_ours(where: Path) -> bool:
    """Our folder: with its marker, or (a kill before the first marker) holding only our state files."""
    return is_checkpoint(where) or (where.is_dir() and all(p.name.startswith(("state-", f".{MARKER}."))
                                                           for p in where.iterdir()))


def check(run: Path) -> None:
    """Before any work: refuse a ``<run>.resume`` that is not ours."""
    check_owned(folder(run), _is_ours, "a checkpoint of this program")


def save(run: Path, state: dict, ident: dict, valid_macro_f1: list[float]) -> None:
    """Write the state after epoch ``state['epoch']`` (``valid_macro_f1``: the scores of epochs 1..epoch)."""
    where = folder(run)
    check(run)  # never writes into a folder of the user
    where.mkdir(parents=True, exist_ok=True)
    name = f"state-{state['epoch']}.pt"
    with open(where / name, "wb") as f:
        torch.save({**state, "identity": ident}, f)
        f.flush()
        os.fsync(f.fileno())  # on disk before the marker names it (a machine that loses power, not only a kill)
    write_json(where / MARKER, {"epoch": state["epoch"], "state": name, "valid_macro_f1": valid_macro_f1, **ident})
    for old in where.glob("state-*.pt"):
        if old.name != name:
            old.unlink()


def progress(run: Path, ident: dict) -> list[float] | None:
    """The validation scores of the epochs a resumable checkpoint of ``run`` holds, or None."""
    marker = _marker(folder(run))
    if marker is None or {k: marker[k] for k in ident} != ident or not (folder(run) / marker["state"]).is_file():
        return None
    return marker["valid_macro_f1"]


def load(run: Path, ident: dict) -> dict | None:
    """The saved state of the run at ``run`` when it was written for ``ident``, else None (no checkpoint,
    another configuration, other code or device, or an unreadable file)."""
    if progress(run, ident) is None:
        return None
    try:
        state = torch.load(folder(run) / _marker(folder(run))["state"], map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - an unreadable file is not resumed from: the run starts anew
        return None
    return state if state.get("identity") == ident else None


def remove(run: Path) -> None:
    where = folder(run)
    if os.path.lexists(where):
        remove_owned(where, _is_ours, "a checkpoint of this program")

