"""The tensors a checkpoint holds, named and shaped from its config.json alone: what `plan` sizes the
NVFP4 artifact from before anything is built, without importing torch or transformers.

A family file says which layout its checkpoints follow (`nvfp4_census`, a table of release/families/*.toml):
- `layout = "gemma4"`: Gemma 4 (text model, vision tower and its embedder, per-layer inputs, KV sharing), as
  transformers 5.23's Gemma4ForConditionalGeneration / Gemma4ForCausalLM hold it;
- `layout = "decoder"`: every other MoE decoder, from these keys (defaults in brackets):
  - attention: `attention` ["mha"; "mla" = DeepSeek-V3's latent attention], `qk_norm` ["none"; "head" per
    head, "width" over all heads], `qk_norm_key` (norms only when that config key is true), `q_gate` (q_proj
    twice as wide: an output gate per head), `o_proj_bias` [true: o_proj has a bias when attention_bias
    does], `sinks` (per-head attention sinks); `linear_attention` ["qkvz_ba" | "qkv_z_b_a"]: the input
    projections of the gated-delta-net layers that `layer_types` marks "linear_attention";
  - feed-forward: `mlp` ["mlp"], the block's name; `dense_width` ["intermediate_size"] of the layers the
    family's moe_layers rule leaves dense; `router` ["gate"] and `router_vectors` (per-expert vectors beside
    its weight); routed experts fused as transformers holds them, `experts` ["out_in": [E, 2·I, H] and
    [E, H, I]; "in_out": [E, H, 2·I] and [E, I, H]] of width config[`expert_width`], `expert_bias`;
    `shared_expert` = {module, width (config key), times (config key multiplying it), gate (module)};
  - `defaults`: transformers' values of config keys a config.json may leave out; `multimodal` = {model
    (prefix of the text model), lm_head, vision (tower layout)} for a config with a text_config.
A checkpoint that stores experts one tensor per expert holds the same bytes and gives the same NVFP4
modules; the NVFP4 builder refuses "in_out" experts (release/nvfp4/layout.py), and so does the estimate.
tests/test_nvfp4_estimate.py checks every name and shape against transformers' own model (meta device), for
a tiny config of every family. A family without a layout, or a config these cannot read, raises ValueError
(the plan then shows no size).
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


def unsupported(family: Family) -> str | None:
    """Why the NVFP4 writer cannot make this family's checkpoint, or None: it quantizes fused experts only in
    the [experts, out, in] layout and refuses [experts, in, out] (release/nvfp4/layout.py), so a definition
    asking for NVFP4 of such a family is refused at `check`, not hours later at build."""
    spec = family.extra.get("nvfp4_census")
    if isinstance(spec, dict) and spec.get("experts") == "in_out":
        return (f"the {family.family} family stores its routed experts [experts, hidden, 2·intermediate]; the "
                "NVFP4 writer quantizes the [experts, out, in] layout only: drop [nvfp4]")
    return None


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


# The keys of a "decoder" census and, where they name a choice, the choices (None: a name or a table).
_DECODER_KEYS: dict[str, tuple[Any, ...] | None] = {
    "layout": None, "attention": ("mha", "mla"), "qk_norm": ("none", "head", "width"), "qk_norm_key": None,
    "q_gate": (True, False), "o_proj_bias": (True, False), "sinks": (True, False),
    "linear_attention": ("qkvz_ba", "qkv_z_b_a"), "mlp": None, "dense_width": None, "router": None,
    "router_vectors": None, "experts": ("out_in", "in_out"), "expert_width": None, "expert_bias": (True, False),
    "shared_expert": None, "defaults": None, "multimodal": None}


def _decoder(out: _Tensors, family: Family, config: dict[str, Any], experts: int, spec: dict[str, Any]) -> None:
    for key, value in spec.items():  # a mistyped family file must not size a different model silently
        if key not in _DECODER_KEYS or value not in (_DECODER_KEYS[key] or (value,)):
            raise ValueError(f"cannot size this config: {family.family}.toml: nvfp4_census.{key} = {value!r} "
                             "is not a key or choice of the decoder census")
    text = family.text_config(config)
    tc = {**spec.get("defaults", {}), **text}
    wrapped = spec.get("multimodal") if text is not config else None  # a text model inside a multimodal one
    model = wrapped["model"] if wrapped else "model."
    h = _count(tc["hidden_size"], "hidden_size")
    n_layers = _count(tc[family.num_layers_key], family.num_layers_key)
    if wrapped and config.get("vision_config") is not None:
        _VISION_TOWERS[wrapped["vision"]](out, config["vision_config"], h)
    layer_types = _layer_types(tc, n_layers, spec)
    moe_layers = set(family.moe_layers(config))
    block = spec.get("mlp", "mlp")
    out.add(f"{model}embed_tokens.weight", tc["vocab_size"], h)
    for n in range(n_layers):
        p = f"{model}layers.{n}."
        if layer_types[n] == "linear_attention":
            _gated_delta_net(out, p + "linear_attn.", tc, spec["linear_attention"])
        elif spec.get("attention") == "mla":
            _latent_attention(out, p + "self_attn.", tc)
        else:
            _attention(out, p + "self_attn.", tc, spec)
        if n in moe_layers:
            _moe(out, f"{p}{block}.", tc, experts, spec)
        else:
            _mlp(out, f"{p}{block}.", h, tc[spec.get("dense_width", "intermediate_size")])
        out.add(p + "input_layernorm.weight", h)
        out.add(p + "post_attention_layernorm.weight", h)
    out.add(f"{model}norm.weight", h)
    if not config.get("tie_word_embeddings", tc.get("tie_word_embeddings", False)):
        out.add(wrapped["lm_head"] if wrapped else "lm_head.weight", tc["vocab_size"], h)


def _layer_types(tc: dict[str, Any], n_layers: int, spec: dict[str, Any]) -> list[str]:
    """Each layer's token mixer; only "linear_attention" changes what a layer holds."""
    types = tc.get("layer_types")
    if types is None and "linear_attention" in spec:
        # what Qwen3-Next / Qwen3.5 configs derive when the file does not list them
        every = _count(tc.get("full_attention_interval", 4), "full_attention_interval") or 1
        types = ["full_attention" if (i + 1) % every == 0 else "linear_attention" for i in range(n_layers)]
    types = list(types or ["full_attention"] * n_layers)
    if len(types) != n_layers:
        raise ValueError(f"cannot size this config: {len(types)} layer_types for {n_layers} layers")
    if "linear_attention" in types and "linear_attention" not in spec:
        raise ValueError("cannot size this config: linear_attention layers in a family without them")
    return types


