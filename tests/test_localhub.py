"""The stand-in Hub speaks what the unmodified huggingface_hub client needs (docs/hf-hub.md §3)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import httpx2
import pytest
from hubfixtures import HUB_OPTIONS, NAMESPACE, TOKEN
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from release.localhub import LocalHub
from release.localhub.store import git_blob_sha1, lfs_pointer

pytest_plugins = ["hubfixtures"]  # local_hub, hub_env, fake_release

REPO = f"{NAMESPACE}/stand-in"


def _files(tmp: Path) -> dict[str, bytes]:
    rnd = os.urandom
    return {
        "config.json": b'{"num_experts": 98}\n',
        "small.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",  # LFS through .gitattributes
        "sub/dir/notes.txt": b"hello\n",
        "basic.bin": rnd(3 << 20),  # LFS through .gitattributes, single PUT
        "multi.dat": rnd(11 << 20),  # LFS by size; multipart: 3 parts of 4 MiB
        "README.md": b"---\nlicense: mit\ntags: [moe]\n---\n# Card\n",
    }


def _commit(api: HfApi, tmp: Path, files: dict[str, bytes], **kw) -> str:
    ops = []
    for name, data in files.items():
        p = tmp / "src" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        ops.append(CommitOperationAdd(name, str(p)))
    return api.create_commit(REPO, ops, commit_message="add files", **kw).oid


def test_round_trip_through_the_unmodified_client(local_hub: LocalHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=local_hub.url, token=TOKEN)
    url = api.create_repo(REPO)
    assert url == f"{local_hub.url}/{REPO}"
    assert api.create_repo(REPO, exist_ok=True) == url  # 409 carries the url
    with pytest.raises(HfHubHTTPError):
        api.create_repo(REPO)
    initial = api.model_info(REPO).sha
    assert [f.path for f in api.list_repo_tree(REPO)] == [".gitattributes"]

    files = _files(tmp_path)
    sha = _commit(api, tmp_path, files, parent_commit=initial)
    assert api.model_info(REPO).sha == sha != initial

    # LFS basic and multipart both went to the storage origin, without the token.
    parts = local_hub.log.records("lfs_part")
    assert len(parts) == 3 and all(r.status == 200 for r in parts)
    assert sorted(r.received for r in local_hub.log.records("lfs_upload")) == [16, 3 << 20]

    tree = {f.path: f for f in api.list_repo_tree(REPO, recursive=True)}
    assert set(tree) == {".gitattributes", "sub", "sub/dir", *files}
    for name, data in files.items():
        f = tree[name]
        assert f.size == len(data)
        if name in ("basic.bin", "multi.dat", "small.safetensors"):
            assert f.lfs.sha256 == hashlib.sha256(data).hexdigest()
            assert f.blob_id == git_blob_sha1(lfs_pointer(f.lfs.sha256, len(data)))
        else:
            assert f.lfs is None and f.blob_id == git_blob_sha1(data)
    top = [f.path for f in api.list_repo_tree(REPO)]
    assert "sub" in top and "sub/dir/notes.txt" not in top

    info = api.get_paths_info(REPO, ["README.md", "multi.dat", "absent.bin"])
    assert [i.path for i in info] == ["README.md", "multi.dat"]
    mi = api.model_info(REPO, files_metadata=True)
    assert mi.card_data.license == "mit"
    assert {s.rfilename: s.size for s in mi.siblings}["multi.dat"] == 11 << 20

    cache = tmp_path / "cache"
    for name, data in files.items():
        got = hf_hub_download(REPO, name, endpoint=local_hub.url, token=TOKEN, cache_dir=cache)
        assert Path(got).read_bytes() == data
    # An old revision stays readable by sha.
    got = hf_hub_download(REPO, ".gitattributes", revision=initial, endpoint=local_hub.url, cache_dir=cache)
    assert b"*.safetensors filter=lfs" in Path(got).read_bytes()

    # Ranges on regular files (resume) and LFS objects (302 to the storage origin).
    r = httpx2.get(f"{local_hub.url}/{REPO}/resolve/main/config.json", headers={"Range": "bytes=2-5"})
    assert r.status_code == 206 and r.content == files["config.json"][2:6]
    head = httpx2.head(f"{local_hub.url}/{REPO}/resolve/main/multi.dat")
    assert head.status_code == 302 and head.headers["X-Repo-Commit"] == sha
    assert head.headers["X-Linked-Size"] == str(11 << 20)
    r = httpx2.get(head.headers["Location"], headers={"Range": "bytes=100-"})
    assert r.status_code == 206 and r.content == files["multi.dat"][100:]


def test_history_refs_tags_and_stale_parent(local_hub: LocalHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=local_hub.url, token=TOKEN)
    api.create_repo(REPO)
    first = _commit(api, tmp_path, {"a.txt": b"1"})
    second = api.create_commit(REPO, [CommitOperationDelete("a.txt")], commit_message="rm",
                               parent_commit=first).oid
    with pytest.raises(HfHubHTTPError) as exc:  # stale parent → 412
        _commit(api, tmp_path, {"b.txt": b"2"}, parent_commit=first)
    assert exc.value.response.status_code == 412
    commits = api.list_repo_commits(REPO)
    assert [c.commit_id for c in commits][:2] == [second, first] and len(commits) == 3

    api.create_tag(REPO, tag="v1", revision=first)
    api.create_tag(REPO, tag="v1", exist_ok=True)  # 409 swallowed, tag not moved
    assert {t.name: t.target_commit for t in api.list_repo_refs(REPO).tags} == {"v1": first}
    assert [f.path for f in api.list_repo_tree(REPO, revision="v1")] == [".gitattributes", "a.txt"]
    assert api.model_info(REPO, revision="v1").sha == first
    expanded = {f.path: f for f in api.list_repo_tree(REPO, revision=first, expand=True)}
    assert expanded["a.txt"].last_commit.oid == first
    assert expanded[".gitattributes"].last_commit.title == "initial commit"


def test_tokens_are_checked_per_namespace(local_hub: LocalHub, tmp_path: Path) -> None:
    HfApi(endpoint=local_hub.url, token=TOKEN).create_repo(REPO)
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi(endpoint=local_hub.url, token=TOKEN).create_repo("someone-else/x")
    assert exc.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi(endpoint=local_hub.url, token="hf_wrong").create_commit(
            REPO, [CommitOperationAdd("x", b"x")], commit_message="x")
    assert exc.value.response.status_code == 401
    assert HfApi(endpoint=local_hub.url, token=False).model_info(REPO).id == REPO  # public read
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=local_hub.url, token=TOKEN).model_info(f"{NAMESPACE}/missing")
    assert HfApi(endpoint=local_hub.url, token=TOKEN).whoami()["name"] == NAMESPACE


def test_pagination_collections_and_restart(tmp_path: Path, hub_env: None) -> None:
    root = tmp_path / "hub"
    hub = LocalHub(root, {TOKEN: [NAMESPACE]}, page_size=3, **HUB_OPTIONS)
    hub.start()
    try:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo(REPO)
        _commit(api, tmp_path, {f"f{i:02d}.txt": str(i).encode() for i in range(8)})
        assert len(list(api.list_repo_tree(REPO))) == 9
        assert len(hub.log.records("tree")) == 3  # 3 + 3 + 3 through Link: rel="next"
        coll = api.create_collection("Tiny family", namespace=NAMESPACE)
        again = api.create_collection("Tiny family", namespace=NAMESPACE, exists_ok=True)
        assert again.slug == coll.slug
        api.add_collection_item(coll.slug, REPO, "model")
        api.add_collection_item(coll.slug, REPO, "model", exists_ok=True)
        assert [i.item_id for i in api.get_collection(coll.slug).items] == [REPO]
        head = api.model_info(REPO).sha
    finally:
        hub.stop()
    hub = LocalHub(root, {TOKEN: [NAMESPACE]})
    hub.start()
    try:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        assert api.model_info(REPO).sha == head
        assert [i.item_id for i in api.get_collection(coll.slug).items] == [REPO]
        got = hf_hub_download(REPO, "f07.txt", endpoint=hub.url, cache_dir=tmp_path / "c")
        assert Path(got).read_bytes() == b"7"
    finally:
        hub.stop()


def test_faults_and_request_log(local_hub: LocalHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=local_hub.url, token=TOKEN)
    api.create_repo(REPO)
    # The client retries preupload on 5xx and 429, but never the commit POST.
    local_hub.faults.add("POST", r"/preupload/", "status", status=503)
    local_hub.faults.add("POST", r"/preupload/", "rate_limit", retry_after=0)
    fault = local_hub.faults.add("POST", r"/commit/", "status", status=500)
    with pytest.raises(HfHubHTTPError):
        _commit(api, tmp_path, {"a.txt": b"1"})
    assert fault.hits == 1
    assert [r.status for r in local_hub.log.records("preupload")] == [503, 429, 200]
    assert len(local_hub.log.records("commit")) == 1 and not local_hub.log.commits()
    assert len(local_hub.history(REPO)) == 1

    # A lost answer: the commit lands, the client sees a dropped connection.
    local_hub.faults.add("POST", r"/commit/", "lost_response")
    with pytest.raises(httpx2.TransportError):
        _commit(api, tmp_path, {"a.txt": b"1"})
    assert len(local_hub.log.commits(REPO)) == 1 and len(local_hub.history(REPO)) == 2

    # A reset mid-upload: the client's retry sends the object again, stored once.
    data = os.urandom(3 << 20)
    local_hub.faults.add("PUT", r"^/upload/", "reset", after_bytes=1 << 20)
    _commit(api, tmp_path, {"big.bin": data})
    oid = hashlib.sha256(data).hexdigest()
    assert local_hub.log.lfs_stored_by_oid()[oid] == 1
    assert (1 << 20) <= local_hub.log.lfs_bytes_by_oid()[oid] - len(data) < len(data)
    assert local_hub.read(REPO, "big.bin") == data


def test_faults_over_http_and_program_entry(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "release.localhub", "--root", str(tmp_path / "hub"), "--port", "0",
         "--token", f"{NAMESPACE}={TOKEN}", "--commit-quota", "1/60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        line = proc.stdout.readline()
        assert "localhub listening on http://127.0.0.1:" in line and TOKEN not in line
        url = line.split()[3]
        req = urllib.request.Request(f"{url}/_localhub/faults", method="POST", data=json.dumps(
            {"method": "GET", "path_regex": "whoami", "kind": "status", "params": {"status": 502}}).encode())
        assert json.load(urllib.request.urlopen(req))["kind"] == "status"
        r = httpx2.get(f"{url}/api/whoami-v2", headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 502
        r = httpx2.get(f"{url}/api/whoami-v2", headers={"authorization": f"Bearer {TOKEN}"})
        assert r.json()["name"] == NAMESPACE
        log = json.load(urllib.request.urlopen(f"{url}/_localhub/requests"))
        assert [e["status"] for e in log if e["route"] == "whoami"] == [502, 200]
        api = HfApi(endpoint=url, token=TOKEN)
        api.create_repo(REPO)
        api.create_commit(REPO, [CommitOperationAdd("a.txt", b"a")], commit_message="within the quota")
        with pytest.raises(HfHubHTTPError) as exc:
            api.create_commit(REPO, [CommitOperationAdd("b.txt", b"b")], commit_message="past it")
        assert exc.value.response.status_code == 429 and "(1 per 60 seconds)" in exc.value.server_message
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert TOKEN not in out + err
    time.sleep(0)


def test_list_models_by_author_and_search(local_hub: LocalHub, tmp_path: Path) -> None:
    """huggingface_hub users call list_models; the stand-in answers it as the Hub does (issue 13.17)."""
    api = HfApi(endpoint=local_hub.url, token=TOKEN)
    for name, private in (("alpha-GGUF", False), ("beta", False), ("secret", True)):
        api.create_repo(f"{NAMESPACE}/{name}", private=private)
    ids = [m.id for m in api.list_models(author=NAMESPACE)]
    assert ids == [f"{NAMESPACE}/alpha-GGUF", f"{NAMESPACE}/beta", f"{NAMESPACE}/secret"]
    assert [m.id for m in api.list_models(search="gguf")] == [f"{NAMESPACE}/alpha-GGUF"]
    assert [m.id for m in api.list_models(author=NAMESPACE, limit=1)] == [f"{NAMESPACE}/alpha-GGUF"]
    anonymous = HfApi(endpoint=local_hub.url, token=False)
    assert f"{NAMESPACE}/secret" not in [m.id for m in anonymous.list_models(author=NAMESPACE)]
    assert all(m.sha for m in api.list_models(author=NAMESPACE))


def test_branches_and_server_side_copies(local_hub: LocalHub, tmp_path: Path) -> None:
    """What staging needs: commit to a branch of its own, copy its LFS and regular files onto main
    (LFS by oid, no upload), delete the branch."""
    from huggingface_hub import CommitOperationCopy

    api = HfApi(endpoint=local_hub.url, token=TOKEN)
    api.create_repo(REPO)
    main = api.model_info(REPO).sha
    api.create_branch(REPO, branch="staging", revision=main)
    files = {"w.safetensors": os.urandom(3 << 20), "config.json": b'{"a": 1}\n'}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    api.create_commit(REPO, [CommitOperationAdd(n, str(tmp_path / n)) for n in files], commit_message="stage",
                      revision="staging")
    assert api.model_info(REPO).sha == main, "a branch commit moved main"
    local_hub.log.clear()
    api.create_commit(REPO, [CommitOperationCopy(n, n, src_revision="staging") for n in files],
                      commit_message="promote", parent_commit=main)
    assert local_hub.log.upload_bytes() < 1024, "a copy re-sent the LFS object"
    for name, data in files.items():
        got = hf_hub_download(REPO, name, endpoint=local_hub.url, token=TOKEN, cache_dir=tmp_path / "c")
        assert Path(got).read_bytes() == data
    api.delete_branch(REPO, branch="staging")
    assert [b.name for b in api.list_repo_refs(REPO).branches] == ["main"]


# ---- as strict as huggingface.co (docs/hf-hub.md §4) -------------------------------------------------

def _wait_until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_one_commit_at_a_time_per_repository(local_hub: LocalHub) -> None:
    """While a commit is applied, a commit to any other branch of the same repo gets the Hub's 409 (the
    client does not retry it); another repo is not held up."""
    from release.localhub.limits import COMMIT_IN_PROGRESS

    api = HfApi(endpoint=local_hub.url, token=TOKEN)
    api.create_repo(REPO)
    api.create_repo(f"{REPO}-2")
    api.create_branch(REPO, branch="other")
    local_hub.limits.hold = 1.5  # the first commit's server-side work
    landed: list[str] = []
    first = threading.Thread(target=lambda: landed.append(api.create_commit(
        REPO, [CommitOperationAdd("a.txt", b"a")], commit_message="a").oid))
    first.start()
    try:
        _wait_until(lambda: local_hub.limits.busy(REPO))
        with pytest.raises(HfHubHTTPError) as exc:
            api.create_commit(REPO, [CommitOperationAdd("b.txt", b"b")], commit_message="b", revision="other")
        elsewhere = api.create_commit(f"{REPO}-2", [CommitOperationAdd("c.txt", b"c")], commit_message="c")
    finally:
        first.join()
    assert exc.value.response.status_code == 409
    assert exc.value.server_message == COMMIT_IN_PROGRESS
    assert exc.value.response.headers["X-Error-Message"] == COMMIT_IN_PROGRESS
    assert landed == [local_hub.head(REPO)] and local_hub.head(f"{REPO}-2") == elsewhere.oid
    assert [f["title"] for f in local_hub.history(REPO, "other")] == ["initial commit"]  # b never landed
    local_hub.limits.hold = 0
    api.create_commit(REPO, [CommitOperationAdd("b.txt", b"b")], commit_message="b", revision="other")
    assert local_hub.read(REPO, "b.txt", "other") == b"b"


def test_commit_quota_per_repository(local_hub: LocalHub) -> None:
    """Past the quota a commit gets 429 with RateLimit (r=0, t = seconds to the window's end),
    RateLimit-Policy, Retry-After and the Hub's words; the window ends and commits go through again."""
    from huggingface_hub.utils import parse_ratelimit_headers

    api = HfApi(endpoint=local_hub.url, token=TOKEN)
    for repo in (REPO, f"{REPO}-2"):
        api.create_repo(repo)
    local_hub.limits.quota = (2, 2)
    for i in range(2):
        api.create_commit(REPO, [CommitOperationAdd(f"{i}.txt", b"x")], commit_message=str(i))
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(REPO, [CommitOperationAdd("2.txt", b"x")], commit_message="2")
    r = exc.value.response
    info = parse_ratelimit_headers(r.headers)
    assert r.status_code == 429 and info is not None and info.remaining == 0 and 1 <= info.reset_in_seconds <= 2
    assert (info.limit, info.window_seconds, info.resource_type) == (2, 2, "commits")
    assert r.headers["Retry-After"] == str(info.reset_in_seconds)
    assert exc.value.server_message.startswith(
        "You have exceeded the rate limit for repository commits (2 per 2 seconds). You can retry this action in about")
    api.create_commit(f"{REPO}-2", [CommitOperationAdd("x.txt", b"x")], commit_message="another repo")
    time.sleep(info.reset_in_seconds)
    api.create_commit(REPO, [CommitOperationAdd("2.txt", b"x")], commit_message="2")
    assert len(local_hub.history(REPO)) == 4  # the refused commit never landed


def test_private_repos_invisible_and_writes_need_rights(tmp_path: Path, hub_env: None) -> None:
    """Every read route hides a private repo (404 RepoNotFound) from whoever may not read it; a write
    needs a token (401) with rights on the namespace or the repo (403); visibility can change."""
    from huggingface_hub.errors import EntryNotFoundError

    reader, other, scoped = "hf_reader_token_0001", "hf_other_token_0002", "hf_scoped_token_0003"
    hub = LocalHub(tmp_path / "hub", {
        TOKEN: [NAMESPACE],
        reader: {"user": NAMESPACE, "role": "read"},
        other: ["someone-else"],
        scoped: {"user": "carol", "role": "fineGrained", "name": "release",
                 "scoped": {REPO: ["repo.content.read", "repo.write"]}},
    })
    url = hub.start()
    try:
        owner = HfApi(endpoint=url, token=TOKEN)
        owner.create_repo(REPO, private=True)
        owner.create_commit(REPO, [CommitOperationAdd("README.md", b"# private\n"),
                                   CommitOperationAdd("w.gguf", b"GGUF" + bytes(64))], commit_message="files")
        owner.create_tag(REPO, tag="v1")
        owner.create_repo(f"{NAMESPACE}/public")
        coll = owner.create_collection("Family", namespace=NAMESPACE)
        for item in (REPO, f"{NAMESPACE}/public"):
            owner.add_collection_item(coll.slug, item, "model")

        def reads(api: HfApi, token: str | bool) -> list:
            return [
                lambda: api.model_info(REPO), lambda: list(api.list_repo_tree(REPO)),
                lambda: api.get_paths_info(REPO, ["README.md"]), lambda: api.list_repo_refs(REPO),
                lambda: api.list_repo_commits(REPO),
                lambda: hf_hub_download(REPO, "w.gguf", endpoint=url, token=token, cache_dir=tmp_path / "c"),
            ]

        for token in (False, other):
            api = HfApi(endpoint=url, token=token)
            for read in reads(api, token):
                with pytest.raises(RepositoryNotFoundError):
                    read()
            assert REPO not in [m.id for m in api.list_models(author=NAMESPACE)]
            assert [i.item_id for i in api.get_collection(coll.slug).items] == [
                f"{NAMESPACE}/public"]
        for token in (TOKEN, reader, scoped):
            api = HfApi(endpoint=url, token=token)
            assert [read() is not None for read in reads(api, token)] == [True] * 6
        assert len(HfApi(endpoint=url, token=reader).get_collection(coll.slug).items) == 2

        def add() -> list[CommitOperationAdd]:
            return [CommitOperationAdd("x.txt", b"x")]

        with pytest.raises(HfHubHTTPError) as anon:
            HfApi(endpoint=url, token=False).create_commit(f"{NAMESPACE}/public", add(), commit_message="x")
        assert anon.value.response.status_code == 401
        for token, status in ((reader, 403), (other, 404)):
            with pytest.raises(HfHubHTTPError) as exc:
                HfApi(endpoint=url, token=token).create_commit(REPO, add(), commit_message="x")
            assert exc.value.response.status_code == status
        # A fine-grained token writes where it is scoped, nowhere else, and says so in whoami-v2.
        fine = HfApi(endpoint=url, token=scoped)
        fine.create_commit(REPO, add(), commit_message="scoped write")
        for write in (lambda: fine.create_repo(f"{NAMESPACE}/new"),
                      lambda: fine.create_commit(f"{NAMESPACE}/public", add(), commit_message="x")):
            with pytest.raises(HfHubHTTPError) as exc:
                write()
            assert exc.value.response.status_code == 403
        me = fine.whoami()
        token_info = me["auth"]["accessToken"]
        assert me["name"] == "carol" and token_info["role"] == "fineGrained" and token_info["displayName"] == "release"
        assert token_info["fineGrained"]["scoped"] == [{
            "entity": {"_id": token_info["fineGrained"]["scoped"][0]["entity"]["_id"], "type": "model", "name": REPO},
            "permissions": ["repo.content.read", "repo.write"]}]
        assert HfApi(endpoint=url, token=TOKEN).whoami()["auth"]["accessToken"]["role"] == "write"

        # Visibility changes with the client's update_repo_settings; delete_repo removes the repo.
        with pytest.raises(HfHubHTTPError) as exc:
            HfApi(endpoint=url, token=reader).update_repo_settings(REPO, private=False)
        assert exc.value.response.status_code == 403
        owner.update_repo_settings(REPO, private=False)
        anonymous = HfApi(endpoint=url, token=False)
        assert anonymous.model_info(REPO).private is False
        with pytest.raises(EntryNotFoundError):
            hf_hub_download(REPO, "absent.txt", endpoint=url, token=False, cache_dir=tmp_path / "c")
        with pytest.raises(HfHubHTTPError) as exc:
            HfApi(endpoint=url, token=other).delete_repo(REPO)
        assert exc.value.response.status_code == 403
        owner.delete_repo(REPO)
        with pytest.raises(RepositoryNotFoundError):
            owner.model_info(REPO)
        owner.delete_repo(REPO, missing_ok=True)
        assert [r.method for r in hub.log.records("repo_delete")] == ["DELETE"] * 3
    finally:
        hub.stop()
