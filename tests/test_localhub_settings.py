"""The stand-in's visibility, repo deletion and collection deletion, through the unmodified client: a
private repo is hidden from other tokens and anonymous readers until its owner makes it public."""

from __future__ import annotations

from pathlib import Path

import pytest
from hubfixtures import NAMESPACE, TOKEN
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from release.localhub import LocalHub

pytest_plugins = ["hubfixtures"]  # local_hub, hub_env


def test_visibility_and_deletions(local_hub: LocalHub, tmp_path: Path) -> None:
    owner = HfApi(endpoint=local_hub.url, token=TOKEN)
    anonymous = HfApi(endpoint=local_hub.url, token=False)
    repo = f"{NAMESPACE}/hidden"
    owner.create_repo(repo, private=True)
    assert owner.model_info(repo).private is True
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info(repo)

    owner.update_repo_settings(repo, private=False)
    assert anonymous.model_info(repo).private is False
    with pytest.raises(HfHubHTTPError) as refused:
        anonymous.update_repo_settings(repo, private=True)
    assert refused.value.response.status_code == 401

    coll = owner.create_collection("scratch", namespace=NAMESPACE, private=True)
    owner.delete_collection(coll.slug)
    assert [c.slug for c in owner.list_collections(owner=NAMESPACE)] == []

    owner.delete_repo(repo)
    assert not owner.repo_exists(repo)
    owner.delete_repo(repo, missing_ok=True)  # a second delete is not an error with missing_ok
