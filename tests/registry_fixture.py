"""A real OCI registry for the tests: Debian's `docker-registry` on 127.0.0.1 (release.local).

Without the binary the tests are skipped on a developer machine and fail under CI (CI=true), where
`.ci/run` installs the Debian package `docker-registry`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from release.local import LocalRegistry, registry_binary
from release.local import start_registry as _start

Registry = LocalRegistry


def start_registry(workdir: Path) -> Registry:
    if registry_binary() is None:
        msg = "docker-registry not installed (apt-get install -y docker-registry)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return _start(workdir)


def stop_registry(reg: Registry) -> None:
    reg.stop()


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
