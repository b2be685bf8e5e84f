"""HubPublisher against the stand-in Hub: plan, apply, idempotence, card-only pushes, refusals, secrets."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from hubfixtures import BF16_REPO, FAST, GGUF_REPO, NAMESPACE, TOKEN, FakeRelease, touch_content
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

from release.errors import InputError, RemoteError
from release.fsutil import HashCache
from release.localhub import LocalHub
from release.manifest import ArtifactRegistry, Manifest
from release.publish import HubPublisher

pytest_plugins = ["hubfixtures"]  # local_hub, hub_env, fake_release

COLLECTION = ("Tiny MoE 98e", NAMESPACE, "The release family")


def publisher(hub: LocalHub, **kw) -> HubPublisher:
    return HubPublisher(hub.url, TOKEN, backoff=FAST, **kw)


def changed_paths(hub: LocalHub, repo: str, commit: str) -> set[str]:
    """Paths a commit added, changed or removed relative to its parent."""
    store = hub.store
    parent = store.commit_obj(commit)["parents"][0]
    new, old = store.tree(commit), store.tree(parent)
    return {p for p in set(new) | set(old) if new.get(p) != old.get(p)}


def test_publish_downloads_back_identical_and_rerun_sends_nothing(
        local_hub: LocalHub, fake_release: FakeRelease, tmp_path: Path) -> None:
    rel = fake_release
    pub = publisher(local_hub)
    plan, result = pub.publish(rel.artifacts, rel.dir, release="v1", collection=COLLECTION)
    assert result is not None
    assert {r.repo for r in plan.repos} == {BF16_REPO, GGUF_REPO}
    assert all(f.action == "upload" for r in plan.repos for f in r.files)
    assert result.commits == 2 and all(r.created for r in result.repos)
    assert {a.status for a in rel.artifacts} == {"published"}
    for rp in plan.repos:
        assert len(local_hub.history(rp.repo)) == 2  # initial commit + ours

    # Every file comes back byte-identical through the client's own download path.
    for a in rel.artifacts:
        assert a.destination is not None
        for fe in a.files:
            got = hf_hub_download(a.destination.repo, fe.path, endpoint=local_hub.url, cache_dir=tmp_path / "dl")
            assert Path(got).read_bytes() == (rel.dir / a.root / fe.path).read_bytes()
            assert fe.sha256 == hashlib.sha256(Path(got).read_bytes()).hexdigest()
    # The multipart path was used for the 11 MB GGUF (3 parts), a single PUT for the others.
    assert len(local_hub.log.records("lfs_part")) == 3
    assert {t.repo: t.action for t in result.tags} == {BF16_REPO: "created", GGUF_REPO: "created"}
    assert local_hub.tags(BF16_REPO) == {"v1": local_hub.head(BF16_REPO)}
    api = HfApi(endpoint=local_hub.url)
    assert result.collection is not None
    items = [i.item_id for i in api.get_collection(result.collection.slug).items]
    assert sorted(items) == sorted([BF16_REPO, GGUF_REPO])

    # Second publish, fresh process state (cold hash cache, artifacts re-read): nothing written at all.
    local_hub.log.clear()
    pub2 = publisher(local_hub)
    plan2, result2 = pub2.publish(rel.fresh_artifacts(), rel.dir, release="v1", collection=COLLECTION)
    assert result2 is not None
    assert plan2.bytes_to_send == 0 and not plan2.changed
    assert result2.commits == 0 and result2.bytes_sent == 0
    assert local_hub.log.writes() == [] and local_hub.log.upload_bytes() == 0
    assert json.loads(json.dumps(result2.to_json()))["commits"] == 0
    assert {t.action for t in result2.tags} == {"unchanged"} and result2.collection.added == []
    assert len(local_hub.history(BF16_REPO)) == 2


def test_dry_run_writes_nothing_and_records_the_diff(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    plan, result = publisher(local_hub).publish(fake_release.artifacts, fake_release.dir, release="v1",
                                                dry_run=True)
    assert result is None
    assert local_hub.log.writes() == []
    assert plan.bytes_to_send == sum(a.size for a in fake_release.artifacts)
    gguf = next(a for a in fake_release.artifacts if a.id == "gguf:Q8_0")
    assert [(r.path, r.action, r.size) for r in gguf.remote or []] == [
        ("Tiny-MoE-98e-Q8_0.gguf", "upload", 11 << 20)]
    # The manifest carries the diff.
    manifest = Manifest("tiny", "0.1", {}, {}, ArtifactRegistry(fake_release.artifacts))
    data = json.loads(manifest.dumps())
    assert data["artifacts"][1]["remote"][0]["action"] == "upload"


def test_readme_only_change_is_one_readme_commit_per_repo(
        local_hub: LocalHub, fake_release: FakeRelease) -> None:
    rel = fake_release
    publisher(local_hub).publish(rel.artifacts, rel.dir, release="v1")
    for name in ("bf16", "gguf"):
        card = rel.dir / "cards" / name / "README.md"
        touch_content(card, card.read_bytes() + b"\nNew scores.\n")
    local_hub.log.clear()
    _, result = publisher(local_hub).publish(rel.fresh_artifacts(), rel.dir, release="v1")
    assert result is not None and result.commits == 2
    for r in result.repos:
        assert changed_paths(local_hub, r.repo, r.commits[0]) == {"README.md"}
    assert local_hub.log.records("lfs_batch") == [] and local_hub.log.records("lfs_upload") == []
    # Tags already on the previous commits stay, and the result says so.
    assert {t.action for t in result.tags} == {"kept"}
    assert all("not moved" in n for n in result.notes)


def test_card_only_push_ignores_other_changes(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    rel = fake_release
    publisher(local_hub).publish(rel.artifacts, rel.dir, release="v1")
    touch_content(rel.path("bf16", "config.json"), b'{"changed": true}')
    card = rel.path("card:gguf", "README.md")
    touch_content(card, card.read_bytes() + b"\nMore.\n")
    artifacts = rel.fresh_artifacts()
    result = publisher(local_hub).push_readmes(artifacts, rel.dir)
    assert {a.id for a in artifacts if a.status == "published"} == {"card:bf16", "card:gguf"}
    assert [len(r.commits) for r in result.repos] == [0, 1]  # only the GGUF card differed
    gguf = next(r for r in result.repos if r.repo == GGUF_REPO)
    assert changed_paths(local_hub, GGUF_REPO, gguf.commits[0]) == {"README.md"}
    assert local_hub.read(BF16_REPO, "config.json") != b'{"changed": true}'


def test_batches_put_lfs_first_and_readme_last(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    rel = fake_release
    result = publisher(local_hub, max_files=2).apply(
        publisher(local_hub, max_files=2).plan(rel.artifacts, rel.dir))
    bf16 = next(r for r in result.repos if r.repo == BF16_REPO)
    per_commit = [changed_paths(local_hub, BF16_REPO, c) for c in bf16.commits]
    assert per_commit == [
        {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"},
        {"config.json", "tokenizer.json"},
        {"README.md"},
    ]
    history = [c["parents"][0] for c in local_hub.history(BF16_REPO)[:-1]]
    assert history[:2] == bf16.commits[:2][::-1]  # each commit's parent is the previous one


def test_prune_remote_deletes_only_when_asked(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    rel = fake_release
    publisher(local_hub).publish(rel.artifacts, rel.dir, release="v1")
    HfApi(endpoint=local_hub.url, token=TOKEN).create_commit(
        GGUF_REPO, [CommitOperationAdd("old-Q2_K.gguf", b"GGUF" + b"\0" * 64)], commit_message="old tier")
    plan = publisher(local_hub).plan(rel.fresh_artifacts(), rel.dir)
    actions = {f.path: f.action for f in plan.repo(GGUF_REPO).files}
    assert actions["old-Q2_K.gguf"] == "keep" and actions[".gitattributes"] == "keep"
    pub = publisher(local_hub)
    plan = pub.plan(rel.fresh_artifacts(), rel.dir, prune_remote=True)
    actions = {f.path: f.action for f in plan.repo(GGUF_REPO).files}
    assert actions["old-Q2_K.gguf"] == "delete" and actions[".gitattributes"] == "keep"
    result = pub.apply(plan)
    gguf = next(r for r in result.repos if r.repo == GGUF_REPO)
    assert gguf.files_deleted == 1 and "old-Q2_K.gguf" not in local_hub.files(GGUF_REPO)
    assert ".gitattributes" in local_hub.files(GGUF_REPO)


def test_change_between_plan_and_apply_is_refused(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    rel = fake_release
    publisher(local_hub).publish(rel.artifacts, rel.dir, release="v1")
    touch_content(rel.path("gguf:Q4_K_M", "Tiny-MoE-98e-Q4_K_M.gguf"), b"GGUF" + b"\1" * (2 << 20))
    pub = publisher(local_hub)
    plan = pub.plan(rel.fresh_artifacts(), rel.dir)
    before = local_hub.head(GGUF_REPO)
    HfApi(endpoint=local_hub.url, token=TOKEN).create_commit(
        GGUF_REPO, [CommitOperationAdd("NOTES.md", b"someone else")], commit_message="concurrent")
    after = local_hub.head(GGUF_REPO)
    local_hub.log.clear()
    with pytest.raises(RemoteError) as exc:
        pub.apply(plan)
    msg = str(exc.value)
    assert f"repo {GGUF_REPO} changed since plan: head {before[:8]} → {after[:8]}; re-run plan" in msg
    assert local_hub.log.upload_bytes() == 0 and local_hub.log.writes() == []
    assert local_hub.head(GGUF_REPO) == after


def test_concurrent_commit_during_apply_is_refused_by_parent_commit(
        local_hub: LocalHub, fake_release: FakeRelease) -> None:
    """A commit sneaking in between our batches meets `parent_commit` (412) and is not overwritten."""
    rel = fake_release
    api = HfApi(endpoint=local_hub.url, token=TOKEN)
    sneaked = []

    def progress(msg: str) -> None:
        if "commit 1/" in msg and not sneaked:
            sneaked.append(api.create_commit(BF16_REPO, [CommitOperationAdd("NOTES.md", b"x")],
                                             commit_message="concurrent").oid)

    pub = publisher(local_hub, max_files=2, progress=progress)
    with pytest.raises(RemoteError, match="changed since plan"):
        pub.apply(pub.plan(rel.artifacts, rel.dir))
    assert local_hub.head(BF16_REPO) == sneaked[0]


def test_bad_input_makes_no_remote_call(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    rel = fake_release
    rel.path("bf16", "tokenizer.json").unlink()
    rel.artifacts[1].files[0].sha256 = "0" * 64
    with pytest.raises(InputError) as exc:
        publisher(local_hub).plan(rel.artifacts, rel.dir)
    text = str(exc.value)
    assert "tokenizer.json: file not found" in text and "sha256 differs" in text
    assert local_hub.log.records() == []
    bad = rel.fresh_artifacts()
    bad[0].destination.repo = "no-namespace"
    with pytest.raises(InputError, match="invalid repo id"):
        publisher(local_hub).plan(bad, rel.dir)
    assert local_hub.log.records() == []


def test_local_change_after_plan_is_refused(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    rel = fake_release
    pub = publisher(local_hub)
    plan = pub.plan(rel.artifacts, rel.dir)
    touch_content(rel.path("bf16", "config.json"), b'{"edited": 1}')
    with pytest.raises(Exception, match="changed since plan"):
        pub.apply(plan)
    assert local_hub.log.writes() == []


def test_tags_are_moved_only_when_asked(local_hub: LocalHub, fake_release: FakeRelease) -> None:
    rel = fake_release
    pub = publisher(local_hub)
    pub.publish(rel.artifacts, rel.dir, release="v1")
    old = local_hub.head(BF16_REPO)
    HfApi(endpoint=local_hub.url, token=TOKEN).create_commit(
        BF16_REPO, [CommitOperationAdd("NOTES.md", b"x")], commit_message="later")
    kept = pub.tag([BF16_REPO], "v1")
    assert kept[0].action == "kept" and local_hub.tags(BF16_REPO)["v1"] == old
    moved = pub.tag([BF16_REPO], "v1", move=True)
    assert moved[0].action == "moved" and local_hub.tags(BF16_REPO)["v1"] == local_hub.head(BF16_REPO)


def test_token_never_leaks(local_hub: LocalHub, fake_release: FakeRelease, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rel = fake_release
    lines: list[str] = []
    cache = HashCache(tmp_path / "hashes.json")
    pub = HubPublisher(local_hub.url, TOKEN, backoff=FAST, hash_cache=cache,
                       progress=lambda m: (lines.append(m), print(m)))
    local_hub.faults.add("POST", r"/commit/", "status", status=500)  # retried by us, with messages
    pub.publish(rel.artifacts, rel.dir, release="v1", collection=COLLECTION)
    assert any("500 from the Hub" in line and "waiting" in line for line in lines)
    # A failure whose message would naturally carry request details.
    local_hub.faults.add("GET", r"/api/models/", "status", times=None, status=500)
    with pytest.raises(RemoteError) as exc:
        pub.plan(rel.fresh_artifacts(), rel.dir)
    local_hub.faults.clear()
    # A wrong token is reported without echoing it either.
    wrong = "hf_wrongTOKENvalue_1234567"
    with pytest.raises(RemoteError) as exc2:
        HubPublisher(local_hub.url, wrong, backoff=FAST).apply(
            HubPublisher(local_hub.url, wrong, backoff=FAST).plan(
                [a for a in rel.fresh_artifacts() if a.id == "bf16"], _edited(rel)))
    manifest = Manifest("tiny", "0.1", {}, {}, ArtifactRegistry(rel.artifacts)).dumps()
    out, err = capsys.readouterr()
    haystack = "\n".join([out, err, caplog.text, manifest, str(exc.value), repr(exc.value), str(exc2.value),
                          repr(pub), *lines, (tmp_path / "hashes.json").read_text()])
    assert "500" in str(exc.value) and "401" in str(exc2.value)
    assert TOKEN not in haystack and wrong not in haystack


def _edited(rel: FakeRelease) -> Path:
    touch_content(rel.path("bf16", "config.json"), b'{"edited": 2}')
    return rel.dir