def _attention(out: _Tensors, p: str, tc: dict[str, Any], spec: dict[str, Any]) -> None:
    """q/k/v/o projections (q twice as wide with `q_gate`: a gate per head), optional biases, q/k norms
    and gpt-oss's per-head attention sinks."""
    h = tc["hidden_size"]
    heads = _count(tc["num_attention_heads"], "num_attention_heads")
    kv = tc.get("num_key_value_heads") or heads
    hd = tc.get("head_dim") or h // heads
    bias = bool(tc.get("attention_bias"))
    for proj, rows in (("q_proj", heads * hd * (2 if spec.get("q_gate") else 1)), ("k_proj", kv * hd),
                       ("v_proj", kv * hd)):
        out.add(p + f"{proj}.weight", rows, h)
        if bias:
            out.add(p + f"{proj}.bias", rows)
    out.add(p + "o_proj.weight", h, heads * hd)
    if bias and spec.get("o_proj_bias", True):
        out.add(p + "o_proj.bias", h)
    qk_norm = spec.get("qk_norm", "none")
    if spec.get("qk_norm_key") and not tc.get(spec["qk_norm_key"]):
        qk_norm = "none"
    if qk_norm == "head":
        out.add(p + "q_norm.weight", hd)
        out.add(p + "k_norm.weight", hd)
    elif qk_norm == "width":
        out.add(p + "q_norm.weight", heads * hd)
        out.add(p + "k_norm.weight", kv * hd)
    if spec.get("sinks"):
        out.add(p + "sinks", heads)


