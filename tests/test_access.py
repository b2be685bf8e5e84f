"""Credentials and access first: a missing or refused token, a token without write on a destination
namespace, a host that does not resolve, a registry that does not answer — each fails in seconds with
one line naming it, exit 1, before anything is built or fetched (DIST stays empty), for publish, a dry
run, a job, finish and `check --remote`. The real whoami-v2 shapes (write, read, fine-grained tokens,
org roles) decide what a token may write."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import NEEDS_REGISTRY, ROOT

from release.access import HubIdentity
from release.local import start_registry
from release.localhub import LocalHub

GOOD = "hf_access_good_token_0123456789"
OTHER = "hf_access_other_namespace_0123456789"  # valid, but for another user's namespace
WRONG = "hf_access_wrong_token_0123456789"
FAST_S = 15.0  # one line in seconds (a Python start-up and a few loopback requests, on a loaded machine)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    h = LocalHub(tmp_path_factory.mktemp("hub"), tokens={GOOD: ["demo"], OTHER: ["someone-else"]})
    h.start()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if NEEDS_REGISTRY["condition"]:
        pytest.skip(NEEDS_REGISTRY["reason"])
    r = start_registry(tmp_path_factory.mktemp("registry"))
    yield r.url
    r.stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pipelines") / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    return folder


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket closes


def run(args: list[str], token: str | None, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT", "OLLAMA_KEY")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_XET="1", COLUMNS="200")  # no saved token either
    if token is not None:
        env["HF_TOKEN"] = token
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    return proc, time.monotonic() - start


COMMANDS = {
    "publish": ["publish"],
    "dry-run": ["publish", "--dry-run"],
    "job": ["publish", "--job", "prepare"],
    "finish": ["publish", "--finish"],
    "check": ["check", "--remote"],
}
CASES = {
    "wrong token": (WRONG, None, "HF_TOKEN is not a valid token"),
    "no write on the namespace": (OTHER, None, "may not write to demo"),
    "missing token": (None, None, "no Hugging Face token: set HF_TOKEN"),
    "host does not resolve": (GOOD, "http://no-such-host.invalid", "cannot resolve no-such-host.invalid"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_in_seconds_with_nothing_built(case: str, hub: LocalHub, registry: str, demo: Path,
                                               tmp_path: Path) -> None:
    token, endpoint, expected = CASES[case]
    for name, command in COMMANDS.items():
        dist = tmp_path / f"dist-{name}"
        hub.log.clear()
        args = [command[0], str(demo), *command[1:], "--hub-endpoint", endpoint or hub.url,
                "--ollama-registry", registry] + ([] if command[0] == "check" else ["--dist", str(dist)])
        proc, seconds = run(args, token, tmp_path)
        assert proc.returncode == 1, (name, proc.returncode, proc.stderr[-2000:])
        assert seconds < FAST_S, (name, seconds)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and expected in lines[0], (name, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr and (token is None or token not in proc.stdout + proc.stderr)
        assert not dist.exists(), f"{name}: {case} wrote {sorted(p.name for p in dist.rglob('*'))}"
        assert not hub.log.writes(), name
        assert not (demo / "base").exists(), "the demo base was generated"


def test_a_token_that_may_write_passes_and_names_what_it_checked(hub: LocalHub, registry: str, demo: Path,
                                                                 tmp_path: Path) -> None:
    proc, _ = run(["check", str(demo), "--remote", "--hub-endpoint", hub.url, "--ollama-registry", registry], GOOD,
                  tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "token of user demo, a write token; may write demo" in proc.stdout
    assert f"Ollama registry {registry}: may push demo/tiny-gemma4-6e" in proc.stdout
    assert GOOD not in proc.stdout + proc.stderr


def test_a_registry_that_does_not_answer_is_refused_in_seconds(hub: LocalHub, demo: Path, tmp_path: Path) -> None:
    for args in (["check", str(demo), "--remote"], ["publish", str(demo), "--finish", "--dist", str(tmp_path / "d")]):
        proc, seconds = run([*args, "--hub-endpoint", hub.url, "--ollama-registry", _closed_port()], GOOD, tmp_path)
        assert proc.returncode == 1 and seconds < FAST_S, (args, seconds, proc.stderr[-2000:])
        assert "error:" in proc.stderr and "127.0.0.1" in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "d").exists()


def test_usage_errors_come_before_any_load(tmp_path: Path) -> None:
    """`--job finish` is a usage error (exit 2) even for a release that does not exist: nothing is loaded."""
    proc, _ = run(["publish", "no-such-release", "--job", "finish"], None, tmp_path)
    assert proc.returncode == 2 and "--finish" in proc.stderr and "no-such-release" not in proc.stderr, proc.stderr
    proc, _ = run(["publish", "no-such-release", "--hub-max-wait", "-5"], None, tmp_path)
    assert proc.returncode == 2 and "--hub-max-wait" in proc.stderr
    proc, _ = run(["clean", "no-such-release"], None, tmp_path)
    assert proc.returncode == 2 and "--staging" in proc.stderr


# whoami-v2 answers as the Hub gives them (a fine-grained token's `scoped` entries, org roles).
FINE_GRAINED = {
    "type": "user", "id": "66", "name": "alice", "fullname": "Alice", "isPro": False,
    "orgs": [{"type": "org", "name": "acme", "roleInOrg": "write"}, {"type": "org", "name": "readers",
                                                                     "roleInOrg": "read"}],
    "auth": {"type": "access_token", "accessToken": {
        "displayName": "ci", "role": "fineGrained", "fineGrained": {
            "canReadGatedRepos": True, "global": ["discussion.write"],
            "scoped": [
                {"entity": {"_id": "1", "type": "user", "name": "alice"},
                 "permissions": ["repo.content.read", "repo.write", "collection.write"]},
                {"entity": {"_id": "2", "type": "org", "name": "acme"}, "permissions": ["repo.content.read"]},
                {"entity": {"_id": "3", "type": "model", "name": "acme/one-repo"}, "permissions": ["repo.write"]},
                {"entity": {"_id": "4", "type": "org", "name": "readers"}, "permissions": ["repo.write"]},
            ]}}},
}


def test_what_a_token_may_write() -> None:
    fine = HubIdentity.from_whoami(FINE_GRAINED)
    assert fine.may_write("alice/model") and fine.may_write_collection("alice")
    assert fine.may_write("acme/one-repo") and not fine.may_write("acme/other")  # scoped to one repo only
    assert not fine.may_write_collection("acme")
    assert not fine.may_write("readers/model"), "a token cannot exceed its user's read role in the org"
    assert not fine.may_write("bob/model")

    write = HubIdentity.from_whoami({**FINE_GRAINED, "auth": {"type": "access_token", "accessToken": {
        "displayName": "w", "role": "write"}}})
    assert write.may_write("alice/x") and write.may_write("acme/x") and write.may_write_collection("acme")
    assert not write.may_write("readers/x") and not write.may_write("bob/x")

    read = HubIdentity.from_whoami({**FINE_GRAINED, "auth": {"type": "access_token", "accessToken": {
        "displayName": "r", "role": "read"}}})
    assert not read.may_write("alice/x") and read.known
