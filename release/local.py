"""Local rehearsal targets for `release publish --local`: the stand-in Hub and Debian's
`docker-registry`, both on 127.0.0.1, with state kept under `dist/<name>/local/` so a rerun sees what
the previous run published (and sends nothing)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import WorkError
from .procs import child_preexec

REGISTRY_BINARY = "docker-registry"
PREFERRED_REGISTRY_PORT = 5000


def free_port(preferred: int = 0) -> int:
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise WorkError("no free port on 127.0.0.1")


@dataclass
class LocalRegistry:
    url: str
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def registry_binary() -> str | None:
    return shutil.which(REGISTRY_BINARY) or (f"/usr/bin/{REGISTRY_BINARY}"
                                             if os.path.exists(f"/usr/bin/{REGISTRY_BINARY}") else None)


def start_registry(workdir: Path, *, port: int = 0, attempts: int = 3) -> LocalRegistry:
    """Start `docker-registry serve` on 127.0.0.1 (anonymous push/pull, deletes enabled).

    A free port can be taken between our probe and the registry's bind (parallel test workers start
    registries at once), so a failed start is retried on another port.
    """
    for attempt in range(attempts):
        try:
            return _start_registry(workdir, port=port if attempt == 0 else 0)
        except WorkError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _start_registry(workdir: Path, *, port: int) -> LocalRegistry:
    exe = registry_binary()
    if exe is None:
        raise WorkError(f"{REGISTRY_BINARY} is not installed (apt-get install docker-registry)")
    port = port or free_port()
    root = workdir / "storage"
    root.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(workdir / "registry.log", "ab")  # noqa: SIM115 - kept open for the process's lifetime
    proc = subprocess.Popen([exe, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=child_preexec)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/v2/", timeout=1) as resp:
            if resp.status == 200:
                return LocalRegistry(url=url, root=root, proc=proc)
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = (workdir / "registry.log").read_text(errors="replace")[-1000:]
            raise WorkError(f"{REGISTRY_BINARY} did not start on {url}: {tail}")
        time.sleep(0.05)


@dataclass
class LocalTargets:
    hub_url: str
    hub_token: str
    registry_url: str | None  # None: no registry binary; tags stay in the local Ollama store


@contextlib.contextmanager
def local_targets(workdir: Path, namespace: str, *, registry: bool = True) -> Iterator[LocalTargets]:
    """Run the rehearsal Hub (and a registry when installed) for the duration of a publish."""
    from .localhub import LocalHub  # lazy: the stand-in Hub (yaml) only for --local

    workdir.mkdir(parents=True, exist_ok=True)
    token_file = workdir / "hub-token"
    if not token_file.exists():
        token_file.write_text("hf_local_" + secrets.token_hex(16))
        token_file.chmod(0o600)
    token = token_file.read_text().strip()
    hub = LocalHub(workdir / "hub", tokens={token: [namespace]})
    hub_url = hub.start()
    reg: LocalRegistry | None = None
    try:
        if registry and registry_binary():
            reg = start_registry(workdir / "registry", port=free_port(PREFERRED_REGISTRY_PORT))
        yield LocalTargets(hub_url=hub_url, hub_token=token, registry_url=reg.url if reg else None)
    finally:
        if reg is not None:
            reg.stop()
        hub.stop()
