"""Hugging Face Hub publisher: idempotent, resumable, verified. Every call goes through `huggingface_hub.HfApi`.

Interface (what `release publish` / `release cards --push` call):

    pub = HubPublisher(endpoint, token, hash_cache=HashCache(dist / name / "hashes.json"), progress=print)
    plan = pub.plan(artifacts, release_dir, prune_remote=False)   # reads only; sets artifact.remote
    print(plan.summary())                                          # --dry-run stops here
    result = pub.apply(plan, message=f"Release {name}")           # commits only what differs
    pub.tag(plan.repo_ids(), name)                                 # release tag on every repo
    pub.ensure_collection(title, namespace, repo_ids, description) # the release family
    # or all of the above at once (result is None when dry_run):
    plan, result = pub.publish(artifacts, release_dir, release=name, prune_remote=False, dry_run=False,
                               collection=(title, namespace, description))
    # card-only push: one README.md commit per repo that needs it
    result = pub.push_readmes(artifacts, release_dir)

endpoint: argument, else HF_ENDPOINT, else https://huggingface.co. token: argument, else HF_TOKEN, else
the client's own lookup. The token never appears in a message: every exception from the client is
turned into a RemoteError whose text is redacted.

How it stays safe:
- plan hashes local files through the HashCache (sha256 keyed by path, size, mtime) and compares them
  with the remote tree: LFS files by size + sha256, regular files by git blob sha1. Local problems
  (missing file, size or hash differing from the manifest) raise InputError before any remote call.
- apply refuses if a repo's head moved since plan; each commit carries `parent_commit` (the planned
  head, then our previous commit). LFS content is sent before any commit (`upload`), so a commit
  carries pointers, server-side copies and small files: one commit per repo (or branch) unless it
  holds more than `max_files` files or `max_regular_bytes` of inline content; then LFS-stored files
  go first, and README.md, deletions and files marked `last` ride in the last commit.
- the client does not retry the commit POST; we do, after checking whether the failed commit landed
  (head moved, its parent is ours and the tree holds the planned files) so nothing is committed twice.
- every call is retried on the Hub's transient answers (hubanswers.py): 409 "operation in progress"
  and 429 wait with backoff or as long as the Hub asks, 5xx and resets a few times; one call waits at
  most `max_wait` seconds in all (RELEASE_HUB_MAX_WAIT, default 15 minutes), each wait said in one line.
- after each commit the touched paths are read back (paths-info) and compared with the plan.
- an unchanged release makes no write request at all; a rerun after a crash re-plans and sends only
  what is missing (LFS objects already stored are skipped by the Hub's batch answer).

Against anything but huggingface.co the Xet transport is switched off (the stand-in speaks LFS).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..errors import InputError, Problem, ReleaseError, RemoteError, WorkError, describe
from ..fsutil import HashCache, sha256_file
from ..manifest import Artifact
from .hubanswers import MAX_WAIT_ENV, in_progress, max_wait_from_env, refusal, status
from .hubcommits import commit_batches, commit_operations
from .hubplan import (
    HubPlan,
    HubResult,
    PlannedFile,
    RepoPlan,
    RepoResult,
    human,
    same_content,
    short,
)
from .hubrefs import ReleaseFamily
from .redact import Redactor
from .retry import Backoff, Retries

T = TypeVar("T")

OFFICIAL_HUB = "https://huggingface.co"
PATHS_INFO_MAX = 1000
# Files per commit: the Hub recommends at most about 100 (docs/hf-hub.md §4); a v4 repo has fewer.
COMMIT_MAX_FILES = 100
NEVER_DELETE = frozenset({".gitattributes"})
DEFAULT_BACKOFF = Backoff()

__all__ = ["HubPlan", "HubPublisher", "HubResult"]


class HubPublisher(ReleaseFamily):
    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        hash_cache: HashCache | None = None,
        progress: Callable[[str], None] | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        max_wait: float | None = None,
        max_files: int = COMMIT_MAX_FILES,
        max_regular_bytes: int = 64 << 20,
        private: bool = False,
        xet: bool | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or OFFICIAL_HUB).rstrip("/")
        token = token or os.environ.get("HF_TOKEN") or None
        self._api = HfApi(endpoint=self.endpoint, token=token)
        self._redact = Redactor([token])
        with contextlib.suppress(Exception):
            from huggingface_hub import get_token

            self._redact.add(get_token())
        self.hash_cache = hash_cache if hash_cache is not None else HashCache(None)
        self._progress = progress
        self.backoff = backoff
        # Seconds one call may wait in all on the Hub's busy and rate-limit answers.
        self.max_wait = max_wait_from_env() if max_wait is None else max_wait
        self.max_files = max_files
        self.max_regular_bytes = max_regular_bytes
        self.private = private
        self._sleep = sleep
        if xet is False or (xet is None and self.endpoint != OFFICIAL_HUB):
            # The client picks Xet on its own when hf_xet is importable; nothing but the real Hub speaks it.
            constants.HF_HUB_DISABLE_XET = True

    def __repr__(self) -> str:  # HfApi's repr would show the token
        return f"HubPublisher(endpoint={self.endpoint!r})"

    # ---- plumbing -------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        if self._progress is not None:
            self._progress(self._redact(message))

    def _retries(self) -> Retries:
        return Retries(self.backoff, self.max_wait, say=self.say, sleep=self._sleep)

    def _give_up(self, what: str, why: str, retries: Retries) -> RemoteError:
        hint = "" if retries.out_of_attempts else f"set {MAX_WAIT_ENV} (seconds) to wait longer, or "
        return RemoteError(self._redact(f"{what} failed: {why}; {hint}rerun later: nothing is sent twice"))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one client call; transient answers retried (hubanswers.py); every failure a redacted RemoteError."""
        retries = self._retries()
        while True:
            try:
                return fn()
            except ReleaseError:
                raise
            except Exception as exc:
                answer = refusal(exc)
                if answer is None:
                    raise RemoteError(self._redact(f"{what} failed: {describe(exc)}")) from None
                why = retries.pause(what, answer)
                if why is not None:
                    raise self._give_up(what, why, retries) from None

    def _create(self, what: str, fn: Callable[[], T]) -> T | None:
        """A create whose 409 means "it exists" (returns None), unless the Hub says another operation is
        in progress (retried like any busy answer). The client's own exist_ok would swallow both."""
        def attempt() -> T | None:
            try:
                return fn()
            except HfHubHTTPError as exc:
                if status(exc) != 409 or in_progress(exc):
                    raise
                return None

        return self._call(what, attempt)

    def _head(self, repo: str, revision: str = "main") -> str | None:
        """Head of `revision`, or None if the repo (or that branch) does not exist."""
        def get() -> str | None:
            try:
                return self._api.model_info(repo, revision=revision).sha
            except (RepositoryNotFoundError, RevisionNotFoundError):
                return None

        return self._call(f"read {repo}" + ("" if revision == "main" else f"@{revision}"), get)

    def head(self, repo: str, revision: str = "main") -> str | None:
        return self._head(repo, revision)

    def url(self, repo: str) -> str:
        return self._url(repo)

    def branches(self, repo: str) -> dict[str, str]:
        """Branch name → head commit; empty if the repo does not exist."""
        def get() -> dict[str, str]:
            try:
                return {b.name: b.target_commit for b in self._api.list_repo_refs(repo).branches}
            except RepositoryNotFoundError:
                return {}

        return self._call(f"read branches of {repo}", get)

    def delete_branch(self, repo: str, branch: str) -> None:
        self._call(f"delete branch {branch} of {repo}", lambda: self._api.delete_branch(repo, branch=branch))

    def is_private(self, repo: str) -> bool | None:
        """The repo's visibility, or None when it does not exist (or this token cannot see it)."""
        def get() -> bool | None:
            try:
                return bool(self._api.model_info(repo).private)
            except RepositoryNotFoundError:
                return None

        return self._call(f"read {repo}", get)

    def set_private(self, repo: str, private: bool) -> bool:
        """Make `repo` private or public; True when that changed it. Read back after the change."""
        if self.is_private(repo) == private:
            return False
        self._call(f"set visibility of {repo}", lambda: self._api.update_repo_settings(repo, private=private))
        if self.is_private(repo) != private:
            raise RemoteError(f"{repo} is not {'private' if private else 'public'} after setting it so")
        self.say(f"{repo}: made {'private' if private else 'public'}")
        return True

    def delete_repo(self, repo: str) -> None:
        self._call(f"delete {repo}", lambda: self._api.delete_repo(repo, missing_ok=True))

    def download(self, repo: str, path: str, revision: str, cache_dir: Path) -> Path:
        """One file of `repo` at `revision`, through the client's cache below `cache_dir`."""
        return Path(self._call(f"download {repo}/{path}@{revision}", lambda: self._api.hf_hub_download(
            repo, path, revision=revision, cache_dir=str(cache_dir))))

    def tree(self, repo: str, revision: str) -> dict[str, Any]:
        """Every file of `repo` at `revision`: path → the client's RepoFile (size, blob_id, lfs)."""
        return self._tree(repo, revision)

    def _tree(self, repo: str, revision: str) -> dict[str, Any]:
        return self._call(f"list files of {repo}", lambda: {
            f.path: f for f in self._api.list_repo_tree(repo, recursive=True, revision=revision)
            if hasattr(f, "blob_id")
        })

    def _paths_info(self, repo: str, revision: str, paths: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i in range(0, len(paths), PATHS_INFO_MAX):
            chunk = list(paths[i:i + PATHS_INFO_MAX])
            infos = self._call(f"read back {repo}",
                               lambda chunk=chunk: self._api.get_paths_info(repo, chunk, revision=revision))
            out.update({p.path: p for p in infos if hasattr(p, "blob_id")})
        return out

    def _url(self, repo: str) -> str:
        return f"{self.endpoint}/{repo}"

    # ---- plan -----------------------------------------------------------------------------------

    def plan(
        self,
        artifacts: Iterable[Artifact],
        release_dir: Path,
        *,
        prune_remote: bool = False,
        select: Callable[[str], bool] | None = None,
        revision: str = "main",
        repo_of: Callable[[Artifact], str | None] | None = None,
    ) -> HubPlan:
        """Diff local artifacts against their repos. Reads only. Sets `artifact.remote` on each artifact.

        `select(path_in_repo)` limits the plan to some paths (card-only pushes); unselected remote files
        are ignored, never deleted. With `prune_remote`, every remote file that no given artifact
        provides is deleted (except .gitattributes): pass the whole release, not an `--only` subset.
        `revision` another than main is a branch (a job's staging area): planned against its tree, or
        against main's when the branch is still to be made. `repo_of` overrides the destination repo
        (an unpublished artifact still travels through the Hub between machines).
        """
        repo_of = repo_of or (lambda a: a.destination.repo if a.destination and a.destination.kind == "hub"
                              else None)
        hub_artifacts = [a for a in artifacts if repo_of(a)]
        local = self._local_files(hub_artifacts, Path(release_dir), select, repo_of)
        plan = HubPlan(endpoint=self.endpoint, prune_remote=prune_remote, artifacts=hub_artifacts)
        for repo, files in local.items():
            head = self._head(repo, revision)
            branch_exists = head is not None or revision == "main"
            if head is None and revision != "main":
                head = self._head(repo)  # the branch will start from main
            rp = RepoPlan(repo=repo, url=self._url(repo), exists=head is not None, head=head, revision=revision,
                          branch_exists=branch_exists)
            remote = self._tree(repo, head) if head is not None else {}
            for path, pf in sorted(files.items()):
                pf.action = "unchanged" if same_content(pf, remote.get(path)) else "upload"
                rp.files.append(pf)
            for path, rf in sorted(remote.items()):
                if path in files or (select is not None and not select(path)):
                    continue
                action = "delete" if prune_remote and path not in NEVER_DELETE else "keep"
                rp.files.append(PlannedFile(path=path, action=action, size=int(rf.size or 0),
                                            sha256=rf.lfs.sha256 if rf.lfs else None))
            plan.repos.append(rp)
            self.say(rp.summary())
        plan.annotate(hub_artifacts)
        return plan

    def _local_files(self, artifacts: list[Artifact], release_dir: Path, select: Callable[[str], bool] | None,
                     repo_of: Callable[[Artifact], str | None]) -> dict[str, dict[str, PlannedFile]]:
        problems: list[Problem] = []
        by_repo: dict[str, dict[str, PlannedFile]] = {}
        for a in artifacts:
            repo = repo_of(a)
            assert repo is not None
            try:
                validate_repo_id(repo)
                if "/" not in repo:
                    raise HFValidationError("a repo id needs a namespace: NAMESPACE/NAME")
            except HFValidationError as exc:
                problems.append(Problem(a.id, "destination.repo", f"invalid repo id {repo!r}: {exc}"))
                continue
            root = release_dir / a.root
            prefix = a.destination.path_in_repo if a.destination else ""
            for fe in a.files:
                path = posixpath.normpath(posixpath.join(prefix or "", fe.path))
                if path.startswith(("../", "/")) or path in ("..", "."):
                    problems.append(Problem(a.id, fe.path, f"path in repo escapes the repo: {path}"))
                    continue
                if select is not None and not select(path):
                    continue
                local = root / fe.path
                if not local.is_file():
                    problems.append(Problem(a.id, fe.path, f"file not found: {local}"))
                    continue
                size = local.stat().st_size
                if fe.size is not None and fe.size != size:
                    problems.append(Problem(a.id, fe.path, f"size {size} differs from the manifest's {fe.size}"))
                    continue
                sha = self.hash_cache.sha256(local)
                if fe.sha256 is not None and fe.sha256 != sha:
                    problems.append(Problem(a.id, fe.path, "sha256 differs from the manifest's (rebuild?)"))
                    continue
                fe.size, fe.sha256 = size, sha
                files = by_repo.setdefault(repo, {})
                prior = files.get(path)
                if prior is not None and prior.sha256 != sha:
                    problems.append(Problem(a.id, fe.path,
                                            f"{repo}/{path} also comes from {prior.artifact} with other content"))
                    continue
                files[path] = PlannedFile(path=path, action="upload", size=size, sha256=sha, local=local,
                                          artifact=a.id)
        self.hash_cache.save()
        if problems:
            raise InputError(problems)
        return by_repo

    # ---- apply ----------------------------------------------------------------------------------

    def upload(self, plan: HubPlan, *, rehash: bool = True) -> int:
        """Send the content of every planned upload before any commit, so that a failure while sending
        leaves every branch as it was. Each file is hashed afresh first (not through the cache: a byte
        flipped without a size or mtime change must stop the release here, before the first write).
        Returns the bytes of the files uploaded; LFS objects the Hub already holds are skipped by its
        batch answer, so a rerun after a crash sends only what is missing."""
        for rp in plan.repos:
            for pf in rp.uploads:
                self._check_local(rp.repo, pf, fresh=rehash)
        for rp in plan.repos:
            if rp.changed and not rp.uploaded:
                self._check_unmoved(rp)
        sent = 0
        for rp in plan.repos:
            lfs = [pf for pf in rp.uploads if pf.likely_lfs()]
            if rp.uploaded:
                continue
            rp.uploaded = True
            if not lfs:
                continue  # small files travel inside the commit
            self._ensure_repo(rp)
            revision = rp.revision if rp.branch_exists else "main"
            for i in range(0, len(lfs), self.max_files):
                ops = commit_operations(lfs[i:i + self.max_files])
                self._call(f"upload to {rp.repo}", lambda ops=ops, repo=rp.repo, rev=revision:
                           self._api.preupload_lfs_files(repo, additions=ops, revision=rev))
                sent += sum(f.size for f in lfs[i:i + self.max_files])
                self.say(f"{rp.repo}: uploaded {min(i + self.max_files, len(lfs))}/{len(lfs)} files")
        return sent

    def tag_target(self, repo: str, tag: str) -> str | None:
        """The commit `tag` points at in `repo`, or None."""
        def get() -> str | None:
            try:
                return {t.name: t.target_commit for t in self._api.list_repo_refs(repo).tags}.get(tag)
            except RepositoryNotFoundError:
                return None

        return self._call(f"read refs of {repo}", get)

    def apply(self, plan: HubPlan, *, message: str = "Publish release") -> HubResult:
        """Make each repo (or branch) equal to the plan: content first (`upload`), then the commits.
        Refuses (RemoteError) if a repo moved since the plan."""
        self.upload(plan, rehash=not all(rp.uploaded for rp in plan.repos if rp.uploads))
        result = HubResult()
        for rp in plan.repos:
            result.repos.append(self._apply_repo(rp, message))
            if rp.revision != "main":
                continue  # staged, not published
            covered = Counter(f.artifact for f in rp.files if f.artifact)
            for a in plan.artifacts:
                # Only artifacts planned whole: a card-only push does not publish the weights.
                if a.destination is not None and a.destination.repo == rp.repo and covered[a.id] == len(a.files):
                    a.status = "published"
        return result

    def _check_unmoved(self, rp: RepoPlan) -> None:
        """Refuse before sending anything when a repo or branch moved since the plan."""
        if not rp.exists:
            return  # _ensure_repo checks that a repo made meanwhile is empty
        head = self._head(rp.repo, rp.revision)
        if rp.branch_exists and head != rp.head:
            what = f"repo {rp.repo}" if rp.revision == "main" else f"branch {rp.revision} of {rp.repo}"
            raise RemoteError(f"{what} changed since plan: head {short(rp.head)} → {short(head)}; re-run plan")
        if not rp.branch_exists and head is not None and head != rp.head:
            raise RemoteError(f"branch {rp.revision} of {rp.repo} appeared since plan at {short(head)}; re-run plan")

    def _ensure_repo(self, rp: RepoPlan) -> str:
        """Create the repo if the plan found none; returns the head of main. Refuses if it changed."""
        head = self._head(rp.repo)
        if rp.exists:
            if head is None:
                raise RemoteError(f"repo {rp.repo} disappeared since plan; re-run plan")
            return head
        if head is None:
            self._create(f"create {rp.repo}", lambda: self._api.create_repo(rp.repo, private=self.private))
            self.say(f"{rp.repo}: created")
            head = self._head(rp.repo)
        if head is None:
            raise RemoteError(f"{rp.repo} was created but cannot be read back")
        extra = sorted(set(self._tree(rp.repo, head)) - NEVER_DELETE)
        if extra:
            raise RemoteError(f"repo {rp.repo} changed since plan: it did not exist, now holds "
                              f"{', '.join(extra[:5])}; re-run plan")
        return head

    def _apply_repo(self, rp: RepoPlan, message: str) -> RepoResult:
        res = RepoResult(repo=rp.repo, url=rp.url, head=rp.head)
        uploads, deletes, copies = rp.uploads, rp.deletes, rp.copies
        if rp.exists and rp.branch_exists and not uploads and not deletes and not copies:
            return res
        for pf in uploads:
            self._check_local(rp.repo, pf)
        main_head = self._ensure_repo(rp)
        res.created = not rp.exists
        if rp.revision == "main":
            head = main_head
            if rp.exists and head != rp.head:
                raise RemoteError(f"repo {rp.repo} changed since plan: head {short(rp.head)} → {short(head)}; "
                                  "re-run plan")
        else:
            head = self._branch(rp, main_head)
        batches = commit_batches(uploads + copies, deletes, max_files=self.max_files,
                                 max_regular_bytes=self.max_regular_bytes)
        for i, batch in enumerate(batches, 1):
            title = message if len(batches) == 1 else f"{message} ({i}/{len(batches)})"
            head = self._commit(rp.repo, batch, head, title, rp.revision)
            res.commits.append(head)
            res.files_uploaded += sum(1 for f in batch if f.action == "upload")
            res.files_deleted += sum(1 for f in batch if f.action == "delete")
            res.bytes_sent += sum(f.size for f in batch if f.action == "upload")
            self.say(f"{rp.repo}: commit {i}/{len(batches)} {short(head)} verified "
                     f"({len(batch)} files, {human(sum(f.size for f in batch if f.action == 'upload'))})")
        res.head = head
        return res

    def _branch(self, rp: RepoPlan, main_head: str) -> str:
        """The head of the plan's branch, made from main when the plan found none."""
        head = self._head(rp.repo, rp.revision)
        if rp.branch_exists:
            if head != rp.head:
                raise RemoteError(f"branch {rp.revision} of {rp.repo} changed since plan: head {short(rp.head)} "
                                  f"→ {short(head)}; re-run plan")
            assert head is not None
            return head
        if head is None:
            start = rp.head or main_head
            self._create(f"create branch {rp.revision} of {rp.repo}", lambda: self._api.create_branch(
                rp.repo, branch=rp.revision, revision=start))
            head = self._head(rp.repo, rp.revision)
        if head is None or head != (rp.head or main_head):
            raise RemoteError(f"branch {rp.revision} of {rp.repo} is at {short(head)}, not at the planned "
                              f"{short(rp.head or main_head)}; re-run plan")
        return head

    def _check_local(self, repo: str, pf: PlannedFile, *, fresh: bool = False) -> None:
        assert pf.local is not None
        if not pf.local.is_file() or pf.local.stat().st_size != pf.size:
            raise WorkError(f"{pf.local} changed since plan (for {repo}/{pf.path}); re-run plan")
        sha = sha256_file(pf.local) if fresh else self.hash_cache.sha256(pf.local)
        if sha != pf.sha256:
            raise WorkError(f"{pf.local} does not hash to what was planned for {repo}/{pf.path} (changed or "
                            "corrupt on disk); nothing was sent — rebuild it")

    def _commit(self, repo: str, batch: list[PlannedFile], parent: str, title: str, revision: str = "main") -> str:
        """One commit on top of `parent`, retried safely; returns the verified new head."""
        what = f"commit to {repo}" + ("" if revision == "main" else f"@{revision}")
        retries = self._retries()
        while True:
            try:
                info = self._api.create_commit(repo, commit_operations(batch), commit_message=title,
                                               parent_commit=parent, revision=revision)
            except Exception as exc:
                landed = self._landed(repo, parent, batch, revision)
                if landed is not None:
                    self.say(f"{repo}: commit answer lost ({describe(exc)}), but it landed as {short(landed)}")
                    return landed
                if status(exc) == 412:
                    now = self._head(repo, revision)
                    raise RemoteError(f"repo {repo} changed since plan: head {short(parent)} → {short(now)}; "
                                      "re-run plan") from None
                answer = refusal(exc)
                if answer is None:
                    raise RemoteError(self._redact(f"{what} failed: {describe(exc)}")) from None
                why = retries.pause(f"{what} (not landed)", answer)
                if why is not None:
                    raise self._give_up(what, why, retries) from None
                continue
            if info.oid == parent:
                # The client found nothing to change: the remote already holds the batch.
                if self._verify(repo, parent, batch):
                    raise RemoteError(f"{repo}: commit made no change but the files differ from the plan")
                return parent
            problems = self._verify(repo, info.oid, batch)
            if problems:
                raise RemoteError(f"{repo}: commit {short(info.oid)} does not hold what was planned: "
                                  + "; ".join(problems[:5]))
            return info.oid

    def _landed(self, repo: str, parent: str, batch: list[PlannedFile], revision: str = "main") -> str | None:
        """After a failed commit POST: our commit's sha if it landed on top of `parent`, else None."""
        head = self._head(repo, revision)
        if head is None or head == parent:
            return None
        history = self._call(f"list commits of {repo}",
                             lambda: [c.commit_id for c in self._api.list_repo_commits(repo, revision=head)])
        if parent not in history:
            raise RemoteError(f"repo {repo} changed since plan: {short(parent)} is no longer in its history "
                              f"(head {short(head)}); re-run plan")
        child = history[history.index(parent) - 1]
        if self._verify(repo, child, batch):
            return None  # someone else's commit; the caller's retry will meet a 412 and refuse
        if child != head:
            raise RemoteError(f"repo {repo} changed since plan: our commit {short(child)} landed but "
                              f"{short(head)} was committed on top; re-run plan")
        return child

    def _verify(self, repo: str, revision: str, batch: list[PlannedFile]) -> list[str]:
        """Read back the batch's paths at `revision`; the differences from the plan (empty if none)."""
        infos = self._paths_info(repo, revision, [f.path for f in batch])
        problems = []
        for f in batch:
            remote = infos.get(f.path)
            if f.action == "delete":
                if remote is not None:
                    problems.append(f"{f.path} still present")
            elif remote is None:
                problems.append(f"{f.path} missing")
            elif not same_content(f, remote):
                problems.append(f"{f.path} differs (remote size {remote.size})")
        return problems

    # ---- tags, collection, card-only push -------------------------------------------------------

    def push_readmes(self, artifacts: Iterable[Artifact], release_dir: Path, *, files: Iterable[str] = ("README.md",),
                     message: str = "Update model card") -> HubResult:
        """Card-only push: commit just the card files named in `files` (README.md, and what the caller says
        a card embeds) that differ, one commit per repo."""
        names = frozenset(files)
        plan = self.plan(artifacts, release_dir, select=lambda p: p.rsplit("/", 1)[-1] in names)
        return self.apply(plan, message=message)

    def publish(self, artifacts: Sequence[Artifact], release_dir: Path, *, release: str,
                prune_remote: bool = False, dry_run: bool = False,
                collection: tuple[str, str, str | None] | None = None) -> tuple[HubPlan, HubResult | None]:
        """plan → (stop if dry_run) → apply → tag with the release name → collection (title, namespace, description)."""
        plan = self.plan(artifacts, release_dir, prune_remote=prune_remote)
        if dry_run:
            return plan, None
        result = self.apply(plan, message=f"Release {release}")
        repos = plan.repo_ids()
        result.tags = self.tag(repos, release)
        result.notes.extend(t.note for t in result.tags if t.note)
        if collection is not None:
            title, namespace, description = collection
            result.collection = self.ensure_collection(title, namespace, repos, description)
        return plan, result
