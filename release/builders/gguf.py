"""GGUF: the baseline conversion of the pruned checkpoint, the importance matrix, and the quant sweep with
llama.cpp's own converter and quantizer (release/gguf/). Each is its own artifact with its own needs
(release/steps.py), so one machine can make the baseline and another the tiers."""

from __future__ import annotations

from .. import __version__
from ..context import Context, digest
from ..manifest import Artifact


class GgufBuilder:
    kind = "gguf"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        from ..toolchain import LLAMA_CPP_PYTHON

        g = ctx.release.definition.gguf
        assert g is not None
        name = artifact.id.split(":", 1)[1]
        needs = ctx.need_files(artifact)
        if name == "ollama-files":
            o = ctx.release.definition.ollama
            return digest("gguf-ollama-files", o.parameters if o else None,
                          ctx.inputs.get(o.template) if o and o.template else None)
        if name == g.baseline:
            from ..gguf.metadata import metadata_inputs

            return digest("gguf-baseline", __version__, LLAMA_CPP_PYTHON, g.baseline, g.publish_baseline,
                          g.split_size_gb, g.model_name or ctx.release.definition.release.title,
                          metadata_inputs(ctx.release), needs)
        if name == "imatrix":
            from ..gguf.imatrix_stream import METHOD

            return digest("gguf-imatrix", __version__, LLAMA_CPP_PYTHON, METHOD, g.imatrix, ctx.inputs.get(g.imatrix),
                          g.imatrix_chunks, needs)
        return digest("gguf", __version__, LLAMA_CPP_PYTHON, artifact.recipe, g.split_size_gb, needs)

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        from ..gguf.build import (
            GgufJob,
            baseline_source,
            convert_baseline,
            make_imatrix,
            quantize_tiers,
            write_ollama_files,
        )

        g = ctx.release.definition.gguf
        assert g is not None
        job = GgufJob(ctx.release, ctx.dist / "gguf", progress=ctx.task, log=ctx.say)
        names = [a.id.split(":", 1)[1] for a in artifacts]
        built: list[Artifact] = []
        if g.baseline in names:
            built.append(convert_baseline(job, ctx.artifact_dir(ctx.built("bf16"))))
        baseline = f"gguf:{g.baseline}"
        if "imatrix" in names:
            computed = baseline in ctx.artifacts["gguf:imatrix"].needs
            source = baseline_source(ctx.dist, ctx.built(baseline)) if computed else None
            checkpoint = ctx.artifact_dir(ctx.built("bf16")) if computed else None
            built.append(make_imatrix(job, source, checkpoint))
        tiers = [n for n in names if n not in (g.baseline, "imatrix", "ollama-files")]
        if tiers:
            imatrix = ctx.built("gguf:imatrix") if g.imatrix else None
            built += quantize_tiers(job, tiers, baseline_source(ctx.dist, ctx.built(baseline)),
                                    ctx.artifact_dir(imatrix) / imatrix.files[0].path if imatrix else None,
                                    jobs=ctx.options.jobs, max_memory=ctx.options.max_memory)
        if "ollama-files" in names:
            built.append(write_ollama_files(ctx.release, job.out_dir, job.root, job.dest))
        o = ctx.release.definition.ollama
        for a in built:
            tier = a.id.split(":", 1)[1]
            if o is not None and tier in o.tags.values():
                # What an Ollama tag on this file needs, for a machine that does not have the file.
                from ..ollama.layers import facts_to_json, read_gguf_facts

                a.facts["ollama_model"] = facts_to_json(read_gguf_facts(ctx.dist / a.root / a.files[0].path))
            planned = ctx.artifacts[a.id]
            a.recipe = {**a.recipe, **planned.recipe}
            a.facts = {**{k: v for k, v in planned.facts.items() if k not in ("size", "estimated")}, **a.facts}
        return built
