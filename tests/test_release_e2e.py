"""The main job end to end: `release publish demo` builds everything (BF16, GGUF tiers, NVFP4, Ollama
tags, cards), verifies, and publishes to a stand-in Hub and a real docker-registry on 127.0.0.1 —
then again with nothing changed (0 bytes, 0 commits, no blob), then after editing only scores.json
(only READMEs change). Plus: a corrupted artifact stops the publish before the first remote write,
and a publish killed at several points finishes, after reruns, exactly like an uninterrupted one
without uploading anything twice."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_proxy import fault_proxy

from release.local import registry_binary, start_registry
from release.localhub import LocalHub

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_e2e_demo_token_0123456789"
NAMESPACE = "demo"
HUB_REPOS = ("demo/tiny-gemma4-6e-it", "demo/tiny-gemma4-6e-it-GGUF", "demo/tiny-gemma4-6e-NVFP4A16")
TAGS = ("Q4_K_M", "Q8_0", "CD-Q3", "latest")

pytestmark = pytest.mark.skipif(registry_binary() is None and not os.environ.get("CI"),
                                reason="docker-registry not installed (CI installs it)")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def pipelines_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo pipeline in a git repo of its own (the release tag goes there, not into this project)."""
    repo = tmp_path_factory.mktemp("e2e") / "pipelines-repo"
    shutil.copytree(ROOT / "pipelines" / "demo", repo / "pipelines" / "demo",
                    ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    _git(repo.parent, "init", "-q", str(repo))
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "demo")
    return repo / "pipelines" / "demo"


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_TOKEN=TOKEN, HF_HUB_DISABLE_XET="1", PYTHONUNBUFFERED="1", COLUMNS="200")
    env.pop("HF_ENDPOINT", None)
    return env


def _release(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, env=_env(),
                          timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"release {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def built_dist(pipelines_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Everything built once; each test publishes from its own hard-linked copy."""
    dist = tmp_path_factory.mktemp("built") / "dist"
    _release("build", str(pipelines_repo), "--dist", str(dist))
    return dist


def _copy_dist(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, copy_function=os.link)
    (dest / "demo" / "hashes.json").unlink(missing_ok=True)  # keyed by absolute path
    return dest


class Targets:
    def __init__(self, root: Path) -> None:
        self.hub = LocalHub(root / "hub", tokens={TOKEN: [NAMESPACE]}, chunk_size=1 << 20,
                            multipart_threshold=2 << 20)
        self.hub_url = self.hub.start()
        self.registry = start_registry(root / "registry")
        self._proxy = fault_proxy(self.registry.url)
        self.registry_url, self.proxy = self._proxy.__enter__()

    def args(self) -> list[str]:
        return ["--hub-endpoint", self.hub_url, "--ollama-registry", self.registry_url]

    def close(self) -> None:
        self._proxy.__exit__(None, None, None)
        self.registry.stop()
        self.hub.stop()


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Targets]:
    t = Targets(tmp_path / "remote")
    yield t
    t.close()


def _publish(pipeline: Path, dist: Path, targets: Targets, *extra: str) -> dict:
    proc = _release("publish", str(pipeline), "--dist", str(dist), *targets.args(), "--json", *extra)
    assert TOKEN not in proc.stdout + proc.stderr, "the token leaked into the output"
    return json.loads(proc.stdout)


