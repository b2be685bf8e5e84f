"""The blobs of an Ollama tag, byte for byte as `ollama create` (≥ 0.32.7) writes them.

Which ollama behaviour is matched, and why:
- template / system / license: the text verbatim, no newline added.
- params: a map of typed api.Options values (ints, float32s, bools, string lists), written with Go's
  json.Encoder (sorted keys, HTML escapes, trailing newline). Values are typed from their Modelfile
  text exactly as ollama's client does, so the bytes equal what `ollama create -f Modelfile` makes.
- messages: a list of {role, content} (the other api.Message fields are omitempty), json.Encoder.
- config: ollama's ConfigV2 field order, without the `rootfs` that ollama dropped in v0.32.7;
  `model_type` is HumanNumber(sum of all tensor element counts), as ollama overwrites
  general.parameter_count with that sum before it fills the config.
- gemma4 defaults: with an unset renderer or parser, ollama sets it to "gemma4", and adds
  `stop ["<turn|>"]` only when no stop parameter was given at all.
- model blob: the GGUF verbatim (what ollama < 0.30 pushed). Ollama ≥ 0.30 rewrites the GGUF through
  its bundled llama-quantize in COPY mode first; those bytes depend on the llama.cpp version bundled
  with that ollama build and cannot be reproduced without the binary. Keeping our exact GGUF means the
  pushed model digest equals the sha256 of the GGUF on Hugging Face, so anyone can check one against
  the other; every other blob and the manifest follow the current format.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .gojson import OMIT, Float32, Struct, encode, marshal

MT_MODEL = "application/vnd.ollama.image.model"
MT_TEMPLATE = "application/vnd.ollama.image.template"
MT_SYSTEM = "application/vnd.ollama.image.system"
MT_LICENSE = "application/vnd.ollama.image.license"
MT_PARAMS = "application/vnd.ollama.image.params"
MT_MESSAGES = "application/vnd.ollama.image.messages"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

# api.Options fields by JSON name → Go kind. Deprecated ones are accepted by ollama with a warning.
PARAM_KINDS: dict[str, str] = {
    "num_keep": "int", "seed": "int", "num_predict": "int", "top_k": "int", "top_p": "float32",
    "min_p": "float32", "typical_p": "float32", "repeat_last_n": "int", "temperature": "float32",
    "repeat_penalty": "float32", "presence_penalty": "float32", "frequency_penalty": "float32",
    "stop": "strings", "num_ctx": "int", "num_batch": "int", "num_gpu": "int", "main_gpu": "int",
    "use_mmap": "bool", "num_thread": "int",
    "mirostat": "int", "mirostat_tau": "float32", "mirostat_eta": "float32", "penalize_newline": "bool",
    "use_mlock": "bool", "low_vram": "bool", "f16_kv": "bool", "logits_all": "bool", "vocab_only": "bool",
}
# ollama's Modelfile reader warns about these and leaves them out of the params blob entirely.
DEPRECATED_PARAMS = frozenset({"penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock",
                               "mirostat", "mirostat_tau", "mirostat_eta"})

# Architectures for which `ollama create` fills in its built-in renderer and parser (server/create.go).
DEFAULT_RENDERER = {"gemma4": "gemma4", "laguna": "laguna", "nemotron_h": "nemotron-3-nano",
                    "nemotron_h_moe": "nemotron-3-nano", "nemotron_h_omni": "nemotron-3-nano"}
DEFAULT_STOP = {"gemma4": ["<turn|>"]}


@dataclass(frozen=True)
class Blob:
    """One layer (or the config) as it appears in a manifest."""

    media_type: str
    digest: str  # "sha256:<64 hex>"
    size: int

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]

    def descriptor(self) -> Struct:
        # manifest.Layer: mediaType, digest, size, then `from` and `name` (both omitempty, unused here).
        return Struct((("mediaType", self.media_type), ("digest", self.digest), ("size", self.size)))


# ---- parameter typing -------------------------------------------------------------------------

def param_text(value: Any) -> list[str]:
    """The Modelfile text(s) of one parameter value (a list gives one PARAMETER line per item)."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int | float):
        return [repr(value)]
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [v for item in value for v in param_text(item)]
    raise TypeError(type(value).__name__)


