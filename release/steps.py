"""The release flow as a graph: the kinds of `release.kinds.FLOW` in order, and what each artifact needs
(each kind declares its artifacts' needs; the flow is drawn in release/kinds/__init__.py).

Both ways of running a release are derived from this list and nothing else:
- one machine: `pipeline.ensure` builds needs first, one kind at a time, in FLOW order;
- many machines: `distributed.jobs` cuts the same graph into jobs in which nothing is made twice.

`needs` are hard: an artifact is built only after them, and its input hash is computed from their
recorded files (hashing an input never builds anything). `describes` are soft: a card is rendered
from what its subjects are now (built facts, or planned estimates), so `release cards` never builds.
"""

from __future__ import annotations

from collections.abc import Iterable

from .context import BASE
from .kinds import kind_of, order
from .manifest import ArtifactRegistry
from .spec.load import Release


def wire(release: Release, registry: ArtifactRegistry) -> None:
    """Set `needs` on every planned artifact from its kind's declaration."""
    for a in registry:
        a.needs = kind_of(a.kind).needs(release, a)


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

    return sorted(wanted, key=lambda i: (kind_of(registry[i].kind).describes_all, level(i),
                                         order(registry[i].kind), position[i]))


def dependents(registry: ArtifactRegistry, ids: Iterable[str]) -> list[str]:
    """Every artifact that needs one of `ids`, transitively (cards, which describe all, included)."""
    out: set[str] = set()
    frontier = set(ids)
    while frontier:
        nxt = {a.id for a in registry if a.id not in out and frontier & set(a.needs)}
        out |= nxt
        frontier = nxt
    if out or set(ids):
        out |= {a.id for a in registry if kind_of(a.kind).describes_all}
    return topological(registry, out - set(ids))
