"""The release flow: one readable list of steps over a shared context with a typed artifact registry.

    check → fetch base → prune → build (bf16 | gguf | nvfp4 | ollama) → cards → verify → plan
          → publish (hub, ollama) → tag

Builders (release/builders/) turn planned artifacts into built ones; publishers consume them. The
manifest (`dist/<name>/manifest.json`) is the registry serialised with provenance. `state.json`
records every built artifact with the hash of its inputs, so a rerun after a crash or an edit
rebuilds only what changed (new scores → only the cards) and restores the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .errors import InputError, WorkError
from .fsutil import HashCache, atomic_write_text, load_json_record, set_aside
from .manifest import ARTIFACT_KINDS, Artifact, ArtifactRegistry, FileEntry, Manifest
from .plan import plan_artifacts
from .provenance import input_hashes, pipelines_git
from .spec.load import Release
from .steps import BASE, ORDER, STEP_OF, closure

# What `--only` takes: an artifact kind (cards for card), or hub for every artifact bound for the Hub.
KINDS = (*ARTIFACT_KINDS[:-1], "cards", "hub")  # dropmap bf16 gguf nvfp4 quality ollama cards hub


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
    local_state: Path | None = None  # --local: where the rehearsal Hub and registry keep what they receive
    move_tags: bool = False  # move the release's Hub tags and git tag to the new heads (else they stay)


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
        self.data, self.problem = load_json_record(path)
        arts = self.data.get("artifacts")
        if not isinstance(arts, dict) or not all(_is_record(r) for r in arts.values()):
            if arts is not None and self.problem is None:
                self.problem = set_aside(path, "its artifacts are not records of this tool")
            self.data = {"artifacts": {}}
        if not isinstance(self.data.get("verified", {}), dict):
            self.data["verified"] = {}

    def get(self, artifact_id: str) -> dict[str, Any] | None:
        return self.data["artifacts"].get(artifact_id)

    def restore(self, artifact_id: str, inputs: str | None = None) -> Artifact | None:
        """The recorded artifact (when recorded for `inputs`, if given), or None; a record that does not
        parse counts as none."""
        rec = self.get(artifact_id)
        if rec is None or (inputs is not None and rec["inputs"] != inputs):
            return None
        try:
            return Artifact.from_json(rec["artifact"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def record(self, artifact: Artifact, inputs: str) -> None:
        self.data["artifacts"][artifact.id] = {"inputs": inputs, "artifact": artifact.to_json()}
        self._save()

    def forget(self, artifact_id: str) -> None:
        if self.data["artifacts"].pop(artifact_id, None) is not None:
            self._save()

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")


def _is_record(rec: Any) -> bool:
    return isinstance(rec, dict) and isinstance(rec.get("inputs"), str) and isinstance(rec.get("artifact"), dict) \
        and isinstance(rec["artifact"].get("id"), str)


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
        for problem in (self.state.problem, self.hash_cache.problem):
            if problem:
                self.console.print(f"[yellow]warning:[/] {escape(problem)}", soft_wrap=True, highlight=False)
        self.progress: Progress | None = None
        self.log: list[str] = []
        self._inputs: dict[str, str] | None = None
        self.keyed: dict[str, str] | None = None  # see need_files

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
    def built(self, artifact_id: str) -> Artifact:
        """The built artifact `artifact_id`; its builder's needs were ensured before it was asked for."""
        a = self.artifacts.get(artifact_id)
        if a is None:
            raise InputError(f"no artifact {artifact_id!r} in this release", file="--only")
        if a.status not in ("built", "published"):
            raise WorkError(f"{artifact_id} is needed but not built (a step ran out of flow order)")
        return a

    def adopt(self, artifact: Artifact) -> Artifact:
        """Put a built artifact into the registry (built here, restored, or made on another machine), and
        let what it establishes take effect: quality figures land on what they measure, and a derived drop map
        becomes the release's drop map."""
        from .quality.facts import apply_quality

        self.artifacts.add(artifact)
        apply_quality(self.artifacts)  # figures follow the files they measured (either side may be new)
        if artifact.kind == "dropmap" and artifact.status in ("built", "published"):
            from .dropmap.derive import drop_map_of

            self.release = dataclasses.replace(self.release, drop_map=drop_map_of(self.release, artifact))
            self._inputs = None
        return artifact

    def need_files(self, artifact: Artifact) -> list[tuple[str, list[tuple[str, str | None]]]]:
        """What an input hash takes from the artifact's needs: their recorded files (path, sha256), or,
        while `keyed` holds it, a need's own key (a job hashes what it will make before making it)."""
        out: list[tuple[str, list[tuple[str, str | None]]]] = []
        for n in artifact.needs:
            if n == BASE:
                continue
            if self.keyed is not None and n in self.keyed:
                out.append((n, [("key", self.keyed[n])]))
            else:
                out.append((n, [(f.path, f.sha256) for f in self.built(n).files]))
        return out


class Builder(Protocol):
    """Turns planned artifacts of one kind into built ones."""

    kind: str

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        """Hash of everything the artifact is made from; its needs are built (ctx.need_files)."""

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        """Build these artifacts; return them with status 'built', files, sizes and hashes."""


def builders() -> dict[str, Builder]:
    from .builders import BUILDERS

    return BUILDERS


