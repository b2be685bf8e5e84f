"""Quality: every quantized artifact measured against its reference on the release's held-out text
(release/quality/). `quality:reference` is the GGUF baseline's log-probabilities, made once and staged for
the tier jobs; `quality:<TIER>` and `quality:nvfp4` are a few numbers each, copied onto what they measure.
None is published: their figures become `facts.quality` of what they measure (release/quality/facts.py)."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from .. import __version__
from ..context import Context, digest
from ..costs import (
    GB,
    RAM_GB,
    READ_BPS,
    Cost,
    artifact_size,
    mapped_model_gb,
    measure_cost,
    measure_ram_gb,
    windows,
)
from ..fsutil import atomic_write_text
from ..manifest import Artifact, ArtifactRegistry, FileEntry
from ..quality import QUALITY_WORK
from ..quality.estimate import reference_bytes
from ..quality.facts import figure_problems, measured_files
from ..spec.heldout import read_heldout
from ..spec.load import Release
from ..toolchain import LLAMA_CPP_PYTHON
from .base import KindBase

if TYPE_CHECKING:
    from ..distributed.jobs import Job


class QualityKind(KindBase):
    name = "quality"
    help = "the measured quality of each quantized artifact (never published)"
    measures = True

    def plan(self, release: Release, planned: ArtifactRegistry, *, estimates: bool) -> list[Artifact]:
        """The reference of the GGUF tiers, one measurement per tier and one of NVFP4."""
        d = release.definition
        if release.quality is None:
            return []
        out: list[Artifact] = []
        if d.gguf and d.gguf.tiers:
            out.append(Artifact(id="quality:reference", kind="quality", root=QUALITY_WORK,
                                files=[FileEntry("quality-reference.npy"), FileEntry("quality-reference.json")],
                                recipe={"of": f"gguf:{d.gguf.baseline}"},
                                facts={"size": reference_bytes(release), "estimated": True}))
            for tier in d.gguf.tiers:
                out.append(Artifact(id=f"quality:{tier}", kind="quality", root=QUALITY_WORK,
                                    files=[FileEntry(f"quality-{tier}.json")], recipe={"measures": f"gguf:{tier}"},
                                    facts={"size": 1000, "estimated": True}))
        if d.nvfp4 and d.bf16:
            out.append(Artifact(id="quality:nvfp4", kind="quality", root=QUALITY_WORK,
                                files=[FileEntry("quality-nvfp4.json")], recipe={"measures": "nvfp4"},
                                facts={"size": 1000, "estimated": True}))
        return out

    def needs(self, release: Release, a: Artifact) -> list[str]:
        if a.id == "quality:reference":
            g = release.definition.gguf
            assert g is not None
            return [f"gguf:{g.baseline}"]
        if a.id == "quality:nvfp4":
            return ["nvfp4", "bf16"]
        return [a.recipe["measures"], "quality:reference"]

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        q = ctx.release.quality
        assert q is not None
        return digest("quality", __version__, LLAMA_CPP_PYTHON, artifact.recipe, ctx.inputs.get(q.text),
                      q.max_tokens, q.context, ctx.need_files(artifact))

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        from ..gguf.build import baseline_source  # lazy: numpy at start-up
        from ..quality.gguf import make_reference, measure_tier  # lazy: numpy at start-up

        q = ctx.release.quality
        assert q is not None
        text = read_heldout(ctx.release)
        shown = ctx.release.display(q.text)
        built: list[Artifact] = []
        for planned in sorted(artifacts, key=lambda a: a.id != "quality:reference"):
            out = ctx.artifact_dir(planned)
            a = dataclasses.replace(planned, status="built", facts=dict(planned.facts))
            a.facts.pop("size", None)
            a.facts.pop("estimated", None)
            measures = planned.recipe.get("measures")
            if planned.id == "quality:reference":
                baseline = ctx.built(planned.needs[0])
                ctx.say(f"quality: reference log-probabilities of {baseline.id} on {q.text}")
                a.facts.update(make_reference(baseline_source(ctx.dist, baseline), text, q, out,
                                              reference=baseline.id, shown=shown,
                                              progress=ctx.task("quality: reference", unit="windows")))
            else:
                target = ctx.built(measures)
                ctx.say(f"quality: measuring {measures}")
                if target.kind == "nvfp4":
                    from ..quality.nvfp4 import measure_nvfp4  # lazy: torch, only when a model is measured

                    figures = measure_nvfp4(ctx.artifact_dir(ctx.built("bf16")), ctx.artifact_dir(target), text, q,
                                            shown=shown, work=out,
                                            progress=ctx.task(f"quality: {measures}", unit="windows"))
                else:
                    ref = ctx.built("quality:reference")
                    first = sorted(f.path for f in target.files)[0]  # a split file loads from its first shard
                    figures = measure_tier(ctx.artifact_dir(target) / first, ctx.artifact_dir(ref),
                                           progress=ctx.task(f"quality: {measures}", unit="windows"))
                a.facts.update(quality=figures.to_json(), measured=measured_files(target))
                atomic_write_text(out / planned.files[0].path,
                                  json.dumps({"measures": measures, "measured": measured_files(target),
                                              **figures.to_json()}, indent=1) + "\n")
                ctx.say(f"quality: {measures}: KLD {figures.kld_mean:.4g} nats/token, top-1 "
                        f"{100 * figures.top1_agreement:.1f}% over {figures.tokens} tokens")
            a.files = ctx.file_entries(out, [f.path for f in planned.files])
            built.append(a)
        return built

    def verify(self, ctx: Context, a: Artifact) -> list[str]:
        return figure_problems(ctx.artifacts, a)

    def cost(self, ctx: Context, a: Artifact, job: Job) -> Cost:
        serial = 0.0
        mapped = mapped_model_gb(ctx, a.id)
        if mapped > RAM_GB["standard"] - 2:
            # libllama maps the file: the pages a window touches are read again for the next one.
            serial = windows(ctx) * mapped * GB / READ_BPS
        elif a.id == "quality:nvfp4":
            serial = 2 * (artifact_size(ctx, "bf16") or 0) / READ_BPS  # two passes, layer by layer
        return Cost(cpu_s=measure_cost(ctx, a.id), ram_gb=measure_ram_gb(ctx, a.id), serial_s=serial)


QUALITY = QualityKind()
