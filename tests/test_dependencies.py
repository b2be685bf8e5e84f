"""Every third-party package the `release` package imports is declared in pyproject.toml, pinned."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Built from the pinned llama-cpp-python sdist by `release doctor --install` (release/toolchain.py),
# not installed from a wheel index, so it cannot be a plain requirement.
NOT_DECLARED = {"llama-cpp-python"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules() -> set[str]:
    mods: set[str] = set()
    for path in (ROOT / "release").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    return mods - set(sys.stdlib_module_names) - {"release", "__future__"}


def _declared() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    out: dict[str, str] = {}
    for r in reqs:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", r)
        assert m, r
        out[_norm(m.group(1))] = m.group(2)
    return out


def test_every_imported_distribution_is_declared_and_pinned():
    dists = md.packages_distributions()
    declared = _declared()
    missing, unpinned = [], []
    for mod in sorted(_imported_modules()):
        for dist in dists.get(mod, [mod]):
            name = _norm(dist)
            if name in NOT_DECLARED:
                continue
            if name not in declared:
                missing.append(f"{mod} (distribution {dist})")
            elif not declared[name].startswith("=="):
                unpinned.append(dist)
    assert not missing, f"imported by release/ but not declared in pyproject.toml: {missing}"
    assert not unpinned, f"declared without an == pin: {unpinned}"
