"""Replace or delete only what this program wrote: every such site asks here first.

A path may be replaced when nothing is there, when it is an empty folder, or when it carries the
marker of what the caller writes (``looks_ours``: a run folder's config.json and metrics.json, the
converter's config.json, ...). A symbolic link is never followed nor replaced: it may point out of
the results tree, at the user's own files. Anything else is refused with :class:`NotOursError`
before any work starts, and left untouched.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

Marker = Callable[[Path], bool]


class NotOursError(PermissionError):
    """A path holds something this program did not write: it is never replaced."""
    exit_status = 2


def json_object(path: Path, *keys: str) -> dict | None:
    """The JSON object in ``path`` when it is a regular file holding every key in ``keys``, else None."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 50_000_000:
            return None
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) and all(k in obj for k in keys) else None


def _empty_folder(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    except OSError:
        return False


def owned(path: str | Path, looks_ours: Marker) -> bool:
    """True when ``path`` may be replaced: absent, an empty folder, or marked as ours. Never a link."""
    path = Path(path)
    if path.is_symlink():
        return False
    if not os.path.lexists(path):
        return True
    return _empty_folder(path) or looks_ours(path)


def check_owned(path: str | Path, looks_ours: Marker, what: str, hint: str = "") -> None:
    """Raise NotOursError (one line: the path, what it is, what we expected, what to do) unless owned."""
    path = Path(path)
    if owned(path, looks_ours):
        return
    if path.is_symlink():
        kind = f"a symbolic link (to {os.readlink(path)})"
    elif path.is_dir():
        kind = "a folder that is not " + what
    else:
        kind = "a file, not " + what
    raise NotOursError(f"refusing to replace {path}: it is {kind}; nothing was changed. "
                       f"{hint or 'Choose a new path, or move it away yourself.'}")


def remove_owned(path: str | Path, looks_ours: Marker, what: str) -> None:
    """Delete ``path`` (file or folder) after check_owned; absent is fine."""
    path = Path(path)
    check_owned(path, looks_ours, what)
    if path.is_dir():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def replace_folder(new: Path, final: Path, looks_ours: Marker, what: str) -> Path:
    """Publish folder ``new`` at ``final``; a folder of ours already there is moved aside first and
    deleted last, so no moment exists at which ``final`` holds a half-deleted folder."""
    check_owned(final, looks_ours, what)
    if os.path.lexists(final):
        aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        # '.partial': if a kill comes before the clean-up, nothing there is read as a result
        os.replace(final, aside / f"{final.name}.old.partial")
    os.replace(new, final)
    for aside in final.parent.glob(f".{glob.escape(final.name)}.*.old"):  # this one, and any a kill left earlier
        inside = list(aside.iterdir())
        if not inside or (len(inside) == 1 and inside[0].name == f"{final.name}.old.partial"
                          and not inside[0].is_symlink() and looks_ours(inside[0])):
            shutil.rmtree(aside, ignore_errors=True)
    return final
