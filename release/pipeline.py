"""The release flow: one readable list of steps over a shared context with a typed artifact registry.

    check → fetch base → prune → build (bf16 | gguf | nvfp4 | ollama) → cards → verify → plan
          → publish (hub, ollama) → tag

Builders (release/builders/) turn planned artifacts into built ones; publishers consume them. The
manifest (`dist/<name>/manifest.json`) is the registry serialised with provenance. `state.json`
records every built artifact with the hash of its inputs, so a rerun after a crash or an edit
rebuilds only what changed (new scores → only the cards) and restores the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .errors import InputError
from .fsutil import HashCache, atomic_write_text
from .manifest import ARTIFACT_KINDS, Artifact, ArtifactRegistry, FileEntry, Manifest
from .plan import plan_artifacts
from .provenance import input_hashes, pipelines_git
from .spec.load import Release

KINDS = (*ARTIFACT_KINDS[:-1], "cards", "hub")  # bf16 gguf nvfp4 ollama cards hub
BUILD_KINDS = ("bf16", "gguf", "nvfp4", "ollama", "cards")


@dataclass
class Options:
    dist_root: Path = Path("dist")
    only: list[str] = field(default_factory=list)  # KIND or KIND:ID selectors
    force: bool = False
    from_step: str | None = None
    jobs: int = 2
    max_memory: int | None = None  # bytes
    hub_endpoint: str | None = None
    hub_token: str | None = None
    ollama_registry: str | None = None
    dry_run: bool = False
    prune_remote: bool = False
    via_ollama_cli: bool = False
    quiet: bool = False

    def selects(self, kind: str, artifact_id: str | None = None) -> bool:
        if not self.only:
            return True
        for sel in self.only:
            sel_kind, _, sel_id = sel.partition(":")
            if sel_kind != kind:
                continue
            if not sel_id or artifact_id is None or artifact_id == f"{kind}:{sel_id}":
                return True
        return False


def parse_only(values: tuple[str, ...] | list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        for item in v.split(","):
            item = item.strip()
            if not item:
                continue
            kind = item.partition(":")[0]
            if kind not in KINDS:
                raise InputError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})", file="--only")
            out.append(item)
    return out


class State:
    """`state.json`: every built artifact with the hash of its inputs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, Any] = json.loads(path.read_text())
            self.data.setdefault("artifacts", {})
        except (OSError, json.JSONDecodeError):
            self.data = {"artifacts": {}}

    def get(self, artifact_id: str) -> dict[str, Any] | None:
        return self.data["artifacts"].get(artifact_id)

    def record(self, artifact: Artifact, inputs: str) -> None:
        self.data["artifacts"][artifact.id] = {"inputs": inputs, "artifact": artifact.to_json()}
        self._save()

    def forget(self, artifact_id: str) -> None:
        if self.data["artifacts"].pop(artifact_id, None) is not None:
            self._save()

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")


