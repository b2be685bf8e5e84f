"""The `--via-ollama-cli` path, tested WITHOUT the real ollama binary (not installable here).

A FAKE `ollama` shell script on PATH records its arguments; it does not create or push anything.
What is tested for real: the commands and their order, the Modelfiles they point at, the exit-code
handling, and the read-back verification against the real docker-registry — including the case the
real CLI has (exit 0 without pushing), which must fail.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from ollama_helpers import make_release
from registry_fixture import Registry, registry_fixture  # noqa: F401 - registers the `registry` fixture

from release.errors import NotAvailable, RemoteError, WorkError
from release.ollama import modelfile
from release.ollama.build import build_tags
from release.ollama.cli_path import ollama_name, publish_via_cli
from release.ollama.registry import RegistryClient, push_tags

FAKE = """#!/bin/sh
# FAKE ollama for tests: records arguments, does nothing else.
echo "$@" >> "{log}"
if [ "$1" = "create" ] && [ -n "$FAIL_CREATE" ]; then echo "Error: bad template" >&2; exit 1; fi
exit 0
"""


@pytest.fixture
def fake_ollama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "ollama-args.log"
    exe = bindir / "ollama"
    exe.write_text(FAKE.format(log=log))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_names() -> None:
    assert ollama_name("https://registry.ollama.ai", "mannix/m", "Q4_K_M") == "mannix/m:Q4_K_M"
    assert ollama_name("http://127.0.0.1:5000", "mannix/m", "Q6_K") == "127.0.0.1:5000/mannix/m:Q6_K"


def test_commands_and_exit_zero_without_push_is_caught(registry: Registry, tmp_path: Path,
                                                        fake_ollama: Path) -> None:
    section, ggufs, pipeline = make_release(tmp_path)
    builds = build_tags(section, ggufs, tmp_path / "ollama", pipeline_dir=pipeline)
    with pytest.raises(RemoteError, match="reported success but the registry does not serve"):
        publish_via_cli(builds, model="cli/nopush", registry=registry.url, latest="Q4_K_M")
    lines = fake_ollama.read_text().splitlines()
    host = registry.host
    assert lines[0] == f"create {host}/cli/nopush:Q4_K_M -f {builds[0].modelfile}"
    assert lines[3] == f"cp {host}/cli/nopush:Q4_K_M {host}/cli/nopush:latest"
    assert lines[4:] == [f"push --insecure {host}/cli/nopush:{t}" for t in ("Q4_K_M", "Q6_K", "CD-Q3_K_M", "latest")]
    assert modelfile.parse(Path(builds[0].modelfile).read_text()).from_.endswith("demo-Q4_K_M.gguf")


def test_verified_when_the_registry_has_the_tags(registry: Registry, tmp_path: Path, fake_ollama: Path) -> None:
    section, ggufs, pipeline = make_release(tmp_path)
    builds = build_tags(section, ggufs, tmp_path / "ollama", pipeline_dir=pipeline)
    # Stand in for what a working `ollama push` leaves behind.
    push_tags(RegistryClient(registry.url), "cli/pushed", builds, "Q4_K_M")
    result = publish_via_cli(builds, model="cli/pushed", registry=registry.url, latest="Q4_K_M")
    assert len(result.commands) == 3 + 1 + 4


def test_failures(tmp_path: Path, fake_ollama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section, ggufs, pipeline = make_release(tmp_path)
    builds = build_tags(section, ggufs, tmp_path / "ollama", pipeline_dir=pipeline)
    monkeypatch.setenv("FAIL_CREATE", "1")
    with pytest.raises(WorkError, match=r"ollama create.*bad template"):
        publish_via_cli(builds, model="cli/x", registry="http://127.0.0.1:9", latest=None)
    with pytest.raises(NotAvailable, match="not installed"):
        publish_via_cli(builds, model="cli/x", registry="http://127.0.0.1:9", latest=None,
                        ollama="ollama-not-here")