def _remote_state(targets: Targets) -> dict[str, dict[str, str]]:
    """Every repo's files (path → sha256 or git blob id) and every tag's manifest digest."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=targets.hub_url, token=TOKEN)
    state: dict[str, dict[str, str]] = {}
    for repo in HUB_REPOS:
        files = {}
        for item in api.list_repo_tree(repo, recursive=True):
            if getattr(item, "lfs", None) is not None:
                files[item.path] = item.lfs.sha256
            elif hasattr(item, "blob_id"):
                files[item.path] = item.blob_id
        state[repo] = files
    from release.ollama.registry import RegistryClient

    client = RegistryClient(targets.registry_url)
    try:
        state["ollama"] = {}
        for tag in TAGS:
            got = client.get_manifest("demo/tiny-gemma4-6e", tag)
            assert got is not None, tag
            state["ollama"][tag] = "sha256:" + hashlib.sha256(got[0]).hexdigest()
    finally:
        client.close()
    return state


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_publish_republish_and_scores_only(pipelines_repo: Path, built_dist: Path, targets: Targets,
                                           tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download

    dist = _copy_dist(built_dist, tmp_path / "dist")
    first = _publish(pipelines_repo, dist, targets)
    assert first["commits"] >= len(HUB_REPOS) and first["bytes_sent"] > 10_000_000
    assert {r["repo"] for r in first["repos"]} == set(HUB_REPOS)
    assert first["git_tag"] == "release/demo"
    assert "release/demo" in _git(pipelines_repo, "tag", "--list")

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
            assert _sha256(Path(got)) == f["sha256"] == _sha256(local), f["path"]
            checked += 1
    assert checked >= 30
    # Every tag pulls back with the digest the build computed; the shared GGUF blob went up once.
    builds = json.loads((dist / "demo" / "ollama" / "build.json").read_text())
    remote = _remote_state(targets)
    for t in builds["tags"]:
        assert remote["ollama"][t["tag"]] == t["manifest_digest"]
    assert remote["ollama"]["latest"] == remote["ollama"]["Q4_K_M"]
    model_patches = [r for r in targets.proxy.requests("PATCH")]
    assert model_patches, "blobs were uploaded through the proxy"

    # Nothing changed: no commit, no byte, no blob, and no write request at all.
    targets.hub.log.clear()
    before = len(targets.proxy.requests("PATCH")) + len(targets.proxy.requests("POST"))
    second = _publish(pipelines_repo, dist, targets)
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
    _git(pipelines_repo, "commit", "-qam", "new scores")
    targets.hub.log.clear()
    third = _publish(pipelines_repo, dist, targets)
    assert third["built"] == ["card:bf16", "card:gguf", "card:nvfp4", "card:ollama"]
    assert third["commits"] == len(HUB_REPOS)
    for repo in HUB_REPOS:
        assert len(targets.hub.log.commits(repo)) == 1
    new_remote = _remote_state(targets)
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
    dist = _copy_dist(built_dist, tmp_path / "dist")
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
    proc = _release("publish", str(pipelines_repo), "--dist", str(dist), *targets.args(), "--no-git-tag",
                    check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "verify gate failed" in proc.stderr and "bf16" in proc.stderr
    assert not targets.hub.log.writes()
    assert not targets.proxy.requests("POST") and not targets.proxy.requests("PUT")


KILL_MARKERS = ("prune:", "gguf: ", "nvfp4:", "ollama: building", "commit 1/1", "uploaded (")


def _run_until(marker: str, args: list[str]) -> int:
    """Start a publish and SIGKILL it as soon as a stderr line contains `marker`."""
    proc = subprocess.Popen([sys.executable, "-m", "release", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=_env())
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
        _publish(pipelines_repo, _copy_dist(built_dist, tmp_path / "ref-dist"), reference, "--no-git-tag")
        expected = _remote_state(reference)
    finally:
        reference.close()

    targets = Targets(tmp_path / "killed")
    try:
        dist = tmp_path / "dist"
        args = ["publish", str(pipelines_repo), "--dist", str(dist), *targets.args(), "--no-git-tag"]
        for marker in KILL_MARKERS:
            assert _run_until(marker, args) == -signal.SIGKILL
        _publish(pipelines_repo, dist, targets, "--no-git-tag")
        assert _remote_state(targets) == expected
        assert not list(dist.rglob("*.partial")), "a killed run left a half-written output behind"
        # Nothing uploaded twice: every LFS object stored once, every commit distinct in content.
        stored = targets.hub.log.lfs_stored_by_oid()
        assert stored and max(stored.values()) == 1, stored
        again = _publish(pipelines_repo, dist, targets, "--no-git-tag")
        assert again["commits"] == 0 and again["bytes_sent"] == 0
    finally:
        targets.close()


def test_matrix_jobs_outputs_are_adopted_after_their_hashes_check(pipelines_repo: Path, built_dist: Path,
                                                                  targets: Targets, tmp_path: Path) -> None:
    """CI fan-out: each matrix job exports one artifact; the publish job adopts them (no rebuild)
    only when every file's size and sha256 match the job's manifest."""
    exported = tmp_path / "built"
    job_dist = _copy_dist(built_dist, tmp_path / "job-dist")
    for slot, artifact in (("bf16", "bf16"), ("gguf-q8_0", "gguf:Q8_0")):
        _release("build", str(pipelines_repo), "--dist", str(job_dist), "--only", artifact,
                 "--export", str(exported / slot))
    assert (exported / "gguf-q8_0" / "demo" / "gguf" / "tiny-gemma4-6e-Q8_0.gguf").is_file()
    assert not (exported / "gguf-q8_0" / "demo" / "bf16").exists(), "a job exports only its own artifact"

    dist = tmp_path / "publish-dist"
    summary = _publish(pipelines_repo, dist, targets, "--artifacts", str(exported), "--only", "gguf:Q8_0",
                       "--dry-run")
    assert "gguf:Q8_0" not in summary["built"] and "bf16" not in summary["built"]
    assert summary["commits"] == 0 and not targets.hub.log.writes()

    q8 = exported / "gguf-q8_0" / "demo" / "gguf" / "tiny-gemma4-6e-Q8_0.gguf"
    data = bytearray(q8.read_bytes())
    q8.unlink()
    data[-10] ^= 1
    q8.write_bytes(bytes(data))
    proc = _release("publish", str(pipelines_repo), "--dist", str(tmp_path / "other-dist"), *targets.args(),
                    "--artifacts", str(exported), "--dry-run", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "gguf:Q8_0" in proc.stderr and "hash differs" in proc.stderr
