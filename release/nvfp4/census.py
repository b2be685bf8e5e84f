"""The tensors a checkpoint holds, named and shaped from its config.json alone: what `plan` sizes the
NVFP4 artifact from before anything is built, without importing torch or transformers.

A family file says which layout its checkpoints follow (`nvfp4_census = { layout = … }`):
- `gemma4`: Gemma 4 (text model, vision tower and its embedder, per-layer inputs, KV sharing), as
  transformers 5.23's Gemma4ForConditionalGeneration / Gemma4ForCausalLM hold it;
- `decoder`: a Llama-style MoE decoder (Qwen3-MoE, Mixtral, OLMoE): attention q/k/v/o with optional q/k
  norms (`qk_norm = "head"` per head, `"width"` over all heads, `"none"`), a router `mlp.gate`, routed
  experts of width config[`expert_width`], dense MLPs on the layers the family's moe_layers rule leaves
  dense.
Routed experts are given fused ([E, 2·I, H] and [E, H, I], transformers' in-memory layout); a checkpoint
that stores them one tensor per expert holds the same bytes and gives the same NVFP4 modules.
tests/test_nvfp4_estimate.py checks every name and shape against transformers' own model (meta device).
A family without a layout, or a config these cannot read, raises ValueError (the plan then shows no size).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import InputError
from ..families import Family, for_config
from .layout import SrcTensor

# transformers 5.23's Gemma4VisionConfig / Gemma4TextConfig defaults, for keys a config.json leaves out.
_GEMMA4_VISION = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 16, "num_attention_heads": 12,
                  "num_key_value_heads": 12, "head_dim": 64, "patch_size": 16, "position_embedding_size": 10240,
                  "use_clipped_linears": False, "standardize": False}
_GEMMA4_TEXT = {"vocab_size": 262_144, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 30,
                "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "global_head_dim": 512,
                "attention_bias": False, "attention_k_eq_v": False, "num_kv_shared_layers": 0,
                "enable_moe_block": False, "use_double_wide_mlp": False, "hidden_size_per_layer_input": 256,
                "vocab_size_per_layer_input": 262_144, "tie_word_embeddings": True}


class _Tensors:
    """Collects (name, shape) in reading order; every dimension must be a positive count."""

    def __init__(self) -> None:
        self.items: list[SrcTensor] = []

    def add(self, name: str, *shape: int) -> None:
        for s in shape:
            if not isinstance(s, int) or isinstance(s, bool) or s < 0:
                raise ValueError(f"cannot size this config: {name} would have a dimension {s!r}")
        self.items.append(SrcTensor(name, "BF16", tuple(shape), order=len(self.items)))


def config_tensors(config: dict[str, Any], num_experts_kept: int) -> list[SrcTensor]:
    """(name, BF16, shape) of every tensor the checkpoint of `config` holds, with `num_experts_kept`
    routed experts per MoE layer. Raises ValueError when the config cannot be sized."""
    try:
        family = for_config(config)
    except InputError as exc:
        raise ValueError(f"cannot size this config: {exc}") from exc
    spec = family.extra.get("nvfp4_census")
    layout = spec.get("layout") if isinstance(spec, dict) else None
    builder = _LAYOUTS.get(str(layout))
    if builder is None:
        raise ValueError(f"cannot size this config: no tensor census for the {family.family} family")
    out = _Tensors()
    try:
        builder(out, family, config, int(num_experts_kept), spec)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"cannot size this config: {type(exc).__name__}: {exc}") from exc
    return out.items


def _count(value: Any, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"cannot size this config: {key} = {value!r} is not a count")
    return value


def _gemma4(out: _Tensors, family: Family, config: dict[str, Any], experts: int, spec: dict[str, Any]) -> None:
    text_only = "text_config" not in config
    tc = {**_GEMMA4_TEXT, **family.text_config(config)}
    lm = "model." if text_only else "model.language_model."
    vc = None if text_only or config.get("vision_config") is None else {**_GEMMA4_VISION, **config["vision_config"]}
    if not text_only and config.get("audio_config") is not None:
        raise ValueError("cannot size this config: no tensor census for the Gemma 4 audio tower")
    if vc is not None:
        _gemma4_vision(out, vc)
    h = _count(tc["hidden_size"], "hidden_size")
    n_layers = _count(tc["num_hidden_layers"], "num_hidden_layers")
    layer_types = list(tc.get("layer_types") or
                       ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n_layers)])
    if len(layer_types) != n_layers:
        raise ValueError(f"cannot size this config: {len(layer_types)} layer_types for {n_layers} layers")
    layer_types[-1] = "full_attention"  # transformers forces it
    heads, kv, hd = tc["num_attention_heads"], tc["num_key_value_heads"], tc["head_dim"]
    per_layer = {int(k): v for k, v in (tc.get("per_layer_config") or {}).items()}
    if "per_layer_config" not in tc:  # what Gemma4TextConfig derives when the file does not say
        overrides = {"head_dim": tc["global_head_dim"]}
        if tc["attention_k_eq_v"] and tc.get("num_global_key_value_heads") is not None:
            overrides["num_key_value_heads"] = tc["num_global_key_value_heads"]
        per_layer = {i: overrides for i, t in enumerate(layer_types) if t == "full_attention"}
    shared = _gemma4_kv_sharing(layer_types, _count(tc["num_kv_shared_layers"], "num_kv_shared_layers"))
    ple = _count(tc["hidden_size_per_layer_input"] or 0, "hidden_size_per_layer_input")
    moe = bool(tc["enable_moe_block"])
    i_moe = tc.get("moe_intermediate_size") or 0
    out.add(f"{lm}embed_tokens.weight", tc["vocab_size"], h)
    for n in range(n_layers):
        p = f"{lm}layers.{n}."
        lc = per_layer.get(n, {})
        d = lc.get("head_dim", hd)
        nkv = lc.get("num_key_value_heads", kv)
        k_eq_v = tc["attention_k_eq_v"] and layer_types[n] != "sliding_attention"
        out.add(p + "self_attn.q_proj.weight", heads * d, h)
        if tc["attention_bias"]:
            out.add(p + "self_attn.q_proj.bias", heads * d)
        out.add(p + "self_attn.q_norm.weight", d)
        if n not in shared:
            out.add(p + "self_attn.k_norm.weight", d)
            for proj in ("k_proj",) if k_eq_v else ("k_proj", "v_proj"):
                out.add(p + f"self_attn.{proj}.weight", nkv * d, h)
                if tc["attention_bias"]:
                    out.add(p + f"self_attn.{proj}.bias", nkv * d)
        out.add(p + "self_attn.o_proj.weight", h, heads * d)
        if tc["attention_bias"]:
            out.add(p + "self_attn.o_proj.bias", h)
        width = tc["intermediate_size"] * (2 if tc["use_double_wide_mlp"] and n in shared else 1)
        out.add(p + "mlp.gate_proj.weight", width, h)
        out.add(p + "mlp.up_proj.weight", width, h)
        out.add(p + "mlp.down_proj.weight", h, width)
        for norm in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                     "post_feedforward_layernorm"):
            out.add(p + f"{norm}.weight", h)
        if ple:
            out.add(p + "per_layer_input_gate.weight", ple, h)
            out.add(p + "per_layer_projection.weight", h, ple)
            out.add(p + "post_per_layer_input_norm.weight", h)
        if moe:
            out.add(p + "router.scale", h)
            out.add(p + "router.per_expert_scale", experts)
            out.add(p + "router.proj.weight", experts, h)
            out.add(p + "experts.gate_up_proj", experts, 2 * i_moe, h)
            out.add(p + "experts.down_proj", experts, h, i_moe)
            for norm in ("post_feedforward_layernorm_1", "post_feedforward_layernorm_2", "pre_feedforward_layernorm_2"):
                out.add(p + f"{norm}.weight", h)
        out.add(p + "layer_scalar", 1)
    out.add(f"{lm}norm.weight", h)
    if ple:
        out.add(f"{lm}embed_tokens_per_layer.weight", tc["vocab_size_per_layer_input"], n_layers * ple)
        out.add(f"{lm}per_layer_model_projection.weight", n_layers * ple, h)
        out.add(f"{lm}per_layer_projection_norm.weight", ple)
    if vc is not None:
        out.add("model.embed_vision.embedding_projection.weight", h, vc["hidden_size"])
    tied = config.get("tie_word_embeddings", tc["tie_word_embeddings"])
    if not tied:
        out.add("lm_head.weight", tc["vocab_size"], h)


def _gemma4_kv_sharing(layer_types: list[str], shared_layers: int) -> set[int]:
    """Layers that reuse another layer's keys and values (they hold no k/v projections)."""
    first = len(layer_types) - shared_layers
    return set(range(first, len(layer_types))) if shared_layers else set()