def ensure(ctx: Context, ids: list[str]) -> list[str]:
    """Build `ids` and what they need, in flow order, unless their recorded inputs are unchanged and
    their files intact (then they are restored from state.json). Returns the ids built in this run.

    One kind at a time: of the artifacts whose needs are all built, those of the earliest step go to
    their builder together (so the GGUF tiers of a wave are quantized in one parallel sweep).
    """
    pending = [i for i in closure(ctx.artifacts, ids) if ctx.artifacts[i].status not in ("built", "published")]
    check_space(ctx, pending)
    built_now: list[str] = []
    registry = builders()
    while pending:
        ready = [i for i in pending if _ready(ctx, i, pending)]
        if not ready:
            raise WorkError(f"cannot build {', '.join(pending)}: their needs were not built")
        step = STEP_OF[ctx.artifacts[min(ready, key=lambda i: ORDER[ctx.artifacts[i].kind])].kind]
        batch = [ctx.artifacts[i] for i in ready if ctx.artifacts[i].kind == step.kind]
        pending = [i for i in pending if i not in {a.id for a in batch}]
        built_now += _build_batch(ctx, registry[step.builder], batch)
    return built_now


def check_space(ctx: Context, ids: list[str]) -> None:
    """Refuse before writing anything when the artifacts about to be made (planned sizes; those whose
    recorded files are all still here will be restored, not made) do not fit on the disk."""
    need = 0
    for i in ids:
        a = ctx.artifacts[i]
        if a.kind in ("ollama", "card"):
            continue  # hard links to GGUFs and a few kB of text
        rec = ctx.state.restore(i)
        if rec is not None and rec.files and all((ctx.artifact_dir(rec) / f.path).is_file() for f in rec.files):
            continue
        need += int(a.size or a.facts.get("size") or 0)
    folder = ctx.dist
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if need > free:
        raise WorkError(f"not enough disk for this build: about {need / 1e9:.2f} GB to write under {ctx.dist}, "
                        f"{free / 1e9:.2f} GB free; nothing was written (free some space, or --dist elsewhere)")


def _ready(ctx: Context, artifact_id: str, pending: list[str]) -> bool:
    a = ctx.artifacts[artifact_id]
    if STEP_OF[a.kind].describes_all:
        # Rendered from everything else as it stands: after every other pending artifact.
        return all(STEP_OF[ctx.artifacts[i].kind].describes_all for i in pending)
    return all(n == BASE or ctx.artifacts[n].status in ("built", "published") for n in a.needs)


def _build_batch(ctx: Context, builder: Builder, batch: list[Artifact]) -> list[str]:
    todo: list[tuple[Artifact, str]] = []
    for a in batch:
        inputs = builder.input_hash(ctx, a)
        restored = ctx.state.restore(a.id, inputs) if not ctx.options.force else None
        if restored is not None:
            restored.needs = a.needs
            if ctx.intact(restored):
                ctx.adopt(restored)
                continue
        todo.append((a, inputs))
    if not todo:
        return []
    for root in {ctx.dist / a.root for a, _ in todo}:
        remove_partials(root)
    hashes = {a.id: h for a, h in todo}
    built_now: list[str] = []
    for built in builder.build(ctx, [a for a, _ in todo]):
        built.status = "built"
        built.needs = ctx.artifacts[built.id].needs if built.id in ctx.artifacts else built.needs
        for f in built.files:  # the builder just hashed these: don't hash them again
            path = ctx.artifact_dir(built) / f.path
            if f.sha256 and path.is_file():  # (an Ollama model blob may live on the registry only)
                ctx.hash_cache.remember(path, f.sha256)
        ctx.adopt(built)
        if built.id in hashes:
            ctx.state.record(built, hashes[built.id])
            built_now.append(built.id)
    missing = set(hashes) - set(built_now)
    if missing:
        raise WorkError(f"the {builder.kind} builder did not build {', '.join(sorted(missing))}")
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


def selector_kind(artifact: Artifact) -> str:
    return "cards" if artifact.kind == "card" else artifact.kind


def select(ctx: Context, only: list[str] | None = None) -> list[str]:
    """The artifact ids `--only` chooses (all without it)."""
    return select_ids(ctx.artifacts, ctx.options.only if only is None else only, ctx.release.name)


def select_ids(artifacts: ArtifactRegistry, only: list[str], release_name: str) -> list[str]:
    """The ids `only` chooses from `artifacts`. A selector that chooses nothing is bad input: a typo must
    not turn into a successful run that did nothing."""
    if not only:
        return [a.id for a in artifacts]
    chosen: list[str] = []
    for sel in only:
        kind, _, name = sel.partition(":")
        if kind == "hub":
            matched = [a.id for a in artifacts
                       if a.destination is not None and a.destination.kind == "hub"
                       and (not name or a.destination.repo == name)]
        else:
            matched = [a.id for a in artifacts if selector_kind(a) == kind
                       and (not name or a.id.split(":", 1)[-1] == name)]
        if not matched:
            known = sorted({a.id.split(":", 1)[-1] for a in artifacts if selector_kind(a) == kind}) \
                if kind != "hub" else sorted({a.destination.repo for a in artifacts
                                              if a.destination and a.destination.kind == "hub"})
            hint = f" (this release has: {', '.join(known)})" if known else f" (release {release_name} has none)"
            raise InputError(f"{sel!r} selects nothing{hint}", file="--only")
        chosen += [i for i in matched if i not in chosen]
    # A measurement follows what it measures (as a card follows its repo): a tier built is a tier measured,
    # so the cards rendered after it can say what it is worth.
    chosen += [a.id for a in artifacts if a.kind == "quality" and a.recipe.get("measures") in chosen
               and a.id not in chosen]
    return chosen


def run_build(ctx: Context) -> list[str]:
    """Build every selected artifact; returns the ids built in this run (others were up to date)."""
    ids = select(ctx)
    with ctx.live():
        built = ensure(ctx, ids)
    ctx.write_manifest()
    return built
