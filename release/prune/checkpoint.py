"""Read-only view of a Hugging Face safetensors checkpoint, validated before anything is written.

`inspect_checkpoint` parses config.json (raw JSON), detects the MoE family, validates every shard
header against its file, checks the index against the shards, and classifies every routed-expert
tensor by the family's layout rules (expert axis at dim 0 for fused tensors, `experts.{j}` names for
per-expert tensors). All problems are gathered and raised as one InputError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, ProblemCollector
from ..families import Family, for_config
from ..spec.readers import loads_guarded
from .safetensors_header import DTYPE_BITS, ShardHeader, read_header

CONFIG = "config.json"
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
SIDECAR = "expert_pruning.json"
# Files whose content would be stale after pruning (whole-model weights in other formats): never copied.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".npz", ".h5", ".msgpack")
_SHARD_NAME = re.compile(r"^[^/\\]+\.safetensors$")


@dataclass(frozen=True)
class ExpertRef:
    """A routed-expert tensor: fused (`slice`, all experts on dim 0) or one expert's (`renumber`)."""

    action: str
    layer: int
    expert: int | None = None  # renumber only
    expert_span: tuple[int, int] | None = None  # where the expert number sits in the name (renumber)

    def renamed(self, name: str, new_index: int) -> str:
        assert self.expert_span is not None
        a, b = self.expert_span
        return f"{name[:a]}{new_index}{name[b:]}"


