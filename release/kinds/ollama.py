"""Ollama tags: layers, config and manifest byte-for-byte as `ollama create` writes them, in an
OLLAMA_MODELS store under dist/<name>/ollama/ (release/ollama/). A tag only wraps a GGUF tier: its model
blob is pushed by the job that made the tier, the rest is made by finish."""

from __future__ import annotations

from ..context import Context, digest
from ..manifest import Artifact, ArtifactRegistry, Destination
from ..ollama.build import ModelSource, build_tags
from ..ollama.build import artifacts as tag_artifacts
from ..ollama.layers import facts_from_json
from ..spec.load import Release
from .base import KindBase
from .ollama_verify import verify_store_tag


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


class OllamaKind(KindBase):
    name = "ollama"
    help = "the Ollama tags"
    wraps = True

    def plan(self, release: Release, planned: ArtifactRegistry, *, estimates: bool) -> list[Artifact]:
        o = release.definition.ollama
        if not o:
            return []
        out: list[Artifact] = []
        for tag, tier in o.tags.items():
            aliases = ["latest"] if tag == o.latest else []
            size = planned.get(f"gguf:{tier}").facts.get("size") if f"gguf:{tier}" in planned else None
            out.append(Artifact(
                id=f"ollama:{tag}", kind="ollama", root="ollama",
                destination=Destination(kind="ollama", registry=o.registry, name=o.model, tag=tag),
                recipe={"gguf": f"gguf:{tier}", "aliases": aliases},
                facts={"size": size, "estimated": True}))
        return out

    def needs(self, release: Release, a: Artifact) -> list[str]:
        return [a.recipe["gguf"]]

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

    def verify(self, ctx: Context, a: Artifact) -> list[str]:

        return verify_store_tag(ctx, a)


OLLAMA = OllamaKind()
