"""The generated demo base and its stamp (issue 13, item 3): the stamp `.base.demo.json` vouches for the
folder's exact files, so it cannot outlive them; a deleted or edited base is generated again, and the
error about a recorded config that differs says what is true."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from release.cli import cli
from release.demo import generate_tiny_gemma4, is_current
from release.errors import InputError
from release.fetch import ensure_base
from release.spec.load import load_release

ROOT = Path(__file__).resolve().parents[1]
STAMP = ".base.demo.json"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_tiny_gemma4(tmp_path_factory.mktemp("gen") / "base")


@pytest.fixture
def pipeline(tmp_path: Path, generated: Path) -> Path:
    folder = tmp_path / "pipelines" / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", STAMP))
    shutil.copytree(generated, folder / "base")
    shutil.copy(generated.with_name(STAMP), folder / STAMP)
    return folder


def test_build_after_deleting_the_base_generates_it_again(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines" / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", STAMP))
    dist = tmp_path / "dist"
    args = ["build", str(folder), "--only", "bf16", "--dist", str(dist), "--force"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert (folder / STAMP).is_file() and (folder / "base" / "config.json").is_file()

    shutil.rmtree(folder / "base")  # what the old error text told users to do; the stamp stays
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert second.exception is None or isinstance(second.exception, SystemExit), second.exception
    assert (folder / "base" / "config.json").is_file()
    assert is_current(folder / "base")


def test_stamp_does_not_outlive_its_folder(pipeline: Path) -> None:
    base = pipeline / "base"
    assert is_current(base)
    shutil.rmtree(base)
    assert not is_current(base)
    assert not (pipeline / STAMP).exists(), "a stamp without its folder is removed"


def test_an_edited_base_is_not_current_and_is_generated_again(pipeline: Path) -> None:
    base = pipeline / "base"
    cfg = base / "tokenizer_config.json"
    original = cfg.read_bytes()
    cfg.write_bytes(original.replace(b'"padding_side": "left"', b'"padding_side": "rite"'))
    assert len(cfg.read_bytes()) == len(original), "same size: only the content tells"
    assert not is_current(base)
    ensure_base(load_release(str(pipeline)))
    assert cfg.read_bytes() == original and is_current(base)


def test_recorded_config_that_differs_is_reported_truthfully(pipeline: Path) -> None:
    recorded = pipeline / "base-config.json"
    data = json.loads(recorded.read_text())
    data["text_config"]["final_logit_softcapping"] = 31.0
    recorded.write_text(json.dumps(data, indent=2))
    release = load_release(str(pipeline))
    with pytest.raises(InputError) as err:
        ensure_base(release)
    message = str(err.value)
    assert message.startswith("demo/base-config.json: differs from the config.json the demo generator writes")
    assert "restore it from git" in message and "delete the folder" not in message
    # Deleting the folder does not help, and the message never said it would.
    shutil.rmtree(pipeline / "base")
    with pytest.raises(InputError, match=r"differs from the config\.json the demo generator writes"):
        ensure_base(release)
    shutil.copy(pipeline / "base" / "config.json", recorded)  # what the message offers
    assert ensure_base(load_release(str(pipeline))) == pipeline.resolve() / "base"
