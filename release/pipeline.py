"""The release flow: one readable list of steps over a shared context with a typed artifact registry.

    check → fetch base → prune → build (bf16 | gguf | nvfp4 | ollama) → cards → verify → plan
          → publish (hub, ollama) → tag

Each step reads the context and adds or replaces artifacts in `ctx.artifacts`; none reaches into
another's internals. The manifest (`dist/<name>/manifest.json`) is the registry serialised with
provenance; `state.json` records finished steps with the hashes of their inputs so a rerun skips
finished work.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from .errors import InputError, NotAvailable
from .fsutil import atomic_write_text
from .manifest import ARTIFACT_KINDS, ArtifactRegistry, Manifest
from .plan import plan_artifacts
from .provenance import input_hashes, pipelines_git
from .spec.load import Release

KINDS = (*ARTIFACT_KINDS[:-1], "cards", "hub")  # bf16 gguf nvfp4 ollama cards hub


@dataclass
class Options:
    dist_root: Path = Path("dist")
    only: list[str] = field(default_factory=list)  # KIND or KIND:ID selectors
    force: bool = False
    jobs: int = 2
    max_memory: int | None = None
    hub_endpoint: str | None = None
    ollama_registry: str | None = None
    dry_run: bool = False
    prune_remote: bool = False

    def selects(self, kind: str, artifact_id: str | None = None) -> bool:
        if not self.only:
            return True
        for sel in self.only:
            sel_kind, _, sel_id = sel.partition(":")
            if sel_kind == kind and (not sel_id or artifact_id is None or artifact_id == f"{kind}:{sel_id}"):
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
    """`state.json`: finished steps with the hash of their inputs and what they produced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            self.data = {"steps": {}}

    def done(self, step: str, inputs: str) -> bool:
        rec = self.data["steps"].get(step)
        return bool(rec) and rec.get("inputs") == inputs

    def record(self, step: str, inputs: str, outputs: dict[str, Any]) -> None:
        self.data["steps"][step] = {"inputs": inputs, "outputs": outputs}
        atomic_write_text(self.path, json.dumps(self.data, indent=2) + "\n")

    def forget(self, step: str) -> None:
        if self.data["steps"].pop(step, None) is not None:
            atomic_write_text(self.path, json.dumps(self.data, indent=2) + "\n")


class Context:
    def __init__(self, release: Release, options: Options, console: Console | None = None) -> None:
        self.release = release
        self.options = options
        self.console = console or Console(stderr=True)
        self.dist = options.dist_root / release.name
        self.artifacts: ArtifactRegistry = plan_artifacts(release)
        self.state = State(self.dist / "state.json")
        self._inputs: dict[str, str] | None = None

    @property
    def inputs(self) -> dict[str, str]:
        if self._inputs is None:
            self._inputs = input_hashes(self.release)
        return self._inputs

    def inputs_hash(self, *keys: str) -> str:
        h = hashlib.sha256()
        for k in sorted(keys or self.inputs):
            h.update(f"{k}={self.inputs.get(k, '')}\n".encode())
        return h.hexdigest()

    def manifest(self) -> Manifest:
        from . import __version__

        return Manifest(
            release=self.release.name,
            tool_version=__version__,
            pipelines_git=pipelines_git(self.release.dir),
            inputs=self.inputs,
            artifacts=self.artifacts,
        )

    def write_manifest(self) -> Path:
        path = self.dist / "manifest.json"
        self.manifest().write(path)
        return path


StepFn = Callable[[Context], None]


@dataclass(frozen=True)
class Step:
    name: str
    kind: str  # the --only KIND it belongs to
    run: StepFn
    description: str


def not_available(what: str, issue: str) -> StepFn:
    def run(ctx: Context) -> None:
        raise NotAvailable(f"the {what} is not available in this version of moe-release ({issue})")

    return run


def build_steps() -> list[Step]:
    """The build part of the flow, in order. Later issues replace the placeholders."""
    return [
        Step("prune", "bf16", not_available("streaming pruner", "issue 3"), "prune the base checkpoint"),
        Step("gguf", "gguf", not_available("GGUF builder", "issue 6"), "convert and quantize GGUF tiers"),
        Step("nvfp4", "nvfp4", not_available("NVFP4A16 builder", "issue 8"), "quantize to NVFP4A16"),
        Step("ollama", "ollama", not_available("Ollama builder", "issue 7"), "build Ollama tags"),
        Step("cards", "cards", not_available("card renderer", "issue 4"), "render model cards"),
    ]


def run_build(ctx: Context) -> list[str]:
    """Run the selected build steps; returns the names of the steps run."""
    ran: list[str] = []
    for step in build_steps():
        if not ctx.options.selects(step.kind):
            continue
        step.run(ctx)
        ran.append(step.name)
    ctx.write_manifest()
    return ran
