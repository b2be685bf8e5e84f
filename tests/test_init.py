"""`release init DIR --base REPO_OR_PATH`: a new release from a base model that `release check` accepts
(placeholders marked, for check to warn about) and `release plan` plans — from the demo's generated base
on this machine, and from a tiny Qwen3-MoE checkpoint on the stand-in Hub (small files only fetched, the
revision pinned to its commit, the owner the token's). Bad input is one error, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from hubfixtures import NAMESPACE, TOKEN, hub_env, local_hub  # noqa: F401
from model_factory import make_checkpoint

from release.cli import cli
from release.demo import generate_tiny_gemma4
from release.localhub import LocalHub

MARK = "# PLACEHOLDER"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def demo_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_tiny_gemma4(tmp_path_factory.mktemp("demo") / "gemma-4-tiny-it")


def check_and_plan(folder: Path, dist: Path) -> dict:
    code, stdout, stderr = run("check", str(folder))
    assert code == 0, stdout + stderr
    code, stdout, stderr = run("plan", str(folder), "--dist", str(dist), "--json")
    assert code == 0, stdout + stderr
    return json.loads(stdout)


def test_init_from_the_demo_base(demo_base: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines" / "tiny-6e"
    code, stdout, stderr = run("init", str(folder), "--base", str(demo_base), "--owner", "someone", "--json")
    assert code == 0, stdout + stderr
    made = json.loads(stdout)
    assert made["family"] == "gemma4" and made["experts"] == 8 and made["experts_kept"] == 6
    assert (folder / "base-config.json").read_bytes() == (demo_base / "config.json").read_bytes()
    toml = (folder / "release.toml").read_text()
    for line in ('repo = "someone/gemma-4-tiny-it-6e-GGUF"', 'renderer = "gemma4"', "path_outside = true",
                 f'path = "{demo_base}"', 'model = "someone/gemma-4-tiny-it-6e"', "top_k = 64"):
        assert line in toml, line
    # what only a person can give is marked, and listed
    marked = {line.split("=")[0].strip() for line in toml.splitlines() if MARK in line and not line.startswith("#")}
    assert marked == {"summary", "license", "repo", "revision", "experts_kept"}
    assert set(made["placeholders"]) >= {"release.summary", "base.revision", "prune.experts_kept", "dropmap.json",
                                         "calibration.txt", "heldout.txt", "scores.json"}
    for text in ("heldout.txt", "calibration.txt"):
        assert (folder / text).read_text().startswith(MARK)
    assert json.loads((folder / "dropmap.json").read_text())["source"].startswith("PLACEHOLDER")
    assert (folder / "ollama" / "template.gotmpl").read_text().startswith("{{- if or .System .Tools }}")
    manifest = check_and_plan(folder, tmp_path / "dist")
    ids = {a["id"]: a for a in manifest["artifacts"]}
    assert {"bf16", "gguf:Q4_K_M", "gguf:imatrix", "nvfp4", "ollama:Q4_K_M", "quality:Q4_K_M"} <= set(ids)
    # check accepts the result and warns about each placeholder; a publish refuses them before any work
    code, stdout, stderr = run("check", str(folder), "--json")
    warned = " ".join(json.loads(stdout)["warnings"])
    for field in ("release.summary", "base.revision", "prune.experts_kept", "heldout.txt", "calibration.txt",
                  "dropmap.json"):
        assert field in warned, field
    code, stdout, stderr = run("publish", str(folder), "--dist", str(tmp_path / "dist"))
    assert code == 2 and "PLACEHOLDER" in stderr.upper(), stdout + stderr
    assert not (tmp_path / "dist" / "tiny-6e" / "bf16").exists()
    assert ids["nvfp4"]["facts"]["size"] and ids["bf16"]["facts"]["size"]


def test_init_derive_makes_the_drop_map_in_the_release(demo_base: Path, tmp_path: Path) -> None:
    folder = tmp_path / "derived"
    code, stdout, stderr = run("init", str(folder), "--base", str(demo_base), "--derive", "--experts-kept", "5")
    assert code == 0, stdout + stderr
    assert not (folder / "dropmap.json").exists()
    assert sorted(p.name for p in (folder / "calibration").iterdir()) == ["chat.txt", "code.txt"]
    toml = (folder / "release.toml").read_text()
    assert "[dropmap]\nderive = true" in toml and "experts_kept = 5\n" in toml
    manifest = check_and_plan(folder, tmp_path / "dist")
    assert "dropmap" in {a["id"] for a in manifest["artifacts"]}


@pytest.fixture
def qwen_on_hub(local_hub: LocalHub, tmp_path: Path) -> tuple[str, str]:  # noqa: F811
    """A tiny Qwen3-MoE checkpoint (tokenizer and chat template included) in a repo of the stand-in Hub."""
    from huggingface_hub import HfApi

    src = make_checkpoint("qwen3_moe", tmp_path / "qwen-src", dtype=torch.bfloat16)
    (src / "README.md").write_text("---\nlicense: apache-2.0\npipeline_tag: text-generation\n---\n# tiny\n")
    api = HfApi(endpoint=local_hub.url, token=TOKEN)
    repo = f"{NAMESPACE}/Tiny-Qwen3-MoE"
    api.create_repo(repo)
    sha = api.upload_folder(repo_id=repo, folder_path=src).oid
    return repo, sha


def test_init_from_a_hub_repo(qwen_on_hub: tuple[str, str], local_hub: LocalHub, tmp_path: Path) -> None:  # noqa: F811
    repo, sha = qwen_on_hub
    folder = tmp_path / "qwen-6e"
    env = {"HF_TOKEN": TOKEN}
    code, stdout, stderr = run("init", str(folder), "--base", repo, "--hub-endpoint", local_hub.url,
                               "--experts-kept", "6", env=env)
    assert code == 0, stdout + stderr
    toml = (folder / "release.toml").read_text()
    for line in (f'repo = "{repo}"', f'revision = "{sha}"', 'license = "apache-2.0"', f'owner = "{NAMESPACE}"',
                 'pipeline_tag = "text-generation"', 'tags = ["qwen3_moe", "moe", "expert-pruning"]',
                 f'repo = "{NAMESPACE}/Tiny-Qwen3-MoE-6e-NVFP4A16"', "experts_kept = 6\n"):
        assert line in toml, line
    assert "path =" not in toml, "a Hub base is fetched when a build needs it"
    # the chat format is not one init knows: the template is marked, the base's Jinja kept beside it
    assert f'template = "ollama/template.gotmpl"  {MARK}' in toml
    assert (folder / "ollama" / "chat_template.jinja").read_text().startswith("{{ bos_token }}")
    # only small files were fetched
    fetched = [r.path for r in local_hub.log.records(route="resolve")]
    assert fetched and not any(p.endswith(".safetensors") for p in fetched), fetched
    manifest = check_and_plan(folder, tmp_path / "dist")
    assert next(a for a in manifest["artifacts"] if a["id"] == "nvfp4")["facts"]["size"]
    # --revision pins what it names
    code, _, stderr = run("init", str(tmp_path / "pinned"), "--base", repo, "--revision", sha, "--hub-endpoint",
                          local_hub.url, env=env)
    assert code == 0, stderr
    assert f'revision = "{sha}"' in (tmp_path / "pinned" / "release.toml").read_text()


def test_init_refusals_write_nothing(demo_base: Path, local_hub: LocalHub, tmp_path: Path) -> None:  # noqa: F811
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    not_moe = tmp_path / "bert"
    not_moe.mkdir()
    (not_moe / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    cases = [
        (["init", str(taken), "--base", str(demo_base)], "exists and is not an empty folder"),
        (["init", str(tmp_path / "a"), "--base", str(not_moe)], "model_type: unsupported MoE architecture 'bert'"),
        (["init", str(tmp_path / "b"), "--base", str(tmp_path / "nowhere")], "neither a checkpoint folder"),
        (["init", str(tmp_path / "c"), "--base", str(demo_base), "--experts-kept", "8"], "fewer than the base's 8"),
        (["init", str(tmp_path / "d"), "--base", f"{NAMESPACE}/no-such-model", "--hub-endpoint", local_hub.url],
         "no Hub repo"),
        (["init", str(tmp_path / "Bad Name!"), "--base", str(demo_base), "--name", "Bad Name!"], "lowercase"),
    ]
    for args, message in cases:
        code, stdout, stderr = run(*args, "--json")
        assert code == 2, (args, stdout, stderr)
        assert message in json.loads(stdout)["error"]["message"], (args, stdout)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in ("hub", "hf_home")) == ["bert", "taken"], \
        "a refused init left something behind"
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    shutil.rmtree(taken)


def test_init_leaves_out_nvfp4_for_a_family_the_writer_refuses(tmp_path: Path) -> None:
    """gpt-oss stores its experts [E, H, 2·I], which the NVFP4 writer refuses: init writes no [nvfp4] (check
    would refuse it), and the rest of the release checks."""
    base = make_checkpoint("gpt_oss", tmp_path / "base", dtype=torch.bfloat16)
    folder = tmp_path / "oss"
    code, stdout, stderr = run("init", str(folder), "--base", str(base), "--owner", "someone")
    assert code == 0, stdout + stderr
    toml = (folder / "release.toml").read_text()
    assert "[nvfp4]" not in toml and "[gguf]" in toml and "[bf16]" in toml
    code, stdout, stderr = run("check", str(folder))
    assert code == 0, stdout + stderr
