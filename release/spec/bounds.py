"""Sane bounds for the counts and sizes inputs carry, checked before anything is allocated from them.

A config with `num_hidden_layers = 1e9` or a drop map with `num_experts = 10**12` would otherwise build
lists of that length; `Infinity` or `4.7` would fail deep inside with OverflowError/TypeError. The limits
are far above every model published so far (the most experts per layer: 512; the most layers: ~128;
the widest dimension: Llama 4 Scout's 10 485 760 positions), and each error states its bound.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..errors import Problem
from ..families import Family

MAX_LAYERS = 1024
MAX_EXPERTS = 65536
MAX_DIM = 1 << 24  # hidden/intermediate widths, vocabulary, heads, positions

# Config keys holding a count or a width (Hugging Face naming): each must be an integer in range.
_COUNT_KEY = re.compile(r"^(num_|n_)|(_size|_dim|_layers|_heads|_experts|_experts_per_tok)$"
                        r"|^max_position_embeddings$|^vocab_size")


def short(value: Any, limit: int = 60) -> str:
    """repr() cut to `limit` characters: a message quotes the value, not a megabyte of it."""
    if is_int(value) and value.bit_length() > 128:  # repr() of a huge int is slow, or refused
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_problem(value: Any, lo: int, hi: int) -> str | None:
    """Why `value` is not an integer in lo..hi, or None."""
    if not is_int(value):
        return f"must be an integer {lo}..{hi}, got {short(value)}"
    if not lo <= value <= hi:
        return f"{short(value)} is out of range {lo}..{hi}"
    return None


def number_problem(value: Any, lo: float, hi: float, *, lo_open: bool = False) -> str | None:
    """Why `value` is not a finite number in [lo, hi] (or (lo, hi]), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number, got {short(value)}"
    if not math.isfinite(value):
        return f"must be a finite number, got {short(value)}"
    if value < lo or (lo_open and value == lo) or value > hi:
        return f"{value!r} is out of range {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    return None


def _sub_configs(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The top level and every nested `*_config` dict (text, vision, audio …), with their field prefix."""
    out: list[tuple[str, dict[str, Any]]] = [("", config)]
    out += [(f"{k}.", v) for k, v in config.items() if isinstance(v, dict) and k.endswith("_config")]
    return out


def config_problems(config: dict[str, Any], family: Family, file: str) -> list[Problem]:
    """Counts in a base config.json that are not integers in range, and layout keys of `family` that
    do not hold what its rule needs."""
    problems: list[Problem] = []

    def add(field: str, message: str | None) -> None:
        if message:
            problems.append(Problem(file, field, message))

    for prefix, section in _sub_configs(config):
        for key, value in section.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not _COUNT_KEY.search(key):
                continue
            hi = MAX_LAYERS if key.endswith("_layers") else MAX_EXPERTS if "expert" in key else MAX_DIM
            add(prefix + key, int_problem(value, 0, hi))
    if family.config_root and family.config_root in config and not isinstance(config[family.config_root], dict):
        add(family.config_root, "must be an object")
        return problems
    if problems:
        return problems

    tc = family.text_config(config)
    root = f"{family.config_root}." if family.config_root and tc is not config else ""
    n_layers = tc.get(family.num_layers_key)
    if n_layers is not None:
        add(root + family.num_layers_key, int_problem(n_layers, 1, MAX_LAYERS))
    rule = family.moe_layers_rule
    kind = rule.get("rule")
    def layer_list(key: str) -> None:
        listed = tc.get(key)
        if listed is None:
            return
        if not isinstance(listed, list):
            add(root + key, "must be a list of layer indices")
            return
        for i, v in enumerate(listed):
            add(f"{root}{key}[{i}]", int_problem(v, 0, MAX_LAYERS - 1))

    if kind == "list":
        layer_list(rule["key"])
    if kind == "sparse_step" and rule.get("exclude_key"):
        layer_list(rule["exclude_key"])
    for key in (rule.get("step_key"), rule.get("key") if kind in ("interleave", "first_k_dense") else None):
        if key and tc.get(key) is not None:
            add(root + key, int_problem(tc[key], 0, MAX_LAYERS))
    enabled = rule.get("enabled_key")
    if enabled and enabled in tc and not isinstance(tc[enabled], bool):
        add(root + enabled, f"must be true or false, got {tc[enabled]!r}")
    return problems