def digest(*parts: Any) -> str:
    """A stable hash of JSON-able parts (input hashes of a step)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


class Context:
    def __init__(self, release: Release, options: Options, console: Console | None = None, *,
                 estimates: bool = True) -> None:
        self.release = release
        self.options = options
        self.console = console or Console(stderr=True)
        self.dist = (options.dist_root / release.name).absolute()  # tools run in other directories
        self.artifacts: ArtifactRegistry = plan_artifacts(release, estimates=estimates)
        self.state = State(self.dist / "state.json")
        self.hash_cache = HashCache(self.dist / "hashes.json")
        self.progress: Progress | None = None
        self.log: list[str] = []
        self._inputs: dict[str, str] | None = None
        self._building: set[str] = set()

    # -- inputs and provenance ---------------------------------------------------------------
    @property
    def inputs(self) -> dict[str, str]:
        if self._inputs is None:
            self._inputs = input_hashes(self.release)
        return self._inputs

    def manifest(self) -> Manifest:
        from . import __version__

        return Manifest(release=self.release.name, tool_version=__version__,
                        pipelines_git=pipelines_git(self.release.dir), inputs=self.inputs,
                        artifacts=self.artifacts)

    def write_manifest(self) -> Path:
        path = self.dist / "manifest.json"
        self.manifest().write(path)
        self.hash_cache.save()
        return path

    # -- files ----------------------------------------------------------------------------------
    def artifact_dir(self, artifact: Artifact) -> Path:
        return self.dist / artifact.root

    def file_entries(self, root: Path, names: list[str]) -> list[FileEntry]:
        """FileEntry (path, size, sha256) for files below `root`, hashed through the cache."""
        return [FileEntry(n, (root / n).stat().st_size, self.hash_cache.sha256(root / n)) for n in names]

    def intact(self, artifact: Artifact) -> bool:
        """Every file of a built artifact is still there with its recorded size and hash."""
        root = self.artifact_dir(artifact)
        for f in artifact.files:
            p = root / f.path
            if not p.is_file() or p.stat().st_size != f.size:
                return False
            if f.sha256 and self.hash_cache.sha256(p) != f.sha256:
                return False
        return bool(artifact.files)

    # -- output -----------------------------------------------------------------------------------
    def say(self, message: str) -> None:
        self.log.append(message)
        if not self.options.quiet:
            self.console.print(message, soft_wrap=True, highlight=False)

    def task(self, description: str, total: int | None = None) -> Callable[[int, int], None]:
        """A progress bar; returns `update(done, total)`."""
        if self.progress is None:
            return lambda done, total: None
        task_id = self.progress.add_task(description, total=total)

        def update(done: int, total_: int) -> None:
            assert self.progress is not None
            self.progress.update(task_id, completed=done, total=total_ or None)

        return update

    @contextmanager
    def live(self) -> Iterator[None]:
        """One progress display for the whole run: step, artifact, bytes, rate, ETA."""
        if self.options.quiet:
            yield
            return
        progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                            DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                            console=self.console, transient=False)
        self.progress = progress
        with progress:
            yield
        self.progress = None

    # -- building ---------------------------------------------------------------------------------
    def require(self, artifact_id: str) -> Artifact:
        """The built artifact `artifact_id`, building it (and what it needs) if necessary."""
        a = self.artifacts.get(artifact_id)
        if a is None:
            raise InputError(f"no artifact {artifact_id!r} in this release", file="--only")
        if a.status in ("built", "published"):
            return a
        ensure(self, [artifact_id])
        return self.artifacts[artifact_id]


class Builder(Protocol):
    """Turns planned artifacts of one kind into built ones."""

    kind: str

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        """Hash of everything the artifact depends on (requiring upstream artifacts as needed)."""

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        """Build these artifacts; return them with status 'built', files, sizes and hashes."""


def builders() -> dict[str, Builder]:
    from .builders import BUILDERS

    return BUILDERS


def ensure(ctx: Context, ids: list[str]) -> list[str]:
    """Build the artifacts `ids` unless their recorded inputs are unchanged and files intact.

    Returns the ids actually built (not restored).
    """
    by_kind: dict[str, list[Artifact]] = {}
    built_now: list[str] = []
    for artifact_id in ids:
        a = ctx.artifacts[artifact_id]
        if a.status in ("built", "published") or artifact_id in ctx._building:
            continue
        by_kind.setdefault(a.kind, []).append(a)
    registry = builders()
    for kind in BUILD_KINDS:
        todo_planned = by_kind.get(kind if kind != "cards" else "card", [])
        if not todo_planned:
            continue
        builder = registry[kind]
        todo: list[tuple[Artifact, str]] = []
        for a in todo_planned:
            ctx._building.add(a.id)
            inputs = builder.input_hash(ctx, a)
            rec = ctx.state.get(a.id)
            if rec and rec["inputs"] == inputs and not ctx.options.force:
                restored = Artifact.from_json(rec["artifact"])
                if ctx.intact(restored):
                    ctx.artifacts.add(restored)
                    continue
            todo.append((a, inputs))
        if not todo:
            continue
        for root in {ctx.dist / a.root for a, _ in todo}:
            remove_partials(root)
        hashes = {a.id: h for a, h in todo}
        for built in builder.build(ctx, [a for a, _ in todo]):
            built.status = "built"
            for f in built.files:  # the builder just hashed these: don't hash them again
                if f.sha256:
                    ctx.hash_cache.remember(ctx.artifact_dir(built) / f.path, f.sha256)
            ctx.artifacts.add(built)
            if built.id in hashes:
                ctx.state.record(built, hashes[built.id])
                built_now.append(built.id)
        ctx.write_manifest()
    return built_now


def remove_partials(folder: Path) -> None:
    """Remove what a killed run left half-written in `folder` (`.<name>.partial` files and folders):
    SIGKILL skips every cleanup handler, so the next run of the same builder does it."""
    import shutil

    if not folder.is_dir():
        return
    for p in [*folder.glob(".*.partial"), folder / ".partial"]:
        if not p.exists():
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def selected_ids(ctx: Context, kinds: tuple[str, ...] = BUILD_KINDS) -> list[str]:
    out = []
    for a in ctx.artifacts:
        kind = "cards" if a.kind == "card" else a.kind
        if kind in kinds and ctx.options.selects(kind, a.id):
            out.append(a.id)
    return out


def run_build(ctx: Context) -> list[str]:
    """Build every selected artifact; returns the ids built in this run (others were up to date)."""
    with ctx.live():
        built = ensure(ctx, selected_ids(ctx))
    ctx.write_manifest()
    return built


# Artifacts cheap enough to make where they are published (from the matrix jobs' outputs).
PUBLISH_SIDE = ("gguf:ollama-files",)


def build_matrix(ctx: Context) -> list[dict[str, str]]:
    """Independent build jobs for a CI matrix: one per heavy artifact (bf16, each GGUF file, nvfp4).

    Ollama tags and cards are derived from these and are made by the publish job.
    """
    jobs = []
    for a in ctx.artifacts:
        if a.kind not in ("bf16", "gguf", "nvfp4") or a.id in PUBLISH_SIDE:
            continue
        if not ctx.options.selects(a.kind, a.id):
            continue
        slot = a.id.replace(":", "-").lower()
        jobs.append({"artifact": a.id, "kind": a.kind, "slot": slot})
    return jobs
