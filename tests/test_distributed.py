"""The demo released across machines as GitHub Actions runs it: every job of `release plan demo --matrix`
is a process of its own, with its own --dist and Hugging Face cache, on a machine with no git identity,
sharing only the stand-in Hub and a real docker-registry on 127.0.0.1; the jobs of a stage run at once.
The base comes from the stand-in Hub at a pinned commit, as a real release's does.

Shown: the base is downloaded once, the F16 converted once and the imatrix computed once (the tier jobs
fetch them); main of every repo is untouched until finish, and the repos the jobs create stay private
until it; a job killed in the middle of its upload, rerun, rebuilds nothing and sends no object twice;
repacked into other jobs (other budgets), every unit is found staged and nothing is rebuilt or sent; a
corrupt record stops finish, naming it, until its job's rerun replaces it; finish interrupted after the
commit on main, after the Hub tags, while deleting the staging branches and before the git tag, each
time rerun on a fresh machine from a fresh checkout, completes with the git tag and commits nothing
twice; the promoted trees and tags equal those of a single-machine publish, file for file; a second
finish makes no commit; a re-release whose jobs have not staged is refused with nothing deleted;
Hub tags stay unless `--move-tags`; `release clean --staging` removes what is left, whichever plan made
it, once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import HUB_REPOS, NEEDS_REGISTRY, ROOT, TOKEN, Targets, env, git, release, remote_state

pytestmark = pytest.mark.skipif(**NEEDS_REGISTRY)

BASE_REPO = "demo/tiny-gemma4-8e"
GGUF_REPO = "demo/tiny-gemma4-6e-it-GGUF"


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Targets]:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in speaks LFS
    t = Targets(tmp_path / "remote")
    yield t
    t.close()


def _pipeline(targets: Targets, root: Path) -> Path:
    """The demo definition with its base on the stand-in Hub at a pinned commit (no local copy), in a git
    repo of its own."""
    from huggingface_hub import HfApi

    from release.demo import generate_tiny_gemma4

    base = root / "base-upload"
    generate_tiny_gemma4(base)
    api = HfApi(endpoint=targets.hub_url, token=TOKEN)
    api.create_repo(BASE_REPO, exist_ok=True)
    info = api.upload_folder(repo_id=BASE_REPO, folder_path=str(base), commit_message="base")
    repo = root / "pipelines-repo"
    folder = repo / "pipelines" / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    toml = (folder / "release.toml").read_text()
    toml = re.sub(r'revision = "0+"', f'revision = "{info.oid}"', toml)
    toml = toml.replace('path = "base"\ngenerator = "tiny-gemma4"\n', "")
    assert "generator" not in toml
    (folder / "release.toml").write_text(toml)
    git(root, "init", "-q", str(repo))
    _commit(repo, "demo")
    return folder


def _commit(repo: Path, message: str) -> None:
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", message)


def _checkout(pipeline: Path, machine: Path) -> Path:
    """A fresh checkout of the pipelines repo on `machine` (as actions/checkout makes: no local tags)."""
    repo = pipeline.parent.parent
    dest = machine / "checkout"
    subprocess.run(["git", "clone", "-q", "--no-tags", str(repo), str(dest)], check=True, capture_output=True)
    return dest / "pipelines" / "demo"


def _cmd(pipeline: Path, targets: Targets, machine: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "release", "publish", str(pipeline), "--dist", str(machine / "dist"),
            *targets.args(), "--json", *args]


def _env(machine: Path) -> dict[str, str]:
    """A hosted runner: a Hugging Face cache of its own, no git identity anywhere (no global or system
    config; HOME keeps the llama.cpp build the bootstrap caches there)."""
    e = {**env(), "HF_HOME": str(machine / "hf-home"), "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    for var in ("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "EMAIL",
                "GITHUB_ACTOR", "GITHUB_ACTOR_ID"):
        e.pop(var, None)
    return e


def _start(pipeline: Path, targets: Targets, machine: Path, *args: str) -> subprocess.Popen[str]:
    machine.mkdir(parents=True, exist_ok=True)
    with open(machine / "out.json", "w") as out, open(machine / "err.log", "w") as err:  # the child keeps its own
        return subprocess.Popen(_cmd(pipeline, targets, machine, *args), stdout=out, stderr=err, text=True,
                                env=_env(machine))


def _result(proc: subprocess.Popen[str], machine: Path, what: str, *, expect: int = 0) -> dict:
    code = proc.wait(timeout=1800)
    out, err = (machine / "out.json").read_text(), (machine / "err.log").read_text()
    assert TOKEN not in out + err, "the token leaked into the output"
    assert "Traceback" not in err, err[-4000:]
    if code != expect:
        raise AssertionError(f"{what} → {code}, expected {expect}\n{out[-2000:]}\n{err[-4000:]}")
    return json.loads(out) if code == 0 else {"stderr": err}


def _run(pipeline: Path, targets: Targets, machine: Path, *args: str, expect: int = 0) -> dict:
    return _result(_start(pipeline, targets, machine, *args), machine, " ".join(args), expect=expect)


def _run_at_once(pipeline: Path, targets: Targets, machines: dict[str, Path]) -> dict[str, dict]:
    """Every job of a stage started together, as Actions runs a matrix."""
    procs = {jid: _start(pipeline, targets, m, "--job", jid) for jid, m in machines.items()}
    return {jid: _result(p, machines[jid], f"--job {jid}") for jid, p in procs.items()}


def _mains(targets: Targets) -> dict[str, dict[str, str]]:
    """main of every release repo: path → sha256 or blob id (empty while the repo does not exist)."""
    out = {}
    for repo in HUB_REPOS:
        try:
            out[repo] = {p: e["lfs"]["oid"] if e["lfs"] else e["oid"] for p, e in targets.hub.files(repo).items()}
        except Exception:  # the stand-in's own view: no such repo yet
            out[repo] = {}
    return out


def _untouched(targets: Targets) -> bool:
    """A job may create a missing repo (main then holds only .gitattributes), never fill main."""
    return all(set(files) <= {".gitattributes"} for files in _mains(targets).values())


def _visible(targets: Targets) -> dict[str, bool]:
    """Which release repos an anonymous reader sees."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=targets.hub_url, token=False)
    return {repo: api.repo_exists(repo) for repo in HUB_REPOS}


