"""Ollama tags: layers, config and manifest byte-for-byte as `ollama create` writes them, in an
OLLAMA_MODELS store under dist/<name>/ollama/ (release/ollama/)."""

from __future__ import annotations

from pathlib import Path

from ..manifest import Artifact
from ..ollama.build import artifacts as tag_artifacts
from ..ollama.build import build_tags
from ..pipeline import Context, digest


def _tier_of(artifact: Artifact) -> str:
    return artifact.recipe["gguf"].split(":", 1)[1]


class OllamaBuilder:
    kind = "ollama"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        o = ctx.release.definition.ollama
        assert o is not None
        gguf = ctx.require(artifact.recipe["gguf"])
        files = {rel: ctx.inputs.get(rel) for rel in (o.template, o.system, o.license) if rel}
        return digest("ollama", o.model_dump(), files, [(f.path, f.sha256) for f in gguf.files])

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        o = ctx.release.definition.ollama
        assert o is not None
        # Tags share blobs and the `latest` alias, so the store is rebuilt as a whole (cheap: blobs are
        # content-addressed and hard-linked, only small JSON files are rewritten).
        gguf_files: dict[str, Path] = {}
        for tier in dict.fromkeys(o.tags.values()):
            g = ctx.require(f"gguf:{tier}")
            gguf_files[tier] = ctx.artifact_dir(g) / g.files[0].path
        out = ctx.dist / "ollama"
        ctx.say(f"ollama: building {len(o.tags)} tags of {o.model}")
        builds = build_tags(o, gguf_files, out, pipeline_dir=ctx.release.dir, hash_cache=ctx.hash_cache)
        built = tag_artifacts(builds, registry=o.registry, name=o.model, dist_release=ctx.dist)
        for a in built:
            planned = ctx.artifacts.get(a.id)
            if planned is not None:
                a.recipe = {**planned.recipe, **a.recipe}
        return built
