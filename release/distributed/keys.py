"""What decides that staged or promoted work is still good: keys, hashes of everything an output is made
from, computed before it is made.

    unit_key(ctx, unit)        a unit's outputs, from its inputs (the records of the units it needs are
                               adopted first: their files' hashes stand in for them)
    definition_key(ctx, plan)  the whole release, from the definition alone (every artifact keyed by what
                               it is made from, recursively down to the base; plus every input file of the
                               definition): the promotion record carries it, so a fresh machine with no
                               record of any unit can tell that this definition is promoted already
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..context import digest
from ..kinds import kind_of
from ..spec.load import DEFINITION_FILE
from ..steps import topological
from .records import PromotionRecord, read_promotion

if TYPE_CHECKING:
    from ..context import Context
    from ..publish.hub import HubPublisher
    from .jobs import JobPlan, Unit


def _keys(ctx: Context, artifact_ids: list[str]) -> dict[str, str]:
    """Each artifact's input hash, a need made among `artifact_ids` standing in by its own key."""
    keys: dict[str, str] = {}
    ctx.keyed = keys
    try:
        for aid in topological(ctx.artifacts, artifact_ids):
            a = ctx.artifacts[aid]
            keys[aid] = kind_of(a.kind).input_hash(ctx, a)
    finally:
        ctx.keyed = None
    return keys


def unit_key(ctx: Context, unit: Unit) -> str:
    """Everything the unit's outputs are made from: no job id, no packing."""
    return digest("unit", unit.id, sorted(_keys(ctx, unit.artifacts).items()))


def definition_key(ctx: Context, plan: JobPlan) -> str:
    """The release as this definition makes it: every input but how it is cut into jobs (`[jobs]`, which
    changes no output). Call it before any record is adopted (a derived drop map, once adopted, replaces
    the release's)."""
    staged = [i for u in plan.units for i in u.artifacts]
    files = sorted((k, v) for k, v in ctx.inputs.items() if k != DEFINITION_FILE)
    definition = ctx.release.definition.model_dump(mode="json", exclude={"jobs"})
    return digest("definition", ctx.release.name, sorted(_keys(ctx, staged).items()), files, definition)


def promoted(ctx: Context, pub: HubPublisher, key: str) -> PromotionRecord | None:
    """The promotion record, when it was made for this very definition (`key`: its definition_key)."""
    rec = read_promotion(pub, ctx)
    return rec if rec is not None and rec.key == key else None