def _latent_attention(out: _Tensors, p: str, tc: dict[str, Any]) -> None:
    """DeepSeek-V3's multi-head latent attention: queries through a low-rank `q_lora_rank` bottleneck
    (a plain q_proj without one), keys and values from one `kv_lora_rank` latent plus a shared rope key."""
    h, heads = tc["hidden_size"], tc["num_attention_heads"]
    nope, rope, v = tc["qk_nope_head_dim"], tc["qk_rope_head_dim"], tc["v_head_dim"]
    q_rank, kv_rank = tc.get("q_lora_rank"), tc["kv_lora_rank"]
    bias = bool(tc.get("attention_bias"))
    if q_rank:
        out.add(p + "q_a_proj.weight", q_rank, h)
        if bias:
            out.add(p + "q_a_proj.bias", q_rank)
        out.add(p + "q_a_layernorm.weight", q_rank)
        out.add(p + "q_b_proj.weight", heads * (nope + rope), q_rank)
    else:
        out.add(p + "q_proj.weight", heads * (nope + rope), h)
    out.add(p + "kv_a_proj_with_mqa.weight", kv_rank + rope, h)
    if bias:
        out.add(p + "kv_a_proj_with_mqa.bias", kv_rank + rope)
    out.add(p + "kv_a_layernorm.weight", kv_rank)
    out.add(p + "kv_b_proj.weight", heads * (nope + v), kv_rank)
    out.add(p + "o_proj.weight", h, heads * v)
    if bias:
        out.add(p + "o_proj.bias", h)


def _gated_delta_net(out: _Tensors, p: str, tc: dict[str, Any], projections: str) -> None:
    """A linear-attention layer (Qwen3-Next, Qwen3.5): input projections fused as `qkvz` + `ba`
    (Qwen3-Next) or split `qkv`, `z`, `b`, `a` (Qwen3.5), a depthwise conv over q/k/v, per-head decay."""
    h = tc["hidden_size"]
    k_heads, v_heads = tc["linear_num_key_heads"], tc["linear_num_value_heads"]
    key, value = k_heads * tc["linear_key_head_dim"], v_heads * tc["linear_value_head_dim"]
    out.add(p + "dt_bias", v_heads)
    out.add(p + "A_log", v_heads)
    out.add(p + "conv1d.weight", 2 * key + value, 1, tc["linear_conv_kernel_dim"])
    if projections == "qkvz_ba":
        out.add(p + "in_proj_qkvz.weight", 2 * key + 2 * value, h)
        out.add(p + "in_proj_ba.weight", 2 * v_heads, h)
    else:  # "qkv_z_b_a"
        out.add(p + "in_proj_qkv.weight", 2 * key + value, h)
        out.add(p + "in_proj_z.weight", value, h)
        out.add(p + "in_proj_b.weight", v_heads, h)
        out.add(p + "in_proj_a.weight", v_heads, h)
    out.add(p + "norm.weight", tc["linear_value_head_dim"])
    out.add(p + "out_proj.weight", h, value)


def _moe(out: _Tensors, p: str, tc: dict[str, Any], experts: int, spec: dict[str, Any]) -> None:
    """Router, routed experts fused as transformers holds them, and an optional shared expert."""
    h = tc["hidden_size"]
    router = p + spec.get("router", "gate") + "."
    out.add(router + "weight", experts, h)
    for extra in spec.get("router_vectors", []):  # gpt-oss `bias`, DeepSeek-V3 `e_score_correction_bias`
        out.add(router + extra, experts)
    width = tc[spec.get("expert_width", "moe_intermediate_size")]
    if spec.get("experts", "out_in") == "in_out":  # gpt-oss, Llama 4: [E, H, 2I] and [E, I, H]
        out.add(p + "experts.gate_up_proj", experts, h, 2 * width)
        out.add(p + "experts.down_proj", experts, width, h)
    else:
        out.add(p + "experts.gate_up_proj", experts, 2 * width, h)
        out.add(p + "experts.down_proj", experts, h, width)
    if spec.get("expert_bias"):
        out.add(p + "experts.gate_up_proj_bias", experts, 2 * width)
        out.add(p + "experts.down_proj_bias", experts, h)
    shared = spec.get("shared_expert")
    if shared:
        shared_width = tc[shared["width"]] * (tc[shared["times"]] if "times" in shared else 1)
        _mlp(out, p + shared["module"] + ".", h, shared_width)
        if "gate" in shared:
            out.add(p + shared["gate"] + ".weight", 1, h)


def _mlp(out: _Tensors, p: str, h: int, width: int) -> None:
    out.add(p + "gate_proj.weight", width, h)
    out.add(p + "up_proj.weight", width, h)
    out.add(p + "down_proj.weight", h, width)


