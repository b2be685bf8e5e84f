"""Quality: every quantized artifact measured against its reference on the release's held-out text
(release/quality/). `quality:reference` is the GGUF baseline's log-probabilities, made once and staged for
the tier jobs; `quality:<TIER>` and `quality:nvfp4` are a few numbers each, copied onto what they measure."""

from __future__ import annotations

import dataclasses
import json

from .. import __version__
from ..context import Context, digest
from ..fsutil import atomic_write_text
from ..manifest import Artifact
from ..quality.facts import measured_files


class QualityBuilder:
    kind = "quality"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        from ..toolchain import LLAMA_CPP_PYTHON

        q = ctx.release.quality
        assert q is not None
        return digest("quality", __version__, LLAMA_CPP_PYTHON, artifact.recipe, ctx.inputs.get(q.text),
                      q.max_tokens, q.context, ctx.need_files(artifact))

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        from ..gguf.build import baseline_source
        from ..quality.gguf import make_reference, measure_tier
        from ..spec.heldout import read_heldout

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
                    from ..quality.nvfp4 import measure_nvfp4

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
