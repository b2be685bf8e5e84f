"""Tiny real MoE checkpoints for tests: real transformers config and model classes, random weights.

`make_checkpoint("gemma4", out_dir)` instantiates the family's model class from a tiny config of the
real transformers config class, re-randomises every parameter (seeded) so no norm, scale or bias is
an identity, and writes it with `save_pretrained` sharded into several files, plus a tiny tokenizer and
a chat template. Other parts' tests import this module, so its signature stays stable.

Families whose Hub layout differs from what transformers 5.23 writes (gpt-oss MXFP4, Qwen3.5 fused
experts) have writers below that produce the Hub tensor names/shapes directly with safetensors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

VOCAB = 320  # 256 bytes + merges + specials; small keeps embeddings tiny

# Small, shared text dimensions. Heads × head_dim need not equal hidden in these architectures.
_TEXT = {"vocab_size": VOCAB, "hidden_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1,
         "head_dim": 32, "max_position_embeddings": 256, "tie_word_embeddings": False,
         "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2}


def _gemma4(**o: Any) -> tuple[str, Any]:
    from transformers import Gemma4Config

    text = {
        "vocab_size": VOCAB, "vocab_size_per_layer_input": VOCAB, "hidden_size_per_layer_input": 0,
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 6,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
        "layer_types": ["sliding_attention"] * 5 + ["full_attention"], "sliding_window": 16,
        "attention_k_eq_v": True, "max_position_embeddings": 256, "final_logit_softcapping": 30.0,
        "enable_moe_block": True, "num_experts": 8, "top_k_experts": 2, "moe_intermediate_size": 32,
        "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 1,
    }
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 2, "head_dim": 16, "position_embedding_size": 64}
    text.update(o.pop("text_config", {}))
    vision.update(o.pop("vision_config", {}))
    text.update(o)  # flat overrides (num_experts=128 …) address the text config, where MoE keys live
    return "Gemma4ForConditionalGeneration", Gemma4Config(text_config=text, vision_config=vision,
                                                          audio_config=None)


def _qwen3_moe(**o: Any) -> tuple[str, Any]:
    from transformers import Qwen3MoeConfig

    cfg = {**_TEXT, "intermediate_size": 96, "moe_intermediate_size": 32, "num_hidden_layers": 3,
           "num_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": True, "decoder_sparse_step": 1,
           "mlp_only_layers": [], **o}
    return "Qwen3MoeForCausalLM", Qwen3MoeConfig(**cfg)


def _qwen3_next(**o: Any) -> tuple[str, Any]:
    from transformers import Qwen3NextConfig

    cfg = {**_TEXT, "intermediate_size": 96, "moe_intermediate_size": 32,
           "shared_expert_intermediate_size": 48, "num_hidden_layers": 4,
           "layer_types": ["linear_attention"] * 3 + ["full_attention"],
           "linear_conv_kernel_dim": 4, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
           "linear_num_key_heads": 2, "linear_num_value_heads": 4,
           "num_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": True, "decoder_sparse_step": 1,
           "mlp_only_layers": [], **o}
    return "Qwen3NextForCausalLM", Qwen3NextConfig(**cfg)


def _qwen3_5_moe(**o: Any) -> tuple[str, Any]:
    from transformers import Qwen3_5MoeConfig

    text = {**_TEXT, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 48,
            "num_hidden_layers": 4, "layer_types": ["linear_attention"] * 3 + ["full_attention"],
            "linear_conv_kernel_dim": 4, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
            "linear_num_key_heads": 2, "linear_num_value_heads": 4,
            "num_experts": 8, "num_experts_per_tok": 2}
    vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
              "num_position_embeddings": 64, "patch_size": 8}
    text.update(o.pop("text_config", {}))
    vision.update(o.pop("vision_config", {}))
    text.update(o)
    return "Qwen3_5MoeForConditionalGeneration", Qwen3_5MoeConfig(text_config=text, vision_config=vision)


def _mixtral(**o: Any) -> tuple[str, Any]:
    from transformers import MixtralConfig

    cfg = {**_TEXT, "intermediate_size": 32, "num_hidden_layers": 3, "num_local_experts": 8,
           "num_experts_per_tok": 2, **o}
    return "MixtralForCausalLM", MixtralConfig(**cfg)


def _olmoe(**o: Any) -> tuple[str, Any]:
    from transformers import OlmoeConfig

    cfg = {**_TEXT, "intermediate_size": 32, "num_hidden_layers": 3, "num_experts": 8,
           "num_experts_per_tok": 2, "norm_topk_prob": False, **o}
    cfg.pop("head_dim")
    cfg["num_key_value_heads"] = 2
    return "OlmoeForCausalLM", OlmoeConfig(**cfg)


def _gpt_oss(**o: Any) -> tuple[str, Any]:
    from transformers import GptOssConfig

    cfg = {**_TEXT, "intermediate_size": 32, "num_hidden_layers": 2, "num_local_experts": 8,
           "num_experts_per_tok": 2, "layer_types": ["sliding_attention", "full_attention"],
           "sliding_window": 16, "max_position_embeddings": 131072, **o}  # = YaRN factor × original context
    return "GptOssForCausalLM", GptOssConfig(**cfg)


def _deepseek_v3(**o: Any) -> tuple[str, Any]:
    from transformers import DeepseekV3Config

    cfg = {**_TEXT, "intermediate_size": 96, "moe_intermediate_size": 32, "num_hidden_layers": 3,
           "num_key_value_heads": 2, "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1,
           "n_group": 2, "topk_group": 1, "first_k_dense_replace": 1, "norm_topk_prob": True,
           "kv_lora_rank": 16, "q_lora_rank": 24, "qk_rope_head_dim": 8, "qk_nope_head_dim": 16,
           "v_head_dim": 16, "routed_scaling_factor": 2.5, **o}
    cfg.pop("head_dim")
    return "DeepseekV3ForCausalLM", DeepseekV3Config(**cfg)


def _glm4_moe(**o: Any) -> tuple[str, Any]:
    from transformers import Glm4MoeConfig

    cfg = {**_TEXT, "intermediate_size": 96, "moe_intermediate_size": 32, "num_hidden_layers": 3,
           "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1, "n_group": 1,
           "topk_group": 1, "first_k_dense_replace": 1, "norm_topk_prob": True, "routed_scaling_factor": 1.5,
           **o}
    return "Glm4MoeForCausalLM", Glm4MoeConfig(**cfg)


def _llama4(**o: Any) -> tuple[str, Any]:
    from transformers import Llama4TextConfig

    cfg = {**_TEXT, "intermediate_size": 32, "intermediate_size_mlp": 96, "num_hidden_layers": 4,
           "num_local_experts": 8, "num_experts_per_tok": 1, "interleave_moe_layer_step": 2,
           "attention_chunk_size": 64, **o}
    return "Llama4ForCausalLM", Llama4TextConfig(**cfg)


BUILDERS: dict[str, Callable[..., tuple[str, Any]]] = {
    "gemma4": _gemma4,
    "qwen3_moe": _qwen3_moe,
    "qwen3_next": _qwen3_next,
    "qwen3_5_moe": _qwen3_5_moe,
    "mixtral": _mixtral,
    "olmoe": _olmoe,
    "gpt_oss": _gpt_oss,
    "deepseek_v3": _deepseek_v3,
    "glm4_moe": _glm4_moe,
    "llama4": _llama4,
}
FAMILIES = tuple(BUILDERS)


def tiny_config(family: str, **config_overrides: Any) -> tuple[str, Any]:
    """(model class name, transformers config object) of the tiny model of `family`."""
    if family not in BUILDERS:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return BUILDERS[family](**config_overrides)


def build_model(family: str, *, seed: int = 0, **config_overrides: Any) -> torch.nn.Module:
    """The tiny model in fp32 with every parameter re-randomised from `seed` (deterministic)."""
    import transformers

    class_name, config = tiny_config(family, **config_overrides)
    torch.manual_seed(seed)
    model = getattr(transformers, class_name)(config)
    randomize_(model, seed=seed)
    return model.eval()


def randomize_(model: torch.nn.Module, *, seed: int = 0) -> None:
    """Overwrite every saved floating tensor so no norm weight, scale or bias is 0 or 1.

    Default inits leave norms at 1 and biases at 0; an exactness test on such a model could pass
    with a broken scale/bias slice, so everything gets a distinct random value.
    """
    gen = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    with torch.no_grad():
        for _name, t in model.state_dict(keep_vars=True).items():
            if not t.is_floating_point() or t.data_ptr() in seen:
                continue
            seen.add(t.data_ptr())  # tied embeddings share storage: randomise once
            if t.ndim >= 2:
                std = 1.0 / math.sqrt(t.shape[-1])
                t.copy_(torch.randn(t.shape, generator=gen) * std)
            else:
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))


def make_checkpoint(
    family: str,
    out_dir: Path,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    max_shard_size: str = "300KB",
    with_tokenizer: bool = True,
    min_shards: int = 2,
    **config_overrides: Any,
) -> Path:
    """Write a tiny real checkpoint of `family` to `out_dir` (sharded into ≥2 files); return out_dir.

    Flat `config_overrides` go to the text config (where the MoE keys live for gemma4/qwen3_5_moe);
    `text_config={…}` / `vision_config={…}` address the nested configs explicitly.
    """
    out_dir = Path(out_dir)
    model = build_model(family, seed=seed, **config_overrides).to(dtype)
    model.save_pretrained(out_dir, max_shard_size=max_shard_size)
    shards = sorted(out_dir.glob("*.safetensors"))
    if len(shards) < min_shards:
        raise AssertionError(f"{family}: expected ≥{min_shards} shards with max_shard_size={max_shard_size}, "
                             f"got {len(shards)}")
    if with_tokenizer:
        write_tokenizer(out_dir)
    return out_dir


_SHARED: dict[str, Path] = {}


def shared_checkpoint(family: str, **kwargs: Any) -> Path:
    """`make_checkpoint(family, …, **kwargs)` built once per test process and shared: treat it as read-only.

    Tests that modify a checkpoint copy it first (shutil.copytree). The folder is removed at exit.
    """
    import atexit
    import shutil
    import tempfile

    key = json.dumps([family, {k: str(v) for k, v in sorted(kwargs.items())}])
    if key not in _SHARED or not _SHARED[key].exists():
        root = Path(tempfile.mkdtemp(prefix=f"moe-{family}-"))
        atexit.register(shutil.rmtree, root, True)
        _SHARED[key] = make_checkpoint(family, root / "checkpoint", **kwargs)
    return _SHARED[key]


# -- tokenizer + chat template ----------------------------------------------------------------------

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
_CORPUS = [
    "the quick brown fox jumps over the lazy dog", "mixture of experts routes every token to a few experts",
    "pruning drops experts that are rarely used", "hello world, this is a tiny tokenizer for tests",
]


def write_tokenizer(out_dir: Path, vocab_size: int = VOCAB) -> None:
    """A byte-level BPE tokenizer (ids 0..3 = pad, eos, bos, unk as in Gemma) and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    out_dir = Path(out_dir)
    tok.save(str(out_dir / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 256,
        "pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>",
        "additional_special_tokens": SPECIALS[4:],
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    (out_dir / "chat_template.jinja").write_text(CHAT_TEMPLATE)


# -- drop maps --------------------------------------------------------------------------------------

def drop_map_dict(num_experts: int, layers: list[int], n_drop: int, *, seed: int = 0, groups: int = 1,
                  base: str = "test/tiny-moe") -> dict[str, Any]:
    """A `moe-drop-map/1` dict dropping `n_drop` experts per layer, a different random set in each layer.

    With `groups` > 1 (DeepSeek-style group-limited routing) every group drops the same number.
    """
    import random

    rng = random.Random(seed)
    per_group = num_experts // groups
    if n_drop % groups:
        raise ValueError(f"n_drop={n_drop} must be a multiple of groups={groups}")
    drop = {}
    for layer in layers:
        picked = [g * per_group + j for g in range(groups)
                  for j in rng.sample(range(per_group), n_drop // groups)]
        drop[str(layer)] = sorted(picked)
    return {"format": "moe-drop-map/1", "base": base, "num_experts": num_experts, "drop": drop}


def write_drop_map(path: Path, data: dict[str, Any]) -> Path:
    path = Path(path)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


# -- checkpoints written tensor by tensor (Hub layouts transformers 5.23 does not write) ----------

def write_safetensors_checkpoint(out_dir: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor], *,
                                 shards: int = 2) -> Path:
    """config.json + `tensors` split into `shards` files named as transformers names them, plus an index."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    names = list(tensors)
    per = math.ceil(len(names) / shards)
    weight_map: dict[str, str] = {}
    total = 0
    for i in range(shards):
        part = names[i * per:(i + 1) * per]
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({n: tensors[n].contiguous() for n in part}, str(out_dir / file), metadata={"format": "pt"})
        for n in part:
            weight_map[n] = file
            total += tensors[n].numel() * tensors[n].element_size()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return out_dir
