"""Build step: every Ollama tag of a release as blobs + config + manifest, plus its Modelfile.

Output (`dist/<name>/ollama/`, an OLLAMA_MODELS folder usable as is):
  blobs/sha256-<hex>                            model (hardlinked GGUF), template, system, license, params,
                                                messages and config blobs
  manifests/<host>/<namespace>/<model>/<tag>    on-disk manifests (json.Encoder bytes, as ollama writes)
  modelfiles/<tag>.Modelfile                    `ollama create -f` input giving the same tag
  build.json                                    the TagBuilds (digests, sizes, config facts)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import InputError, Problem, ProblemCollector
from ..fsutil import HashCache, atomic_write_text, sha256_bytes, sha256_file
from ..manifest import Artifact, Destination, FileEntry
from . import layers as L
from . import modelfile, store
from .store import registry_host

BUILD_JSON = "build.json"
# golang.org/x/mod/semver, which ollama uses: vMAJOR[.MINOR[.PATCH[-pre][+build]]]
_N = r"(0|[1-9][0-9]*)"
_ID = r"[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*"
_SEMVER = re.compile(rf"^v?{_N}(\.{_N}(\.{_N}(-{_ID})?(\+{_ID})?)?)?$")


class OllamaSectionLike(Protocol):
    """The `[ollama]` section of release.toml (release.spec.definition.OllamaSection)."""

    model: str
    registry: str
    insecure: bool
    tags: dict[str, str]
    latest: str
    template: str | None
    system: str | None
    license: str | None
    renderer: str | None
    parser: str | None
    requires: str | None
    parameters: dict[str, Any]
    messages: list[Any]
    vram_gb: dict[str, float]


@dataclass
class TagBuild:
    """One built tag: everything `push_tags` and `verify_tags` need, and the facts cards show."""

    tag: str
    tier: str
    gguf: str  # path of the source GGUF
    store: str  # OLLAMA_MODELS root holding every blob below
    layers: list[L.Blob]  # manifest order
    config: L.Blob
    manifest: bytes  # registry bytes (json.Marshal, no newline)
    manifest_digest: str  # sha256 of `manifest`: the digest ollama.com shows (first 12 hex)
    local_manifest_digest: str  # sha256 of the on-disk manifest (`ollama list` ID)
    modelfile: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def blobs(self) -> list[L.Blob]:
        return [*self.layers, self.config]

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blobs)

    def blob_file(self, blob: L.Blob) -> Path:
        return store.blob_path(Path(self.store), blob.digest)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["manifest"] = self.manifest.decode("utf-8")
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TagBuild:
        d = dict(d)
        d["layers"] = [L.Blob(**b) for b in d["layers"]]
        d["config"] = L.Blob(**d["config"])
        d["manifest"] = d["manifest"].encode("utf-8")
        return cls(**d)


def _opt(value: Any) -> Any:
    # The definition uses "" for "not given"; treat it like None.
    return value or None


def _read_text(pipeline_dir: Path, rel: str | None, fieldname: str, problems: ProblemCollector) -> str | None:
    if not rel:
        return None
    path = pipeline_dir / rel
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.add("release.toml", f"ollama.{fieldname}", f"cannot read {path}: {exc}")
        return None


@dataclass
class TagInputs:
    """The non-GGUF inputs of every tag (identical across tags of one release)."""

    template: str | None
    system: str | None
    license: str | None
    parameters: dict[str, Any]
    typed_params: dict[str, Any]
    messages: list[dict[str, str]]
    renderer: str | None
    parser: str | None
    requires: str | None


def load_inputs(section: OllamaSectionLike, pipeline_dir: Path) -> TagInputs:
    """Read and validate the texts and parameters (InputError naming the field on any problem)."""
    problems = ProblemCollector()
    # An empty file gives no layer, as in ollama (it skips empty TEMPLATE/SYSTEM/LICENSE values).
    texts = {k: _read_text(pipeline_dir, _opt(getattr(section, k)), k, problems) or None
             for k in ("template", "system", "license")}
    params = dict(section.parameters or {})
    typed: dict[str, Any] = {}
    for k, v in params.items():
        if k in L.DEPRECATED_PARAMS:
            continue  # dropped by ollama's Modelfile reader too (check_warnings says so)
        if k == "typical_p":
            problems.add("release.toml", "ollama.parameters.typical_p",
                         "ollama create refuses typical_p as a model parameter (request option only)")
            continue
        try:
            typed[k] = L.type_param(k, L.param_text(v))
        except (ValueError, TypeError) as exc:
            problems.add("release.toml", f"ollama.parameters.{k}", str(exc))
    messages = [{"role": m["role"], "content": m["content"]} if isinstance(m, Mapping)
                else {"role": m.role, "content": m.content} for m in (section.messages or [])]
    requires = _opt(section.requires)
    if requires is not None:
        # ollama validates REQUIRES as semver and stores it without a leading "v".
        if not _SEMVER.match(requires):
            problems.add("release.toml", "ollama.requires", f"{requires!r} is not a semantic version (e.g. 0.21.0)")
        requires = requires.removeprefix("v")
    inputs = TagInputs(template=texts["template"], system=texts["system"], license=texts["license"],
                       parameters=params, typed_params=typed, messages=messages,
                       renderer=_opt(section.renderer), parser=_opt(section.parser), requires=requires)
    # A text that a Modelfile cannot carry would make the two build paths disagree.
    try:
        modelfile.render(from_="x.gguf", template=inputs.template, system=inputs.system,
                         license=inputs.license, parameters=params, messages=messages,
                         renderer=inputs.renderer, parser=inputs.parser, requires=inputs.requires)
    except (modelfile.ModelfileError, TypeError) as exc:
        problems.add("release.toml", "ollama", str(exc))
    if section.latest not in section.tags:
        problems.add("release.toml", "ollama.latest", f"{section.latest!r} is not one of ollama.tags")
    problems.raise_if_any()
    return inputs


def config_for(facts: L.GGUFFacts, inputs: TagInputs) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """(config blob, typed params after ollama's defaults, facts) for one GGUF."""
    renderer, parser = inputs.renderer, inputs.parser
    typed = dict(inputs.typed_params)
    default = L.DEFAULT_RENDERER.get(facts.architecture)
    if default and (not renderer or not parser):
        renderer = renderer or default
        parser = parser or default
        if "stop" not in typed and facts.architecture in L.DEFAULT_STOP:
            typed["stop"] = list(L.DEFAULT_STOP[facts.architecture])
    model_type = L.human_number(facts.parameter_count)
    cfg = L.config_blob(family=facts.architecture, model_type=model_type, file_type=facts.file_type_name,
                        renderer=renderer, parser=parser, requires=inputs.requires)
    info = {"family": facts.architecture, "model_type": model_type, "file_type": facts.file_type_name,
            "file_type_id": facts.file_type, "parameter_count": facts.parameter_count,
            "context_length": facts.context_length, "renderer": renderer, "parser": parser,
            "requires": inputs.requires}
    return cfg, typed, info


@dataclass
class ModelSource:
    """The GGUF a tag's model layer is: its sha256 and header facts, and the file when it is on this
    machine (None: the blob was pushed to the registry by the machine that made the GGUF)."""

    sha256: str
    facts: L.GGUFFacts
    path: Path | None = None

    @classmethod
    def of_file(cls, path: Path, hash_cache: HashCache | None = None) -> ModelSource:
        if not path.is_file():
            raise InputError("GGUF file missing", file=str(path))
        return cls(hash_cache.sha256(path) if hash_cache else sha256_file(path), L.read_gguf_facts(path), path)


def build_tags(section: OllamaSectionLike, models: Mapping[str, ModelSource | Path], out_dir: Path, *,
               pipeline_dir: Path, hash_cache: HashCache | None = None, partial: bool = False) -> list[TagBuild]:
    """Build every tag of `section` into `out_dir` (see the module doc); returns them in tag order.

    `models` maps a tier to its GGUF (a file, or a ModelSource). With `partial`, tags whose tier is
    missing are left out (and `latest` with them); otherwise a missing tier is an InputError.
    Rerunning with the same inputs rewrites nothing but small files; blobs are content-addressed.
    """
    inputs = load_inputs(section, pipeline_dir)
    problems = [Problem("release.toml", f"ollama.tags.{tag}", f"no GGUF file for tier {tier!r}")
                for tag, tier in section.tags.items() if tier not in models]
    if problems and not partial:
        raise InputError(problems)
    host = registry_host(section.registry)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = {tier: m if isinstance(m, ModelSource) else ModelSource.of_file(Path(m), hash_cache)
               for tier, m in models.items()}
    builds = [_build_one(tag, tier, sources[tier], inputs, out_dir, host, section.model)
              for tag, tier in section.tags.items() if tier in sources]
    latest = next((b for b in builds if b.tag == section.latest), None)
    if latest is not None:
        store.write_manifest(out_dir, host, section.model, "latest",
                             L.manifest_disk_bytes(latest.config, latest.layers))
    # build.json first: an interruption before the prune leaves only extra files, never a
    # build.json naming blobs that were already removed.
    atomic_write_text(out_dir / BUILD_JSON, json.dumps(
        {"model": section.model, "host": host, "latest": section.latest if latest else None,
         "tags": [b.to_json() for b in builds]}, indent=2) + "\n")
    store.prune(out_dir, host, section.model, {b.tag for b in builds} | ({"latest"} if latest else set()))
    if hash_cache:
        hash_cache.save()
    return builds


def _build_one(tag: str, tier: str, source: ModelSource, inputs: TagInputs, out_dir: Path, host: str,
               name: str) -> TagBuild:
    facts, gguf_hex = source.facts, source.sha256
    model = L.Blob(L.MT_MODEL, f"sha256:{gguf_hex}", facts.size)
    if source.path is not None:
        _, how = store.put_blob_file(out_dir, model.digest, source.path)
        gguf = source.path
    else:
        how, gguf = "on the registry", facts.path
    cfg_bytes, typed, info = config_for(facts, inputs)
    layers = [model]

    def add(media_type: str, data: bytes) -> None:
        blob = L.Blob(media_type, f"sha256:{sha256_bytes(data)}", len(data))
        store.put_blob_bytes(out_dir, blob.digest, data)
        layers.append(blob)

    if inputs.template is not None:
        add(L.MT_TEMPLATE, inputs.template.encode("utf-8"))
    if inputs.system is not None:
        add(L.MT_SYSTEM, inputs.system.encode("utf-8"))
    if inputs.license is not None:
        add(L.MT_LICENSE, inputs.license.encode("utf-8"))
    if typed:
        add(L.MT_PARAMS, L.params_blob(typed))
    if inputs.messages:
        add(L.MT_MESSAGES, L.messages_blob(inputs.messages))
    config = L.Blob(L.MT_CONFIG, f"sha256:{sha256_bytes(cfg_bytes)}", len(cfg_bytes))
    store.put_blob_bytes(out_dir, config.digest, cfg_bytes)
    registry_bytes = L.manifest_registry_bytes(config, layers)
    disk_bytes = L.manifest_disk_bytes(config, layers)
    store.write_manifest(out_dir, host, name, tag, disk_bytes)
    mf_path = out_dir / "modelfiles" / f"{tag}.Modelfile"
    # Only what the user gave goes into the Modelfile; ollama then applies the same defaults we did.
    if source.path is None:
        from_ = gguf.name  # the file is on the Hub, not here
    elif _same_root(gguf, out_dir):
        from_ = os.path.relpath(gguf.resolve(), mf_path.parent.resolve())
    else:
        from_ = str(gguf.resolve())
    text = modelfile.render(
        from_=from_,
        template=inputs.template, system=inputs.system, license=inputs.license,
        parameters=inputs.parameters, messages=inputs.messages, renderer=inputs.renderer,
        parser=inputs.parser, requires=inputs.requires)
    atomic_write_text(mf_path, text)
    info = {**info, "gguf_sha256": gguf_hex, "model_blob": how, "size": sum(b.size for b in layers)
            + config.size}
    return TagBuild(tag=tag, tier=tier, gguf=str(gguf), store=str(out_dir), layers=layers, config=config,
                    manifest=registry_bytes, manifest_digest=f"sha256:{sha256_bytes(registry_bytes)}",
                    local_manifest_digest=f"sha256:{sha256_bytes(disk_bytes)}", modelfile=str(mf_path),
                    facts=info)


def _same_root(a: Path, b: Path) -> bool:
    # A relative FROM keeps a copied dist/ folder working; across unrelated trees use the absolute path.
    try:
        return os.path.commonpath([a.resolve(), b.resolve()]) != "/"
    except ValueError:
        return False


def load_builds(out_dir: Path) -> tuple[str, str, list[TagBuild]]:
    """(model, latest tag, builds) from a previous build's build.json."""
    path = out_dir / BUILD_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"no Ollama build here (run `release build NAME --only ollama`): {exc}",
                         file=str(path)) from exc
    return data["model"], data["latest"], [TagBuild.from_json(t) for t in data["tags"]]


def artifacts(builds: list[TagBuild], *, registry: str, name: str, dist_release: Path) -> list[Artifact]:
    """One manifest Artifact per tag (`ollama:<tag>`); file paths are relative to the artifact root."""
    out = []
    for b in builds:
        root = Path(b.store)
        files = [FileEntry(path=str(store.blob_path(root, blob.digest).relative_to(root)), size=blob.size,
                           sha256=blob.hex) for blob in b.blobs]
        try:
            rel_root = str(root.relative_to(dist_release))
        except ValueError:
            rel_root = str(root)
        out.append(Artifact(id=f"ollama:{b.tag}", kind="ollama", status="built", root=rel_root, files=files,
                            recipe={"tier": b.tier, "modelfile": os.path.basename(b.modelfile)},
                            destination=Destination(kind="ollama", registry=registry, name=name, tag=b.tag),
                            facts={**b.facts, "manifest_digest": b.manifest_digest,
                                   "local_manifest_digest": b.local_manifest_digest}))
    return out
