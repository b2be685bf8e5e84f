"""What an artifact kind is: one object that knows everything the release does with its artifacts.

A kind plans its artifacts from the definition, says what each needs, hashes its inputs, builds them,
checks them before anything is published, and says what each costs in a job. The engine, the planner,
the job planner, the verify gate and the command line read the kinds from `FLOW` (release/kinds/__init__.py)
and nothing else lists them. Adding a kind is one module here (docs/architecture.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..context import Context
from ..costs import Cost
from ..manifest import Artifact, ArtifactRegistry
from ..spec.load import Release

if TYPE_CHECKING:
    from ..distributed.jobs import Job  # the job being estimated: its runner (a type, never imported at run time)


class Kind(Protocol):
    """One kind of artifact and everything the release does with it."""

    name: str  # Artifact.kind
    selector: str  # what `--only` and `--from` take ("cards" for card)
    help: str  # a line for the command line's help
    describes_all: bool  # rendered from every other artifact as it stands (cards): built last, made by finish
    wraps: bool  # only wraps another kind's files (an Ollama tag: its model is a GGUF); made by finish
    stage: str  # a job stage of its own in the plan for many machines ("" for none)
    runner: str  # the runner that stage asks for
    measures: bool  # measures another artifact: a job is named after what it measures
    packs: bool  # its build units with the same needs share a job (GGUF tiers)

    def plan(self, release: Release, planned: ArtifactRegistry, *, estimates: bool) -> list[Artifact]:
        """The artifacts the definition asks for (`planned`: the kinds before this one, in flow order)."""

    def needs(self, release: Release, artifact: Artifact) -> list[str]:
        """The ids (or BASE) `artifact` is made from."""

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        """Hash of everything the artifact is made from; its needs are built (ctx.need_files)."""

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        """Build these artifacts; return them with status 'built', files, sizes and hashes."""

    def verify(self, ctx: Context, artifact: Artifact) -> list[str]:
        """What is wrong with the built artifact (nothing: []); one problem keeps the release from publishing."""

    def cost(self, ctx: Context, artifact: Artifact, job: Job) -> Cost:
        """The artifact's share of its job's time and memory (release/costs.py)."""


class KindBase:
    """Defaults of a kind: selected by its name, no stage of its own, free in a job."""

    name = ""
    help = ""
    describes_all = False
    wraps = False
    stage = ""
    runner = ""
    measures = False
    packs = False

    @property
    def selector(self) -> str:
        return self.name

    def cost(self, ctx: Context, artifact: Artifact, job: Job) -> Cost:
        return Cost()
