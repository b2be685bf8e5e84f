"""The drop map, when the release derives it ([dropmap] derive): the collector runs the base model over the
calibration text and a recipe picks the experts to keep (release/dropmap/). On a GPU when torch sees one."""

from __future__ import annotations

import dataclasses

from .. import __version__
from ..context import Context, digest
from ..manifest import Artifact


class DropmapBuilder:
    kind = "dropmap"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        d = ctx.release.definition
        calibration = {k: v for k, v in ctx.inputs.items()
                       if d.dropmap is not None and k.startswith(d.dropmap.calibration.rstrip("/") + "/")}
        return digest("dropmap", __version__, d.base.repo, d.base.revision, d.base.generator,
                      ctx.inputs.get(d.base.config), d.dropmap.model_dump() if d.dropmap else None,
                      d.prune.experts_kept, calibration)

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        import torch

        from ..dropmap.derive import DropmapRequest, derive
        from ..dropmap.summary import selection_facts
        from ..spec.expert_scores import parse_scores

        (planned,) = artifacts
        out = ctx.dist / planned.root
        device = "cuda" if torch.cuda.is_available() else "cpu"
        ctx.say(f"dropmap: deriving the drop map on {device}")
        result = derive(str(ctx.release.dir), DropmapRequest(out=out / planned.files[0].path, device=device,
                                                             hub_endpoint=ctx.options.hub_endpoint),
                        progress=ctx.say)
        built = dataclasses.replace(planned, status="built")
        built.files = ctx.file_entries(out, [f.path for f in planned.files])
        scores = parse_scores(result.scores_file.read_bytes(), result.scores_file.name)
        built.facts = {"kept": {str(k): list(v) for k, v in sorted(result.kept.items())},
                       "selection": selection_facts(scores, dict(result.kept)),
                       "recipe": result.recipe.to_json(), "tokens": result.tokens,
                       "tokens_per_second": round(result.tokens_per_second, 1), "device": device,
                       "source": f"release dropmap ({result.recipe.name}) {__version__}",
                       "size": sum(f.size or 0 for f in built.files)}
        return [built]
