"""The BF16 artifact: the base checkpoint with the drop map's experts removed (streaming pruner)."""

from __future__ import annotations

import dataclasses

from .. import __version__
from ..context import Context, digest
from ..fetch import ensure_base
from ..manifest import Artifact
from ..prune import prune_checkpoint


class Bf16Builder:
    kind = "bf16"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        base = ctx.release.definition.base
        return digest("bf16", __version__, base.repo, base.revision, base.generator,
                      ctx.inputs.get(base.config), ctx.release.drop_map.sha256, ctx.need_files(artifact))

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        (planned,) = artifacts
        release = ctx.release
        base_dir = ensure_base(release, endpoint=ctx.options.hub_endpoint, token=ctx.options.hub_token,
                               hash_cache=ctx.hash_cache, progress=ctx.say)
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
