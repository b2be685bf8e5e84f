"""`release cards` and `release preview` end to end through the command line: cards and preview
written, a new scores.json shows up in the cards, a dangling link from the definition exits 2 naming
card and link with nothing written, and `--push` makes one README commit per Hub repo (none when
unchanged) against the stand-in Hub on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import HfApi, constants
from huggingface_hub.utils import disable_progress_bars

from release.cli import cli

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
TOKEN = "hf_cardsTESTtoken_5b2f0c"


@pytest.fixture
def pipes(tmp_path: Path) -> Path:
    for name in ("v4", "v3", "v5-coder"):
        shutil.copytree(PIPELINES / name, tmp_path / "pipelines" / name, ignore=shutil.ignore_patterns("base"))
    return tmp_path / "pipelines"


def _run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_cards_command_writes_cards_and_preview(pipes, tmp_path):
    dist = tmp_path / "dist"
    r = _run("cards", str(pipes / "v4"), "--dist", str(dist), "--json")
    assert r.exit_code == 0, r.output
    paths = json.loads(r.output[r.output.index("{"):])["cards"]
    assert set(paths) == {"card:bf16", "card:gguf", "card:nvfp4", "card:ollama"}
    gguf = dist / "v4" / "cards" / "gguf" / "README.md"
    assert "| GPQA Diamond | 198 | flex | 73.23 | 69.19 | −4.04 |" in gguf.read_text()
    assert (dist / "v4" / "preview" / "index.html").is_file()

    scores = pipes / "v4" / "scores.json"
    scores.write_text(scores.read_text().replace('"variant": 69.19', '"variant": 70.71'))
    r = _run("cards", str(pipes / "v4"), "--dist", str(dist))
    assert r.exit_code == 0, r.output
    assert "| GPQA Diamond | 198 | flex | 73.23 | 70.71 | −2.52 |" in gguf.read_text()


def test_preview_command(pipes, tmp_path):
    r = _run("preview", str(pipes / "v4"), "--dist", str(tmp_path / "dist"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "dist" / "v4" / "preview" / "ollama-cd-q3-k-m.html").is_file()


def test_dangling_link_from_definition_exits_2(pipes, tmp_path):
    toml = pipes / "v4" / "release.toml"
    toml.write_text(toml.read_text() + '\n[cards.extra]\nnvfp4 = "Also see [our mirror](https://huggingface.co/nobody/mirror)."\n')
    dist = tmp_path / "dist"
    r = CliRunner().invoke(cli, ["cards", str(pipes / "v4"), "--dist", str(dist)])
    assert r.exit_code == 2, r.output
    assert "card:nvfp4" in r.output and "https://huggingface.co/nobody/mirror" in r.output
    assert not (dist / "v4" / "cards").exists()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    from release.localhub import LocalHub

    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    disable_progress_bars()
    h = LocalHub(tmp_path / "hub", {TOKEN: ["ManniX-ITA"]})
    h.start()
    try:
        yield h
    finally:
        h.stop()


def test_card_only_push(pipes, tmp_path, hub):
    dist = tmp_path / "dist"
    env = {"HF_TOKEN": TOKEN}
    args = ["cards", str(pipes / "v4"), "--dist", str(dist), "--push", "--hub-endpoint", hub.url, "--json"]
    r = _run(*args, env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["commits"] == 3  # BF16, GGUF, NVFP4; no Ollama push API
    api = HfApi(endpoint=hub.url, token=TOKEN)
    for kind, repo in (("bf16", "ManniX-ITA/gemma-4-A4B-98e-v4-it"), ("gguf", "ManniX-ITA/gemma-4-A4B-98e-v4-it-GGUF"),
                       ("nvfp4", "ManniX-ITA/gemma-4-A4B-98e-v4-NVFP4A16")):
        remote = Path(api.hf_hub_download(repo, "README.md", cache_dir=tmp_path / "dl")).read_text()
        assert remote == (dist / "v4" / "cards" / kind / "README.md").read_text()
        assert TOKEN not in remote
        files = [f for f in api.list_repo_files(repo) if f != ".gitattributes"]  # the Hub adds that one
        assert files == ["README.md"]  # only the card, no weights
    r = _run(*args, env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["commits"] == 0  # unchanged: nothing committed
