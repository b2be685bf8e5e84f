"""MoE family layouts, as data: one TOML file per family in this folder.

A layout says where a config keeps its expert count and top-k, which decoder layers are MoE,
and which tensors carry a routed-expert axis (all at dim 0). Code reads these files; adding a
family means adding a file, not a branch.

Tensor actions:
- `slice`    — fused tensor, expert axis at dim 0: keep the rows of kept experts.
- `renumber` — one tensor per expert (`…experts.{expert}.…`): drop dropped experts, renumber kept
               ones 0..n-1 in ascending original order.
Tensors matching no rule are copied unchanged (dense MLPs, shared experts, attention, norms …).

Optional `mtp = { pattern = …, min_layer_key = … }` names the multi-token-prediction block, whose own
routed experts no drop map covers (the pruner refuses it or, on request, leaves it out). With
`min_layer_key`, the pattern's `layer` group must be ≥ config[min_layer_key] (DeepSeek-V3 layer 61).

Optional `collect = { experts = …, routing = … }` lets `release dropmap` measure expert contributions:
`experts` is the module path, relative to a decoder layer, that the model calls as
experts(hidden, top_k_index, top_k_weights) with the router's final weights; `routing` describes how
the model computes them (recorded with the scores). Without it the family has no collector.

`nvfp4_census` says which tensors the family's checkpoints hold, so `plan` sizes the NVFP4 artifact from
the config alone (its layout and keys: release/nvfp4/census.py).

moe_layers rules:
- `all`            — every layer (optionally only if `enabled_key` is true when present)
- `first_k_dense`  — layers ≥ config[`key`] (DeepSeek-V3, GLM-4.5)
- `sparse_step`    — layers with (i+1) % config[`step_key`] == 0 and i not in config[`exclude_key`] (Qwen)
- `list`           — config[`key`] is the list of MoE layers (Llama 4 `moe_layers`); when the key is
                     absent and `step_key` is given, falls back to `interleave` on config[`step_key`]
- `interleave`     — (i+1) % config[`key`] == 0 (Llama 4 `interleave_moe_layer_step`)
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import InputError

HERE = Path(__file__).parent


@dataclass(frozen=True)
class TensorRule:
    pattern: re.Pattern[str]
    action: str  # "slice" | "renumber"


@dataclass(frozen=True)
class CollectSpec:
    experts: str  # module path relative to a decoder layer, e.g. "mlp.experts"
    routing: str  # how the model turns router logits into the weights the experts receive


@dataclass(frozen=True)
class Family:
    family: str
    model_types: tuple[str, ...]
    config_root: str
    num_experts_keys: tuple[str, ...]
    top_k_keys: tuple[str, ...]
    num_layers_key: str
    moe_layers_rule: dict[str, Any]
    tensors: tuple[TensorRule, ...]
    group_key: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    # -- config access (raw JSON dicts, never transformers objects) --------------------------
    def text_config(self, config: dict[str, Any]) -> dict[str, Any]:
        if self.config_root and isinstance(config.get(self.config_root), dict):
            return config[self.config_root]
        return config

    def count_key(self, config: dict[str, Any]) -> str:
        """The key holding the expert count in this config (first of num_experts_keys present)."""
        tc = self.text_config(config)
        for key in self.num_experts_keys:
            if isinstance(tc.get(key), int):
                return key
        raise KeyError(f"none of {list(self.num_experts_keys)} in config")

    def num_experts(self, config: dict[str, Any]) -> int:
        return int(self.text_config(config)[self.count_key(config)])

    def top_k(self, config: dict[str, Any]) -> int:
        tc = self.text_config(config)
        for key in self.top_k_keys:
            if isinstance(tc.get(key), int):
                return int(tc[key])
        raise KeyError(f"none of {list(self.top_k_keys)} in config")

    def num_groups(self, config: dict[str, Any]) -> int:
        if not self.group_key:
            return 1
        value = self.text_config(config).get(self.group_key)
        return int(value) if isinstance(value, int) and value > 0 else 1

    def moe_layers(self, config: dict[str, Any]) -> list[int]:
        tc = self.text_config(config)
        n = int(tc[self.num_layers_key])
        rule = self.moe_layers_rule
        kind = rule["rule"]
        if kind == "all":
            key = rule.get("enabled_key")
            if key and key in tc and not tc[key]:
                return []
            return list(range(n))
        if kind == "first_k_dense":
            k = int(tc.get(rule["key"], 0) or 0)
            return list(range(k, n))
        if kind == "sparse_step":
            step = int(tc.get(rule["step_key"], 1) or 1)
            exclude = set(tc.get(rule.get("exclude_key", ""), []) or [])
            return [i for i in range(n) if (i + 1) % step == 0 and i not in exclude]
        if kind == "list":
            listed = tc.get(rule["key"])
            if listed is None and rule.get("step_key"):
                # Hub configs may omit the list; transformers then derives it from the interleave step.
                step = int(tc.get(rule["step_key"], 1) or 1)
                return [i for i in range(n) if (i + 1) % step == 0]
            return sorted(int(i) for i in listed or [])
        if kind == "interleave":
            step = int(tc.get(rule["key"], 1) or 1)
            return [i for i in range(n) if (i + 1) % step == 0]
        raise ValueError(f"unknown moe_layers rule {kind!r} in family {self.family}")

    def collect(self) -> CollectSpec | None:
        """How `release dropmap` reads this family's expert contributions; None when it cannot."""
        spec = self.extra.get("collect")
        if not isinstance(spec, dict):
            return None
        return CollectSpec(experts=str(spec["experts"]), routing=str(spec.get("routing", "")))

    def classify(self, tensor_name: str) -> tuple[TensorRule, re.Match[str]] | None:
        for rule in self.tensors:
            m = rule.pattern.search(tensor_name)
            if m:
                return rule, m
        return None


def _load(path: Path) -> Family:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    rules = tuple(TensorRule(re.compile(t["pattern"]), t["action"]) for t in data.pop("tensors", []))
    for r in rules:
        if r.action not in ("slice", "renumber"):
            raise ValueError(f"{path.name}: unknown tensor action {r.action!r}")
    known = {"family", "model_types", "config_root", "num_experts_keys", "top_k_keys", "num_layers_key",
             "moe_layers", "group_key"}
    extra = {k: v for k, v in data.items() if k not in known}
    return Family(
        family=data["family"],
        model_types=tuple(data["model_types"]),
        config_root=data.get("config_root", ""),
        num_experts_keys=tuple(data["num_experts_keys"]),
        top_k_keys=tuple(data["top_k_keys"]),
        num_layers_key=data.get("num_layers_key", "num_hidden_layers"),
        moe_layers_rule=data["moe_layers"],
        tensors=rules,
        group_key=data.get("group_key", ""),
        extra=extra,
    )


@cache
def all_families() -> tuple[Family, ...]:
    return tuple(_load(p) for p in sorted(HERE.glob("*.toml")))


def for_config(config: dict[str, Any], *, file: str = "config.json") -> Family:
    """The family of a raw config.json dict; unknown architectures are refused."""
    model_type = config.get("model_type")
    for fam in all_families():
        if model_type in fam.model_types:
            return fam
    known = sorted(t for f in all_families() for t in f.model_types)
    raise InputError(
        f"unsupported MoE architecture {model_type!r}; known model_type values: {', '.join(known)}",
        file=file, field="model_type",
    )
