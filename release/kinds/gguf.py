"""GGUF: the baseline conversion of the pruned checkpoint, the importance matrix, and the quant sweep with
llama.cpp's own converter and quantizer (release/gguf/), plus the Ollama side files of the GGUF repo. Each
is its own artifact with its own needs, so one machine can make the baseline and another the tiers; tiers
with the same needs share a job."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import __version__
from ..context import Context, digest
from ..costs import (
    CONVERT_BPS,
    GB,
    IMATRIX_CHUNK_TOKENS,
    READ_BPS,
    TORCH_FLOPS_PER_CORE,
    Cost,
    active_parameters,
    artifact_size,
    quantize_cost,
    quantize_ram_gb,
    streamed_pass,
)
from ..estimate import census, gguf_size, tier_size
from ..gguf import GGUF_WORK
from ..gguf.checks import imatrix_is_calibration
from ..gguf.tiers import gguf_filename, standard_recipe
from ..manifest import Artifact, ArtifactRegistry, Destination, FileEntry
from ..ollama.layers import facts_to_json, read_gguf_facts
from ..spec.load import Release
from ..toolchain import LLAMA_CPP_PYTHON
from .base import KindBase

if TYPE_CHECKING:
    from ..distributed.jobs import Job


def gguf_recipe(release: Release, tier: str) -> dict:
    g = release.definition.gguf
    assert g is not None
    if tier in g.recipes:
        r = g.recipes[tier]
        return {"ftype": r.base, "embed_type": r.embed or None, "output_type": r.output or None,
                "overrides": [list(o) for o in r.overrides], "note": r.note}
    std = standard_recipe(tier)
    assert std is not None, tier  # validated at load
    return {"ftype": std.ftype, "embed_type": std.embed_type, "output_type": std.output_type,
            "overrides": [], "note": std.note}


class GgufKind(KindBase):
    name = "gguf"
    help = "the GGUF baseline, tiers, importance matrix and Ollama side files"
    packs = True

    def plan(self, release: Release, planned: ArtifactRegistry, *, estimates: bool) -> list[Artifact]:
        d = release.definition
        g = d.gguf
        if not g:
            return []
        c = census(release)
        repo = Destination(kind="hub", repo=g.repo)
        # The baseline conversion is an artifact even when it is not published: every tier and the
        # imatrix are made from it (an unpublished one stays in the work folder and travels only as
        # a staged input between machines).
        out = [Artifact(
            id=f"gguf:{g.baseline}", kind="gguf", root="gguf" if g.publish_baseline else GGUF_WORK,
            destination=repo if g.publish_baseline else None,
            files=[FileEntry(gguf_filename(g.prefix, g.baseline))],
            recipe={"ftype": g.baseline, "baseline": True, "note": "unquantized conversion"},
            facts={"size": gguf_size(c, g.baseline), "estimated": True})]
        for tier in g.tiers:
            recipe = gguf_recipe(release, tier)
            out.append(Artifact(
                id=f"gguf:{tier}", kind="gguf", root="gguf", destination=Destination(kind="hub", repo=g.repo),
                files=[FileEntry(gguf_filename(g.prefix, tier))], recipe=recipe,
                facts={"size": tier_size(c, tier, recipe), "estimated": True,
                       "recommended": tier in g.recommended, "note": g.notes.get(tier, recipe["note"])}))
        if g.imatrix:
            out.append(Artifact(id="gguf:imatrix", kind="gguf", root="gguf",
                                destination=Destination(kind="hub", repo=g.repo),
                                files=[FileEntry(f"{g.prefix}-imatrix.gguf")],
                                recipe={"source": g.imatrix, "chunks": g.imatrix_chunks}))
        if d.ollama:
            out.append(Artifact(id="gguf:ollama-files", kind="gguf", root="gguf",
                                destination=Destination(kind="hub", repo=g.repo),
                                files=[FileEntry("template"), FileEntry("params")],
                                recipe={"for": "ollama run hf.co/<repo>:<tier>"}))
        return out

    def needs(self, release: Release, a: Artifact) -> list[str]:
        g = release.definition.gguf
        assert g is not None
        name = a.id.split(":", 1)[1]
        baseline = f"gguf:{g.baseline}"
        if name == "ollama-files":
            return []  # the release's template and parameters: definition only
        if name == g.baseline:
            return ["bf16"]
        if name == "imatrix":
            # Computed from the BF16 checkpoint layer by layer, named and tokenized as the baseline GGUF.
            return [baseline, "bf16"] if g.imatrix and imatrix_is_calibration(g.imatrix) else []
        # llama.cpp uses an importance matrix for every type it helps; a release that has one uses it everywhere.
        return [baseline, "gguf:imatrix"] if g.imatrix else [baseline]

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        g = ctx.release.definition.gguf
        assert g is not None
        name = artifact.id.split(":", 1)[1]
        needs = ctx.need_files(artifact)
        if name == "ollama-files":
            o = ctx.release.definition.ollama
            return digest("gguf-ollama-files", o.parameters if o else None,
                          ctx.inputs.get(o.template) if o and o.template else None)
        if name == g.baseline:
            from ..gguf.metadata import metadata_inputs  # lazy: numpy at start-up

            return digest("gguf-baseline", __version__, LLAMA_CPP_PYTHON, g.baseline, g.publish_baseline,
                          g.split_size_gb, g.model_name or ctx.release.definition.release.title,
                          metadata_inputs(ctx.release), needs)
        if name == "imatrix":
            from ..gguf.imatrix_stream import METHOD  # lazy: numpy at start-up

            return digest("gguf-imatrix", __version__, LLAMA_CPP_PYTHON, METHOD, g.imatrix, ctx.inputs.get(g.imatrix),
                          g.imatrix_chunks, needs)
        return digest("gguf", __version__, LLAMA_CPP_PYTHON, artifact.recipe, g.split_size_gb, needs)

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        from ..gguf.build import (  # lazy: numpy at start-up
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

                a.facts["ollama_model"] = facts_to_json(read_gguf_facts(ctx.dist / a.root / a.files[0].path))
            planned = ctx.artifacts[a.id]
            a.recipe = {**a.recipe, **planned.recipe}
            a.facts = {**{k: v for k, v in planned.facts.items() if k not in ("size", "estimated")}, **a.facts}
        return built

    def verify(self, ctx: Context, a: Artifact) -> list[str]:
        from .gguf_verify import verify_gguf  # lazy: numpy at start-up

        return verify_gguf(ctx, a)

    def cost(self, ctx: Context, a: Artifact, job: Job) -> Cost:
        g = ctx.release.definition.gguf
        size = artifact_size(ctx, a.id) or 0
        if a.recipe.get("baseline"):
            # the unsplit conversion stays next to the shards
            return Cost(serial_s=size / CONVERT_BPS, disk=size if a.facts.get("split") else 0)
        if a.id == "gguf:imatrix" and g is not None and g.imatrix and a.needs:
            # Layer by layer from the BF16 checkpoint, in float32, over the calibration chunks.
            tokens = g.imatrix_chunks * IMATRIX_CHUNK_TOKENS
            return Cost(cpu_s=2 * active_parameters(ctx, embeddings=False) * tokens / TORCH_FLOPS_PER_CORE,
                        serial_s=(artifact_size(ctx, "bf16") or 0) / READ_BPS,
                        ram_gb=streamed_pass(ctx, tokens, compute_bytes=4).peak_bytes() / GB)
        if g is not None and a.id.split(":", 1)[1] in g.tiers:
            return Cost(cpu_s=quantize_cost(ctx, a.id), ram_gb=quantize_ram_gb(ctx))
        return Cost()


GGUF = GgufKind()
