"""Placeholder until the gguf builder is wired in."""

from __future__ import annotations

from ..errors import NotAvailable
from ..manifest import Artifact
from ..pipeline import Context, digest


class GgufBuilder:
    kind = "gguf"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        return digest("gguf", artifact.id)

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        raise NotAvailable("the gguf builder is not available in this version of moe-release")
