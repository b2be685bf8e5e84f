"""Placeholder until the cards builder is wired in."""

from __future__ import annotations

from ..errors import NotAvailable
from ..manifest import Artifact
from ..pipeline import Context, digest


class CardsBuilder:
    kind = "cards"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        return digest("cards", artifact.id)

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        raise NotAvailable("the cards builder is not available in this version of moe-release")
