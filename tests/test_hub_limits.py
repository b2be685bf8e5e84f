"""The publisher within the Hub's limits, against the strict stand-in (docs/hf-hub.md §4): one commit at a
time per repository (409, retried until both land), commit quotas (429: waited as long as the Hub asks,
or refused at once beyond RELEASE_HUB_MAX_WAIT), conflicting-operation 409s on creates, and as few
commits as the Hub allows — one per repo on main for a promotion of v4's size."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import Path

import pytest
from hubfixtures import BF16_REPO, FAST, GGUF_REPO, TOKEN, FakeRelease
from huggingface_hub import HfApi

from release.errors import InputError, RemoteError
from release.localhub import LocalHub
from release.manifest import Artifact, Destination, FileEntry
from release.publish import HubPublisher
from release.publish.hubanswers import DEFAULT_MAX_WAIT, MAX_WAIT_ENV, asked_wait

pytest_plugins = ["hubfixtures"]  # local_hub, hub_env, fake_release

REAL_QUOTA_ANSWER = (  # as the Hub answered a commit past the quota (docs/hf-hub.md §4)
    "You have exceeded the rate limit for repository commits (128 per hour). You can retry this action in "
    "about 1 hour. To reduce the number of commits, you can upload entire folders at once")


class Sleeps:
    """The publisher's sleep, recorded (and slept: the stand-in's windows are real)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


def publisher(hub: LocalHub, **kw) -> HubPublisher:
    return HubPublisher(hub.url, TOKEN, backoff=FAST, **kw)