_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def type_param(name: str, texts: Sequence[str]) -> Any:
    """Type a parameter from its Modelfile text(s) as ollama's api.FormatParams does.

    Raises ValueError with ollama's reason when ollama would refuse it.
    """
    kind = PARAM_KINDS.get(name)
    if kind is None:
        raise ValueError(f"unknown parameter {name!r}")
    if kind == "strings":
        return list(texts)
    if len(texts) != 1:
        raise ValueError(f"parameter {name!r} takes one value, got {len(texts)}")
    text = texts[0]
    if kind == "int":
        try:
            v = int(text, 10)
        except ValueError:
            raise ValueError(f"invalid int value {text!r}") from None
        if not -(1 << 63) <= v < (1 << 63):
            raise ValueError(f"int value {text!r} out of range")
        return v
    if kind == "float32":
        try:
            f = float(text)
        except ValueError:
            raise ValueError(f"invalid float value {text!r}") from None
        import numpy as np  # lazy: numpy (≈0.1 s) only when a float32 parameter is read, not at start-up

        f32 = float(np.float32(f))
        if math.isinf(f32) and not math.isinf(f):
            raise ValueError(f"float value {text!r} out of range")
        if math.isnan(f32) or math.isinf(f32):
            raise ValueError(f"float value {text!r} cannot be stored")
        return Float32(f32)
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ValueError(f"invalid bool value {text!r}")


