"""The release flow, written once: every artifact kind in order, and what each of its artifacts needs.

    base ─→ bf16 ─→ gguf:<baseline> ─→ gguf:imatrix (also needs bf16) ─→ gguf:<tier> ─→ ollama:<tag>
      ↘ dropmap ↗  │           └──→ quality:reference ──┴──→ quality:<tier>
               └──→ nvfp4 ─→ quality:nvfp4 (also needs bf16)
                  (a tier needs the imatrix when the release has one; the drop map is an artifact
                   when the release derives it)
    card:<repo> describes everything above (it reads what is built, it never builds)

Both ways of running a release are derived from this list and nothing else:
- one machine: `pipeline.ensure` builds needs first, one kind at a time, in FLOW order;
- many machines: `distributed.jobs` cuts the same graph into jobs in which nothing is made twice.

`needs` are hard: an artifact is built only after them, and its input hash is computed from their
recorded files (hashing an input never builds anything). `describes` are soft: a card is rendered
from what its subjects are now (built facts, or planned estimates), so `release cards` never builds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .context import BASE

if TYPE_CHECKING:
    from .manifest import Artifact, ArtifactRegistry
    from .spec.load import Release

def derives_drop_map(release: Release) -> bool:
    d = release.definition.dropmap
    return d is not None and d.derive


def _dropmap(release: Release, a: Artifact) -> list[str]:
    return [BASE]


def _bf16(release: Release, a: Artifact) -> list[str]:
    return [BASE, "dropmap"] if derives_drop_map(release) else [BASE]


def _gguf(release: Release, a: Artifact) -> list[str]:
    from .gguf.checks import imatrix_is_calibration

    g = release.definition.gguf
    assert g is not None
    name = a.id.split(":", 1)[1]
    baseline = f"gguf:{g.baseline}"
    if name == "ollama-files":
        return []  # the release's template and parameters: definition only
    if name == g.baseline:
        return ["bf16"]
    if name == "imatrix":
        # Computed from the BF16 checkpoint layer by layer, named and tokenized as the baseline GGUF.
        return [baseline, "bf16"] if g.imatrix and imatrix_is_calibration(g.imatrix) else []
    # llama.cpp uses an importance matrix for every type it helps; a release that has one uses it everywhere.
    return [baseline, "gguf:imatrix"] if g.imatrix else [baseline]


def _nvfp4(release: Release, a: Artifact) -> list[str]:
    return ["bf16"]


def _quality(release: Release, a: Artifact) -> list[str]:
    if a.id == "quality:reference":
        g = release.definition.gguf
        assert g is not None
        return [f"gguf:{g.baseline}"]
    if a.id == "quality:nvfp4":
        return ["nvfp4", "bf16"]
    return [a.recipe["measures"], "quality:reference"]


def _ollama(release: Release, a: Artifact) -> list[str]:
    return [a.recipe["gguf"]]


def _card(release: Release, a: Artifact) -> list[str]:
    return []


@dataclass(frozen=True)
class Step:
    """One kind of artifact: the builder that makes it and what each of its artifacts needs."""

    kind: str  # Artifact.kind
    builder: str  # key of release.builders.BUILDERS
    needs: Callable[[Release, Artifact], list[str]]
    describes_all: bool = False  # rendered from every other artifact as it stands (cards)
    stage: str = ""  # a job stage of its own in the plan for many machines (and its runner)
    runner: str = ""


FLOW: tuple[Step, ...] = (
    Step("dropmap", "dropmap", _dropmap, stage="dropmap", runner="gpu"),
    Step("bf16", "bf16", _bf16),
    Step("gguf", "gguf", _gguf),
    Step("nvfp4", "nvfp4", _nvfp4),
    Step("quality", "quality", _quality),
    Step("ollama", "ollama", _ollama),
    Step("card", "cards", _card, describes_all=True),
)
STEP_OF: dict[str, Step] = {s.kind: s for s in FLOW}
ORDER: dict[str, int] = {s.kind: i for i, s in enumerate(FLOW)}


def wire(release: Release, registry: ArtifactRegistry) -> None:
    """Set `needs` on every planned artifact from its step's declaration."""
    for a in registry:
        a.needs = STEP_OF[a.kind].needs(release, a)


def closure(registry: ArtifactRegistry, ids: Iterable[str]) -> list[str]:
    """`ids` and everything they need, transitively (BASE excluded), in flow order."""
    seen: set[str] = set()
    stack = list(ids)
    while stack:
        aid = stack.pop()
        if aid in seen or aid == BASE:
            continue
        seen.add(aid)
        stack.extend(registry[aid].needs)
    return topological(registry, seen)


def topological(registry: ArtifactRegistry, ids: Iterable[str]) -> list[str]:
    """`ids` ordered so that needs come first; ties keep flow order, then registry order."""
    wanted = set(ids)
    position = {a.id: i for i, a in enumerate(registry)}
    depth: dict[str, int] = {}

    def level(aid: str) -> int:
        if aid not in depth:
            needs = [n for n in registry[aid].needs if n != BASE]
            depth[aid] = 1 + max((level(n) for n in needs), default=-1)
        return depth[aid]

    return sorted(wanted, key=lambda i: (STEP_OF[registry[i].kind].describes_all, level(i),
                                         ORDER[registry[i].kind], position[i]))


def dependents(registry: ArtifactRegistry, ids: Iterable[str]) -> list[str]:
    """Every artifact that needs one of `ids`, transitively (cards, which describe all, included)."""
    out: set[str] = set()
    frontier = set(ids)
    while frontier:
        nxt = {a.id for a in registry if a.id not in out and frontier & set(a.needs)}
        out |= nxt
        frontier = nxt
    if out or set(ids):
        out |= {a.id for a in registry if STEP_OF[a.kind].describes_all}
    return topological(registry, out - set(ids))
