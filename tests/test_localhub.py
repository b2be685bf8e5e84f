"""The stand-in Hub speaks what the unmodified huggingface_hub client needs (docs/hf-hub.md §3)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
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
         "--token", f"{NAMESPACE}={TOKEN}"],
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
