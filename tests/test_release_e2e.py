"""The main job end to end: `release publish demo` builds everything (BF16, GGUF tiers, NVFP4, Ollama
tags, cards), verifies, and publishes to a stand-in Hub and a real docker-registry on 127.0.0.1 —
then again with nothing changed (0 bytes, 0 commits, no blob), then after editing only scores.json
(only READMEs change). Plus: a corrupted artifact stops the publish before the first remote write,
and a publish killed at several points finishes, after reruns, exactly like an uninterrupted one
without uploading anything twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import (
    HUB_REPOS,
    NEEDS_REGISTRY,
    ROOT,
    TOKEN,
    Targets,
    copy_dist,
    env,
    git,
    publish,
    release,
    remote_state,
    sha256,
)

pytestmark = pytest.mark.skipif(**NEEDS_REGISTRY)


@pytest.fixture(scope="module")
def pipelines_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo pipeline in a git repo of its own (the release tag goes there, not into this project)."""
    repo = tmp_path_factory.mktemp("e2e") / "pipelines-repo"
    shutil.copytree(ROOT / "pipelines" / "demo", repo / "pipelines" / "demo",
                    ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    git(repo.parent, "init", "-q", str(repo))
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "demo")
    return repo / "pipelines" / "demo"


@pytest.fixture(scope="module")
def built_dist(pipelines_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Everything built once; each test publishes from its own hard-linked copy."""
    dist = tmp_path_factory.mktemp("built") / "dist"
    release("build", str(pipelines_repo), "--dist", str(dist))
    return dist


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Targets]:
    t = Targets(tmp_path / "remote")
    yield t
    t.close()


def test_publish_republish_and_scores_only(pipelines_repo: Path, built_dist: Path, targets: Targets,
                                           tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download

    from release.publish.gitsha import git_blob_sha1_file

    dist = copy_dist(built_dist, tmp_path / "dist")
    first = publish(pipelines_repo, dist, targets)
    assert first["commits"] >= len(HUB_REPOS) and first["bytes_sent"] > 10_000_000
    assert {r["repo"] for r in first["repos"]} == set(HUB_REPOS)
    assert first["git_tag"] == "release/demo"
    assert "release/demo" in git(pipelines_repo, "tag", "--list")

    # Everything downloads back byte-identical through the unmodified client.
    manifest = json.loads((dist / "demo" / "manifest.json").read_text())
    checked = 0
    for a in manifest["artifacts"]:
        dest = a["destination"]
        if not dest or dest["kind"] != "hub":
            continue
        for f in a["files"]:
            local = dist / "demo" / a["root"] / f["path"]
            got = hf_hub_download(dest["repo"], f["path"], endpoint=targets.hub_url, token=TOKEN,
                                  cache_dir=tmp_path / "hf-cache")
            assert sha256(Path(got)) == f["sha256"] == sha256(local), f["path"]
            checked += 1
    assert checked >= 30
    # Every tag pulls back with the digest the build computed; the shared GGUF blob went up once.
    builds = json.loads((dist / "demo" / "ollama" / "build.json").read_text())
    remote = remote_state(targets)
    for t in builds["tags"]:
        assert remote["ollama"][t["tag"]] == t["manifest_digest"]
    assert remote["ollama"]["latest"] == remote["ollama"]["Q4_K_M"]
    # The GGUF repo ships the card's quality chart; the measurements themselves are never published.
    gguf_repo = "demo/tiny-gemma4-6e-it-GGUF"
    chart = dist / "demo" / "cards" / "gguf" / "quality-kld-vs-size.svg"
    assert remote[gguf_repo]["quality-kld-vs-size.svg"] == git_blob_sha1_file(chart)  # small: in git, not LFS
    assert "gguf:Q4_K_M" in {a["id"] for a in manifest["artifacts"] if a["facts"].get("quality")}
    assert not [p for r in HUB_REPOS for p in remote[r] if p.startswith("quality-") and not p.endswith(".svg")]
    model_patches = [r for r in targets.proxy.requests("PATCH")]
    assert model_patches, "blobs were uploaded through the proxy"

    # Nothing changed: no commit, no byte, no blob, and no write request at all.
    targets.hub.log.clear()
    before = len(targets.proxy.requests("PATCH")) + len(targets.proxy.requests("POST"))
    second = publish(pipelines_repo, dist, targets)
    assert second["commits"] == 0 and second["bytes_sent"] == 0
    assert not targets.hub.log.writes(), [r.path for r in targets.hub.log.writes()]
    after = len(targets.proxy.requests("PATCH")) + len(targets.proxy.requests("POST"))
    assert after == before, "a blob upload started on an unchanged release"
    assert all(t["manifest"] == "unchanged" for t in second["tags"])

    # Only the scores change: only READMEs change, one commit per repo, nothing for Ollama blobs.
    scores = pipelines_repo / "scores.json"
    data = json.loads(scores.read_text())
    data["benchmarks"][0]["variant"] = 61.5
    scores.write_text(json.dumps(data, indent=2) + "\n")
    git(pipelines_repo, "commit", "-qam", "new scores")
    targets.hub.log.clear()
    third = publish(pipelines_repo, dist, targets)
    assert third["built"] == ["card:bf16", "card:gguf", "card:nvfp4", "card:ollama"]
    assert third["commits"] == len(HUB_REPOS)
    for repo in HUB_REPOS:
        assert len(targets.hub.log.commits(repo)) == 1
    new_remote = remote_state(targets)
    for repo in HUB_REPOS:
        changed = {p for p in set(new_remote[repo]) | set(remote[repo])
                   if new_remote[repo].get(p) != remote[repo].get(p)}
        assert changed == {"README.md"}, (repo, changed)
    assert new_remote["ollama"] == remote["ollama"]
    assert "61.50" in (dist / "demo" / "cards" / "bf16" / "README.md").read_text()
    for path in (dist / "demo").rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert TOKEN.encode() not in path.read_bytes(), f"the token leaked into {path}"


def test_corrupted_artifact_stops_before_any_remote_write(pipelines_repo: Path, built_dist: Path,
                                                          targets: Targets, tmp_path: Path) -> None:
    dist = copy_dist(built_dist, tmp_path / "dist")
    # Bit rot that size and mtime don't show: one byte of a kept expert flipped in a BF16 shard.
    shard = sorted((dist / "demo" / "bf16").glob("model-*.safetensors"))[-1]
    data = bytearray(shard.read_bytes())
    st = shard.stat()
    shard.unlink()  # break the hard link to the shared build
    data[len(data) // 2] ^= 0x40
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    state = json.loads((dist / "demo" / "state.json").read_text())
    recorded = {f["path"]: f["sha256"] for f in state["artifacts"]["bf16"]["artifact"]["files"]}
    (dist / "demo" / "hashes.json").write_text(json.dumps(
        {str(shard.resolve()): [st.st_size, st.st_mtime_ns, recorded[shard.name]]}))
    targets.hub.log.clear()
    proc = release("publish", str(pipelines_repo), "--dist", str(dist), *targets.args(),
                    check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "verify gate failed" in proc.stderr and "bf16" in proc.stderr
    assert not targets.hub.log.writes()
    assert not targets.proxy.requests("POST") and not targets.proxy.requests("PUT")


KILL_MARKERS = ("prune:", "gguf: ", "nvfp4:", "quality: reference", "quality: measuring", "ollama: building",
                "uploaded (", "uploaded 1/", "commit 1/1")


def _run_until(marker: str, args: list[str]) -> int:
    """Start a publish and SIGKILL it as soon as a stderr line contains `marker`."""
    proc = subprocess.Popen([sys.executable, "-m", "release", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env())
    assert proc.stderr is not None
    killed = False
    for line in proc.stderr:
        if marker in line:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
    proc.wait(timeout=900)
    assert killed, f"the run finished before reaching {marker!r}"
    return proc.returncode


def test_killed_publish_resumes_to_the_same_state(pipelines_repo: Path, built_dist: Path, tmp_path: Path) -> None:
    reference = Targets(tmp_path / "reference")
    try:
        publish(pipelines_repo, copy_dist(built_dist, tmp_path / "ref-dist"), reference)
        expected = remote_state(reference)
    finally:
        reference.close()

    targets = Targets(tmp_path / "killed")
    try:
        dist = tmp_path / "dist"
        args = ["publish", str(pipelines_repo), "--dist", str(dist), *targets.args()]
        for marker in KILL_MARKERS:
            assert _run_until(marker, args) == -signal.SIGKILL
        publish(pipelines_repo, dist, targets)
        assert remote_state(targets) == expected
        assert not list(dist.rglob("*.partial")), "a killed run left a half-written output behind"
        # Nothing uploaded twice: every LFS object stored once, every commit distinct in content.
        stored = targets.hub.log.lfs_stored_by_oid()
        assert stored and max(stored.values()) == 1, stored
        again = publish(pipelines_repo, dist, targets)
        assert again["commits"] == 0 and again["bytes_sent"] == 0
    finally:
        targets.close()


def test_flipped_gguf_byte_never_reaches_a_remote(pipelines_repo: Path, built_dist: Path, targets: Targets,
                                                  tmp_path: Path) -> None:
    """A byte flipped in a built GGUF shared (hard-linked) with its Ollama blob: with a changed mtime the
    tier and the blob are rebuilt; with size and mtime kept (the hash cache trusts both), the fresh hash
    before the first remote write stops the release — nothing on the Hub, nothing on the registry."""
    dist = copy_dist(built_dist, tmp_path / "dist")
    state = json.loads((dist / "demo" / "state.json").read_text())
    q4 = state["artifacts"]["gguf:Q4_K_M"]["artifact"]
    gguf = dist / "demo" / "gguf" / q4["files"][0]["path"]
    blob = dist / "demo" / "ollama" / "blobs" / f"sha256-{q4['files'][0]['sha256']}"
    gguf.unlink()  # break the links to the shared build, then make the blob a link of the file again
    shutil.copyfile(built_dist / "demo" / "gguf" / q4["files"][0]["path"], gguf)
    blob.unlink()
    os.link(gguf, blob)

    st = gguf.stat()
    with open(gguf, "r+b") as fh:  # in place: the blob (same inode) flips too
        fh.seek(st.st_size // 2)
        byte = fh.read(1)
        fh.seek(st.st_size // 2)
        fh.write(bytes([byte[0] ^ 0x10]))
    os.utime(gguf, ns=(st.st_atime_ns, st.st_mtime_ns))
    (dist / "demo" / "hashes.json").write_text(json.dumps({str(gguf.resolve()): [st.st_size, st.st_mtime_ns,
                                                                                  q4["files"][0]["sha256"]]}))
    targets.hub.log.clear()
    proc = release("publish", str(pipelines_repo), "--dist", str(dist), *targets.args(), check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "do not hash to what was built" in proc.stderr and q4["files"][0]["path"] in proc.stderr
    assert not targets.hub.log.writes(), [r.path for r in targets.hub.log.writes()]
    assert not any(targets.proxy.requests(m) for m in ("POST", "PUT", "PATCH"))

    os.utime(gguf)  # now the change shows: the tier is rebuilt, and its blob with it
    release("build", str(pipelines_repo), "--dist", str(dist), "--only", "ollama:Q4_K_M")
    assert sha256(blob) == q4["files"][0]["sha256"], "the Ollama blob kept the flipped byte"
