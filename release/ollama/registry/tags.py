"""Push, verify, plan and pull whole Ollama tags (every blob, then the manifests) with a RegistryClient.

No manifest is sent before a HEAD has confirmed every blob it names (digest and size), and every
manifest is read back (docker v2 Accept) and compared byte for byte afterwards.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InputError, RemoteError
from .. import layers as L
from .. import store
from ..build import TagBuild
from .blobs import RegistryClient


@dataclass
class PushResult:
    blobs: dict[str, str] = field(default_factory=dict)  # digest → exists | mounted | uploaded
    bytes_sent: dict[str, int] = field(default_factory=dict)  # digest → bytes sent
    manifests_put: list[str] = field(default_factory=list)
    manifests_unchanged: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)  # tag → registry manifest digest

    @property
    def total_sent(self) -> int:
        return sum(self.bytes_sent.values())


def _unique_blobs(builds: Iterable[TagBuild]) -> list[tuple[L.Blob, Path]]:
    seen: dict[str, tuple[L.Blob, Path]] = {}
    for b in builds:
        for blob in b.blobs:
            seen.setdefault(blob.digest, (blob, b.blob_file(blob)))
    return list(seen.values())


def _manifest_refs(builds: list[TagBuild], latest: str | None) -> list[tuple[str, TagBuild]]:
    refs = [(b.tag, b) for b in builds]
    if latest:
        target = next((b for b in builds if b.tag == latest), None)
        if target is None:
            raise InputError(f"latest {latest!r} is not one of the built tags", field="ollama.latest")
        refs.append(("latest", target))
    return refs


def push_tags(client: RegistryClient, name: str, builds: list[TagBuild], latest: str | None, *,
              mount_from: Iterable[str] = (), on_progress: Callable[[str], None] | None = None) -> PushResult:
    """Push every tag and the `latest` alias, then read every manifest back: `push_blobs`, then
    `put_manifests`. A failure before the manifests leaves no new or changed tag."""
    result = push_blobs(client, name, builds, mount_from=mount_from, on_progress=on_progress)
    return put_manifests(client, name, builds, latest, result=result, on_progress=on_progress)


def push_blobs(client: RegistryClient, name: str, builds: list[TagBuild], *, mount_from: Iterable[str] = (),
               on_progress: Callable[[str], None] | None = None, result: PushResult | None = None) -> PushResult:
    """Every blob of the tags, each once (HEAD first), then HEAD of each: no manifest is involved, so the
    registry shows nothing new. A blob the build does not hold locally (a model pushed by the machine that
    made its GGUF) must already be on the registry."""
    say = on_progress or (lambda _msg: None)
    result = result or PushResult()
    for blob, path in _unique_blobs(builds):
        if not path.is_file() and client.blob_size(name, blob.digest, push=True) == blob.size:
            result.blobs[blob.digest] = "exists"
            result.bytes_sent[blob.digest] = 0
            continue
        if not path.is_file() or path.stat().st_size != blob.size:
            raise InputError(f"blob missing or wrong size in the build (rebuild ollama): {path}",
                             file=str(path))
        how, sent = client.upload_blob(name, blob, path, mount_from=mount_from)
        result.blobs[blob.digest] = how
        result.bytes_sent[blob.digest] = sent
        kind = "config" if blob.media_type == L.MT_CONFIG else blob.media_type.rsplit(".", 1)[-1]
        say(f"{kind} {blob.digest[7:19]}: {how} ({sent} bytes)")
    # A manifest naming a blob the registry lacks would be refused, or worse, accepted and unpullable.
    for blob, _ in _unique_blobs(builds):
        size = client.blob_size(name, blob.digest, push=True)
        if size != blob.size:
            raise RemoteError(f"{client.host}: {name} lacks blob {blob.digest[:19]} (size {size}, expected "
                              f"{blob.size}); no manifest was sent")
    return result


def put_manifests(client: RegistryClient, name: str, builds: list[TagBuild], latest: str | None, *,
                  result: PushResult | None = None,
                  on_progress: Callable[[str], None] | None = None) -> PushResult:
    """PUT the manifests that differ (tags, then `latest`), then read every one back."""
    say = on_progress or (lambda _msg: None)
    result = result or PushResult()
    for ref, build in _manifest_refs(builds, latest):
        current = client.get_manifest(name, ref)
        if current is not None and current[0] == build.manifest:
            result.manifests_unchanged.append(ref)
        else:
            client.put_manifest(name, ref, build.manifest)
            result.manifests_put.append(ref)
            say(f"{name}:{ref} → {build.manifest_digest[7:19]}")
        result.digests[ref] = build.manifest_digest
    problems = verify_tags(client, name, builds, latest)
    if problems:
        raise RemoteError(f"{client.host}: read-back of {name} does not match the build:\n  " + "\n  ".join(problems))
    return result


def verify_tags(client: RegistryClient, name: str, builds: list[TagBuild], latest: str | None, *,
                deep: bool = False, check_model_digest: bool = True) -> list[str]:
    """Read every tag back; returns problems (empty = the registry serves exactly the build).

    `deep` downloads and hashes every small blob too (config, params, template …). With
    `check_model_digest=False` (the ollama-CLI path, which rewrites the GGUF) the manifest may differ
    from ours in the model layer only; everything else is still compared.
    """
    problems: list[str] = []
    checked: set[str] = set()
    for ref, build in _manifest_refs(builds, latest):
        got = client.get_manifest(name, ref)
        if got is None:
            problems.append(f"{name}:{ref}: missing")
            continue
        data, header_digest = got
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if header_digest and header_digest != digest:
            problems.append(f"{name}:{ref}: Docker-Content-Digest {header_digest[:19]} ≠ body {digest[:19]}")
        try:
            doc = json.loads(data)
            remote = [doc["config"], *doc["layers"]]
        except (ValueError, KeyError, TypeError):
            problems.append(f"{name}:{ref}: manifest is not a docker v2 manifest")
            continue
        if check_model_digest and data != build.manifest:
            problems.append(f"{name}:{ref}: manifest {digest[:19]} ≠ built {build.manifest_digest[:19]}")
        expected = [build.config, *build.layers]
        if [r.get("mediaType") for r in remote] != [b.media_type for b in expected]:
            problems.append(f"{name}:{ref}: layer media types differ from the build")
            continue
        for r, b in zip(remote, expected, strict=True):
            # The CLI path rewrites the GGUF, and older ollama adds rootfs to the config: compare
            # those two by facts, everything else byte for byte.
            skip_digest = not check_model_digest and b.media_type in (L.MT_MODEL, L.MT_CONFIG)
            if not skip_digest and (r.get("digest") != b.digest or r.get("size") != b.size):
                problems.append(f"{name}:{ref}: {b.media_type.rsplit('.', 1)[-1]} is {r.get('digest', '')[:19]}/"
                                f"{r.get('size')} not {b.digest[:19]}/{b.size}")
            rd = r.get("digest", "")
            if rd in checked:
                continue
            checked.add(rd)
            size = client.blob_size(name, rd)
            if size is None or size != r.get("size"):
                problems.append(f"{name}:{ref}: blob {rd[:19]} size {size} ≠ manifest {r.get('size')}")
            elif (deep or not check_model_digest) and b.media_type != L.MT_MODEL:
                resp = client.request("GET", f"/v2/{name}/blobs/{rd}", scope=client.scope(name), follow=True)
                if resp.status != 200 or "sha256:" + hashlib.sha256(resp.body).hexdigest() != rd:
                    problems.append(f"{name}:{ref}: blob {rd[:19]} content does not hash to its digest")
                elif b.media_type == L.MT_CONFIG:
                    problems.extend(f"{name}:{ref}: {p}" for p in _config_problems(resp.body, build))
    return problems


def _config_problems(data: bytes, build: TagBuild) -> list[str]:
    try:
        cfg = json.loads(data)
    except ValueError:
        return ["config is not JSON"]
    out = []
    for key, fact in (("model_family", "family"), ("model_type", "model_type"), ("file_type", "file_type"),
                      ("renderer", "renderer"), ("parser", "parser")):
        want = build.facts.get(fact)
        if want and cfg.get(key) != want:
            out.append(f"config {key} is {cfg.get(key)!r}, expected {want!r}")
    return out


@dataclass
class PlanEntry:
    ref: str  # tag, or "blob"
    what: str  # digest or "manifest"
    action: str  # upload | unchanged
    size: int


def plan_tags(client: RegistryClient, name: str, builds: list[TagBuild], latest: str | None) -> list[PlanEntry]:
    """What a push would send (read-only): per blob and per manifest, upload or unchanged."""
    plan: list[PlanEntry] = []
    for blob, _ in _unique_blobs(builds):
        has = client.blob_size(name, blob.digest) == blob.size
        plan.append(PlanEntry("blob", blob.digest, "unchanged" if has else "upload", blob.size))
    for ref, build in _manifest_refs(builds, latest):
        got = client.get_manifest(name, ref)
        same = got is not None and got[0] == build.manifest
        plan.append(PlanEntry(ref, "manifest", "unchanged" if same else "upload", len(build.manifest)))
    return plan


def remote_tags(client: RegistryClient, name: str) -> list[str] | None:
    """Tags the repository has (`tags/list`), or None where the registry does not list them (ollama.com)."""
    resp = client.request("GET", f"/v2/{name}/tags/list", scope=client.scope(name))
    if resp.status == 404:
        return []
    if resp.status != 200:
        return None
    try:
        tags = json.loads(resp.body).get("tags") or []
    except (ValueError, AttributeError):
        return None
    return [t for t in tags if isinstance(t, str)]


def pull_tag(client: RegistryClient, name: str, ref: str, dest_store: Path) -> Path:
    """Pull one tag into an OLLAMA_MODELS folder as `ollama pull` does (manifest bytes verbatim)."""
    got = client.get_manifest(name, ref)
    if got is None:
        raise RemoteError(f"{client.host}: {name}:{ref} not found")
    data, _ = got
    doc = json.loads(data)
    for desc in [*doc["layers"], doc["config"]]:
        dest = store.blob_path(dest_store, desc["digest"])
        if dest.exists() and dest.stat().st_size == desc["size"]:
            continue
        size = client.get_blob(name, desc["digest"], dest)
        if size != desc["size"]:
            raise RemoteError(f"{client.host}: blob {desc['digest'][:19]} is {size} bytes, "
                              f"manifest says {desc['size']}")
    return store.write_manifest(dest_store, client.host, name, ref, data)
