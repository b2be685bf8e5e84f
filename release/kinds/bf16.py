"""The BF16 artifact: the base checkpoint with the drop map's experts removed (streaming pruner), checked
byte range by byte range against the base (and, on small models, logit by logit) before it is published."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..context import BASE, Context, digest
from ..costs import PRUNE_BPS, Cost, artifact_size
from ..errors import VerifyError
from ..estimate import bf16_size, census
from ..manifest import Artifact, ArtifactRegistry, Destination
from ..spec.load import Release
from .base import KindBase
from .dropmap import derives_drop_map

if TYPE_CHECKING:
    from ..distributed.jobs import Job

# Below this size both models fit in memory at fp32 and the logits check takes seconds. Above it the
# byte comparison carries the result of the tiny-model exactness tests to the full-size checkpoint.
LOGITS_CHECK_MAX_BYTES = 2_000_000_000


class Bf16Kind(KindBase):
    name = "bf16"
    help = "the pruned BF16 checkpoint"

    def plan(self, release: Release, planned: ArtifactRegistry, *, estimates: bool) -> list[Artifact]:
        d = release.definition
        if not d.bf16:
            return []
        c = census(release)
        return [Artifact(id="bf16", kind="bf16", root="bf16", destination=Destination(kind="hub", repo=d.bf16.repo),
                         recipe={"drop_map_sha256": release.drop_map.sha256,
                                 "experts_kept": release.drop_map.kept_count},
                         facts={"size": bf16_size(c), "estimated": True, "parameters": c.pruned_total})]

    def needs(self, release: Release, artifact: Artifact) -> list[str]:
        return [BASE, "dropmap"] if derives_drop_map(release) else [BASE]

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        base = ctx.release.definition.base
        return digest("bf16", __version__, base.repo, base.revision, base.generator,
                      ctx.inputs.get(base.config), ctx.release.drop_map.sha256, ctx.need_files(artifact))

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        from ..fetch import ensure_base  # lazy: huggingface_hub at start-up
        from ..prune import prune_checkpoint  # lazy: numpy at start-up

        (planned,) = artifacts
        release = ctx.release
        base_dir = ensure_base(release, endpoint=ctx.options.hub_endpoint, token=ctx.options.hub_token,
                               hash_cache=ctx.hash_cache, progress=ctx.say)
        ctx.base_dir = base_dir  # the verify gate compares with it without fetching it again
        out = ctx.dist / planned.root
        ctx.say(f"prune: {release.drop_map.num_experts} → {release.drop_map.kept_count} experts per layer")
        result = prune_checkpoint(base_dir, release.drop_map, out, base_repo=release.definition.base.repo,
                                  base_revision=release.definition.base.revision,
                                  progress=ctx.task("prune → bf16"))
        built = dataclasses.replace(planned, status="built")
        built.files = ctx.file_entries(out, [name for name, _ in result.files])
        built.facts = {
            "size": sum(f.size or 0 for f in built.files),
            "parameters_before": result.total_parameters_before,
            "parameters": result.total_parameters_after,
            "tensor_bytes_in": result.tensor_bytes_in,
            "tensor_bytes_out": result.tensor_bytes_out,
            "experts_before": result.num_experts_before,
            "experts_after": result.num_experts_after,
            "layout": result.layout,
            "count_key": result.count_key,
        }
        return [built]

    def verify(self, ctx: Context, a: Artifact) -> list[str]:
        from ..fetch import ensure_base  # lazy: huggingface_hub at start-up
        from ..prune import verify_pruned  # lazy: numpy at start-up

        base = ctx.base_dir if ctx.base_dir is not None and ctx.base_dir.is_dir() else \
            ensure_base(ctx.release, endpoint=ctx.options.hub_endpoint, token=ctx.options.hub_token,
                        hash_cache=ctx.hash_cache)
        try:
            # full: every copied byte range is compared with the base, not just headers and sizes
            verify_pruned(ctx.artifact_dir(a), base, full=True)
        except VerifyError as exc:
            return str(exc).splitlines()[1:] or [str(exc)]
        return _logits(ctx, a, base)

    def cost(self, ctx: Context, artifact: Artifact, job: Job) -> Cost:
        return Cost(serial_s=(artifact_size(ctx, artifact.id) or 0) / PRUNE_BPS)


def _logits(ctx: Context, a: Artifact, base: Path) -> list[str]:
    from ..prune.exactness import compare_logits, supported  # lazy: torch, only when a model is compared

    if a.size > LOGITS_CHECK_MAX_BYTES or not supported(ctx.release.family):
        return []
    report = compare_logits(base, ctx.artifact_dir(a), ctx.release.drop_map.kept, ctx.release.family)
    if not report.exact:
        return [f"logits differ from the base rerouted over the kept experts (max |Δ| {report.max_abs_diff:.3g})"]
    ctx.say(f"verify: bf16 logits equal the router-masked base's (mask effect {report.mask_effect:.3g})")
    return []


BF16 = Bf16Kind()
