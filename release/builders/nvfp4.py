"""NVFP4A16: weight-only FP4 in the compressed-tensors layout vLLM loads, streamed from the pruned
BF16 checkpoint (release/nvfp4/)."""

from __future__ import annotations

import dataclasses

from .. import __version__
from ..context import Context, digest
from ..manifest import Artifact


class Nvfp4Builder:
    kind = "nvfp4"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        n = ctx.release.definition.nvfp4
        assert n is not None
        return digest("nvfp4", __version__, n.model_dump(), ctx.need_files(artifact))

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        (planned,) = artifacts
        n = ctx.release.definition.nvfp4
        assert n is not None
        bf16 = ctx.built("bf16")
        out = ctx.dist / planned.root
        ctx.say(f"nvfp4: quantizing {ctx.artifact_dir(bf16)} ({n.format})")
        from ..nvfp4 import quantize_checkpoint  # torch: only when a model is quantized

        result = quantize_checkpoint(ctx.artifact_dir(bf16), out, fmt=n.format, ignore=n.ignore,
                                     quantize_attention=n.quantize_attention,
                                     quantize_dense_mlp=n.quantize_dense_mlp, progress=ctx.task("nvfp4"))
        built = dataclasses.replace(planned, status="built")
        built.files = ctx.file_entries(out, [name for name, _ in result.files])
        built.facts = {**result.facts(), "size": sum(f.size or 0 for f in built.files)}
        return [built]
