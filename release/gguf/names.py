"""GGUF tensor names and widths a checkpoint converts to, derived from its config (no conversion needed),
and the tensor groups the type histogram reports.

Used at check time: an override regex that matches no tensor is an error, and a recipe asking for a
256-block type on a tensor whose row width is not a multiple of 256 gets a fallback warning (G4).
Gemma 4 is derived from llama.cpp 0c1e570's conversion/gemma.py and verified against a real converted
demo file (tests/test_gguf_build.py); other families return None (the regex check is then skipped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

GROUPS = ("ffn_gate_up_exps", "ffn_down_exps", "attn", "ffn_dense", "token_embd", "output", "other")


@dataclass(frozen=True)
class ExpectedTensor:
    name: str
    ne0: int  # row width (ggml ne[0]); quantized block sizes must divide it
    n_elements: int
    quantizable: bool  # 2-D+ weights llama.cpp may quantize (norms, scales, router stay F32)
    shape: tuple[int, ...] = ()  # ggml order (ne0, ne1, ne2); () when unknown


@dataclass(frozen=True)
class ModelHparams:
    """The hyperparameters llama.cpp's quantizer consults when it picks tensor types (src/llama-quant.cpp):
    the expert count, the layer count (`n_layer_all`) and heads per KV head of layer 0 (`n_gqa()`)."""

    n_expert: int
    n_layer: int
    n_gqa: int
    vocab_size: int


def group_of(name: str) -> str:
    """The histogram group of a GGUF tensor name."""
    if name == "token_embd.weight":
        return "token_embd"
    if name == "output.weight":
        return "output"
    m = re.match(r"blk\.\d+\.(.+)$", name)
    if not m:
        return "other"
    rest = m.group(1)
    if not rest.endswith(".weight") or "norm" in rest:
        return "other"
    base = rest[: -len(".weight")]
    if base in ("ffn_gate_up_exps", "ffn_gate_exps", "ffn_up_exps"):
        return "ffn_gate_up_exps"
    if base == "ffn_down_exps":
        return "ffn_down_exps"
    if base.startswith("attn_"):
        return "attn"
    if base in ("ffn_gate", "ffn_up", "ffn_down", "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"):
        return "ffn_dense"
    return "other"


class UnreadableConfig(ValueError):
    """A key the tensor list needs is missing or not a usable number (`key` names it)."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail}")
        self.key = key
        self.detail = detail


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("text_config") or config


