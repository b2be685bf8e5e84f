"""The demo base model: a tiny Gemma 4 MoE generated locally, so the demo release needs no network.

It is a real `Gemma4ForConditionalGeneration` built from a real transformers `Gemma4Config` with
seeded random weights, saved as BF16 safetensors in several shards, with a small byte-fallback BPE
tokenizer carrying Gemma 4's special tokens and a Gemma-4-style chat template. Widths are multiples
of 256 where llama.cpp's k-quants need them, so the demo's GGUF tiers quantize like the real model.
"""

from __future__ import annotations

import json
from pathlib import Path

from .fsutil import atomic_write_text, sha256_file, staging_dir

SEED = 20260401
# Bump when the generated files change, so an existing demo base is regenerated.
GENERATOR_VERSION = 2
NUM_EXPERTS = 8
TOP_K = 2

# Gemma 4's control tokens (ids are ours; the real vocabulary is 262144 tokens).
SPECIAL_TOKENS = [
    "<pad>", "<eos>", "<bos>", "<unk>", "<mask>",
    "<|turn>", "<turn|>", "<|think|>", "<|channel>", "<channel|>",
    "<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>", '<|"|>',
    "<|image>", "<image|>", "<|image|>", "<|video|>", "<|audio>", "<audio|>", "<|audio|>",
]
VOCAB_SIZE = 1024

CHAT_TEMPLATE = """{{- bos_token -}}
{%- for message in messages -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
<|turn>{{ role }}
{{ message['content'] | trim }}<turn|>
{% endfor -%}
{%- if add_generation_prompt -%}
<|turn>model
{% endif -%}
"""

# Training text for the toy tokenizer: enough variety for a few hundred merges.
_CORPUS = """
The quick brown fox jumps over the lazy dog. A mixture of experts routes every token to a few experts.
Pruning removes experts that the router rarely picks; the remaining experts keep their weights exactly.
Quantization stores weights in fewer bits: eight, six, five, four, three or two bits per weight.
Hello! How are you today? I am a tiny model made for testing a release pipeline, not for chatting.
def add(a, b):
    return a + b
print(add(2, 3))
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 128 98 2026. Symbols: ( ) [ ] { } < > = + - * / % # @ & | ; : , .
User asks a question, the model answers. System prompts set the tone. Tools return JSON results.
Mathematics, logic, code, science and creative writing are five task classes scored per layer.
"""


def text_config() -> dict:
    return {
        "hidden_size": 256,
        "intermediate_size": 512,
        "moe_intermediate_size": 192,  # like 704: not a multiple of 256, so k-quants fall back
        "num_hidden_layers": 4,
        "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 128,
        "global_head_dim": 256,
        "num_global_key_value_heads": 1,
        "attention_k_eq_v": True,
        "enable_moe_block": True,
        "num_experts": NUM_EXPERTS,
        "top_k_experts": TOP_K,
        "vocab_size": VOCAB_SIZE,
        "vocab_size_per_layer_input": VOCAB_SIZE,
        "hidden_size_per_layer_input": 0,
        "sliding_window": 64,
        "max_position_embeddings": 4096,
        "final_logit_softcapping": 30.0,
        "tie_word_embeddings": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    }


def vision_config() -> dict:
    return {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "patch_size": 16,
        "position_embedding_size": 256,
    }


