"""Ollama gate: each tag's manifest in the local store references blobs that exist, with the size
and digest it claims."""

from __future__ import annotations

import json

from ..context import Context
from ..manifest import Artifact
from ..ollama import layers as L
from ..ollama import store


def verify_store_tag(ctx: Context, a: Artifact) -> list[str]:
    assert a.destination is not None
    root = ctx.dist / "ollama"
    host = store.registry_host(a.destination.registry)
    refs = [a.destination.tag, *a.recipe.get("aliases", [])]
    problems: list[str] = []
    for ref in refs:
        path = store.manifest_path(root, host, a.destination.name, ref)
        try:
            doc = json.loads(path.read_bytes())
            descriptors = [doc["config"], *doc["layers"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{a.destination.name}:{ref}: no readable manifest at {path} ({exc})")
            continue
        for desc in descriptors:
            blob = store.blob_path(root, desc["digest"])
            remote_model = desc.get("mediaType") == L.MT_MODEL and a.facts.get("model_blob") == "on the registry"
            if remote_model and not blob.is_file():
                continue  # pushed by the job that made the GGUF; checked on the registry before any manifest
            if not blob.is_file():
                problems.append(f"{ref}: blob {desc['digest'][:19]} missing")
            elif blob.stat().st_size != desc["size"]:
                problems.append(f"{ref}: blob {desc['digest'][:19]} has {blob.stat().st_size} bytes, "
                                f"manifest says {desc['size']}")
            elif "sha256:" + ctx.hash_cache.sha256(blob) != desc["digest"]:
                problems.append(f"{ref}: blob {desc['digest'][:19]} content does not match its digest")
    return problems
