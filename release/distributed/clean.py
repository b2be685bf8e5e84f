"""`release clean NAME --staging`: delete every staging branch of a release on every destination repo.

Every branch whose name starts with `release-<name>-` goes: this run's units, earlier runs' (a plan that
has changed since, a job id of an older tool), and the promotion record `release-<name>-finish`. Run it
once the release's git tag is pushed (the workflow does), or to abandon a half-staged release. Main,
tags and the collection are left alone; a second run finds nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..spec.load import Release
from .records import staging_prefix

if TYPE_CHECKING:
    from ..publish.hub import HubPublisher


def release_repos(release: Release) -> list[str]:
    """Every Hub repo a release stages on (each unit stages in one of its destinations)."""
    d = release.definition
    return sorted({s.repo for s in (d.bf16, d.gguf, d.nvfp4) if s is not None})


def clean_staging(release: Release, pub: HubPublisher, *, dry_run: bool = False) -> list[tuple[str, str]]:
    """(repo, branch) of every staging branch removed (or, with `dry_run`, that would be)."""
    prefix = staging_prefix(release.name)
    removed = []
    for repo in release_repos(release):
        for branch in sorted(pub.branches(repo)):
            if branch.startswith(prefix):
                if not dry_run:
                    pub.delete_branch(repo, branch)
                removed.append((repo, branch))
    return removed
