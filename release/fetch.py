"""The base checkpoint: generated (demo), a local folder, or downloaded from the Hub at the pinned
revision into the standard Hugging Face cache, with every file checked against the Hub's size and
sha256."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from pathlib import Path

from .demo import generate_tiny_gemma4, is_current
from .errors import InputError, RemoteError, describe, disk_full
from .fsutil import HashCache
from .publish.redact import Redactor
from .spec.load import Release
from .spec.readers import read_json_object

# What a checkpoint needs; anything else in the base repo (READMEs, original/ folders …) is skipped.
CHECKPOINT_PATTERNS = ("*.safetensors", "*.json", "*.jinja", "tokenizer*", "*.model", "*.tiktoken", "*.txt",
                       "LICENSE*", "NOTICE*")
EXCLUDED_DIRS = ("original/",)


def _wanted(path: str) -> bool:
    if path.startswith(EXCLUDED_DIRS) or "/" in path:
        return False
    return any(fnmatch.fnmatch(path, p) for p in CHECKPOINT_PATTERNS)


def ensure_base(release: Release, *, endpoint: str | None = None, token: str | None = None,
                hash_cache: HashCache | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Return a folder holding the base checkpoint, generating or downloading it when needed."""
    base = release.definition.base
    local = release.base_path
    if base.generator:
        assert local is not None

        if not is_current(local):
            if progress:
                progress(f"generating the demo base model into {local}")
            generate_tiny_gemma4(local)
        _check_recorded_config(release, local)
        return local
    if local is not None and (local / "config.json").is_file():
        return local
    return download_base(release, endpoint=endpoint, token=token, hash_cache=hash_cache, progress=progress)


def _check_recorded_config(release: Release, folder: Path) -> None:
    """The generated folder is what the generator writes (its stamp says so, file by file), so a
    difference means the recorded config no longer describes the generated model."""
    rel = release.definition.base.config
    recorded = read_json_object(release.path(rel), release.display(rel))
    actual = read_json_object(folder / "config.json", f"{folder}/config.json")
    if recorded != actual:
        raise InputError(f"differs from the config.json the demo generator writes ({folder}/config.json); it "
                         f"records the generated model: restore it from git, or, if the generator changed, copy "
                         f"that config.json over it", file=release.display(rel))


def download_base(release: Release, *, endpoint: str | None = None, token: str | None = None,
                  hash_cache: HashCache | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """snapshot_download at the pinned revision, then check each file against the Hub's metadata."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    base = release.definition.base
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    redact = Redactor([token or os.environ.get("HF_TOKEN", "")])
    api = HfApi(endpoint=endpoint, token=token)
    where = f"{base.repo}@{base.revision}"
    host = (endpoint or "https://huggingface.co").split("://", 1)[-1].split("/", 1)[0]
    try:
        info = api.model_info(base.repo, revision=base.revision, files_metadata=True)
    except RevisionNotFoundError as exc:
        raise RemoteError(f"base revision {base.revision} of {base.repo} no longer resolves; pin a revision "
                          f"that exists (release.toml: base.revision)") from exc
    except RepositoryNotFoundError as exc:
        raise RemoteError(f"base repo {base.repo} not found (or not accessible with this token)") from exc
    except HfHubHTTPError as exc:
        raise RemoteError(redact(f"cannot read {where}: {exc}")) from exc
    except Exception as exc:  # transport failures: refused, reset, timed out, no DNS
        raise RemoteError(redact(f"reading the base model {where} from {host} failed: {describe(exc)}")) from None
    if info.sha and info.sha != base.revision:
        raise RemoteError(f"{where} resolved to commit {info.sha}; pin the full commit sha")
    expected = {s.rfilename: s for s in info.siblings or [] if _wanted(s.rfilename)}
    if not any(name.endswith(".safetensors") for name in expected):
        raise RemoteError(f"{where} has no safetensors weights")
    if progress:
        total = sum(s.size or 0 for s in expected.values())
        progress(f"downloading {len(expected)} files ({total / 1e9:.2f} GB) of {where}")
    try:
        folder = Path(snapshot_download(base.repo, revision=base.revision, allow_patterns=sorted(expected),
                                        endpoint=endpoint, token=token))
    except HfHubHTTPError as exc:
        raise RemoteError(redact(f"download of {where} failed: {exc}")) from exc
    except Exception as exc:
        if disk_full(exc):
            raise  # said as such by the command line, never retried
        raise RemoteError(redact(f"downloading the base model {where} from {host} failed: {describe(exc)}")) \
            from None
    cache = hash_cache or HashCache(None)
    for name, sibling in sorted(expected.items()):
        path = folder / name
        if not path.is_file():
            raise RemoteError(f"{where}: {name} missing after download")
        size = path.stat().st_size
        if sibling.size is not None and size != sibling.size:
            raise RemoteError(f"{where}: {name} is {size} bytes, the Hub says {sibling.size}")
        lfs = sibling.lfs
        if lfs is not None and cache.sha256(path) != lfs.sha256:
            raise RemoteError(f"{where}: {name} sha256 differs from the Hub's ({lfs.sha256}); "
                              "delete it from the Hugging Face cache and retry")
    cache.save()
    return folder