def typed_params(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Spec parameters → the typed map ollama stores (ValueError naming the key on a bad value)."""
    out: dict[str, Any] = {}
    for name, value in parameters.items():
        if name in DEPRECATED_PARAMS:
            continue
        try:
            out[name] = type_param(name, param_text(value))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}: {exc}") from None
    return out


# ---- blob bodies --------------------------------------------------------------------------------

def params_blob(typed: Mapping[str, Any]) -> bytes:
    return encode(dict(typed))


def messages_blob(messages: Sequence[Mapping[str, str]]) -> bytes:
    return encode([Struct((("role", m["role"]), ("content", m["content"]))) for m in messages])


def human_number(n: int) -> str:
    """ollama's format.HumanNumber: what the config's model_type and ollama.com show ("19.9B")."""
    if n >= 1_000_000_000_000:
        x = n / 1_000_000_000_000
        return f"{x:.0f}T" if x == math.floor(x) else f"{x:.1f}T"
    if n >= 1_000_000_000:
        x = n / 1_000_000_000
        return f"{x:.0f}B" if x == math.floor(x) else f"{x:.1f}B"
    if n >= 1_000_000:
        x = n / 1_000_000
        return f"{x:.0f}M" if x == math.floor(x) else f"{x:.2f}M"
    if n >= 1_000:
        return f"{n / 1000:.0f}K"
    return str(n)


def config_blob(*, family: str, model_type: str, file_type: str, renderer: str | None = None,
                parser: str | None = None, requires: str | None = None) -> bytes:
    """ollama's ConfigV2 for a GGUF import (fields in declaration order, empties omitted)."""
    fields = Struct((
        ("model_format", "gguf"),
        ("model_family", family),
        ("model_families", [family]),
        ("model_type", model_type),
        ("file_type", file_type),
        ("renderer", renderer or OMIT),
        ("parser", parser or OMIT),
        ("requires", requires or OMIT),
        ("architecture", "amd64"),
        ("os", "linux"),
    ))
    return encode(fields)


def manifest_value(config: Blob, layers: Sequence[Blob]) -> Struct:
    return Struct((
        ("schemaVersion", 2),
        ("mediaType", MT_MANIFEST),
        ("config", config.descriptor()),
        ("layers", [b.descriptor() for b in layers]),
    ))


def manifest_registry_bytes(config: Blob, layers: Sequence[Blob]) -> bytes:
    """What `ollama push` PUTs (json.Marshal, no newline): its sha256 is the digest users see."""
    return marshal(manifest_value(config, layers))


def manifest_disk_bytes(config: Blob, layers: Sequence[Blob]) -> bytes:
    """What `ollama create` writes into the local store (json.Encoder, trailing newline)."""
    return encode(manifest_value(config, layers))


# ---- GGUF facts ---------------------------------------------------------------------------------

@dataclass
class KVShape:
    """What a rough KV-cache estimate needs, read from GGUF metadata (None when absent)."""

    n_layers: int
    n_kv_heads: list[int]  # per layer
    key_length: int
    value_length: int
    sliding_window: int | None = None
    swa_layers: list[bool] | None = None  # per layer: True = sliding-window attention
    key_length_swa: int | None = None
    value_length_swa: int | None = None


@dataclass
class GGUFFacts:
    path: Path
    size: int
    architecture: str
    file_type: int
    file_type_name: str
    parameter_count: int
    context_length: int | None
    kv: KVShape | None


def file_type_name(ftype: int) -> str | None:
    """llama.cpp's name of general.file_type.

    Ollama names the types it knows the same way; for the ones an older ollama does not know (the
    IQ* family shows as "unknown" there) we still write the real name, so the page never shows an
    unknown file type. That is the one place the config may differ from `ollama create`'s.
    """
    import gguf

    ftype &= ~int(gguf.LlamaFileType.GUESSED)
    if ftype == 4:
        return "MXFP4"  # ollama's own id for MXFP4 (llama.cpp later gave MXFP4_MOE 38)
    try:
        name = gguf.LlamaFileType(ftype).name
    except ValueError:
        return None
    name = name.removeprefix("MOSTLY_").removeprefix("ALL_")
    return "MXFP4" if name == "MXFP4_MOE" else name


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return None
    try:
        return f.contents()
    except Exception:  # an unreadable optional field is treated as absent
        return None


def facts_to_json(facts: GGUFFacts) -> dict[str, Any]:
    """GGUFFacts without the path: what another machine needs to build a tag on this GGUF."""
    from dataclasses import asdict

    d = asdict(facts)
    d["path"] = facts.path.name
    return d


def facts_from_json(d: dict[str, Any]) -> GGUFFacts:
    kv = d.get("kv")
    return GGUFFacts(**{**d, "path": Path(d["path"]), "kv": KVShape(**kv) if kv else None})


def read_gguf_facts(path: Path) -> GGUFFacts:
    """Header facts of one GGUF file (memory-mapped; tensor data is never read)."""
    import gguf

    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as exc:
        raise InputError(f"not a readable GGUF file: {exc}", file=str(path)) from exc
    arch = _field(reader, "general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InputError("missing", file=str(path), field="general.architecture")
    ftype = _field(reader, "general.file_type")
    if not isinstance(ftype, int):
        raise InputError("missing (ollama would show an unknown file type)", file=str(path),
                         field="general.file_type")
    name = file_type_name(ftype)
    if name is None:
        raise InputError(f"unknown file type {ftype} (ollama would show it as unknown)", file=str(path),
                         field="general.file_type")
    if _field(reader, "split.count") not in (None, 0, 1):
        raise InputError("a split GGUF cannot be one Ollama model blob; build this tier unsplit",
                         file=str(path), field="split.count")
    n_params = sum(int(t.n_elements) for t in reader.tensors)
    ctx = _field(reader, f"{arch}.context_length")
    return GGUFFacts(path=path, size=path.stat().st_size, architecture=arch, file_type=ftype,
                     file_type_name=name, parameter_count=n_params,
                     context_length=int(ctx) if isinstance(ctx, int) else None, kv=_kv_shape(reader, arch))


def _kv_shape(reader: Any, arch: str) -> KVShape | None:
    n_layers = _field(reader, f"{arch}.block_count")
    heads_kv = _field(reader, f"{arch}.attention.head_count_kv")
    heads = _field(reader, f"{arch}.attention.head_count")
    embd = _field(reader, f"{arch}.embedding_length")
    if not isinstance(n_layers, int):
        return None
    if heads_kv is None:
        heads_kv = heads
    if isinstance(heads_kv, int):
        heads_kv = [heads_kv] * n_layers
    if not isinstance(heads_kv, list) or len(heads_kv) != n_layers:
        return None
    key_len = _field(reader, f"{arch}.attention.key_length")
    val_len = _field(reader, f"{arch}.attention.value_length")
    if not isinstance(key_len, int):
        if isinstance(embd, int) and isinstance(heads, int) and heads:
            key_len = embd // heads
        else:
            return None
    if not isinstance(val_len, int):
        val_len = key_len
    window = _field(reader, f"{arch}.attention.sliding_window")
    pattern = _field(reader, f"{arch}.attention.sliding_window_pattern")
    swa = [bool(x) for x in pattern] if isinstance(pattern, list) and len(pattern) == n_layers else None
    k_swa = _field(reader, f"{arch}.attention.key_length_swa")
    v_swa = _field(reader, f"{arch}.attention.value_length_swa")
    return KVShape(n_layers=n_layers, n_kv_heads=[int(h) for h in heads_kv], key_length=key_len,
                   value_length=val_len, sliding_window=window if isinstance(window, int) else None,
                   swa_layers=swa, key_length_swa=k_swa if isinstance(k_swa, int) else None,
                   value_length_swa=v_swa if isinstance(v_swa, int) else None)