def _branches(targets: Targets) -> dict[str, list[str]]:
    from release.localhub.store import RepoKey

    return {repo: sorted(targets.hub.store.require_repo(RepoKey("model", *repo.split("/")))["heads"])
            for repo in HUB_REPOS}


def _base_downloads(targets: Targets) -> int:
    """Downloads of the base's weights (the client follows the resolve redirect to the LFS storage)."""
    oids = {e["lfs"]["oid"] for p, e in targets.hub.files(BASE_REPO).items()
            if e["lfs"] and p.endswith(".safetensors")}
    return sum(1 for r in targets.hub.log.records(method="GET") if r.path.rsplit("/", 1)[-1] in oids)


def _kill_mid_upload(pipeline: Path, targets: Targets, machine: Path, job: str) -> None:
    """Run `job` until its second LFS object is being completed, then SIGKILL it (the first one is
    stored by then)."""
    fault = targets.hub.faults.add("POST", r"^/complete/", "stall", skip=1, timeout=120)
    proc = _start(pipeline, targets, machine, "--job", job)
    try:
        assert fault.hit.wait(600), "the job never reached its second upload"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        targets.hub.faults.release()
        targets.hub.faults.clear()


def _promotion_commits(targets: Targets) -> dict[str, int]:
    return {repo: sum(1 for c in targets.hub.history(repo) if c["title"].startswith("Release demo"))
            for repo in HUB_REPOS}


