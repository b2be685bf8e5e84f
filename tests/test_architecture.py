"""The structure of `release/` (docs/architecture.md), read from the source with `ast`: the import graph,
function-local imports included, has no cycle; a package imports only its own layer and the layers below;
a function-local project import says why it is local; no file grows past 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from release import kinds

PACKAGE = Path(__file__).resolve().parents[1] / "release"

# Lowest first. A module may import its own layer and any layer below, never one above (docs/architecture.md).
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"release", "__main__", "errors", "fsutil", "console", "suggest", "lock", "procs", "toolchain",
              "gittag", "tables", "outcome", "peak", "families", "manifest", "demo"}),
    ("formats", {"spec", "prune", "dropmap", "gguf", "nvfp4", "ollama", "quality", "cards", "publish",
                 "localhub", "fetch", "estimate", "provenance", "init_base"}),
    ("context", {"context", "costs"}),
    ("kinds", {"kinds"}),
    ("engine", {"steps", "plan", "pipeline", "verify", "flow", "distributed", "access", "status", "completion",
                "engine", "publishing", "destinations",
                "init", "local", "doctor"}),
    ("cli", {"cli"}),
]
# `__main__` only runs the command line: it sits on top whatever its place in the set above.
TOP = {"release.__main__"}
LAZY_MARK = "# lazy:"
# Function-local project imports: a few dozen at most (issue 21), each for a heavy third-party module at
# start-up, a module that may be absent, or a cycle it names.
MAX_LOCAL_IMPORTS = 48
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The project modules an import statement loads (a package's `__init__` counts as the package)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names if a.name.split(".")[0] == "release"]
    else:
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if base.split(".")[0] != "release":
            return []
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    out = []
    for name in names:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES:
            out.append(name)
    return out


def _imports() -> list[tuple[str, str, int, bool, str]]:
    """(importer, imported, line, function-local, source line) of every project import at run time
    (`if TYPE_CHECKING:` blocks are types only, never executed)."""
    found = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text)
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        local = {id(n) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                 for n in ast.walk(node)}
        ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in typing_only:
                for target in _resolve(module, path, node):
                    # Importing a.b.c runs the packages a.b and a first (but not this module's own packages,
                    # which are running already).
                    parts = target.split(".")
                    packages = {".".join(parts[:i]) for i in range(2, len(parts))} - ancestors
                    for t in {target, *packages} - {module}:
                        if t in MODULES:
                            found.append((module, t, node.lineno, id(node) in local, lines[node.lineno - 1]))
    return found


def _layer(module: str) -> int:
    if module in TOP:
        return len(LAYERS)
    top = module.split(".")[1] if "." in module else "release"
    return next(i for i, (_, members) in enumerate(LAYERS) if top in members)


def test_every_module_has_a_layer() -> None:
    known = {m for _, members in LAYERS for m in members}
    missing = {m.split(".")[1] for m in MODULES if "." in m} - known
    assert not missing, f"add these to a layer (here and in docs/architecture.md): {sorted(missing)}"


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for a, b, *_ in _imports():
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*path[path.index(n):], n]
            if n not in state and (cycle := visit(n)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_no_layer_imports_a_higher_one() -> None:
    wrong = [f"{a} (layer {LAYERS[_layer(a)][0]}) imports {b} (layer {LAYERS[_layer(b)][0]}), line {line}"
             for a, b, line, *_ in _imports() if _layer(b) > _layer(a)]
    assert not wrong, "\n".join(wrong)


def test_function_local_project_imports_say_why() -> None:
    local = {(a, line): src for a, b, line, is_local, src in _imports() if is_local}
    unmarked = sorted(f"{a}:{line}" for (a, line), src in local.items() if LAZY_MARK not in src)
    assert not unmarked, f"{len(unmarked)} function-local imports say no reason: {unmarked}"
    assert len(local) <= MAX_LOCAL_IMPORTS, f"{len(local)} function-local project imports: {sorted(local)}"


def test_no_file_over_600_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


def test_the_flow_is_the_one_list_of_kinds() -> None:
    """`--only` takes the kinds' selectors and `hub`, in flow order; every kind's module is in kinds/."""
    from release.pipeline import KINDS

    assert [k.name for k in kinds.FLOW] == ["dropmap", "bf16", "gguf", "nvfp4", "quality", "ollama", "card"]
    assert list(KINDS) == [k.selector for k in kinds.FLOW] + ["hub"]
    assert all(type(k).__module__ == f"release.kinds.{k.name}" for k in kinds.FLOW)
