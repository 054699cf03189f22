"""Executed notebooks as a reader sees them: paths relative to the project root.

The runner passes relative paths to the notebooks already; what remains absolute is written by
the machinery (papermill's ``input_path``/``output_path``) or printed by a library. ``relativise``
rewrites every occurrence of the project root in a notebook's metadata, sources and text outputs
(images untouched), so an executed notebook names no folder of the machine that made it.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from lib.paths import PROJECT_ROOT

TEXT_MIMES = ("text/plain", "text/markdown", "text/html", "application/json")
# stderr outputs that are noise, not results: dropped (the filter in lib/__init__ keeps them from
# appearing at all; this cleans notebooks executed before it).
NOISE = ("TqdmWarning: IProgress not found",)


def roots(root: Path = PROJECT_ROOT) -> list[str]:
    """The project root as it may be spelled (resolved and as given), longest first."""
    spellings = {str(root), str(root.resolve()), os.path.realpath(root)}
    return sorted((s.rstrip("/") for s in spellings if s and s != "/"), key=len, reverse=True)


def strip_root(text: str, root: Path = PROJECT_ROOT) -> str:
    """'<root>/results/x' -> 'results/x'; the bare root -> '.'."""
    for r in roots(root):
        text = re.sub(re.escape(r) + r"(?![\w.\-])", ".", text.replace(r + "/", ""))  # not /root-old
    return text


def _strip(value, root: Path):
    if isinstance(value, str):
        return strip_root(value, root)
    if isinstance(value, list):
        return [_strip(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _strip(v, root) for k, v in value.items()}
    return value


RENDERED_KEY = "emotion_study"  # the notebook metadata entry that names the code that executed it


def relativise(path: Path, final_name: str | None = None, root: Path = PROJECT_ROOT,
               rendered_with: dict | None = None) -> bool:
    """Rewrite ``path`` in place without the project root; ``final_name`` is the name the
    notebook will carry (papermill records the temporary one). ``rendered_with`` (lib.training.results
    .git_state(): commit and dirty flag) goes into the metadata as ``emotion_study.rendered_with``: a run
    folder records the commit that trained it, the notebook's text and figures come from this one.
    Returns whether it changed."""
    text = Path(path).read_text(encoding="utf-8")
    nb = json.loads(text)
    meta = nb.setdefault("metadata", {})
    if rendered_with is not None:
        meta[RENDERED_KEY] = {"rendered_with": dict(rendered_with)}
    pm = meta.get("papermill")
    if pm is not None:
        if final_name and pm.get("output_path"):
            pm["output_path"] = str(Path(pm["output_path"]).with_name(final_name))
        meta["papermill"] = _strip(pm, root)
    for cell in nb.get("cells", []):
        cell["source"] = _strip(cell.get("source", ""), root)
        if "outputs" in cell:
            cell["outputs"] = [o for o in cell["outputs"] if not (
                o.get("name") == "stderr" and any(n in "".join(o.get("text", "")) for n in NOISE))]
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = _strip(out["text"], root)
            if "traceback" in out:
                out["traceback"] = _strip(out["traceback"], root)
            if "evalue" in out:
                out["evalue"] = _strip(out["evalue"], root)
            for mime in TEXT_MIMES:
                if mime in out.get("data", {}):
                    out["data"][mime] = _strip(out["data"][mime], root)
    new = json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False, separators=(",", ": ")) + "\n"  # as nbformat
    if new == text:
        return False
    Path(path).write_text(new, encoding="utf-8")
    return True


def absolute_paths(path: Path, root: Path = PROJECT_ROOT) -> list[str]:
    """Lines of a notebook file that name the project root (what tests look for)."""
    text = Path(path).read_text(encoding="utf-8")
    return [line.strip()[:200] for line in text.splitlines() if any(r in line for r in roots(root))]
