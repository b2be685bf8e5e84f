"""What every step of a run shares: the options of the command, the release and its planned artifacts,
`state.json` (every built artifact with the hash of its inputs), the hash cache, and the run's output.

It sits below the kinds (release/kinds/) and the engine (release/pipeline.py): a kind's builder, check and
cost take a `Context`; this module imports no kind, builder or engine module. The plan it holds is made by
the engine (`pipeline.Context` plans when a command has no plan yet).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape

from . import __version__
from .console import BYTES, VERBOSITY, BarProgress, LineProgress, ReleaseConsole, clock
from .dropmap.derive import drop_map_of
from .errors import InputError, WorkError
from .fsutil import HashCache, atomic_write_text, load_json_record, set_aside
from .manifest import Artifact, ArtifactRegistry, FileEntry, Manifest
from .provenance import input_hashes, pipelines_git
from .quality.facts import apply_quality
from .spec.load import Release

BASE = "base"  # the base checkpoint: an input of the release, fetched or generated, never published

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
                 artifacts: ArtifactRegistry) -> None:
        self.release = release
        self.options = options
        self.console = console or ReleaseConsole(stderr=True)
        self.dist = (options.dist_root / release.name).absolute()  # tools run in other directories
        self.artifacts = artifacts  # the plan of this release, made once per command by the engine
        self.state = State(self.dist / "state.json")
        self.hash_cache = HashCache(self.dist / "hashes.json")
        for problem in (self.state.problem, self.hash_cache.problem):
            if problem:
                self.console.print(f"[yellow]warning:[/] {escape(problem)}", soft_wrap=True, highlight=False)
        self.progress: BarProgress | LineProgress | None = None
        self.log: list[str] = []
        self._inputs: dict[str, str] | None = None
        self.keyed: dict[str, str] | None = None  # see need_files
        self.forced: set[str] = set()  # what --force has made again in this run (forget_forced)
        self.base_dir: Path | None = None  # the base checkpoint, once a step of this run has fetched it

    # -- inputs and provenance ---------------------------------------------------------------
    @property
    def inputs(self) -> dict[str, str]:
        if self._inputs is None:
            self._inputs = input_hashes(self.release)
        return self._inputs

    def manifest(self) -> Manifest:
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
        """One line of what the run does (timestamped without a terminal; nothing with -q)."""
        self.log.append(message)
        if not self.options.quiet and not VERBOSITY.quiet:
            stamp = "" if self.console.is_terminal else f"{clock()} "
            self.console.print(stamp + message, soft_wrap=True, highlight=False, markup=False)

    def detail(self, message: str) -> None:
        """A line only -v shows (what was restored rather than made, and why)."""
        if VERBOSITY.verbose:
            self.say(message)

    def task(self, description: str, total: int | None = None, unit: str = BYTES) -> Callable[[int, int], None]:
        """A progress display of one step; returns `update(done, total)`. `unit` is bytes, or what the step
        counts (chunks, windows, tiers)."""
        if self.progress is None:
            return lambda done, total: None
        return self.progress.task(description, total, unit)

    @contextmanager
    def live(self) -> Iterator[None]:
        """One progress display for the whole run: a live bar per step in a terminal, plain timestamped
        lines elsewhere (release/console.py)."""
        if self.options.quiet or VERBOSITY.quiet or self.progress is not None:
            yield
            return
        if not self.console.is_terminal:
            self.progress = LineProgress(self.console)
            try:
                yield
            finally:
                self.progress = None
            return
        bars = BarProgress(self.console)
        self.progress = bars
        try:
            with bars.rich:
                yield
        finally:
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
        self.artifacts.add(artifact)
        apply_quality(self.artifacts)  # figures follow the files they measured (either side may be new)
        if artifact.kind == "dropmap" and artifact.status in ("built", "published"):
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

