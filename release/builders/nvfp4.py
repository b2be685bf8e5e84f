"""Placeholder until the nvfp4 builder is wired in."""

from __future__ import annotations

from ..errors import NotAvailable
from ..manifest import Artifact
from ..pipeline import Context, digest


class Nvfp4Builder:
    kind = "nvfp4"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        return digest("nvfp4", artifact.id)

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        raise NotAvailable("the nvfp4 builder is not available in this version of moe-release")