def _until(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_asked_wait_reads_ratelimit_retry_after_and_the_quota_words() -> None:
    assert asked_wait({"RateLimit": '"api";r=0;t=55'}) == 55
    assert asked_wait({"ratelimit": '"api";r=3;t=55'}) is None  # set on every answer; not why it refused
    assert asked_wait({"RateLimit": '"api";r=0;t=5', "Retry-After": "9"}) == 9
    assert asked_wait({"RateLimit": '"api";r=949;t=271'}, REAL_QUOTA_ANSWER) == 3600
    assert asked_wait({}, "You can retry this action in about 12 minutes.") == 720
    assert asked_wait({}, "slow down") is None


def test_concurrent_jobs_on_one_repo_both_land(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    """Two jobs stage to branches of one repo at once (threads, the real client): the second commit
    meets the Hub's 409 while the first is applied, waits, and both land; main is untouched."""
    HfApi(endpoint=local_hub.url, token=TOKEN).create_repo(GGUF_REPO)
    main = local_hub.head(GGUF_REPO)
    arts = fake_release.fresh_artifacts()
    first = [a for a in arts if a.kind == "gguf"]
    second = [a for a in arts if a.id == "bf16"]
    local_hub.limits.hold = 2.0  # each commit's server-side work: a window the other job will hit
    lines: list[str] = []
    errors: list[BaseException] = []

    def stage(artifacts: list[Artifact], branch: str, progress=None) -> None:
        try:
            pub = publisher(local_hub, progress=progress)
            pub.apply(pub.plan(artifacts, fake_release.dir, revision=branch, repo_of=lambda a: GGUF_REPO),
                      message=f"Stage {branch}")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    job = threading.Thread(target=stage, args=(first, "release-t-a"))
    job.start()
    _until(lambda: local_hub.limits.busy(GGUF_REPO))
    stage(second, "release-t-b", lines.append)
    job.join()
    assert not errors, errors
    commits = [r.status for r in local_hub.log.records("commit")]
    assert commits.count(200) == 2 and 409 in commits, commits
    waits = [m for m in lines if "409 from the Hub" in m]
    assert waits and all("Another commit operation is in progress" in m and "waiting" in m for m in waits)
    files = {b: set(local_hub.files(GGUF_REPO, b)) for b in ("release-t-a", "release-t-b")}
    assert {f.path for a in first for f in a.files} < files["release-t-a"]
    assert {f.path for a in second for f in a.files} < files["release-t-b"]
    assert local_hub.head(GGUF_REPO) == main


def test_commit_quota_is_waited_out_as_the_hub_asks(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    """1 commit per repo per 2 s, and at most 2 files per commit (BF16 in three commits, GGUF in two):
    each refused commit waits what the 429 says (Retry-After, RateLimit t=), in one line, and lands."""
    local_hub.limits.quota = (1, 2)
    lines: list[str] = []
    sleeps = Sleeps()
    pub = publisher(local_hub, max_files=2, progress=lines.append, sleep=sleeps)
    result = pub.apply(pub.plan(fake_release.fresh_artifacts(), fake_release.dir), message="Release v1")
    assert [len(r.commits) for r in result.repos] == [3, 2]
    refused = [r for r in local_hub.log.records("commit") if r.status == 429]
    assert len(refused) >= 3
    said = [m for m in lines if "429 from the Hub" in m]
    assert len(said) == len(refused)
    for line in said:  # "... (RateLimit "commits";r=0;t=2, Retry-After 2); waiting 2.0s (…)"
        asked = int(re.search(r"Retry-After (\d+)", line).group(1))
        waited = float(re.search(r"waiting ([\d.]+)s", line).group(1))
        assert "exceeded the rate limit for repository commits (1 per 2 seconds)" in line
        assert asked >= 1 and waited >= asked
    assert sum(sleeps.waits) >= 2
    assert len(local_hub.history(BF16_REPO)) == 4 and len(local_hub.log.commits(BF16_REPO)) == 3
    assert len(local_hub.history(GGUF_REPO)) == 3 and len(local_hub.log.commits(GGUF_REPO)) == 2


def test_a_wait_beyond_the_maximum_is_refused_at_once(local_hub: LocalHub, fake_release: FakeRelease,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A quota that resets in a minute against RELEASE_HUB_MAX_WAIT=5: one clear error, no wait."""
    monkeypatch.setenv(MAX_WAIT_ENV, "5")
    local_hub.limits.quota = (1, 60)
    sleeps = Sleeps()
    pub = publisher(local_hub, max_files=2, sleep=sleeps)
    assert pub.max_wait == 5
    with pytest.raises(RemoteError) as exc:
        pub.apply(pub.plan(fake_release.fresh_artifacts(), fake_release.dir), message="Release v1")
    text = str(exc.value)
    assert text.startswith(f"commit to {BF16_REPO} failed: 429 from the Hub"), text
    assert "waiting 60s more would pass the maximum wait of 5s" in text and MAX_WAIT_ENV in text
    assert TOKEN not in text and sleeps.waits == []
    assert len(local_hub.log.records("commit")) == 2  # one landed, one refused, none retried

    monkeypatch.setenv(MAX_WAIT_ENV, "soon")
    with pytest.raises(InputError, match=MAX_WAIT_ENV):
        publisher(local_hub)
    monkeypatch.delenv(MAX_WAIT_ENV)
    assert publisher(local_hub).max_wait == DEFAULT_MAX_WAIT


def test_the_hubs_real_quota_answer_and_an_api_rate_limit(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    """The quota's answer as the Hub gives it (its RateLimit header is the API bucket's, r > 0; the wait
    is in its words: about 1 hour) is refused at once within the default 15 minutes; an API 429 with
    `RateLimit: …;r=0;t=1` is waited out."""
    api_limit = local_hub.faults.add("POST", r"/commit/", "rate_limit", ratelimit='"api";r=0;t=1',
                                     policy='"fixed window";"api";q=1000;w=300', message="slow down")
    sleeps = Sleeps()
    pub = publisher(local_hub, sleep=sleeps)
    pub.apply(pub.plan([a for a in fake_release.fresh_artifacts() if a.id.startswith("gguf")], fake_release.dir))
    assert api_limit.hits == 1 and max(sleeps.waits) >= 1

    local_hub.faults.add("POST", r"/commit/", "rate_limit", ratelimit='"api";r=949;t=271',
                         policy='"fixed window";"api";q=1000;w=300', message=REAL_QUOTA_ANSWER)
    sleeps.waits.clear()
    pub = publisher(local_hub, sleep=sleeps)
    with pytest.raises(RemoteError) as exc:
        pub.apply(pub.plan([a for a in fake_release.fresh_artifacts() if a.id == "bf16"], fake_release.dir))
    assert "about 1 hour" in str(exc.value) and "waiting 3600s more would pass the maximum wait of 900s" in str(
        exc.value)
    assert sleeps.waits == []


def test_conflicting_operation_on_a_create_is_retried_and_exists_is_success(
        local_hub: LocalHub, fake_release: FakeRelease) -> None:
    api = HfApi(endpoint=local_hub.url, token=TOKEN)
    api.create_repo(GGUF_REPO)
    local_hub.faults.add("POST", r"/branch/", "status", status=409,
                         message="Cannot create branch: another conflicting operation is in progress")
    pub = publisher(local_hub)
    arts = [a for a in fake_release.fresh_artifacts() if a.kind == "gguf"]
    pub.apply(pub.plan(arts, fake_release.dir, revision="release-t-a"))
    assert [r.status for r in local_hub.log.records("branch_create")] == [409, 200]
    assert "Tiny-MoE-98e-Q8_0.gguf" in local_hub.files(GGUF_REPO, "release-t-a")
    # A 409 that says it exists is an answer: the repo, the branch, the tag are there.
    assert pub._create("create", lambda: api.create_repo(GGUF_REPO)) is None
    assert pub._create("branch", lambda: api.create_branch(GGUF_REPO, branch="release-t-a")) is None


def test_record_rides_in_the_last_commit(local_hub: LocalHub, fake_release: FakeRelease, tmp_path: Path) -> None:
    """A job's outputs and its record: one commit per branch; when the Hub's limits split one, the
    record comes last, with the card."""
    record = tmp_path / "rec"
    (record / ".release").mkdir(parents=True)
    (record / ".release" / "job.json").write_text(json.dumps({"job": "job"}))
    carrier = Artifact(id="record:bf16", kind="record", status="built", root=str(record),
                       files=[FileEntry(".release/job.json")], destination=Destination(kind="hub", repo=BF16_REPO))
    arts = [a for a in fake_release.fresh_artifacts() if a.destination.repo == BF16_REPO]
    for max_files, commits in ((100, 1), (2, 3)):
        branch = f"release-t-{max_files}"
        pub = publisher(local_hub, max_files=max_files)
        plan = pub.plan([*arts, carrier], fake_release.dir, revision=branch)
        for f in plan.repos[0].files:
            f.last = f.artifact == carrier.id
        result = pub.apply(plan)
        assert len(result.repos[0].commits) == commits
        last = local_hub.history(BF16_REPO, branch)[0]["id"]
        before = local_hub.history(BF16_REPO, branch)[1]["id"]
        new = set(local_hub.files(BF16_REPO, last)) - set(local_hub.files(BF16_REPO, before))
        assert {".release/job.json", "README.md"} <= new


# ---- a promotion of v4's size -------------------------------------------------------------------------

V4_SHARD = {"bf16": 5 * 10**9, "nvfp4": 2 * 10**9}  # BF16 shards like the base's, NVFP4 at its writer's 2 GB


def _v4_files(a: Artifact) -> list[FileEntry]:
    """The files `release plan v4` plans for an artifact, at their estimated sizes; a sharded checkpoint
    (planned as one size) cut into shards beside its small files."""
    size = a.facts.get("size")
    if a.kind in V4_SHARD:
        n = -(-int(size) // V4_SHARD[a.kind])
        shards = [FileEntry(f"model-{i:05d}-of-{n:05d}.safetensors", int(size) // n) for i in range(1, n + 1)]
        return shards + [FileEntry(p, 2000) for p in ("config.json", "generation_config.json", "tokenizer.json",
                                                       "tokenizer_config.json", "chat_template.jinja")]
    if len(a.files) == 1 and size:
        return [FileEntry(a.files[0].path, int(size))]
    return [FileEntry(f.path, 50 << 20 if f.path.endswith((".gguf", ".npy")) else 3000) for f in a.files]


def test_v4_promotion_is_one_commit_per_repo(tmp_path: Path, hub_env: None) -> None:
    """Every unit of `release plan v4` staged on its branch (≈475 GB, as sparse objects: nothing
    written or hashed), then finish's promotion: every copy plus the cards and small files in one
    commit per repo on main, and no LFS byte sent."""
    from release.distributed.finish import _promotion_plan
    from release.distributed.jobs import plan_jobs
    from release.distributed.records import UnitRecord, path_in_repo, stage_repo, staging_branch
    from release.localhub.store import git_blob_sha1
    from release.pipeline import Context, Options
    from release.publish.hubplan import REGULAR_MAX
    from release.spec.load import load_release

    ctx = Context(load_release("v4"), Options(dist_root=tmp_path / "dist", quiet=True))
    repos = sorted({a.destination.repo for a in ctx.artifacts if a.destination and a.destination.kind == "hub"})
    hub = LocalHub(tmp_path / "hub", {TOKEN: [repos[0].split("/")[0]]})
    hub.start()
    try:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        for repo in repos:
            api.create_repo(repo)
        plan = plan_jobs(ctx)
        records: dict[str, UnitRecord] = {}
        staged_bytes = 0
        for unit in plan.units:
            made, by_repo, sha1s = [], {}, {}
            for aid in unit.artifacts:
                a = Artifact.from_json(ctx.artifacts[aid].to_json())
                a.files = _v4_files(a)
                repo = stage_repo(ctx, a)
                for f in a.files:
                    path = path_in_repo(a, f.path)
                    if f.size > REGULAR_MAX or f.path.endswith((".gguf", ".safetensors", ".npy")):
                        f.sha256 = hashlib.sha256(f"{unit.id}/{path}".encode()).hexdigest()
                        hub.add_sparse_lfs(f.sha256, f.size)
                        by_repo.setdefault(repo, {})[path] = (f.sha256, f.size)
                    else:
                        content = json.dumps({"path": path}).encode().ljust(f.size, b" ")
                        f.sha256 = hashlib.sha256(content).hexdigest()
                        sha1s[f"{repo}/{path}"] = git_blob_sha1(content)
                        by_repo.setdefault(repo, {})[path] = content
                    staged_bytes += f.size
                made.append(a)
            branch = staging_branch("v4", unit.id)
            for repo, files in by_repo.items():
                api.create_branch(repo, branch=branch)
                hub.commit_files(repo, files, branch=branch, title=f"Stage {unit.id}")
            records[unit.id] = UnitRecord(release="v4", unit=unit.id, key="k", tool_version="t", artifacts=made,
                                          inputs={}, repos={a.id: stage_repo(ctx, a) for a in made},
                                          git_sha1=sha1s)
        assert staged_bytes > 400e9, staged_bytes  # v4's size: 29 tiers, the F16, BF16, NVFP4
        # finish's own files (cards, chart, Ollama side files), made locally
        for aid in ("card:bf16", "card:gguf", "card:nvfp4", "gguf:ollama-files"):
            a = ctx.artifacts[aid]
            for f in a.files:
                (ctx.artifact_dir(a) / f.path).parent.mkdir(parents=True, exist_ok=True)
                (ctx.artifact_dir(a) / f.path).write_text(f"{aid} {f.path}\n")
            a.status = "built"

        pub = HubPublisher(hub.url, TOKEN, backoff=FAST)
        hub.log.clear()
        promotion = _promotion_plan(ctx, pub, records, repos)
        copies = {rp.repo: len(rp.copies) for rp in promotion.repos}
        assert copies[next(r for r in repos if r.endswith("-GGUF"))] >= 31  # 29 tiers, the F16, the imatrix
        result = pub.apply(promotion, message="Release v4")
        assert {r.repo: len(r.commits) for r in result.repos} == dict.fromkeys(repos, 1)
        for repo in repos:
            assert [c["title"] for c in hub.history(repo)] == ["Release v4", "initial commit"]
            main = hub.files(repo)
            for rp in promotion.repos:
                if rp.repo == repo:
                    assert {f.path for f in rp.files if f.action in ("copy", "upload")} <= set(main)
        assert hub.log.lfs_bytes_by_oid() == {} and hub.log.upload_bytes() < 1 << 20
    finally:
        hub.stop()
