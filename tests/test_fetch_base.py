"""The flow starts from the base model on the Hub: downloaded at the pinned revision into the
Hugging Face cache, each file checked against the Hub's size and sha256 (stand-in Hub)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants

from release.errors import RemoteError
from release.fetch import download_base
from release.fsutil import sha256_file
from release.localhub import LocalHub
from release.spec.load import load_release

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_fetch_test_token_0123456789"
BASE_REPO = "demo/tiny-gemma4-8e"


@pytest.fixture(scope="module")
def demo_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from release.demo import generate_tiny_gemma4

    return generate_tiny_gemma4(tmp_path_factory.mktemp("base") / "base")


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    h = LocalHub(tmp_path / "hub", tokens={TOKEN: ["demo"]})
    url = h.start()
    yield h, url
    h.stop()


def _pipeline(tmp_path: Path, revision: str) -> Path:
    folder = tmp_path / "pipelines" / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    toml = folder / "release.toml"
    text = toml.read_text()
    text = re.sub(r'revision = "[0-9a-f]{40}"', f'revision = "{revision}"', text)
    text = text.replace('path = "base"\n', "").replace('generator = "tiny-gemma4"\n', "")
    toml.write_text(text)
    return folder


def test_download_checks_every_file_and_is_cached(hub, demo_base: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    h, url = hub
    api = HfApi(endpoint=url, token=TOKEN)
    api.create_repo(BASE_REPO)
    (demo_base / "README.md").write_text("not needed by the checkpoint\n")
    commit = api.upload_folder(repo_id=BASE_REPO, folder_path=demo_base)
    revision = commit.oid
    release = load_release(str(_pipeline(tmp_path, revision)))

    folder = download_base(release, endpoint=url, token=TOKEN)
    names = {p.name for p in folder.iterdir()}
    assert "README.md" not in names, "only the files a checkpoint needs are downloaded"
    for p in demo_base.iterdir():
        if p.name != "README.md":
            assert sha256_file(folder / p.name) == sha256_file(p), p.name
    assert str(folder).startswith(str(tmp_path / "hf-cache")), "the standard Hugging Face cache is used"

    h.log.clear()
    again = download_base(release, endpoint=url, token=TOKEN)
    assert again == folder
    assert not [r for r in h.log.records() if r.method == "GET" and "/resolve/" in r.path and r.status == 200], \
        "a second fetch downloads nothing"

    # A cached file that no longer matches the Hub's sha256 stops the release.
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[100] ^= 1
    shard.resolve().write_bytes(bytes(data))
    with pytest.raises(RemoteError, match="sha256 differs"):
        download_base(release, endpoint=url, token=TOKEN)


def test_revision_that_no_longer_resolves(hub, demo_base: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, url = hub
    api = HfApi(endpoint=url, token=TOKEN)
    api.create_repo(BASE_REPO)
    api.upload_folder(repo_id=BASE_REPO, folder_path=demo_base)
    release = load_release(str(_pipeline(tmp_path, "1" * 40)))
    with pytest.raises(RemoteError, match="no longer resolves") as info:
        download_base(release, endpoint=url, token=TOKEN)
    assert TOKEN not in str(info.value)
