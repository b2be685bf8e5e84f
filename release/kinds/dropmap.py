"""The drop map, when the release derives it ([dropmap] derive): the collector runs the base model over the
calibration text and a recipe picks the experts to keep (release/dropmap/). On a GPU when torch sees one;
a job of its own (stage `dropmap`, a GPU runner) in the plan for many machines."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..context import BASE, Context, digest
from ..costs import DROPMAP_TOKENS_PER_S, GB, Cost, base_size, calibration_tokens
from ..dropmap.derive import DropmapRequest, derive
from ..dropmap.summary import selection_facts
from ..errors import InputError
from ..manifest import Artifact, ArtifactRegistry, Destination, FileEntry
from ..spec.dropmap import check_against_config, parse_drop_map
from ..spec.expert_scores import parse_scores, scores_path_for
from ..spec.load import Release
from .base import KindBase

if TYPE_CHECKING:
    from ..distributed.jobs import Job


def derives_drop_map(release: Release) -> bool:
    d = release.definition.dropmap
    return d is not None and d.derive


class DropmapKind(KindBase):
    name = "dropmap"
    help = "the drop map, when the release derives it"
    stage = "dropmap"
    runner = "gpu"

    def plan(self, release: Release, planned: ArtifactRegistry, *, estimates: bool) -> list[Artifact]:
        if not derives_drop_map(release):
            return []
        d = release.definition
        # Published beside the weights it chose (with the scores it was derived from) when there is a
        # BF16 repo; otherwise made, staged between machines, and kept locally.
        name = Path(d.prune.drop_map).name
        return [Artifact(id="dropmap", kind="dropmap", root="dropmap",
                         destination=Destination(kind="hub", repo=d.bf16.repo, path_in_repo="pruning")
                         if d.bf16 else None,
                         files=[FileEntry(name), FileEntry(scores_path_for(name))],
                         recipe={"recipe": d.dropmap.recipe if d.dropmap else "",
                                 "experts_kept": d.prune.experts_kept})]

    def needs(self, release: Release, artifact: Artifact) -> list[str]:
        return [BASE]

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        d = ctx.release.definition
        calibration = {k: v for k, v in ctx.inputs.items()
                       if d.dropmap is not None and k.startswith(d.dropmap.calibration.rstrip("/") + "/")}
        return digest("dropmap", __version__, d.base.repo, d.base.revision, d.base.generator,
                      ctx.inputs.get(d.base.config), d.dropmap.model_dump() if d.dropmap else None,
                      d.prune.experts_kept, calibration)

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        import torch

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

    def verify(self, ctx: Context, a: Artifact) -> list[str]:
        """A derived map parses, fits the base, and follows from the scores beside it by its recipe."""
        root = ctx.artifact_dir(a)
        map_file, scores_file = (root / f.path for f in a.files)
        try:
            dm = parse_drop_map(map_file.read_bytes(), a.files[0].path)
            scores = parse_scores(scores_file.read_bytes(), a.files[1].path)
            derived = scores.kept()
        except InputError as exc:
            return [str(p) for p in exc.problems]
        problems = [str(p) for p in check_against_config(dm, ctx.release.base_config, ctx.release.family,
                                                          config_file=ctx.release.definition.base.config,
                                                          base_repo=ctx.release.definition.base.repo)]
        problems += [f"layer {layer}: the map keeps {list(dm.kept.get(layer, ()))}, its scores give {list(kept)}"
                     for layer, kept in sorted(derived.items()) if dm.kept.get(layer) != kept]
        if dm.kept_count != ctx.release.definition.prune.experts_kept:
            problems.append(f"keeps {dm.kept_count} experts per layer, [prune] experts_kept says "
                            f"{ctx.release.definition.prune.experts_kept}")
        return problems

    def cost(self, ctx: Context, artifact: Artifact, job: Job) -> Cost:
        tokens = calibration_tokens(ctx)
        layers = max(len(ctx.release.family.moe_layers(ctx.release.base_config)), 1)
        return Cost(serial_s=tokens / DROPMAP_TOKENS_PER_S["gpu" if job.runner == "gpu" else "standard"],
                    ram_gb=2 * (base_size(ctx) or 0) / layers / GB + 1)  # two layers + activations


DROPMAP = DropmapKind()