@dataclass
class CheckpointInfo:
    base_dir: Path
    family: Family
    config: dict[str, Any]
    config_text: str
    count_keys: tuple[str, ...]  # every expert-count key present in the (text) config; all are edited
    num_experts: int
    top_k: int
    moe_layers: list[int]
    shards: list[ShardHeader]
    experts: dict[str, ExpertRef]  # tensor name → expert reference
    layout: str  # "fused" | "per-expert" | "fused+per-expert"
    index_text: str | None = None  # None for a single-file checkpoint
    index: dict[str, Any] | None = None
    other_files: list[str] = field(default_factory=list)  # copied verbatim
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why not copied)
    # Multi-token-prediction tensors: their routed experts are outside every drop map (see prune's `mtp`).
    mtp_tensors: list[str] = field(default_factory=list)

    @property
    def count_key(self) -> str:
        """Dotted path of the expert-count key, e.g. `text_config.num_experts`."""
        return ".".join(self.config_path(self.count_keys[0]))

    def config_path(self, key: str) -> tuple[str, ...]:
        root = self.family.config_root
        if root and isinstance(self.config.get(root), dict):
            return (root, key)
        return (key,)

    @property
    def tensor_bytes(self) -> int:
        return sum(e.nbytes for s in self.shards for e in s.entries)

    @property
    def total_parameters(self) -> int:
        return sum(e.numel for s in self.shards for e in s.entries)

    @property
    def num_tensors(self) -> int:
        return sum(len(s.entries) for s in self.shards)

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts for `release check` and reports."""
        return {
            "family": self.family.family, "count_key": self.count_key, "num_experts": self.num_experts,
            "top_k": self.top_k, "moe_layers": self.moe_layers, "layout": self.layout,
            "shards": [s.file for s in self.shards], "tensors": self.num_tensors,
            "expert_tensors": len(self.experts), "tensor_bytes": self.tensor_bytes,
            "total_parameters": self.total_parameters, "other_files": self.other_files,
            "skipped": [{"name": n, "why": why} for n, why in self.skipped],
            "mtp_tensors": len(self.mtp_tensors),
        }


def _read_json(path: Path, file: str) -> tuple[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError("file not found", file=file) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=file) from exc
    return text, loads_guarded(text, file)


def inspect_checkpoint(base_dir: Path) -> CheckpointInfo:
    """Validate a checkpoint folder without writing anything; raise InputError listing every problem."""
    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        raise InputError("not a folder (expected a Hugging Face checkpoint folder)", file=str(base_dir),
                         field="--base")

    config_text, config = _read_json(base_dir / CONFIG, CONFIG)
    if not isinstance(config, dict):
        raise InputError("top level must be a JSON object", file=CONFIG)
    family = for_config(config, file=CONFIG)
    tc = family.text_config(config)
    root = f"{family.config_root}." if family.config_root and tc is not config else ""
    try:
        num_experts = family.num_experts(config)
        top_k = family.top_k(config)
        moe_layers = family.moe_layers(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a {family.family} MoE config: {exc}", file=CONFIG,
                         field=root + "/".join(family.num_experts_keys)) from exc
    count_keys = tuple(k for k in family.num_experts_keys if _is_int(tc.get(k)))
    disagree = {k: tc[k] for k in count_keys if tc[k] != num_experts}
    if disagree:
        raise InputError(f"expert-count keys disagree: {({k: tc[k] for k in count_keys})}", file=CONFIG,
                         field=root + count_keys[0])
    if num_experts < 1 or not moe_layers:
        raise InputError(f"{family.family} config without MoE layers ({num_experts} experts, MoE layers "
                         f"{moe_layers})", file=CONFIG, field=root + count_keys[0])

    problems = ProblemCollector()
    index_text: str | None = None
    index: dict[str, Any] | None = None
    if (base_dir / INDEX).exists():
        index_text, index = _read_json(base_dir / INDEX, INDEX)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise InputError("must be an object mapping tensor name → shard file name", file=INDEX,
                             field="weight_map")
        shard_names = sorted(set(weight_map.values()))
        for name in shard_names:
            if not _SHARD_NAME.match(name):
                problems.add(INDEX, "weight_map",
                             f"shard name {name!r} is not a plain *.safetensors file name")
    elif (base_dir / SINGLE).exists():
        weight_map = None
        shard_names = [SINGLE]
    else:
        raise InputError(f"no {INDEX} and no {SINGLE}: not a safetensors checkpoint", file=str(base_dir),
                         field="files")
    problems.raise_if_any()

    shards: list[ShardHeader] = []
    for name in shard_names:
        path = base_dir / name
        if not path.is_file():
            tensors = sorted(t for t, f in (weight_map or {}).items() if f == name)
            problems.add(INDEX, f"weight_map[{tensors[0]!r}]" if tensors else "weight_map",
                         f"names shard {name}, which is missing from {base_dir} ({len(tensors)} tensors)")
            continue
        try:
            shards.append(read_header(path, name))
        except InputError as exc:
            problems.extend(exc.problems)
    problems.raise_if_any()

    if weight_map is not None:
        _check_index(weight_map, shards, problems)
    mtp = mtp_tensors(family, config, shards)
    experts = _classify(family, shards, num_experts, moe_layers, problems, set(mtp))
    _cap(problems)
    problems.raise_if_any()

    # Routers are sliced in both layouts; the layout is what the expert weights themselves look like.
    kinds = {"per-expert" if ref.action == "renumber" else "fused"
             for name, ref in experts.items() if ".experts." in name}
    layout = "+".join(sorted(kinds)) or "none"
    other, skipped = _other_files(base_dir, {CONFIG, INDEX, SIDECAR, *shard_names})
    return CheckpointInfo(
        base_dir=base_dir, family=family, config=config, config_text=config_text, count_keys=count_keys,
        num_experts=num_experts, top_k=top_k, moe_layers=moe_layers, shards=shards, experts=experts,
        layout=layout, index_text=index_text, index=index, other_files=other, skipped=skipped, mtp_tensors=mtp,
    )


def _check_index(weight_map: dict[str, str], shards: list[ShardHeader], problems: ProblemCollector) -> None:
    located: dict[str, str] = {}
    for shard in shards:
        for e in shard.entries:
            if e.name in located:
                problems.add(shard.file, e.name, f"tensor also stored in {located[e.name]}")
            located[e.name] = shard.file
    for tensor, file in weight_map.items():
        where = located.get(tensor)
        if where is None:
            problems.add(INDEX, f"weight_map[{tensor!r}]",
                         f"names {file}, which does not contain this tensor")
        elif where != file:
            problems.add(INDEX, f"weight_map[{tensor!r}]", f"names {file}, but the tensor is in {where}")
    for tensor, file in located.items():
        if tensor not in weight_map:
            problems.add(INDEX, "weight_map", f"tensor {tensor!r} of {file} is missing from the index")


def mtp_tensors(family: Family, config: dict[str, Any], shards: list[ShardHeader]) -> list[str]:
    """Tensors of the multi-token-prediction block, as the family's `mtp` rule finds them.

    `mtp = { pattern = … }` matches by name (Qwen3-Next `mtp.*`); with `min_layer_key`, the pattern's
    `layer` group must be ≥ that config value (DeepSeek-V3/GLM-4.5 store MTP as layer num_hidden_layers).
    """
    rule = family.extra.get("mtp")
    if not rule:
        return []
    pattern = re.compile(rule["pattern"])
    min_layer = None
    if "min_layer_key" in rule:
        min_layer = int(family.text_config(config).get(rule["min_layer_key"], 0) or 0)
    found = []
    for shard in shards:
        for e in shard.entries:
            m = pattern.search(e.name)
            if m and (min_layer is None or int(m.group("layer")) >= min_layer):
                found.append(e.name)
    return found


def _classify(family: Family, shards: list[ShardHeader], num_experts: int, moe_layers: list[int],
              problems: ProblemCollector, mtp: set[str]) -> dict[str, ExpertRef]:
    experts: dict[str, ExpertRef] = {}
    moe = set(moe_layers)
    seen_layers: set[int] = set()
    # (layer, name with the expert number blanked) → expert numbers present, for the completeness check
    groups: dict[tuple[int, str], set[int]] = {}
    group_file: dict[tuple[int, str], str] = {}
    for shard in shards:
        for e in shard.entries:
            if e.name in mtp:
                continue
            hit = family.classify(e.name)
            if hit is None:
                continue
            rule, m = hit
            layer = int(m.group("layer"))
            if layer not in moe:
                problems.add(shard.file, e.name, f"routed-expert tensor in layer {layer}, which is not a MoE "
                                                 f"layer of config.json (MoE layers: {_short(moe_layers)})")
                continue
            seen_layers.add(layer)
            if rule.action == "slice":
                if not e.shape or e.shape[0] != num_experts:
                    problems.add(shard.file, f"{e.name}.shape",
                                 f"{list(e.shape)}: dim 0 should be the expert count {num_experts} from "
                                 "config.json")
                    continue
                row_bits = e.numel // num_experts * DTYPE_BITS[e.dtype]
                if row_bits % 8:
                    problems.add(shard.file, f"{e.name}.shape",
                                 f"one expert's slice of {e.dtype} {list(e.shape)} is not whole bytes")
                    continue
                experts[e.name] = ExpertRef("slice", layer)
            else:
                j = int(m.group("expert"))
                if j >= num_experts:
                    problems.add(shard.file, e.name,
                                 f"expert {j} out of range: config.json has {num_experts} experts")
                    continue
                span = m.span("expert")
                key = (layer, e.name[:span[0]] + "{expert}" + e.name[span[1]:])
                groups.setdefault(key, set()).add(j)
                group_file.setdefault(key, shard.file)
                experts[e.name] = ExpertRef("renumber", layer, j, span)
    for (layer, template), present in sorted(groups.items()):
        missing = sorted(set(range(num_experts)) - present)
        if missing:
            problems.add(group_file[(layer, template)], template,
                         f"experts {_short(missing)} missing in layer {layer} "
                         f"(config.json: {num_experts} experts)")
    for layer in sorted(moe - seen_layers):
        problems.add(CONFIG, "num_hidden_layers", f"MoE layer {layer} has no routed-expert tensors in the "
                                                  f"checkpoint (family {family.family})")
    return experts


MAX_PROBLEMS = 30


def _cap(problems: ProblemCollector) -> None:
    """Keep a readable report: a wrong expert count would otherwise list every expert tensor (10^5)."""
    extra = len(problems.problems) - MAX_PROBLEMS
    if extra > 0:
        last = problems.problems[MAX_PROBLEMS - 1]
        del problems.problems[MAX_PROBLEMS:]
        problems.add(last.file, "(more)", f"… and {extra} more problems of the kinds above")


def _other_files(base_dir: Path, handled: set[str]) -> tuple[list[str], list[tuple[str, str]]]:
    other: list[str] = []
    skipped: list[tuple[str, str]] = []
    for p in sorted(base_dir.iterdir()):
        if p.name in handled:
            continue
        if p.is_dir():
            if not p.name.startswith("."):
                skipped.append((p.name + "/",
                                "subfolder not copied: it may hold unpruned weights (e.g. original/)"))
        elif p.name.endswith(WEIGHT_SUFFIXES):
            skipped.append((p.name, "weights outside the index would be stale after pruning"))
        elif p.is_file():
            other.append(p.name)
    return other, skipped


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short(values: list[int]) -> str:
    if len(values) <= 12:
        return ", ".join(str(v) for v in values)
    return ", ".join(str(v) for v in values[:10]) + f", … ({len(values)} in all)"

