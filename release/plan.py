"""The planned artifacts of a release, derived from its definition alone (nothing built yet): each kind of
`release.kinds.FLOW` plans its own, in flow order.

Builders later replace each planned artifact with the built one (same id) carrying real files,
sizes and hashes. Ids: `bf16`, `gguf:<TIER>` (baseline and every tier), `gguf:imatrix`,
`gguf:ollama-files`, `nvfp4`, `quality:<reference|TIER|nvfp4>`, `ollama:<tag>`,
`card:<bf16|gguf|nvfp4|ollama>`, `dropmap` when the release derives its drop map.
"""

from __future__ import annotations

from pathlib import Path

from .errors import Problem
from .kinds import FLOW
from .manifest import ArtifactRegistry
from .quality.facts import recorded_withheld_in_use as withheld_in_records
from .spec.load import Release
from .steps import wire


def plan_artifacts(release: Release, *, estimates: bool = True) -> ArtifactRegistry:
    """Every artifact the definition asks for; `estimates=False` skips size estimates (fast path)."""
    reg = ArtifactRegistry()
    for kind in FLOW:
        for artifact in kind.plan(release, reg, estimates=estimates):
            reg.add(artifact)
    wire(release, reg)
    return reg


def recorded_withheld_in_use(release: Release, dist_release: Path) -> list[Problem]:
    """Which withheld tiers a release's recorded build (`dist_release/state.json`) uses, over a plan
    without estimates (quality/facts.py reads the records)."""
    return withheld_in_records(release, dist_release, plan_artifacts(release, estimates=False))
