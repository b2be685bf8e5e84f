"""Glue for `release plan` / `release publish --only ollama`: read the build, plan or push, verify.

The registry URL comes from the caller (`--ollama-registry`, else the definition's `registry`); the
tags, digests and blobs come from `dist/<name>/ollama/build.json`, so publishing never rebuilds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from ..manifest import RemoteFile
from .build import load_builds
from .cli_path import CliResult, publish_via_cli
from .registry import (
    PushResult,
    RegistryClient,
    plan_tags,
    push_blobs,
    push_tags,
    put_manifests,
    remote_tags,
    verify_tags,
)

# Unfinished upload sessions (registry upload URLs and offsets; no credentials) for the next run.
UPLOADS_JSON = ".uploads.json"


def plan_ollama(out_dir: Path, *, registry: str, insecure: bool = False,
                key_path: Path | str | None = None) -> dict[str, list[RemoteFile]]:
    """Remote diff per artifact id (`ollama:<tag>`, plus `ollama:latest`): blobs and manifest."""
    model, latest, builds = load_builds(out_dir)
    client = RegistryClient(registry, insecure=insecure, key_path=key_path)
    try:
        entries = plan_tags(client, model, builds, latest)
        existing = remote_tags(client, model)
    finally:
        client.close()
    blob_action = {e.what: e for e in entries if e.ref == "blob"}
    out: dict[str, list[RemoteFile]] = {}
    for e in entries:
        if e.ref == "blob":
            continue
        build = next(b for b in builds if b.tag == (latest if e.ref == "latest" else e.ref))
        files = [RemoteFile(path=f"manifests/{e.ref}", action=e.action, size=e.size)]  # type: ignore[arg-type]
        if e.ref != "latest":
            files += [RemoteFile(path=f"blobs/{b.digest.replace(':', '-')}",
                                 action=blob_action[b.digest].action, size=b.size)  # type: ignore[arg-type]
                      for b in build.blobs]
        out[f"ollama:{e.ref}"] = files
    # Tags on the registry that this release no longer builds are left alone (never deleted by
    # publish); they are listed so the plan shows them.
    for tag in existing or []:
        if f"ollama:{tag}" not in out:
            out[f"ollama:{tag}"] = [RemoteFile(path=f"manifests/{tag}", action="keep", size=0)]
    return out


def publish_ollama(out_dir: Path, *, registry: str, insecure: bool = False, key_path: Path | str | None = None,
                   via_cli: bool = False, mount_from: Iterable[str] = (),
                   on_progress: Callable[[str], None] | None = None,
                   phase: Literal["all", "blobs", "manifests"] = "all",
                   result: PushResult | None = None) -> PushResult | CliResult:
    """Push every built tag and :latest (or run the ollama CLI), then verify by reading back.

    `phase` splits a push around the Hub commits of a release: "blobs" uploads content only (nothing
    new is visible on the registry), "manifests" then makes the tags point at it.
    """
    model, latest, builds = load_builds(out_dir)
    client = RegistryClient(registry, insecure=insecure, key_path=key_path, state_file=out_dir / UPLOADS_JSON)
    try:
        if via_cli:
            if phase == "blobs":
                return PushResult()  # `ollama push` sends blobs and manifests together, at the end
            return publish_via_cli(builds, model=model, registry=registry, latest=latest, insecure=insecure,
                                   client=client)
        if phase == "blobs":
            return push_blobs(client, model, builds, mount_from=mount_from, on_progress=on_progress)
        if phase == "manifests":
            return put_manifests(client, model, builds, latest, result=result, on_progress=on_progress)
        return push_tags(client, model, builds, latest, mount_from=mount_from, on_progress=on_progress)
    finally:
        client.close()


def verify_ollama(out_dir: Path, *, registry: str, insecure: bool = False, key_path: Path | str | None = None,
                  check_model_digest: bool = True) -> list[str]:
    """Read every built tag and :latest back from the registry; the differences from the build (empty: none)."""
    model, latest, builds = load_builds(out_dir)
    client = RegistryClient(registry, insecure=insecure, key_path=key_path)
    try:
        return verify_tags(client, model, builds, latest, check_model_digest=check_model_digest)
    finally:
        client.close()
