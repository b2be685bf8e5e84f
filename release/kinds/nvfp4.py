"""NVFP4A16: weight-only FP4 in the compressed-tensors layout vLLM loads, streamed from the pruned BF16
checkpoint (release/nvfp4/), and checked by decompressing it within the NVFP4 error bound."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from .. import __version__
from ..context import Context, digest
from ..costs import NVFP4_BPS, Cost, artifact_size
from ..manifest import Artifact, ArtifactRegistry, Destination
from ..spec.load import Release
from .base import KindBase
from .bf16 import LOGITS_CHECK_MAX_BYTES

if TYPE_CHECKING:
    from ..distributed.jobs import Job


class Nvfp4Kind(KindBase):
    name = "nvfp4"
    help = "the NVFP4A16 checkpoint for vLLM"

    def plan(self, release: Release, planned: ArtifactRegistry, *, estimates: bool) -> list[Artifact]:
        n = release.definition.nvfp4
        if not n:
            return []
        return [Artifact(id="nvfp4", kind="nvfp4", root="nvfp4", destination=Destination(kind="hub", repo=n.repo),
                         recipe={"format": n.format, "ignore": list(n.ignore),
                                 "quantize_attention": n.quantize_attention,
                                 "quantize_dense_mlp": n.quantize_dense_mlp},
                         facts={"size": _estimate(release) if estimates else None, "estimated": True})]

    def needs(self, release: Release, artifact: Artifact) -> list[str]:
        return ["bf16"]

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
        from ..nvfp4 import quantize_checkpoint  # lazy: torch, only when a model is quantized

        result = quantize_checkpoint(ctx.artifact_dir(bf16), out, fmt=n.format, ignore=n.ignore,
                                     quantize_attention=n.quantize_attention,
                                     quantize_dense_mlp=n.quantize_dense_mlp, progress=ctx.task("nvfp4"))
        built = dataclasses.replace(planned, status="built")
        built.files = ctx.file_entries(out, [name for name, _ in result.files])
        built.facts = {**result.facts(), "size": sum(f.size or 0 for f in built.files)}
        return [built]

    def verify(self, ctx: Context, a: Artifact) -> list[str]:
        from ..nvfp4 import verify_checkpoint  # lazy: torch, only when a model is checked

        bf16 = ctx.built("bf16")
        # compressed-tensors' own dequantizer is the oracle; ours is proven bit-identical to it (tests) and
        # about 3x faster, which matters at full size.
        dequantizer = "own" if a.size > LOGITS_CHECK_MAX_BYTES else "auto"
        report = verify_checkpoint(ctx.artifact_dir(a), ctx.artifact_dir(bf16), dequantizer=dequantizer)
        if report.ok:
            ctx.say(f"verify: {report.summary()}")
        return list(report.problems)

    def cost(self, ctx: Context, artifact: Artifact, job: Job) -> Cost:
        return Cost(serial_s=(artifact_size(ctx, "bf16") or 0) / NVFP4_BPS,
                    ram_gb=1.5)  # measured 0.82–1.1 GB peak (benchmarks/nvfp4.py)


def _estimate(release: Release) -> int | None:
    d = release.definition.nvfp4
    assert d is not None
    try:
        from ..nvfp4 import estimate_size_from_config  # type: ignore[attr-defined]  # lazy: may be absent
    except ImportError:
        return None
    try:
        return int(estimate_size_from_config(
            release.base_config, num_experts_kept=release.drop_map.kept_count,
            quantize_attention=d.quantize_attention, quantize_dense_mlp=d.quantize_dense_mlp, ignore=d.ignore))
    except (KeyError, TypeError, ValueError):
        return None


NVFP4 = Nvfp4Kind()
