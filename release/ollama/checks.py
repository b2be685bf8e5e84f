"""Warnings for `release check` about an `[ollama]` section: things ollama accepts but users regret.

Each warning is one line saying what, why and what to do. None of them stops a release (errors,
such as an unknown parameter, are raised by `build.load_inputs` as InputError).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import layers as L
from .build import OllamaSectionLike

GIB = 1 << 30
# Compute buffers, CUDA context and the output layer's scratch are not in the GGUF size or the KV
# cache; ~0.75 GiB is what llama.cpp-based runners typically add for a model of this class.
RUNTIME_OVERHEAD = int(0.75 * GIB)
GEMMA4_STOPS = ("<turn|>", "<|tool_response>")


def kv_cache_bytes(num_ctx: int, kv: L.KVShape, bytes_per_elem: int = 2) -> int:
    """Rough f16 KV cache of a llama.cpp runner: per layer, K and V for every cached token.

    Sliding-window layers cache at most their window. Ollama's default f16 cache is assumed
    (OLLAMA_KV_CACHE_TYPE=q8_0 halves it).
    """
    total = 0
    for i in range(kv.n_layers):
        swa = bool(kv.swa_layers and kv.swa_layers[i])
        tokens = min(num_ctx, kv.sliding_window) if swa and kv.sliding_window else num_ctx
        k = kv.key_length_swa if swa and kv.key_length_swa else kv.key_length
        v = kv.value_length_swa if swa and kv.value_length_swa else kv.value_length
        total += tokens * kv.n_kv_heads[i] * (k + v) * bytes_per_elem
    return total


def kv_shape_from_hf_config(config: Mapping[str, Any]) -> L.KVShape | None:
    """KV shape from a transformers config.json (text_config when nested), for checks before a build.

    Understands per-layer `layer_types` ("sliding_attention" / "full_attention") and Gemma 4's separate
    global-layer geometry (`global_head_dim`, `num_global_key_value_heads`).
    """
    c = config.get("text_config", config)
    n = c.get("num_hidden_layers")
    heads = c.get("num_attention_heads")
    if not isinstance(n, int) or not isinstance(heads, int):
        return None
    kv_heads = c.get("num_key_value_heads") or heads
    head_dim = c.get("head_dim") or (c["hidden_size"] // heads if c.get("hidden_size") else None)
    if not head_dim:
        return None
    types = c.get("layer_types")
    window = c.get("sliding_window")
    swa = [t == "sliding_attention" for t in types] if isinstance(types, list) and len(types) == n else None
    if swa is None or not window:
        return L.KVShape(n_layers=n, n_kv_heads=[kv_heads] * n, key_length=head_dim, value_length=head_dim)
    g_dim = c.get("global_head_dim") or head_dim
    g_heads = c.get("num_global_key_value_heads") or kv_heads
    return L.KVShape(n_layers=n, n_kv_heads=[kv_heads if s else g_heads for s in swa], key_length=g_dim,
                     value_length=g_dim, sliding_window=window, swa_layers=swa, key_length_swa=head_dim,
                     value_length_swa=head_dim)


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def check_warnings(section: OllamaSectionLike, *, family: str | None = None,
                   gguf_files: Mapping[str, Path] | None = None,
                   hf_config: Mapping[str, Any] | None = None) -> list[str]:
    """Warnings for the section; `gguf_files` (tier → file) sharpen them when the GGUFs exist.

    Before a build, `family` ("gemma4") and the model's `hf_config` (config.json as a dict) stand in:
    the KV cache is then estimated from the config and compared with the VRAM the card names.
    """
    warnings: list[str] = []
    params: dict[str, Any] = dict(section.parameters or {})
    facts: dict[str, L.GGUFFacts] = {}
    for tier, path in (gguf_files or {}).items():
        if Path(path).is_file():
            try:
                facts[tier] = L.read_gguf_facts(Path(path))
            except Exception as exc:  # a bad GGUF is the build's error to report; here we only skip it
                warnings.append(f"ollama: cannot read {path} for checks: {exc}")
    families = {f.architecture for f in facts.values()} or ({family} if family else set())

    # Stop tokens: ollama adds its gemma4 default stop only when the Modelfile sets none at all.
    if "gemma4" in families and "stop" in params:
        stops = params["stop"] if isinstance(params["stop"], list) else [params["stop"]]
        missing = [s for s in GEMMA4_STOPS if s not in stops]
        if missing:
            warnings.append(
                f"ollama.parameters.stop: a custom stop list replaces ollama's gemma4 default ['<turn|>']; "
                f"it lacks {', '.join(missing)} — without '<turn|>' generation runs past the end of the turn, "
                f"without '<|tool_response>' the model writes the tool's answer itself after a tool call")

    for name in params:
        if name in L.DEPRECATED_PARAMS:
            warnings.append(f"ollama.parameters.{name}: deprecated; `ollama create` drops it from the "
                            f"tag's parameters (so does this build)")

    # num_ctx baked into params overrides ollama's VRAM-based default for everyone.
    num_ctx = params.get("num_ctx")
    if isinstance(num_ctx, int) and not isinstance(num_ctx, bool):
        ctxs = {f.context_length for f in facts.values() if f.context_length}
        if ctxs and num_ctx > min(ctxs):
            warnings.append(f"ollama.parameters.num_ctx: {num_ctx} exceeds the model's context length "
                            f"{min(ctxs)} (GGUF {'/'.join(sorted(families))}.context_length); the model was not "
                            f"trained for it and ollama reserves KV cache it cannot use")
        for tag, tier in section.tags.items():
            vram = (section.vram_gb or {}).get(tag)
            f = facts.get(tier)
            if vram is None:
                continue
            pre_kv = kv_shape_from_hf_config(hf_config) if hf_config and (f is None or f.kv is None) else None
            if pre_kv is not None:
                kv = kv_cache_bytes(num_ctx, pre_kv)
                if kv > 0.25 * vram * GIB:
                    warnings.append(
                        f"ollama.parameters.num_ctx: {num_ctx} baked into {tag} needs an f16 KV cache of "
                        f"≈{_gib(kv)} (from config.json) on top of the weights, on the {vram} GB the card names; "
                        f"a baked num_ctx overrides ollama's VRAM-based default (4k <24 GiB, 32k <48 GiB, "
                        f"else 256k): drop it, or bake a modest value and document `/set parameter num_ctx`")
                continue
            if f is None or f.kv is None:
                if num_ctx > 32768:
                    warnings.append(f"ollama.parameters.num_ctx: {num_ctx} baked into {tag} (card: {vram} GB "
                                    f"VRAM) cannot be checked before the GGUF is built; large contexts on small "
                                    f"cards spill to CPU")
                continue
            kv = kv_cache_bytes(num_ctx, f.kv)
            need = f.size + kv + RUNTIME_OVERHEAD
            if need > vram * GIB:
                fits = _max_ctx(f, vram)
                warnings.append(
                    f"ollama.parameters.num_ctx: {num_ctx} is too big for {tag} on {vram} GB: weights "
                    f"{_gib(f.size)} + f16 KV cache ≈{_gib(kv)} + runtime ≈{_gib(RUNTIME_OVERHEAD)} = "
                    f"{_gib(need)}, so layers spill to the CPU or the model fails to load. A baked num_ctx "
                    f"overrides ollama's VRAM-based default (4k <24 GiB, 32k <48 GiB, else 256k); drop it, or "
                    f"use ≤{fits} and document `/set parameter num_ctx` / OLLAMA_CONTEXT_LENGTH")

    for tag, tier in section.tags.items():
        if tag != tier:
            warnings.append(f"ollama.tags.{tag}: tag name differs from its GGUF tier {tier!r}; users pulling "
                            f"hf.co/…:{tag} or looking for {tier} on the Hub will not find the same name")
    for tag in section.vram_gb or {}:
        if tag not in section.tags:
            warnings.append(f"ollama.vram_gb.{tag}: not one of ollama.tags")
    if section.renderer and section.template:
        warnings.append("ollama.template: with a renderer set, ollama prompts with the renderer and only "
                        "shows the template on the model page")
    return warnings


def _max_ctx(f: L.GGUFFacts, vram_gb: float) -> int:
    """The largest power-of-two context (≥ 2048) whose estimate fits `vram_gb`, or 0."""
    assert f.kv is not None
    best = 0
    ctx = 2048
    while ctx <= (f.context_length or 1 << 20):
        if f.size + kv_cache_bytes(ctx, f.kv) + RUNTIME_OVERHEAD <= vram_gb * GIB:
            best = ctx
        ctx *= 2
    return best
