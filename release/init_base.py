"""What `release init` reads of a base model: its config, chat template, generation defaults, card
metadata and parameter count — from a local checkpoint folder, or from the Hub (small files only: the
weights are fetched when a build needs them)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, RemoteError, describe
from .families import Family, for_config
from .prune.safetensors_header import read_header
from .publish.redact import Redactor
from .spec.names import hub_repo_problem

# A folder of the Hugging Face cache: …/models--ORG--NAME/snapshots/SHA — it says which repo and commit it is.
_CACHE_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<sha>[0-9a-f]{40})$")
_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
OPTIONAL_FILES = ("tokenizer_config.json", "chat_template.jinja", "generation_config.json", "README.md",
                  "model.safetensors.index.json")


@dataclass
class BaseModel:
    repo: str  # "" when a local folder does not say which repo it is
    revision: str  # the commit sha, "" when unknown
    config: dict[str, Any]
    config_bytes: bytes
    family: Family
    local: Path | None = None  # the checkpoint folder, when it is on this machine
    chat_template: str = ""
    generation: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)  # the model card's YAML metadata (license, pipeline_tag)
    parameters: int | None = None

    @property
    def short_name(self) -> str:
        """The repo's name, or the folder's: what the release's repos are named after."""
        return self.repo.split("/")[-1] if self.repo else (self.local.name if self.local else "model")


def read_base(base: str, *, revision: str | None, endpoint: str | None, token: str | None) -> BaseModel:
    """The base named by `--base`: a checkpoint folder on this machine, else a Hub repo id."""
    folder = Path(base).expanduser()
    if folder.is_dir():
        if revision:
            raise InputError("a revision pins a Hub repo; a local folder is the checkpoint it holds", file="--revision")
        return _read_local(folder.resolve())
    if hub_repo_problem(base) is not None or base.startswith((".", "/", "~")):
        raise InputError(f"{base!r} is neither a checkpoint folder on this machine nor a Hub repo id (namespace/name)",
                         file="--base")
    return _read_hub(base, revision or "main", endpoint, token)


def _read_local(folder: Path) -> BaseModel:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InputError("no config.json: not a Hugging Face checkpoint folder", file=str(folder))
    raw = config_path.read_bytes()
    config = _json_object(raw, str(config_path))
    family = for_config(config, file=str(config_path))
    texts = {name: (folder / name).read_bytes() for name in OPTIONAL_FILES if (folder / name).is_file()}
    snapshot = _CACHE_SNAPSHOT.search(folder.as_posix())
    repo = f"{snapshot['org']}/{snapshot['name']}" if snapshot else ""
    base = BaseModel(repo=repo, revision=snapshot["sha"] if snapshot else "", config=config, config_bytes=raw,
                     family=family, local=folder)
    _fill(base, texts, str(folder))
    base.parameters = _local_parameters(folder)
    return base


def _read_hub(repo: str, revision: str, endpoint: str | None, token: str | None) -> BaseModel:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    token = token or os.environ.get("HF_TOKEN") or None
    redact = Redactor([token or ""])
    where = f"{repo}@{revision}"
    api = HfApi(endpoint=endpoint, token=token)
    try:
        info = api.model_info(repo, revision=revision)
    except RevisionNotFoundError:
        raise InputError(f"{repo} has no revision {revision!r}", file="--revision") from None
    except RepositoryNotFoundError:
        raise InputError(f"no Hub repo {repo!r} (or not readable with this token)", file="--base") from None
    except HfHubHTTPError as exc:
        raise RemoteError(redact(f"cannot read {where}: {exc}")) from exc
    except Exception as exc:  # transport failures: refused, reset, timed out, no DNS
        raise RemoteError(redact(f"reading {where} failed: {describe(exc)}")) from None
    sha = info.sha or ""
    names = {s.rfilename for s in info.siblings or []}
    if "config.json" not in names:
        raise InputError(f"{where} has no config.json: not a Hugging Face checkpoint", file="--base")
    texts: dict[str, bytes] = {}
    for name in ("config.json", *OPTIONAL_FILES):
        if name not in names:
            continue
        try:
            path = hf_hub_download(repo, name, revision=sha or revision, endpoint=endpoint, token=token)
        except EntryNotFoundError:
            continue
        except HfHubHTTPError as exc:
            raise RemoteError(redact(f"cannot download {name} of {where}: {exc}")) from exc
        except Exception as exc:
            raise RemoteError(redact(f"downloading {name} of {where} failed: {describe(exc)}")) from None
        texts[name] = Path(path).read_bytes()
    raw = texts.pop("config.json")
    config = _json_object(raw, f"{repo}/config.json")
    family = for_config(config, file=f"{repo}/config.json")
    base = BaseModel(repo=repo, revision=sha, config=config, config_bytes=raw, family=family)
    _fill(base, texts, repo)
    safetensors = getattr(info, "safetensors", None)
    base.parameters = getattr(safetensors, "total", None) or _index_parameters(texts, config)
    return base


def _json_object(raw: bytes, shown: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not valid JSON: {exc}", file=shown) from None
    if not isinstance(data, dict):
        raise InputError("not a JSON object", file=shown)
    return data


def _fill(base: BaseModel, texts: dict[str, bytes], shown: str) -> None:
    """Chat template, generation defaults and card metadata from the small files there are."""
    if "chat_template.jinja" in texts:
        base.chat_template = texts["chat_template.jinja"].decode("utf-8", "replace")
    elif "tokenizer_config.json" in texts:
        try:
            template = json.loads(texts["tokenizer_config.json"]).get("chat_template")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            template = None
        if isinstance(template, list):  # named templates: the default one
            template = next((t.get("template") for t in template if isinstance(t, dict)
                             and t.get("name") == "default"), None)
        base.chat_template = template if isinstance(template, str) else ""
    if "generation_config.json" in texts:
        try:
            generation = json.loads(texts["generation_config.json"])
            base.generation = generation if isinstance(generation, dict) else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            base.generation = {}
    if "README.md" in texts:
        base.card = card_metadata(texts["README.md"].decode("utf-8", "replace"))


def card_metadata(readme: str) -> dict[str, Any]:
    """The model card's YAML front matter (license, license_name, license_link, pipeline_tag …), or {}."""
    import yaml

    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", readme, re.S)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _local_parameters(folder: Path) -> int | None:
    """Parameters of the checkpoint, counted from its safetensors headers (exact; no weight is read)."""
    total = 0
    for f in sorted(folder.glob("*.safetensors")):
        try:
            total += sum(e.numel for e in read_header(f).entries)
        except (InputError, OSError):
            return None
    return total or None


def _index_parameters(texts: dict[str, bytes], config: dict[str, Any]) -> int | None:
    """Parameters from the shard index's total size and the checkpoint's dtype (an estimate when the
    checkpoint mixes dtypes)."""
    if "model.safetensors.index.json" not in texts:
        return None
    try:
        size = json.loads(texts["model.safetensors.index.json"])["metadata"]["total_size"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return None
    dtype = config.get("dtype") or config.get("torch_dtype") or "bfloat16"
    per = _DTYPE_BYTES.get(str(dtype))
    return int(size) // per if isinstance(size, int) and per else None


def token_owner(endpoint: str | None, token: str | None) -> str | None:
    """The namespace HF_TOKEN belongs to (the Hub's whoami), or None without a token or an answer."""
    if not token:
        return None
    from huggingface_hub import HfApi

    try:
        name = HfApi(endpoint=endpoint, token=token).whoami().get("name")
    except Exception:  # no answer is no owner: init marks it a placeholder
        return None
    return name if isinstance(name, str) and name else None