# transformers 5.23's Llama4VisionConfig / Qwen3_5MoeVisionConfig defaults, for keys a config.json leaves out.
_LLAMA4_VISION = {"hidden_size": 768, "num_hidden_layers": 34, "num_attention_heads": 16, "num_channels": 3,
                  "intermediate_size": 5632, "vision_output_dim": 7680, "image_size": 448, "patch_size": 14,
                  "projector_input_dim": 4096, "projector_output_dim": 4096}
_QWEN3_5_VISION = {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "in_channels": 3, "patch_size": 16,
                   "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 3584,
                   "num_position_embeddings": 2304}


def _llama4_vision(out: _Tensors, vision: dict[str, Any], text_hidden: int) -> None:
    """Llama 4's vision encoder, its pixel-shuffle adapter and the projector into the text width."""
    vc = {**_LLAMA4_VISION, **vision}
    vh, width = _count(vc["hidden_size"], "vision_config.hidden_size"), vc["intermediate_size"]
    patch, image = _count(vc["patch_size"], "vision_config.patch_size"), vc["image_size"]
    p = "vision_model."
    out.add(p + "class_embedding", vh)
    out.add(p + "positional_embedding_vlm", (image // patch) ** 2 + 1, vh)
    out.add(p + "patch_embedding.linear.weight", vh, vc["num_channels"] * patch * patch)
    for norm in ("layernorm_pre", "layernorm_post"):
        out.add(p + f"{norm}.weight", vh)
        out.add(p + f"{norm}.bias", vh)
    for n in range(_count(vc["num_hidden_layers"], "vision_config.num_hidden_layers")):
        q = f"{p}model.layers.{n}."
        for name, rows, cols in (("self_attn.q_proj", vh, vh), ("self_attn.k_proj", vh, vh),
                                 ("self_attn.v_proj", vh, vh), ("self_attn.o_proj", vh, vh),
                                 ("mlp.fc1", width, vh), ("mlp.fc2", vh, width)):
            out.add(q + f"{name}.weight", rows, cols)
            out.add(q + f"{name}.bias", rows)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            out.add(q + f"{norm}.weight", vh)
            out.add(q + f"{norm}.bias", vh)
    out.add(p + "vision_adapter.mlp.fc1.weight", vc["projector_input_dim"], width)
    out.add(p + "vision_adapter.mlp.fc2.weight", vc["projector_output_dim"], vc["projector_output_dim"])
    out.add("multi_modal_projector.linear_1.weight", text_hidden, vc["vision_output_dim"])


def _qwen3_5_vision(out: _Tensors, vision: dict[str, Any], text_hidden: int) -> None:
    """Qwen3.5's vision transformer and the patch merger into the text width."""
    vc = {**_QWEN3_5_VISION, **vision}
    vh, width, patch = _count(vc["hidden_size"], "vision_config.hidden_size"), vc["intermediate_size"], vc["patch_size"]
    merged = vh * vc["spatial_merge_size"] ** 2
    p = "model.visual."
    out.add(p + "patch_embed.proj.weight", vh, vc["in_channels"], vc["temporal_patch_size"], patch, patch)
    out.add(p + "patch_embed.proj.bias", vh)
    out.add(p + "pos_embed.weight", vc["num_position_embeddings"], vh)
    for n in range(_count(vc["depth"], "vision_config.depth")):
        q = f"{p}blocks.{n}."
        for norm in ("norm1", "norm2"):
            out.add(q + f"{norm}.weight", vh)
            out.add(q + f"{norm}.bias", vh)
        for name, rows, cols in (("attn.qkv", 3 * vh, vh), ("attn.proj", vh, vh), ("mlp.linear_fc1", width, vh),
                                 ("mlp.linear_fc2", vh, width)):
            out.add(q + f"{name}.weight", rows, cols)
            out.add(q + f"{name}.bias", rows)
    out.add(p + "merger.norm.weight", vh)
    out.add(p + "merger.norm.bias", vh)
    for name, rows in (("merger.linear_fc1", merged), ("merger.linear_fc2", vc["out_hidden_size"])):
        out.add(p + f"{name}.weight", rows, merged)
        out.add(p + f"{name}.bias", rows)


_LAYOUTS: dict[str, Callable[[_Tensors, Family, dict[str, Any], int, dict[str, Any]], None]] = {
    "gemma4": _gemma4, "decoder": _decoder}
_VISION_TOWERS: dict[str, Callable[[_Tensors, dict[str, Any], int], None]] = {
    "llama4": _llama4_vision, "qwen3_5": _qwen3_5_vision}