def _checked(fn: Any) -> Any:
    """Turn the KeyError/TypeError of a config missing a key or holding a non-number into UnreadableConfig."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyError as exc:
            raise UnreadableConfig(f"text_config.{exc.args[0]}", "missing") from None
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, MemoryError) as exc:
            raise UnreadableConfig("text_config", f"not a usable Gemma 4 config ({exc})") from None

    return wrapper


@_checked
def expected_tensors(config: dict[str, Any], *, num_experts: int | None = None) -> list[ExpectedTensor] | None:
    """Tensors of the GGUF the converter writes for this config (the pruned expert count if given).

    Raises UnreadableConfig when a Gemma 4 config lacks a key it needs."""
    model_type = config.get("model_type") or _text_config(config).get("model_type")
    if model_type in ("gemma4", "gemma4_text"):
        return _gemma4(_text_config(config), config, num_experts)
    return None


@_checked
def expected_hparams(config: dict[str, Any], *, num_experts: int | None = None) -> ModelHparams | None:
    """What the converter writes for the quantizer's rules (the pruned expert count if given)."""
    model_type = config.get("model_type") or _text_config(config).get("model_type")
    if model_type not in ("gemma4", "gemma4_text"):
        return None
    tc = _text_config(config)
    n_layers = _layer_count(tc)
    layer_types = tc.get("layer_types") or ["sliding_attention"] * n_layers
    full = bool(layer_types) and layer_types[0] == "full_attention"
    lc = (tc.get("per_layer_config") or {}).get("0", {})
    kv = tc["num_key_value_heads"]
    if full:
        kv = tc.get("num_global_key_value_heads") or kv
    kv = lc.get("num_key_value_heads", kv)
    experts = num_experts if num_experts is not None else tc.get("num_experts", 0)
    ints = {"num_attention_heads": tc["num_attention_heads"], "num_key_value_heads": kv,
            "vocab_size": tc["vocab_size"], "num_experts": experts or 0}
    for key, v in ints.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise TypeError(f"{key} = {v!r} is not a count")
    return ModelHparams(n_expert=ints["num_experts"], n_layer=n_layers,
                        n_gqa=ints["num_attention_heads"] // kv if kv else 0, vocab_size=ints["vocab_size"])


# More layers than any model has: a config saying so is broken, not big.
MAX_LAYERS = 10_000


def _layer_count(tc: dict[str, Any]) -> int:
    n = tc["num_hidden_layers"]
    if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= MAX_LAYERS:
        raise ValueError(f"num_hidden_layers = {n!r} is not a layer count")
    return n


def _gemma4(tc: dict[str, Any], top: dict[str, Any], num_experts: int | None) -> list[ExpectedTensor]:
    out: list[ExpectedTensor] = []

    def add(name: str, *shape: int, quantizable: bool = True) -> None:
        n = 1
        for s in shape:
            if not isinstance(s, int) or isinstance(s, bool) or s < 0:
                raise TypeError(f"{name} would have a dimension {s!r}")
            n *= s
        out.append(ExpectedTensor(name, shape[0], n, quantizable and len(shape) >= 2, tuple(shape)))

    h = tc["hidden_size"]
    vocab = tc["vocab_size"]
    n_layers = _layer_count(tc)
    layer_types = tc.get("layer_types") or ["sliding_attention"] * n_layers
    heads = tc["num_attention_heads"]
    kv = tc["num_key_value_heads"]
    hd = tc["head_dim"]
    per_layer = tc.get("per_layer_config") or {}
    ghd = tc.get("global_head_dim") or hd
    gkv = tc.get("num_global_key_value_heads") or kv
    k_eq_v = bool(tc.get("attention_k_eq_v"))
    moe = bool(tc.get("enable_moe_block", tc.get("num_experts")))
    experts = num_experts if num_experts is not None else (tc.get("num_experts") or 0)
    i_dense = tc["intermediate_size"]
    i_moe = tc.get("moe_intermediate_size") or 0
    tied = top.get("tie_word_embeddings", tc.get("tie_word_embeddings", True))
    for key, v in {"hidden_size": h, "vocab_size": vocab, "num_attention_heads": heads, "num_key_value_heads": kv,
                   "head_dim": hd, "global_head_dim": ghd, "num_global_key_value_heads": gkv,
                   "intermediate_size": i_dense, "moe_intermediate_size": i_moe, "num_experts": experts}.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise TypeError(f"{key} = {v!r} is not a count")

    add("token_embd.weight", h, vocab)
    if not tied:
        add("output.weight", h, vocab)
    add("output_norm.weight", h, quantizable=False)
    if "full_attention" in layer_types:
        add("rope_freqs.weight", ghd // 2, quantizable=False)
    for n in range(n_layers):
        full = layer_types[n] == "full_attention"
        lc = per_layer.get(str(n), {})
        d = lc.get("head_dim", ghd if full else hd)
        nkv = lc.get("num_key_value_heads", gkv if full else kv)
        p = f"blk.{n}."
        add(p + "attn_norm.weight", h, quantizable=False)
        add(p + "attn_q.weight", h, heads * d)
        add(p + "attn_k.weight", h, nkv * d)
        if not (full and k_eq_v):
            add(p + "attn_v.weight", h, nkv * d)
        add(p + "attn_output.weight", heads * d, h)
        add(p + "attn_q_norm.weight", d, quantizable=False)
        add(p + "attn_k_norm.weight", d, quantizable=False)
        add(p + "post_attention_norm.weight", h, quantizable=False)
        add(p + "ffn_norm.weight", h, quantizable=False)
        add(p + "ffn_gate.weight", h, i_dense)
        add(p + "ffn_up.weight", h, i_dense)
        add(p + "ffn_down.weight", i_dense, h)
        add(p + "post_ffw_norm.weight", h, quantizable=False)
        add(p + "layer_output_scale.weight", 1, quantizable=False)
        if moe and experts:
            add(p + "ffn_gate_inp.weight", h, experts, quantizable=False)  # the router stays F32
            add(p + "ffn_gate_inp.scale", h, quantizable=False)
            add(p + "ffn_gate_up_exps.weight", h, 2 * i_moe, experts)
            add(p + "ffn_down_exps.weight", i_moe, h, experts)
            add(p + "ffn_down_exps.scale", experts, quantizable=False)
            add(p + "post_ffw_norm_1.weight", h, quantizable=False)
            add(p + "post_ffw_norm_2.weight", h, quantizable=False)
            add(p + "pre_ffw_norm_2.weight", h, quantizable=False)
    return out