def _gemma4_vision(out: _Tensors, vc: dict[str, Any]) -> None:
    vh = _count(vc["hidden_size"], "vision_config.hidden_size")
    heads, kv, hd, width = vc["num_attention_heads"], vc["num_key_value_heads"], vc["head_dim"], vc["intermediate_size"]
    p = "model.vision_tower."
    out.add(p + "patch_embedder.input_proj.weight", vh, 3 * vc["patch_size"] ** 2)
    out.add(p + "patch_embedder.position_embedding_table", 2, vc["position_embedding_size"], vh)

    def linear(name: str, n_out: int, n_in: int) -> None:
        out.add(f"{name}.linear.weight", n_out, n_in)
        if vc["use_clipped_linears"]:
            for bound in ("input_min", "input_max", "output_min", "output_max"):
                out.add(f"{name}.{bound}")

    for n in range(_count(vc["num_hidden_layers"], "vision_config.num_hidden_layers")):
        q = f"{p}encoder.layers.{n}."
        linear(q + "self_attn.q_proj", heads * hd, vh)
        linear(q + "self_attn.k_proj", kv * hd, vh)
        linear(q + "self_attn.v_proj", kv * hd, vh)
        linear(q + "self_attn.o_proj", vh, heads * hd)
        out.add(q + "self_attn.q_norm.weight", hd)
        out.add(q + "self_attn.k_norm.weight", hd)
        linear(q + "mlp.gate_proj", width, vh)
        linear(q + "mlp.up_proj", width, vh)
        linear(q + "mlp.down_proj", vh, width)
        for norm in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                     "post_feedforward_layernorm"):
            out.add(q + f"{norm}.weight", vh)
    if vc["standardize"]:
        out.add(p + "std_bias", vh)
        out.add(p + "std_scale", vh)


