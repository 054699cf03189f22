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
configuration from the same commit of the code: anything else starts anew.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from lib.ownership import check_owned, json_object, remove_owned
from lib.training.results import write_json

SUFFIX = ".resume"
STATE = "state.pt"
MARKER = "resume.json"  # what the folder is and where it stands, for a reader and for ownership


def folder(run: Path) -> Path:
    """Where the checkpoint of the run folder ``run`` lives (beside it: the run's .partial folder is
    replaced whenever a run starts)."""
    run = Path(run)
    return run.with_name(run.name + SUFFIX)


def is_checkpoint(path: Path) -> bool:
    return path.is_dir() and json_object(path / MARKER, "epoch", "config") is not None


def check(run: Path) -> None:
    """Before any work: refuse a ``<run>.resume`` that is not ours (a kill's leftover without its marker
    is removed)."""
    discard_stray(run)
    check_owned(folder(run), is_checkpoint, "a checkpoint of this program")


def save(run: Path, state: dict, identity: dict) -> None:
    """Write the state after epoch ``state['epoch']``; the old one stays until the new one is whole."""
    where = folder(run)
    check(run)  # never writes into a folder of the user
    where.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{STATE}.", dir=where)
    os.close(fd)
    try:
        torch.save({**state, "identity": identity}, tmp)
        os.replace(tmp, where / STATE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    write_json(where / MARKER, {"epoch": state["epoch"], **identity})


def load(run: Path, identity: dict) -> dict | None:
    """The saved state of the run at ``run`` when it was written for ``identity`` (the configuration and
    the commit), else None (no checkpoint, another configuration, other code, or an unreadable file)."""
    path = folder(run) / STATE
    if not is_checkpoint(folder(run)) or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - a file cut short by a kill while it was renamed is not resumed from
        return None
    return state if state.get("identity") == identity else None


def remove(run: Path) -> None:
    where = folder(run)
    if os.path.lexists(where):
        remove_owned(where, is_checkpoint, "a checkpoint of this program")


def discard_stray(run: Path) -> None:
    """Remove a checkpoint folder that a kill left without its marker (killed before the first save
    finished): ours by name and content only when it holds nothing but our temporary files."""
    where = folder(run)
    if where.is_dir() and not where.is_symlink() and not is_checkpoint(where):
        if all(p.name.startswith(f".{STATE}.") or p.name.startswith(f".{MARKER}.") for p in where.iterdir()):
            shutil.rmtree(where)
