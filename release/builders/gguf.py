"""GGUF: one conversion of the pruned checkpoint, the importance matrix, and the quant sweep with
llama.cpp's own converter and quantizer (release/gguf/)."""

from __future__ import annotations

from .. import __version__
from ..manifest import Artifact
from ..pipeline import Context, digest


class GgufBuilder:
    kind = "gguf"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        from ..toolchain import LLAMA_CPP_PYTHON

        g = ctx.release.definition.gguf
        assert g is not None
        name = artifact.id.split(":", 1)[1]
        if name == "ollama-files":
            o = ctx.release.definition.ollama
            return digest("gguf-ollama-files", o.parameters if o else None,
                          ctx.inputs.get(o.template) if o and o.template else None)
        from ..gguf.metadata import metadata_inputs

        bf16 = ctx.require("bf16")
        shared = (__version__, LLAMA_CPP_PYTHON, g.baseline, g.model_name or ctx.release.definition.release.title,
                  [(f.path, f.sha256) for f in bf16.files], metadata_inputs(ctx.release))
        imatrix = (g.imatrix, ctx.inputs.get(g.imatrix), g.imatrix_chunks) if g.imatrix else None
        if name in (g.baseline,):
            return digest("gguf-baseline", shared)
        return digest("gguf", shared, imatrix, artifact.recipe, g.split_size_gb)

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        from ..gguf.build import build_gguf

        bf16 = ctx.require("bf16")
        only = {a.id.split(":", 1)[1] for a in artifacts}
        built = build_gguf(ctx.release, ctx.artifact_dir(bf16), ctx.dist / "gguf", only=only,
                           jobs=ctx.options.jobs, max_memory=ctx.options.max_memory,
                           progress=ctx.task, log=ctx.say, root="gguf")
        for a in built:
            planned = ctx.artifacts.get(a.id)
            if planned is not None:
                a.recipe = {**a.recipe, **planned.recipe}
                a.facts = {**{k: v for k, v in planned.facts.items() if k not in ("size", "estimated")}, **a.facts}
        return [a for a in built if a.id in {p.id for p in artifacts}]
