"""Placeholder until the ollama builder is wired in."""

from __future__ import annotations

from ..errors import NotAvailable
from ..manifest import Artifact
from ..pipeline import Context, digest


class OllamaBuilder:
    kind = "ollama"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        return digest("ollama", artifact.id)

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        raise NotAvailable("the ollama builder is not available in this version of moe-release")