def _tokenizer_json(vocab_size: int = VOCAB_SIZE) -> dict:
    """A Llama/Gemma-style BPE with byte fallback (what llama.cpp's Gemma 4 converter reads), `vocab_size`
    tokens (the merges learnt for the demo's, the rest unused)."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE - len(SPECIAL_TOKENS) - 256 + 64,
                                  special_tokens=[], show_progress=False)
    probe = Tokenizer(models.BPE())
    probe.normalizer = normalizers.Replace(" ", "▁")
    probe.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    probe.train_from_iterator([line for line in _CORPUS.splitlines() if line] * 4, trainer=trainer)
    learned = json.loads(probe.to_str())["model"]

    vocab: dict[str, int] = {}
    for tok in SPECIAL_TOKENS + byte_tokens:
        vocab[tok] = len(vocab)
    for tok, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        if tok not in vocab and len(vocab) < vocab_size:
            vocab[tok] = len(vocab)
    # Fill up to the embedding's row count, as Gemma's `<unusedN>` tokens do: llama.cpp's Gemma converter
    # trims token_embd to len(vocab) + len(added_tokens), and llama.cpp refuses a file whose embedding has
    # more rows than its vocabulary.
    while len(vocab) < vocab_size:
        vocab[f"<unused{len(vocab)}>"] = len(vocab)
    merges = []
    for merge in learned["merges"]:
        a, b = merge if isinstance(merge, list) else merge.split(" ", 1)
        if a in vocab and b in vocab and a + b in vocab:
            merges.append([a, b])

    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m) for m in merges], unk_token="<unk>",
                               byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])])
    return json.loads(tok.to_str())


def generate_tiny_gemma4(out_dir: Path, *, seed: int = SEED) -> Path:
    """Write the demo base checkpoint to `out_dir` (atomically); returns `out_dir`."""
    # A stamp left from an earlier folder must not vouch for whatever happens to `out_dir` if this
    # run is interrupted between replacing the folder and writing the new stamp.
    _stamp(out_dir).unlink(missing_ok=True)
    write_gemma4(out_dir, text_config(), seed=seed, max_shard_size="4MB", perturb=True)
    # Beside the folder, not in it: everything in it is part of the checkpoint and gets published.
    # It lists every file with its sha256, so it vouches for this folder's content and nothing else.
    atomic_write_text(_stamp(out_dir), json.dumps({**_generator(seed), "files": _listing(out_dir)},
                                                  indent=1, sort_keys=True) + "\n")
    return out_dir


def write_gemma4(out_dir: Path, text: dict, *, seed: int, max_shard_size: str, perturb: bool = False,
                 init_in_bf16: bool = False) -> Path:
    """A random-init `Gemma4ForConditionalGeneration` with the text config `text`, the demo's vision tower
    and tokenizer, saved as BF16 (atomically). `perturb` moves scales off 1 and biases off 0;
    `init_in_bf16` builds it in BF16 directly (half the memory; other random values than an fp32 init)."""
    import torch
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration

    ids = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    config = Gemma4Config(
        text_config=text,
        vision_config=vision_config(),
        audio_config=None,
        boi_token_id=ids["<|image>"], eoi_token_id=ids["<image|>"], image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"], boa_token_id=ids["<|audio>"], eoa_token_index=ids["<audio|>"],
        audio_token_id=ids["<|audio|>"], tie_word_embeddings=True,
    )
    config.eos_token_id = [ids["<eos>"], ids["<turn|>"]]
    config.bos_token_id = ids["<bos>"]
    config.pad_token_id = ids["<pad>"]
    torch.manual_seed(seed)
    if init_in_bf16:
        torch.set_default_dtype(torch.bfloat16)
        try:
            model = Gemma4ForConditionalGeneration(config)
        finally:
            torch.set_default_dtype(torch.float32)
    else:
        model = Gemma4ForConditionalGeneration(config).to(torch.bfloat16)
    if perturb:
        with torch.no_grad():
            # Random init leaves scales at 1 and biases at 0; perturb everything so no term is neutral
            # (an exactness test where a scale is 1 would not notice it being dropped or misaligned).
            gen = torch.Generator().manual_seed(seed + 1)
            for name, param in model.named_parameters():
                if param.ndim <= 1:
                    noise = torch.rand(param.shape, generator=gen) * 0.5 + 0.75
                    param.copy_(noise.to(param.dtype) * (1 if "norm" in name or "scale" in name else 0.1))

    with staging_dir(out_dir) as tmp:
        model.save_pretrained(tmp, max_shard_size=max_shard_size)
        _write_tokenizer(tmp, ids, int(text.get("vocab_size", VOCAB_SIZE)))
        # transformers' save drops keys other runtimes read (docs/moe-pruning.md §5): restore them.
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text())
        for key in ("global_head_dim", "num_global_key_value_heads"):
            cfg["text_config"][key] = text[key]
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return out_dir


def _generator(seed: int) -> dict:
    return {"generator": "tiny-gemma4", "version": GENERATOR_VERSION, "seed": seed}


def _stamp(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.demo.json")


def _listing(out_dir: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(out_dir.iterdir()) if p.is_file()}


def is_current(out_dir: Path, *, seed: int = SEED) -> bool:
    """Whether `out_dir` holds exactly what this version of the generator wrote there: the stamp
    matches the generator, and the folder's files are the ones it lists, byte for byte. A stamp
    whose folder was deleted or edited is removed, so it cannot outlive what it describes."""
    stamp_path = _stamp(out_dir)
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        return False
    try:
        current = (isinstance(stamp, dict) and stamp.get("files")
                   and {k: v for k, v in stamp.items() if k != "files"} == _generator(seed)
                   and out_dir.is_dir() and _listing(out_dir) == stamp["files"])
    except OSError:
        current = False
    if not current:
        stamp_path.unlink(missing_ok=True)
    return bool(current)


def _write_tokenizer(out: Path, ids: dict[str, int], vocab_size: int = VOCAB_SIZE) -> None:
    (out / "tokenizer.json").write_text(json.dumps(_tokenizer_json(vocab_size), ensure_ascii=False, indent=2))
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
        "mask_token": "<mask>", "add_bos_token": True, "add_eos_token": False,
        "model_max_length": 4096, "padding_side": "left", "clean_up_tokenization_spaces": False,
        "extra_special_tokens": {"sot_token": "<|turn>", "eot_token": "<turn|>"},
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
               "mask_token": "<mask>"}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    gen = {"bos_token_id": ids["<bos>"], "eos_token_id": [ids["<eos>"], ids["<turn|>"]],
           "pad_token_id": ids["<pad>"], "do_sample": True, "temperature": 1.0, "top_k": 64, "top_p": 0.95}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
