"""Cards: every card rendered from the definition, scores and the artifacts as they stand (built
facts where built, estimates where planned), plus the static preview of the release family."""

from __future__ import annotations

from ..context import Context, digest
from ..manifest import Artifact
from ..provenance import provenance


def _described(ctx: Context) -> list[tuple]:
    """What the cards say about the other artifacts (not their remote diff)."""
    return [(a.id, a.status, [(f.path, f.size, f.sha256) for f in a.files], a.recipe, a.facts,
             a.destination.__dict__ if a.destination else None)
            for a in ctx.artifacts if a.kind != "card"]


class CardsBuilder:
    kind = "cards"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        return digest("cards", ctx.inputs, provenance(ctx.release), _described(ctx),
                      [s.definition.model_dump() for s in ctx.release.siblings])

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        from ..cards import build_preview, render_cards
        from ..errors import InputError
        from ..quality.facts import withheld_in_use

        withheld = withheld_in_use(ctx.release, ctx.artifacts)  # a card cannot link an unpublished tier
        if withheld:
            raise InputError(withheld)
        cards_dir = ctx.dist / "cards"
        built = render_cards(ctx.release, ctx.artifacts, cards_dir, provenance=provenance(ctx.release))
        for a in built:
            a.files = ctx.file_entries(ctx.artifact_dir(a), [f.path for f in a.files])
        index = build_preview(ctx.release, ctx.artifacts, cards_dir, ctx.dist / "preview")
        ctx.say(f"cards: {len(built)} rendered; preview {index}")
        return built
