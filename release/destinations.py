"""Where a release goes, behind one interface: a `Destination` (the Hub repos of a plan, the Ollama tags of
the build) plans, sends and verifies, and says what happened in one typed result per destination — a
repo or a tag — used alike by the one-machine publish (flow.py), a job's staging (distributed/run.py)
and finish's promotion (distributed/finish.py). The summaries the CLI prints (flow.RepoSummary,
flow.TagSummary) are views of `DestinationResult`.

A send goes in phases so that a release stays all or nothing as far as the remotes allow (flow.send
orders them): "content" sends what stays invisible until referenced (Hub LFS objects, Ollama blobs),
"commit" makes it visible (Hub commits, Ollama manifests), "announce" makes the release known
(visibility, tags, the collection).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .errors import InputError, RemoteError
from .manifest import ArtifactRegistry
from .ollama.build import load_builds
from .ollama.cli_path import CliResult
from .ollama.publish import plan_ollama, publish_ollama, verify_ollama
from .ollama.registry import PushResult
from .pipeline import Context
from .publish.hubplan import HubPlan, HubResult, RepoPlan, RepoResult, same_content
from .publish.redact import Redactor

if TYPE_CHECKING:
    from .publish.hub import HubPublisher

Phase = Literal["content", "commit", "announce"]


@dataclass
class DestinationResult:
    """What one destination — a Hub repo, an Ollama tag — was planned, sent or left unchanged."""

    kind: Literal["hub", "ollama"]
    ref: str  # the repo id, or model:tag
    url: str = ""
    sent: int = 0  # files (Hub) or blobs (Ollama) sent; in a plan, to send
    sent_bytes: int = 0
    planned_bytes: int = 0  # what the plan sends (a dry run's figure)
    unchanged: int = 0  # files or blobs the destination holds already
    commits: list[str] = field(default_factory=list)  # Hub commits made
    manifest: str = ""  # Ollama: put | unchanged | planned <action>
    digest: str = ""  # Ollama: the manifest's digest
    files: list[dict[str, Any]] = field(default_factory=list)  # a plan: {path, size, action} of every file
    notes: list[str] = field(default_factory=list)


class Destination(Protocol):
    """One kind of remote a release is published to."""

    kind: str

    def plan(self) -> list[DestinationResult]:
        """What a send would do, read-only (a dry run's answer)."""
        ...

    def send(self, phase: Phase) -> list[DestinationResult]:
        """Run one phase of the send; the phase that finishes a destination returns its results."""
        ...

    def verify(self) -> list[str]:
        """Read the destination back: what differs from the plan or the build (empty: nothing)."""
        ...


# ---- the Hub ---------------------------------------------------------------------------------------------

def hub_token(ctx: Context) -> str | None:
    return ctx.options.hub_token or os.environ.get("HF_TOKEN") or None


def hub_publisher(ctx: Context) -> HubPublisher:
    """The context's Hub publisher: its endpoint and token, its hash cache, one progress display (ours);
    a repo it makes is private until the release is in (the promotion makes it public)."""
    from huggingface_hub.utils import disable_progress_bars  # lazy: huggingface_hub takes ~0.3 s

    from .publish.hub import HubPublisher  # lazy: huggingface_hub, as above

    disable_progress_bars()
    return HubPublisher(ctx.options.hub_endpoint, hub_token(ctx), hash_cache=ctx.hash_cache, progress=ctx.say,
                        private=True)


def repo_result(rp: RepoPlan, rr: RepoResult | None = None, *, files: bool = False) -> DestinationResult:
    """One repo of a Hub plan (with `rr`, as sent; with `files`, every planned file)."""
    result = DestinationResult("hub", rp.repo, url=rp.url, planned_bytes=rp.bytes_to_send,
                               unchanged=len(rp.of("unchanged")), sent=len(rp.uploads) + len(rp.copies),
                               files=[{"path": f.path, "size": f.size, "action": f.action} for f in rp.files]
                               if files else [])
    if rr is not None:
        result.commits = list(rr.commits)
        result.sent_bytes = rr.bytes_sent
    return result


@dataclass
class Announcement:
    """What makes a release known once its repos hold it: their visibility, the release tag, the collection."""

    tag: str
    move_tags: bool
    private: bool
    title: str
    owner: str
    summary: str | None = None

    @classmethod
    def of(cls, ctx: Context) -> Announcement:
        r = ctx.release.definition.release
        return cls(tag=r.version_tag or ctx.release.name, move_tags=ctx.options.move_tags, private=r.private,
                   title=r.title, owner=r.owner, summary=r.summary)


class HubDestination:
    """The repos of a Hub plan: a release's main branches, a unit's staging branch, a promotion."""

    kind = "hub"

    def __init__(self, pub: HubPublisher, plan: HubPlan, *, message: str,
                 announce: Announcement | None = None) -> None:
        self.pub, self.hub_plan, self.message = pub, plan, message
        self.announcement = announce  # None: nothing to announce (staging)
        self._sent: HubResult | None = None

    def plan(self) -> list[DestinationResult]:
        return [repo_result(rp, files=True) for rp in self.hub_plan.repos]

    def send(self, phase: Phase) -> list[DestinationResult]:
        if phase == "content":
            self.pub.upload(self.hub_plan, rehash=False)  # LFS objects of every repo before the first commit
            return []
        if phase == "commit":
            self._sent = self.pub.apply(self.hub_plan, message=self.message)
            return [] if self.announcement is not None else self._results()
        a = self.announcement
        if self._sent is None or a is None:
            raise RuntimeError("announce comes after commit, for a release")
        repos = self.hub_plan.repo_ids()
        for repo in repos:
            self.pub.set_private(repo, a.private)
        tags = self.pub.tag(repos, a.tag, move=a.move_tags)
        self._sent.tags = tags
        self._sent.collection = self.pub.ensure_collection(a.title, a.owner, repos, a.summary, private=a.private)
        results = self._results()
        for result, tag in zip(results, tags, strict=True):
            result.notes += [tag.note] if tag.note else []
        return results

    @property
    def commits(self) -> int:
        return self._sent.commits if self._sent is not None else 0

    def _results(self) -> list[DestinationResult]:
        assert self._sent is not None
        sent = {r.repo: r for r in self._sent.repos}
        return [repo_result(rp, sent[rp.repo]) for rp in self.hub_plan.repos]

    def verify(self) -> list[str]:
        """Every planned file that should be there (sent, copied, unchanged) at each repo's head, read back."""
        problems: list[str] = []
        for rp in self.hub_plan.repos:
            head = self.pub.head(rp.repo, rp.revision)
            tree = self.pub.tree(rp.repo, head) if head else {}
            for pf in rp.files:
                if pf.action in ("upload", "copy", "unchanged") and not same_content(pf, tree.get(pf.path)):
                    problems.append(f"{rp.repo}: {pf.path} is not what was planned")
                elif pf.action == "delete" and pf.path in tree:
                    problems.append(f"{rp.repo}: {pf.path} still present")
        return problems


# ---- Ollama ----------------------------------------------------------------------------------------------

def ollama_registry(ctx: Context) -> str:
    """The registry the context publishes to: --ollama-registry, else the definition's."""
    o = ctx.release.definition.ollama
    assert o is not None
    return ctx.options.ollama_registry or o.registry


class OllamaDestination:
    """The Ollama tags of a build folder (dist/NAME/ollama) on a registry."""

    kind = "ollama"

    def __init__(self, out_dir: Path, *, model: str, registry: str, insecure: bool = False, via_cli: bool = False,
                 say: Callable[[str], None] | None = None, artifacts: ArtifactRegistry | None = None) -> None:
        self.out_dir, self.model, self.registry, self.insecure = out_dir, model, registry, insecure
        self.via_cli = via_cli  # push with the installed `ollama` binary
        self.say = say
        self.artifacts = artifacts  # where plan() records each tag's remote diff (the manifest's `remote`)
        self._pushed: PushResult | CliResult | None = None

    @classmethod
    def of(cls, ctx: Context) -> OllamaDestination:
        o = ctx.release.definition.ollama
        assert o is not None
        return cls(ctx.dist / "ollama", model=o.model, registry=ollama_registry(ctx), insecure=o.insecure,
                   via_cli=ctx.options.via_ollama_cli, say=ctx.say, artifacts=ctx.artifacts)

    def plan(self) -> list[DestinationResult]:
        """Per tag: its blobs and manifest, upload or unchanged; the plan is recorded on the artifacts."""

        results = []
        for aid, files in plan_ollama(self.out_dir, registry=self.registry, insecure=self.insecure).items():
            if self.artifacts is not None and aid in self.artifacts:
                self.artifacts[aid].remote = files
            manifest = next((f.action for f in files if f.path.startswith("manifests/")), "")
            blobs = [f for f in files if f.path.startswith("blobs/")]
            results.append(DestinationResult(
                "ollama", f"{self.model}:{aid.split(':', 1)[1]}", manifest=f"planned {manifest}",
                sent=sum(f.action == "upload" for f in blobs),
                planned_bytes=sum(f.size for f in blobs if f.action == "upload"),
                unchanged=sum(f.action == "unchanged" for f in blobs),
                files=[{"path": f.path, "size": f.size, "action": f.action} for f in files]))
        return results

    def send(self, phase: Phase) -> list[DestinationResult]:
        if phase == "content":
            self._pushed = self._push("blobs")
            return []
        if phase == "commit":
            self._pushed = self._push("manifests", self._pushed)
            return self._results(self._pushed)
        return []

    def _push(self, phase: Literal["blobs", "manifests"],
              result: PushResult | CliResult | None = None) -> PushResult | CliResult:

        redact = Redactor([os.environ.get("OLLAMA_KEY")])
        try:
            return publish_ollama(self.out_dir, registry=self.registry, insecure=self.insecure,
                                  via_cli=self.via_cli, on_progress=self.say,
                                  phase=phase, result=result if isinstance(result, PushResult) else None)
        except (RemoteError, InputError):
            raise
        except OSError as exc:
            raise RemoteError(redact(f"registry {self.registry}: {exc}")) from exc

    def _results(self, pushed: PushResult | CliResult) -> list[DestinationResult]:

        _, _, builds = load_builds(self.out_dir)
        if isinstance(pushed, CliResult):
            note = (f"pushed with the ollama CLI ({len(pushed.commands)} commands) and verified by reading the "
                    "manifests back")
            results = [DestinationResult("ollama", f"{self.model}:{b.tag}", digest=b.manifest_digest, manifest="put")
                       for b in builds]
            if results:
                results[0].notes.append(note)
            return results
        # Each blob is counted once, under the first tag (in push order) that references it.
        counted: set[str] = set()
        results = []
        for ref, digest in pushed.digests.items():
            build = next((b for b in builds if b.tag == ref), None) if ref != "latest" else None
            result = DestinationResult("ollama", f"{self.model}:{ref}", digest=digest,
                                       manifest="put" if ref in pushed.manifests_put else "unchanged")
            for blob in build.blobs if build else []:
                if blob.digest in counted:
                    continue
                counted.add(blob.digest)
                how = pushed.blobs.get(blob.digest)
                result.sent += how == "uploaded"
                result.unchanged += how in ("exists", "mounted")
                result.sent_bytes += pushed.bytes_sent.get(blob.digest, 0)
            results.append(result)
        return results

    def verify(self) -> list[str]:

        return verify_ollama(self.out_dir, registry=self.registry, insecure=self.insecure,
                             check_model_digest=not self.via_cli)