def _decoder(out: _Tensors, family: Family, config: dict[str, Any], experts: int, spec: dict[str, Any]) -> None:
    tc = family.text_config(config)
    h = _count(tc["hidden_size"], "hidden_size")
    heads = _count(tc["num_attention_heads"], "num_attention_heads")
    kv = tc.get("num_key_value_heads") or heads
    hd = tc.get("head_dim") or h // heads
    bias = bool(tc.get("attention_bias"))
    qk_norm = spec.get("qk_norm", "none")
    expert_width = tc[spec.get("expert_width", "moe_intermediate_size")]
    moe_layers = set(family.moe_layers(config))
    out.add("model.embed_tokens.weight", tc["vocab_size"], h)
    for n in range(_count(tc[family.num_layers_key], family.num_layers_key)):
        p = f"model.layers.{n}."
        for proj, rows in (("q_proj", heads * hd), ("k_proj", kv * hd), ("v_proj", kv * hd)):
            out.add(p + f"self_attn.{proj}.weight", rows, h)
            if bias:
                out.add(p + f"self_attn.{proj}.bias", rows)
        out.add(p + "self_attn.o_proj.weight", h, heads * hd)
        if bias:
            out.add(p + "self_attn.o_proj.bias", h)
        if qk_norm == "head":
            out.add(p + "self_attn.q_norm.weight", hd)
            out.add(p + "self_attn.k_norm.weight", hd)
        elif qk_norm == "width":
            out.add(p + "self_attn.q_norm.weight", heads * hd)
            out.add(p + "self_attn.k_norm.weight", kv * hd)
        if n in moe_layers:
            out.add(p + "mlp.gate.weight", experts, h)
            out.add(p + "mlp.experts.gate_up_proj", experts, 2 * expert_width, h)
            out.add(p + "mlp.experts.down_proj", experts, h, expert_width)
        else:
            width = tc["intermediate_size"]
            out.add(p + "mlp.gate_proj.weight", width, h)
            out.add(p + "mlp.up_proj.weight", width, h)
            out.add(p + "mlp.down_proj.weight", h, width)
        out.add(p + "input_layernorm.weight", h)
        out.add(p + "post_attention_layernorm.weight", h)
    out.add("model.norm.weight", h)
    if not config.get("tie_word_embeddings", tc.get("tie_word_embeddings", False)):
        out.add("lm_head.weight", tc["vocab_size"], h)


_LAYOUTS: dict[str, Callable[[_Tensors, Family, dict[str, Any], int, dict[str, Any]], None]] = {
    "gemma4": _gemma4, "decoder": _decoder}
