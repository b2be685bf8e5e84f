"""Faults injected into the stand-in Hub: every run (or rerun) ends with the remote equal to the plan,
no LFS object stored twice and no commit made twice."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hubfixtures import BF16_REPO, FAST, GGUF_REPO, TOKEN, FakeRelease

from release.localhub import LocalHub
from release.publish import HubPublisher

pytest_plugins = ["hubfixtures"]  # local_hub, hub_env, fake_release

REPOS = (BF16_REPO, GGUF_REPO)


def publisher(hub: LocalHub, **kw) -> HubPublisher:
    return HubPublisher(hub.url, TOKEN, backoff=FAST, **kw)


def publish(hub: LocalHub, rel: FakeRelease, **kw):
    pub = publisher(hub, **kw)
    return pub.apply(pub.plan(rel.fresh_artifacts(), rel.dir), message="Release v1")


def assert_converged(hub: LocalHub, rel: FakeRelease, commits_per_repo: dict[str, int]) -> None:
    """Remote equals the plan; each LFS object stored once; exactly the expected commits, none twice."""
    plan = publisher(hub).plan(rel.fresh_artifacts(), rel.dir)
    assert not plan.changed, plan.summary()
    stored = hub.log.lfs_stored_by_oid()
    assert stored and set(stored.values()) == {1}, stored
    for repo, n in commits_per_repo.items():
        history = hub.history(repo)
        assert len(history) == n + 1, [c["title"] for c in history]  # + the initial commit
        trees = [c["tree"] for c in history]
        assert len(set(trees)) == len(trees)  # no commit repeats its parent's content
        assert len(hub.log.commits(repo)) == n


def test_5xx_and_429_on_commit_are_retried_after_checking_it_did_not_land(
        local_hub: LocalHub, fake_release: FakeRelease) -> None:
    local_hub.faults.add("POST", r"/commit/", "status", status=500)
    local_hub.faults.add("POST", r"/commit/", "rate_limit", retry_after=0.1, skip=1)
    result = publish(local_hub, fake_release)
    assert result.commits == 2
    assert [r.status for r in local_hub.log.records("commit")] == [500, 200, 429, 200]
    assert_converged(local_hub, fake_release, {BF16_REPO: 1, GGUF_REPO: 1})


def test_5xx_and_429_on_uploads_are_retried(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    local_hub.faults.add("POST", r"/preupload/", "status", status=502)
    local_hub.faults.add("POST", r"/info/lfs/objects/batch$", "rate_limit", retry_after=0)
    local_hub.faults.add("PUT", r"^/part/", "status", status=503)
    local_hub.faults.add("PUT", r"^/upload/", "status", status=500)
    local_hub.faults.add("GET", r"/tree/", "rate_limit", retry_after=0)
    local_hub.faults.add("POST", r"/paths-info/", "status", status=504)
    publish(local_hub, fake_release)
    assert {r.fault for r in local_hub.log.records() if r.fault} == {"status", "rate_limit"}
    assert_converged(local_hub, fake_release, {BF16_REPO: 1, GGUF_REPO: 1})


def test_reset_mid_lfs_upload(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    ggufs = [fake_release.dir / a.root / a.files[0].path for a in fake_release.artifacts if a.kind == "gguf"]
    sizes = {hashlib.sha256(p.read_bytes()).hexdigest(): p.stat().st_size for p in ggufs}
    basic, multi = sizes  # 2 MB single PUT, 11 MB in 3 parts
    local_hub.faults.add("PUT", rf"^/upload/{basic}$", "reset", after_bytes=512 << 10)
    local_hub.faults.add("PUT", rf"^/part/{multi}/", "reset", after_bytes=1 << 20, skip=1)
    publish(local_hub, fake_release)
    assert len([r for r in local_hub.log.records() if r.fault == "reset"]) == 2
    sent = local_hub.log.lfs_bytes_by_oid()
    for oid, size in sizes.items():
        assert size < sent[oid] < 2 * size  # the interrupted request plus one full send, no more
    assert_converged(local_hub, fake_release, {BF16_REPO: 1, GGUF_REPO: 1})


def test_lost_commit_response_is_not_committed_twice(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    local_hub.faults.add("POST", r"/commit/", "lost_response", times=2)
    lines: list[str] = []
    result = publish(local_hub, fake_release, progress=lines.append)
    assert result.commits == 2 and sum("it landed" in m for m in lines) == 2
    assert [r.status for r in local_hub.log.records("commit")] == [None, None]  # never re-sent
    assert [r.head for r in result.repos] == [local_hub.head(BF16_REPO), local_hub.head(GGUF_REPO)]
    assert_converged(local_hub, fake_release, {BF16_REPO: 1, GGUF_REPO: 1})


def test_slow_answers_and_a_commit_landing_late(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    local_hub.faults.add("GET", r"/api/models/", "slow", times=3, delay=0.2)
    # The connection drops at once, the commit is applied later: our retry (parent_commit = the old head)
    # lands first and the late one then meets a moved head (412) instead of committing twice.
    late = local_hub.faults.add("POST", rf"/api/models/{BF16_REPO}/commit/", "late", delay=0.5)
    publish(local_hub, fake_release)
    assert late.hits == 1
    statuses = [r.status for r in local_hub.log.records("commit") if r.repo == BF16_REPO]
    assert statuses == [None, 200]
    time.sleep(0.8)  # let the late request finish: it must not have committed
    assert_converged(local_hub, fake_release, {BF16_REPO: 1, GGUF_REPO: 1})


def test_crash_between_batches_resumes_without_resending(
        local_hub: LocalHub, fake_release: FakeRelease) -> None:
    class Crash(Exception):
        pass

    def crash_after_first_commit(message: str) -> None:
        if "commit 1/" in message:
            raise Crash(message)

    with pytest.raises(Crash):
        publish(local_hub, fake_release, max_files=2, progress=crash_after_first_commit)
    assert len(local_hub.history(BF16_REPO)) == 2
    result = publish(local_hub, fake_release, max_files=2)
    bf16 = next(r for r in result.repos if r.repo == BF16_REPO)
    assert bf16.files_uploaded == 3 and len(bf16.commits) == 2
    assert_converged(local_hub, fake_release, {BF16_REPO: 3, GGUF_REPO: 2})


def test_process_killed_between_commits_resumes(local_hub: LocalHub, fake_release: FakeRelease,
                                                tmp_path: Path) -> None:
    """A real process, killed while its second commit is on the wire; a rerun finishes the job."""
    rel = fake_release
    arts = tmp_path / "artifacts.json"
    arts.write_text(json.dumps([a.to_json() for a in rel.artifacts]))
    stall = local_hub.faults.add("POST", rf"/api/models/{BF16_REPO}/commit/", "stall", skip=1, timeout=30)
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from release.manifest import Artifact\n"
        "from release.publish import HubPublisher\n"
        "arts = [Artifact.from_json(a) for a in json.loads(Path(sys.argv[1]).read_text())]\n"
        "pub = HubPublisher(max_files=2, progress=lambda m: print(m, flush=True))\n"
        "pub.apply(pub.plan(arts, Path(sys.argv[2])), message='Release v1')\n"
    )
    env = {**os.environ, "HF_ENDPOINT": local_hub.url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, str(arts), str(rel.dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=Path(__file__).parents[1])
    try:
        assert stall.hit.wait(60), "the second commit never came"
        proc.kill()
    finally:
        out, _ = proc.communicate(timeout=30)
        local_hub.faults.release()
    assert "commit 1/3" in out and TOKEN not in out
    assert len(local_hub.history(BF16_REPO)) == 2  # the first batch landed, the second did not
    result = publish(local_hub, rel, max_files=2)
    bf16 = next(r for r in result.repos if r.repo == BF16_REPO)
    assert bf16.files_uploaded == 3  # the two shards were not sent again
    assert_converged(local_hub, rel, {BF16_REPO: 3, GGUF_REPO: 2})
