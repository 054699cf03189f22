"""lib is layered: a module imports only from its own layer or the layers below it.

Bottom to top: lib.paths, lib.ownership and lib.entrypoint (none imports another lib module);
lib.data and lib.evaluation (independent of each other); lib.model;
lib.training; lib.study; the command lines (lib.run, lib.report, lib.runner). Imports inside
functions count too: a lazy import still ties the layers together.
"""
from __future__ import annotations

import ast
from pathlib import Path

from lib.paths import PROJECT_ROOT

LIB = PROJECT_ROOT / "lib"
RANK = {"paths": 0, "ownership": 0, "entrypoint": 0, "data": 1, "evaluation": 1, "model": 2, "training": 3,
        "study": 4, "run": 5, "report": 5, "runner": 5, "predict": 5, "__init__": 5}


def layer_of(module: str) -> str:
    """'lib.model.losses.arcface' -> 'model'; 'lib.run' -> 'run'; 'lib' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every lib module a source imports, relative imports resolved against ``module``."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "lib"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "lib":
                if target == "lib":  # from lib import x: x is the module
                    found |= {f"lib.{a.name}" for a in node.names}
                else:
                    found.add(target)
    return found


def violations(module: str, imports: set[str]) -> list[str]:
    own = layer_of(module)
    bad = []
    for target in sorted(imports):
        other = layer_of(target)
        if other not in RANK:
            bad.append(f"{module} imports {target}, which is in no layer")
        elif RANK[other] > RANK[own] or (RANK[other] == RANK[own] and other != own and RANK[own] < 5):
            bad.append(f"{module} ({own}) imports {target} ({other}): a layer above or beside its own")
    return bad


def lib_modules():
    for path in sorted(LIB.rglob("*.py")):
        rel = path.relative_to(PROJECT_ROOT).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        yield ".".join(parts), path, is_package


def test_no_module_imports_from_a_layer_above_its_own():
    problems = []
    for module, path, is_package in lib_modules():
        problems += violations(module, imported_modules(path.read_text(), module, is_package))
    assert not problems, "\n".join(problems)


def test_every_module_sits_in_a_known_layer():
    assert {layer_of(m) for m, _, _ in lib_modules()} <= set(RANK)


def test_the_check_catches_upward_and_sideways_imports():
    src = ("from lib.study.summary import build_summary\n"
           "def f():\n    from ..training import train\n"
           "from lib.evaluation import stats\n")
    found = imported_modules(src, "lib.data.datasets", is_package=False)
    assert found == {"lib.study.summary", "lib.training", "lib.evaluation"}
    bad = violations("lib.data.datasets", found)
    assert len(bad) == 3
    assert violations("lib.study.summary", {"lib.training.results", "lib.paths", "lib.data.datasets"}) == []
