"""Ollama tags: layers, config and manifest byte-for-byte as `ollama create` writes them, in an
OLLAMA_MODELS store under dist/<name>/ollama/ (release/ollama/)."""

from __future__ import annotations

from ..context import Context, digest
from ..manifest import Artifact
from ..ollama.build import ModelSource, build_tags
from ..ollama.build import artifacts as tag_artifacts
from ..ollama.layers import facts_from_json


def model_source(ctx: Context, gguf: Artifact) -> ModelSource:
    """The tag's model layer: the GGUF file when it is here, else its recorded facts (made and pushed
    to the registry on another machine)."""
    f = gguf.files[0]
    path = ctx.artifact_dir(gguf) / f.path
    recorded = gguf.facts.get("ollama_model")
    if path.is_file() and path.stat().st_size == f.size:
        return ModelSource(f.sha256 or ctx.hash_cache.sha256(path),
                           facts_from_json(recorded) if recorded else ModelSource.of_file(path).facts, path)
    if not recorded or not f.sha256:
        raise ValueError(f"{gguf.id}: neither the file nor its recorded facts are here")
    return ModelSource(f.sha256, facts_from_json(recorded), None)


class OllamaBuilder:
    kind = "ollama"

    def input_hash(self, ctx: Context, artifact: Artifact) -> str:
        o = ctx.release.definition.ollama
        assert o is not None
        files = {rel: ctx.inputs.get(rel) for rel in (o.template, o.system, o.license) if rel}
        return digest("ollama", o.model_dump(), files, ctx.need_files(artifact))

    def build(self, ctx: Context, artifacts: list[Artifact]) -> list[Artifact]:
        o = ctx.release.definition.ollama
        assert o is not None
        # Tags share blobs and the `latest` alias, so the store is rebuilt as a whole from every tier
        # that is built (cheap: blobs are content-addressed and hard-linked, only small JSON files are
        # rewritten).
        models: dict[str, ModelSource] = {}
        for tier in dict.fromkeys(o.tags.values()):
            g = ctx.artifacts.get(f"gguf:{tier}")
            if g is not None and g.status in ("built", "published"):
                models[tier] = model_source(ctx, g)
        out = ctx.dist / "ollama"
        ctx.say(f"ollama: building {sum(t in models for t in o.tags.values())} of {len(o.tags)} tags of {o.model}")
        builds = build_tags(o, models, out, pipeline_dir=ctx.release.dir, hash_cache=ctx.hash_cache, partial=True)
        built = tag_artifacts(builds, registry=o.registry, name=o.model, dist_release=ctx.dist)
        for a in built:
            planned = ctx.artifacts.get(a.id)
            if planned is not None:
                a.recipe = {**planned.recipe, **a.recipe}
        return built
