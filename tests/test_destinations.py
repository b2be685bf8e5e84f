"""The one publishing interface (issue 21.4): a Hub destination plans, sends by phase and verifies, and says
what happened in one typed result per repo; the summaries the CLI prints are views of those results."""

from __future__ import annotations

from pathlib import Path

import pytest
from hubfixtures import BF16_REPO, FAST, GGUF_REPO, NAMESPACE, TOKEN, FakeRelease
from huggingface_hub import CommitOperationAdd, HfApi
from ollama_helpers import make_release
from registry_fixture import (
    Registry,
    registry_fixture,  # noqa: F401 - registers the `registry` fixture
)

from release.destinations import Announcement, DestinationResult, HubDestination, OllamaDestination
from release.flow import PublishSummary
from release.localhub import LocalHub
from release.ollama.build import build_tags
from release.ollama.registry import RegistryClient
from release.publish import HubPublisher

pytest_plugins = ["hubfixtures"]  # local_hub, hub_env, fake_release


def test_hub_destination_plans_sends_verifies_and_reports_per_repo(local_hub: LocalHub,
                                                                     fake_release: FakeRelease) -> None:
    rel = fake_release
    pub = HubPublisher(local_hub.url, TOKEN, backoff=FAST)
    dest = HubDestination(pub, pub.plan(rel.artifacts, rel.dir), message="Release tiny",
                          announce=Announcement(tag="v1", move_tags=False, private=False, title="Tiny MoE 98e",
                                                owner=NAMESPACE))
    planned = {r.ref: r for r in dest.plan()}
    assert set(planned) == {BF16_REPO, GGUF_REPO}
    assert planned[GGUF_REPO].sent == 3 and planned[GGUF_REPO].commits == []  # two GGUFs and the card
    assert {f["action"] for r in planned.values() for f in r.files} == {"upload"}
    assert local_hub.log.records("commit") == []  # planning writes nothing

    assert dest.send("content") == [] and dest.send("commit") == []  # a release is done once announced
    sent = {r.ref: r for r in dest.send("announce")}
    assert all(r.kind == "hub" and len(r.commits) == 1 for r in sent.values())
    assert sent[GGUF_REPO].sent_bytes == planned[GGUF_REPO].planned_bytes > 10 << 20
    assert local_hub.tags(GGUF_REPO) == {"v1": local_hub.head(GGUF_REPO)}
    assert dest.verify() == []

    # Someone else changes a published file: the read-back says which.
    (rel.dir / "other.md").write_text("# not ours\n")
    HfApi(endpoint=local_hub.url, token=TOKEN).create_commit(
        GGUF_REPO, [CommitOperationAdd("README.md", str(rel.dir / "other.md"))], commit_message="edit")
    assert dest.verify() == [f"{GGUF_REPO}: README.md is not what was planned"]


def test_staging_destination_reports_at_commit_and_refuses_to_announce(local_hub: LocalHub,
                                                                        fake_release: FakeRelease) -> None:
    pub = HubPublisher(local_hub.url, TOKEN, backoff=FAST)
    plan = pub.plan(fake_release.artifacts, fake_release.dir, revision="release-tiny-unit")
    dest = HubDestination(pub, plan, message="Stage unit")
    results = dest.send("commit")
    assert sorted(r.ref for r in results) == [BF16_REPO, GGUF_REPO] and all(len(r.commits) == 1 for r in results)
    assert local_hub.tags(GGUF_REPO) == {}
    with pytest.raises(RuntimeError):
        dest.send("announce")


def test_ollama_destination_plans_sends_by_phase_and_verifies(registry: Registry, tmp_path: Path) -> None:
    section, ggufs, pipeline = make_release(tmp_path, model="dest/tags")  # a repository no other test uses
    builds = build_tags(section, ggufs, tmp_path / "ollama", pipeline_dir=pipeline)
    model = section.model  # the build's (build.json names where its tags go)
    dest = OllamaDestination(tmp_path / "ollama", model=model, registry=registry.url)
    planned = {r.ref: r for r in dest.plan()}
    assert set(planned) == {f"{model}:{b.tag}" for b in builds} | {f"{model}:latest"}
    assert all(r.manifest == "planned upload" for r in planned.values())
    assert sum(r.sent for r in planned.values()) > 0

    assert dest.send("content") == []
    client = RegistryClient(registry.url)
    try:
        # Blobs are in, but no tag is visible before the commit phase.
        assert all(client.get_manifest(model, b.tag) is None for b in builds)
        sent = {r.ref: r for r in dest.send("commit")}
        assert {r.manifest for r in sent.values()} == {"put"}
        assert [sent[f"{model}:{b.tag}"].digest for b in builds] == [b.manifest_digest for b in builds]
        assert dest.verify() == []
        # Another tag's manifest under the first tag: the read-back names it.
        client.put_manifest(model, builds[0].tag, builds[1].manifest)
        problems = dest.verify()
        assert problems and all(p.startswith(f"{model}:{builds[0].tag}:") for p in problems)
    finally:
        client.close()


def test_summaries_are_views_of_the_results() -> None:
    summary = PublishSummary(dry_run=False)
    summary.add([DestinationResult("hub", "o/r", url="u", sent=2, sent_bytes=7, unchanged=1, commits=["c1"],
                                   notes=["o/r: tag stays"]),
                 DestinationResult("ollama", "m:Q4_K_M", sent=1, sent_bytes=5, manifest="put", digest="sha256:ab")])
    out = summary.to_json()
    assert out["repos"] == [{"repo": "o/r", "url": "u", "sent_files": 2, "sent_bytes": 7, "unchanged_files": 1,
                             "commits": 1, "planned_bytes": 0, "files": []}]
    assert out["tags"][0]["sent_blobs"] == 1 and out["tags"][0]["digest"] == "sha256:ab"
    assert out["commits"] == 1 and out["bytes_sent"] == 12 and out["notes"] == ["o/r: tag stays"]
