"""`--via-ollama-cli`: publish with the real `ollama` binary, then verify by reading manifests back.

Use it where the binary is installed and `ollama serve` runs with the signing key in *its* user's
~/.ollama/ (the server, not the CLI, signs pushes). What differs from the direct path:
- ollama ≥ 0.30 rewrites the GGUF (llama-quantize COPY) → the model blob digest is not our GGUF's
  sha256, and older ollama adds `rootfs` to the config; so the read-back compares every other layer
  byte for byte and checks the config's facts (file_type, renderer, parser) instead of its digest.
- `ollama push` to ollama.com exits 0 without pushing when not signed in; only the read-back tells.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NotAvailable, RemoteError, WorkError
from .build import TagBuild
from .registry import RegistryClient, verify_tags
from .store import DEFAULT_HOST, registry_host

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


def ollama_name(registry: str, model: str, tag: str) -> str:
    """The name the CLI needs: `ns/model:tag` for ollama.com, `host[:port]/ns/model:tag` elsewhere."""
    host = registry_host(registry)
    return f"{model}:{tag}" if host == DEFAULT_HOST else f"{host}/{model}:{tag}"


@dataclass
class CliResult:
    commands: list[list[str]] = field(default_factory=list)


def _default_runner(args: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


def publish_via_cli(builds: list[TagBuild], *, model: str, registry: str, latest: str | None,
                    insecure: bool = False, ollama: str = "ollama", client: RegistryClient | None = None,
                    key_path: Path | str | None = None, run: Runner | None = None) -> CliResult:
    """`ollama create -f` + `ollama push` for every tag (and `cp` + push of :latest), then verify."""
    exe = shutil.which(ollama)
    if exe is None:
        raise NotAvailable(f"the `{ollama}` binary is not installed (https://ollama.com/download); "
                           f"publish without --via-ollama-cli to use the built-in registry client")
    runner = run or _default_runner
    plain_http = registry.startswith("http://")
    result = CliResult()

    def call(*args: str) -> None:
        cmd = [exe, *args]
        result.commands.append(cmd)
        proc = runner(cmd)
        if proc.returncode != 0:
            # The CLI's output names models and files only; the last lines are enough to act on.
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-5:])
            raise WorkError(f"`ollama {args[0]}` failed (exit {proc.returncode}): {tail}")

    for b in builds:
        call("create", ollama_name(registry, model, b.tag), "-f", str(Path(b.modelfile)))
    refs = [b.tag for b in builds]
    if latest:
        call("cp", ollama_name(registry, model, latest), ollama_name(registry, model, "latest"))
        refs.append("latest")
    for ref in refs:
        call("push", *(["--insecure"] if insecure or plain_http else []), ollama_name(registry, model, ref))
    reader = client or RegistryClient(registry, insecure=insecure, key_path=key_path)
    problems = verify_tags(reader, model, builds, latest, deep=True, check_model_digest=False)
    if problems:
        raise RemoteError("`ollama push` reported success but the registry does not serve the tags "
                          "(not signed in? key not linked to the account?):\n  " + "\n  ".join(problems))
    return result