def test_released_across_machines_at_once(remote: Targets, tmp_path: Path) -> None:
    pipeline = _pipeline(remote, tmp_path)
    snapshot = tmp_path / "hub-with-base"
    shutil.copytree(remote.hub.store.root, snapshot)  # for the single-machine comparison below

    plan = json.loads(release("plan", str(pipeline), "--matrix", "--json").stdout)
    jobs = {j["id"]: j for j in plan["jobs"]}
    assert plan["jobs"][0]["id"] == "prepare" and plan["jobs"][-1]["id"] == "finish"
    fanout = [j["job"] for j in plan["stages"]["build"]["include"]]
    tier_jobs = [j for j in fanout if j.startswith("gguf-")]
    assert "nvfp4" in fanout and len(tier_jobs) >= 2
    assert all(i["id"] != "base" for j in fanout for i in jobs[j]["inputs"]), "only prepare reads the base"
    n_base = sum(1 for f in (tmp_path / "base-upload").iterdir() if f.suffix == ".safetensors")

    remote.hub.log.clear()
    prepare = _run(pipeline, remote, tmp_path / "m-prepare", "--job", "prepare")
    assert prepare["built"] == ["bf16", "gguf:F16", "gguf:imatrix", "quality:reference"]
    assert prepare["units"] == {"prepare": "staged"}
    assert _base_downloads(remote) == n_base
    assert _untouched(remote), "a job changed main"
    created = [r for r, files in _mains(remote).items() if files]
    assert created and not any(_visible(remote).values()), "a repo a job created is readable before finish"
    remote.hub.log.clear()

    # One tier job is killed while its second object is on the wire; its rerun (with the other fan-out
    # jobs, all at once) rebuilds nothing and sends no object twice.
    killed = next(j for j in tier_jobs if len(jobs[j]["units"]) >= 2)
    _kill_mid_upload(pipeline, remote, tmp_path / f"m-{killed}", killed)
    stored_before = remote.hub.log.lfs_stored_by_oid()

    writes = len(remote.hub.log.writes())
    dry = _run(pipeline, remote, tmp_path / "m-nvfp4-dry", "--job", "nvfp4", "--dry-run")
    assert dry["dry_run"] and dry["uploaded_files"] > 0 and dry["commits"] == 0
    assert len(remote.hub.log.writes()) == writes, "a dry run wrote to the Hub"

    summaries = _run_at_once(pipeline, remote, {j: tmp_path / f"m-{j}" for j in fanout})
    assert summaries[killed]["built"] == [], "the rerun rebuilt what the killed run had built"
    stored = remote.hub.log.lfs_stored_by_oid()
    assert max(stored.values()) == 1 and set(stored_before) < set(stored), (stored_before, stored)
    # The killed job's units recorded before the kill are found staged; the others are staged now.
    assert "staged" in summaries[killed]["units"].values() and list(summaries[killed]["units"]) == jobs[killed]["units"]
    for jid in fanout:
        assert set(summaries[jid]["units"].values()) == ({"staged"} if jid != killed else
                                                         set(summaries[killed]["units"].values()))
        assert set(summaries[jid]["units"].values()) <= {"staged", "already staged"}
        assert summaries[jid]["branches"] == [f"release-demo-{u}" for u in jobs[jid]["units"]]
        if jid != killed:
            assert summaries[jid]["built"] == jobs[jid]["artifacts"], "a fan-out job made more than its own"
    shared = sum(len(prepare_files(tmp_path / "m-prepare", a)) for a in ("gguf:F16", "gguf:imatrix",
                                                                         "quality:reference"))
    assert shared == 4  # the conversion, the imatrix, the reference log-probabilities and their tokens
    for jid in tier_jobs:
        # Each unit's outputs and its record in one commit on the unit's branch of the GGUF repo (the only
        # repo a tier stages to).
        staged = [u for u, how in summaries[jid]["units"].items() if how == "staged"]
        assert summaries[jid]["commits"] == len(staged) >= 1, summaries[jid]
        # Each tier job fetched the conversion, the imatrix and the quality reference (the killed one's
        # rerun found them fetched already): none was made twice.
        assert summaries[jid]["fetched_files"] == (0 if jid == killed else shared), summaries[jid]
        assert all(f"quality:{a.split(':')[1]}" in summaries[jid]["built"] or jid == killed
                   for a in jobs[jid]["artifacts"] if a.startswith("gguf:")), "a tier was not measured in its job"
    assert summaries["nvfp4"]["fetched_files"] == dry["fetched_files"] == len(
        prepare_files(tmp_path / "m-prepare", "bf16"))
    assert _base_downloads(remote) == 0, "a fan-out job downloaded the base (the log was cleared after prepare)"
    assert _untouched(remote), "a job changed main"
    assert not any(_visible(remote).values()), "a staged repo is readable before finish"

    # Repacked (other budgets → other jobs): every unit is found staged; nothing is rebuilt or sent.
    toml = pipeline / "release.toml"
    toml.write_text(toml.read_text() + "\n[jobs]\ntiers_per_job = 1\n")
    _commit(pipeline.parent.parent, "one tier per job")
    repacked = json.loads(release("plan", str(pipeline), "--matrix", "--json").stdout)
    assert [u["id"] for u in repacked["units"]] == [u["id"] for u in plan["units"]]
    refanout = [j["job"] for j in repacked["stages"]["build"]["include"]]
    assert set(refanout) != set(fanout) and len(refanout) == len(plan["units"]) - 1
    remote.hub.log.clear()
    registry_writes = len(remote.proxy.requests("PATCH")) + len(remote.proxy.requests("POST")) + \
        len(remote.proxy.requests("PUT"))
    again = _run_at_once(pipeline, remote, {j: tmp_path / f"m2-{j}" for j in refanout})
    for jid, summary in again.items():
        assert summary["skipped"] and summary["built"] == [] and summary["fetched_bytes"] == 0, (jid, summary)
        assert summary["units"] == {jid: "already staged"}
    assert not remote.hub.log.writes(), [r.path for r in remote.hub.log.writes()]
    assert len(remote.proxy.requests("PATCH")) + len(remote.proxy.requests("POST")) + \
        len(remote.proxy.requests("PUT")) == registry_writes, "a repacked job pushed to the registry"

    # A corrupt record: finish refuses, naming it, and changes nothing; the unit's job replaces it.
    from huggingface_hub import HfApi

    api = HfApi(endpoint=remote.hub_url, token=TOKEN)
    api.upload_file(path_or_fileobj=b"{not json", path_in_repo=".release/gguf-q8_0.json", repo_id=GGUF_REPO,
                    revision="release-demo-gguf-q8_0", commit_message="corrupt")
    refused = _run(_checkout(pipeline, tmp_path / "f0"), remote, tmp_path / "f0", "--finish", expect=1)
    assert "release-demo-gguf-q8_0:.release/gguf-q8_0.json" in refused["stderr"] and \
        "--job gguf-q8_0" in refused["stderr"]
    assert _untouched(remote)
    remote.hub.log.clear()
    replaced = _run(pipeline, remote, tmp_path / "m-gguf-q8_0", "--job", "gguf-q8_0")
    assert replaced["built"] == [] and replaced["units"] == {"gguf-q8_0": "staged"}
    assert replaced["uploaded_files"] == 0 and not remote.hub.log.lfs_stored_by_oid(), "a weight was sent again"

    # finish, interrupted four times; each rerun on a fresh machine, from a fresh checkout, no git identity.
    def interrupted(step: int, why: str) -> dict:
        machine = tmp_path / f"f{step}"
        return _run(_checkout(pipeline, machine), remote, machine, "--finish", expect=1)["stderr"]

    remote.hub.faults.add("PUT", r"/settings$", "status", status=403)  # visibility: right after main's commit
    interrupted(1, "after the commit on main")
    assert not _untouched(remote) and not any(_visible(remote).values())
    assert _promotion_commits(remote) == dict.fromkeys(HUB_REPOS, 1)
    remote.hub.faults.clear()
    remote.hub.faults.add("POST", r"^/api/collections$", "status", status=403)  # right after the Hub tags
    interrupted(2, "after the Hub tags")
    assert all(remote.hub.tags(r) == {"demo": remote.hub.head(r)} for r in HUB_REPOS) and all(_visible(remote).values())
    remote.hub.faults.clear()
    remote.hub.faults.add("DELETE", r"/branch/release-demo-", "status", status=403, skip=2)
    interrupted(3, "while deleting the staging branches")
    left = [b for bs in _branches(remote).values() for b in bs if b.startswith("release-demo-")]
    assert "release-demo-finish" in left and len(left) > 1
    remote.hub.faults.clear()
    machine = tmp_path / "f4"
    checkout = _checkout(pipeline, machine)
    lock = checkout.parent.parent / ".git" / "refs" / "tags" / "release" / "demo.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")  # git tag fails: the run ends after deleting the branches, before the git tag
    assert "demo.lock" in _run(checkout, remote, machine, "--finish", expect=1)["stderr"]
    assert [b for bs in _branches(remote).values() for b in bs if b.startswith("release-demo-")] == \
        ["release-demo-finish"]

    machine = tmp_path / "f5"
    checkout = _checkout(pipeline, machine)
    finish = _run(checkout, remote, machine, "--finish")
    assert finish["git_tag"] == "release/demo" and finish["commits"] == 0
    assert _promotion_commits(remote) == dict.fromkeys(HUB_REPOS, 1), "a commit on main was made twice"
    tag = git(checkout.parent.parent, "for-each-ref", "refs/tags/release/demo",
              "--format=%(taggername) %(taggeremail)%0a%(contents)")
    who, _, message = tag.partition("\n")
    assert who == "moe-release <moe-release@localhost>" and message.startswith("Release demo\n\n")
    manifest = json.loads(message.split("\n\n", 1)[1])["manifest"]
    distributed = remote_state(remote)
    promoted = [(a["destination"]["repo"], f["path"], f["sha256"]) for a in manifest["artifacts"]
                if a["destination"] and a["destination"]["kind"] == "hub" and a["status"] == "published"
                for f in a["files"] if f["path"].endswith((".gguf", ".safetensors"))]
    assert promoted and all(distributed[r].get(p) == sha for r, p, sha in promoted), "the tag's manifest is not main"
    assert all(_visible(remote).values()), "finish did not make the repos public"
    for repo in HUB_REPOS:
        assert not [p for p in distributed[repo] if p.startswith(".release/")], "a unit record reached main"
        assert not [p for p in distributed[repo] if p.startswith("quality-") and not p.endswith(".svg")], \
            "a quality measurement (staged for the tier jobs) reached main"
    assert "quality-kld-vs-size.svg" in distributed[GGUF_REPO]
    second = _run(_checkout(pipeline, tmp_path / "f6"), remote, tmp_path / "f6", "--finish")
    assert second["commits"] == 0 and second["bytes_sent"] == 0 and second["git_tag"] == "release/demo"

    single = Targets(tmp_path / "single", hub_state=snapshot)
    try:
        machine = tmp_path / "single-machine"
        _run(_checkout(pipeline, machine), single, machine)
        assert remote_state(single) == distributed
    finally:
        single.close()

    # A re-release (new scores) whose jobs have not staged: refused, nothing deleted or changed.
    scores = pipeline / "scores.json"
    scores.write_text(scores.read_text().replace('"n":', '"n" :', 1))
    _commit(pipeline.parent.parent, "new scores")
    before = (_mains(remote), _branches(remote))
    refused = _run(_checkout(pipeline, tmp_path / "f7"), remote, tmp_path / "f7", "--finish", expect=1)
    assert "not staged yet: prepare" in refused["stderr"]
    assert (_mains(remote), _branches(remote)) == before

    # Hub tags stay where a release put them unless asked: new cards (the new scores) from one machine.
    single_machine = [tmp_path / "single-machine" / "checkout" / "pipelines" / "demo", remote,
                      tmp_path / "single-machine"]
    git(single_machine[0].parent.parent, "pull", "-q", "--no-rebase")
    cards = _run(*single_machine, "--only", "cards")
    assert cards["commits"] == len(HUB_REPOS) and any("--move-tags" in n for n in cards["notes"])
    assert all(remote.hub.tags(r)["demo"] != remote.hub.head(r) for r in HUB_REPOS)
    moved = _run(*single_machine, "--only", "cards", "--move-tags")
    assert moved["commits"] == 0 and all(remote.hub.tags(r)["demo"] == remote.hub.head(r) for r in HUB_REPOS)

    # clean: every release-demo-* branch, whatever plan made it (here one of an older job naming).
    api.create_branch(GGUF_REPO, branch="release-demo-gguf-q6_k_l-q6_k-q4_k_m")
    clean = ["clean", str(pipeline), "--staging", "--hub-endpoint", remote.hub_url, "--json"]
    listed = json.loads(release(*clean, "--dry-run").stdout)["branches"]
    cleaned = json.loads(release(*clean).stdout)["branches"]
    assert cleaned == listed == [{"repo": "demo/tiny-gemma4-6e-NVFP4A16", "branch": "release-demo-finish"},
                                 {"repo": GGUF_REPO, "branch": "release-demo-gguf-q6_k_l-q6_k-q4_k_m"}]
    assert all(bs == ["main"] for bs in _branches(remote).values())
    assert json.loads(release("clean", str(pipeline), "--staging", "--hub-endpoint", remote.hub_url,
                              "--json").stdout)["branches"] == []


def prepare_files(machine: Path, artifact: str) -> list[dict]:
    state = json.loads((machine / "dist" / "demo" / "state.json").read_text())
    return state["artifacts"][artifact]["artifact"]["files"]
