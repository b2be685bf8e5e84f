"""A real OCI registry for the Ollama tests: Debian's `docker-registry` on 127.0.0.1.

`docker-registry serve` runs with a temporary config and storage on a free loopback port, and is
stopped when the test session ends. Without the binary the tests are skipped on a developer machine
and fail under CI (CI=true), where `.ci/run` must install the Debian package `docker-registry`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BINARY = "docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Registry:
    url: str
    root: Path
    proc: subprocess.Popen

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]


def start_registry(workdir: Path) -> Registry:
    # The free port can be taken between our probe and the registry's bind (xdist workers start
    # registries at the same time): try a few ports.
    for attempt in range(3):
        try:
            return _start_registry(workdir / f"try{attempt}")
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_registry(workdir: Path) -> Registry:
    exe = shutil.which(BINARY) or (f"/usr/bin/{BINARY}" if os.path.exists(f"/usr/bin/{BINARY}") else None)
    if exe is None:
        msg = f"{BINARY} not installed (apt-get install -y docker-registry)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    port = free_port()
    root = workdir / "storage"
    root.mkdir(parents=True)
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(workdir / "registry.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([exe, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v2/", timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"docker-registry did not start: {(workdir / 'registry.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return Registry(url=url, root=root, proc=proc)


def stop_registry(reg: Registry) -> None:
    reg.proc.terminate()
    try:
        reg.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        reg.proc.kill()
        reg.proc.wait()


@pytest.fixture(scope="session", name="registry")
def registry_fixture() -> Iterator[Registry]:
    """One registry for the session; tests use distinct repository names."""
    workdir = Path(tempfile.mkdtemp(prefix="ollama-registry-"))
    reg = start_registry(workdir)
    try:
        yield reg
    finally:
        stop_registry(reg)
        shutil.rmtree(workdir, ignore_errors=True)
