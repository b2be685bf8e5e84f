"""`release dropmap NAME`: from the release's base model and calibration text to a drop map and its scores.

Only the definition's [base], [prune] experts_kept and optional [dropmap] are read (the drop map may not
exist yet). The base comes from where every other step gets it (`release.fetch.ensure_base`: generated
demo, local folder, or the pinned Hub revision). Both outputs are complete before either is renamed into
place; on bad input nothing is written.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .. import __version__
from ..errors import InputError, Problem, WorkError
from ..families import Family, for_config
from ..fetch import ensure_base
from ..fsutil import _umask, folder_problem
from ..prune import inspect_checkpoint
from ..spec.definition import ReleaseDefinition
from ..spec.drop_recipes import Recipe, recipe_problems
from ..spec.dropmap import FORMAT as DROP_MAP_FORMAT
from ..spec.dropmap import DropMap, check_against_config, parse_drop_map
from ..spec.expert_scores import (
    ClassInfo,
    ExpertScores,
    LayerScores,
    dumps,
    kept_share,
    parse_scores,
    scores_path_for,
    sha256_hex,
)
from ..spec.load import DEFINITION_FILE, Release, load_definition, resolve_pipeline_dir
from ..spec.paths import PathRefused, resolve_inside
from ..spec.readers import read_json_object
from .calibration import read_calibration, tokenize

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class DropmapRequest:
    out: Path
    calibration: Path | None = None  # default: [dropmap] calibration
    recipe: str | None = None  # default: [dropmap] recipe, else max-class
    keep_top_per_class: int | None = None
    class_weights: dict[str, float] | None = None
    device: str = "cpu"
    dtype: str = "auto"
    max_tokens: int | None = None
    batch_tokens: int = 4096
    hub_endpoint: str | None = None


@dataclass(frozen=True)
class DropmapResult:
    drop_map: Path
    scores_file: Path
    recipe: Recipe
    kept: dict[int, tuple[int, ...]]
    kept_share: dict[int, float]
    tokens: int
    seconds: float
    layer_bytes: int
    activation_bytes: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"drop_map": str(self.drop_map), "scores": str(self.scores_file), "recipe": self.recipe.to_json(),
                "kept": {str(k): list(v) for k, v in self.kept.items()},
                "kept_share": {str(k): v for k, v in self.kept_share.items()}, "tokens": self.tokens,
                "seconds": round(self.seconds, 3), "tokens_per_second": round(self.tokens_per_second, 2),
                "layer_bytes": self.layer_bytes, "activation_bytes": self.activation_bytes}


def _torch_device(name: str) -> Any:
    import torch

    if name not in DEVICES:
        raise InputError(f"unknown device {name!r} (known: {', '.join(DEVICES)})", file="--device")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("cuda requested but torch sees no CUDA device", file="--device")
    return torch.device(name)


def resolve_dtype(name: str, config: dict[str, Any], family: Family) -> Any:
    """`auto`: the dtype the checkpoint declares (config `dtype`/`torch_dtype`), float32 when it says none."""
    import torch

    if name not in DTYPES:
        raise InputError(f"unknown dtype {name!r} (known: {', '.join(DTYPES)})", file="--dtype")
    if name == "auto":
        declared = config.get("dtype") or config.get("torch_dtype") or family.text_config(config).get("dtype")
        name = declared if declared in DTYPES[1:] else "float32"
    return getattr(torch, name)


def _inside(folder: Path, rel: str, file: str, field: str) -> Path:
    try:
        return resolve_inside(folder, rel)
    except PathRefused as exc:
        raise InputError(str(exc), file=file, field=field) from exc


def _recipe(d: ReleaseDefinition, request: DropmapRequest) -> Recipe:
    section = d.dropmap
    return Recipe(
        name=request.recipe or (section.recipe if section else "max-class"),
        keep_top_per_class=(request.keep_top_per_class if request.keep_top_per_class is not None
                            else section.keep_top_per_class if section else 0),
        class_weights=dict(request.class_weights if request.class_weights is not None
                           else section.class_weights if section else {}),
    )


def derive(name: str, request: DropmapRequest, progress: Callable[[str], None] | None = None) -> DropmapResult:
    """Run the collector over the base model and write the drop map and its scores (see module docstring)."""
    out_problem(request.out)
    pipeline_dir = resolve_pipeline_dir(name)
    definition = load_definition(pipeline_dir)
    rel_file = f"{pipeline_dir.name}/{DEFINITION_FILE}"
    base = definition.base
    config_file = f"{pipeline_dir.name}/{base.config}"
    config = read_json_object(_inside(pipeline_dir, base.config, rel_file, "base.config"), config_file)
    family = for_config(config, file=config_file)
    try:
        num_experts, top_k, groups = family.num_experts(config), family.top_k(config), family.num_groups(config)
        moe_layers = family.moe_layers(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a {family.family} MoE config: {exc}", file=config_file) from exc
    kept_count = definition.prune.experts_kept
    problems: list[Problem] = []
    if not top_k <= kept_count <= num_experts:
        problems.append(Problem(rel_file, "prune.experts_kept",
                                f"{kept_count} must lie between top-k = {top_k} and the {num_experts} experts"))
    if groups > 1 and kept_count % groups:
        problems.append(Problem(rel_file, "prune.experts_kept",
                                f"{kept_count} is not a multiple of n_group = {groups}"))
    if family.collect() is None:
        problems.append(Problem(config_file, "model_type", f"the {family.family} family has no contribution "
                                                           "collector (see release/families)"))
    if not moe_layers:
        problems.append(Problem(config_file, family.config_root or "(top level)", "the base has no MoE layers"))

    if request.calibration is not None:
        calibration, shown = request.calibration, str(request.calibration)
    elif definition.dropmap is not None:
        rel = definition.dropmap.calibration
        calibration = _inside(pipeline_dir, rel, rel_file, "dropmap.calibration")
        shown = f"{pipeline_dir.name}/{rel}"
    else:
        raise InputError("no calibration text: give --calibration DIR or set [dropmap] calibration",
                         file="--calibration")
    max_tokens = request.max_tokens or (definition.dropmap.max_tokens if definition.dropmap else 512)
    classes = read_calibration(calibration, shown, max_tokens=max_tokens)
    recipe = _recipe(definition, request)
    from_cli = request.recipe is not None or request.keep_top_per_class is not None or \
        request.class_weights is not None
    recipe_file, recipe_field = ("command line", "") if from_cli else (rel_file, "dropmap")
    problems += recipe_problems(recipe, [c.name for c in classes], file=recipe_file, field=recipe_field)
    if recipe.keep_top_per_class > kept_count:
        problems.append(Problem(recipe_file, f"{recipe_field}.keep_top_per_class".lstrip("."),
                                f"{recipe.keep_top_per_class} is more than the {kept_count} experts kept"))
    if problems:
        raise InputError(problems)
    device = _torch_device(request.device)
    dtype = resolve_dtype(request.dtype, config, family)
    out = request.out
    scores_out = out.with_name(scores_path_for(out.name))

    from .collect import collect  # lazy: torch, only when a map is derived

    partial = Release(pipeline_dir, definition, cast(Any, None), cast(Any, None), config, family)
    base_dir = ensure_base(partial, endpoint=request.hub_endpoint, progress=progress)
    info = inspect_checkpoint(base_dir)
    if info.num_experts != num_experts or info.moe_layers != moe_layers:
        raise InputError(f"the checkpoint in {base_dir} disagrees with the recorded {base.config} "
                         "(expert count or MoE layers)", file=config_file)
    tokenizer = _tokenizer(base_dir)
    tokenized = tokenize(classes, tokenizer, max_tokens, display=shown)
    for cls in tokenized:
        if not cls.samples:
            raise InputError("no tokens after tokenization", file=f"{shown}/{cls.file}")
    pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if isinstance(i, int)), 0)
    if progress:
        progress(f"collecting on {device.type} ({str(dtype).removeprefix('torch.')}): {len(tokenized)} classes, "
                 f"{sum(c.tokens for c in tokenized)} tokens, {len(moe_layers)} MoE layers")
    collected = collect(info, family, tokenized, device=device, dtype=dtype, batch_tokens=request.batch_tokens,
                        pad_id=pad_id, progress=progress)

    spec = family.collect()
    assert spec is not None
    scores = ExpertScores(
        tool=f"moe-release {__version__}", base=base.repo, revision=base.revision, family=family.family,
        num_experts=num_experts, top_k=top_k, groups=groups, routing=spec.routing,
        dtype=str(dtype).removeprefix("torch."), device=device.type, max_tokens=max_tokens,
        classes={c.name: ClassInfo(c.file, c.sha256, len(c.samples), collected.class_tokens[i])
                 for i, c in enumerate(tokenized)},
        recipe=recipe, experts_kept=kept_count,
        layers={layer: LayerScores({c: tuple(int(v) for v in collected.counts[layer][i].tolist())
                                    for i, c in enumerate(collected.classes)},
                                   {c: tuple(float(v) for v in collected.sums[layer][i].tolist())
                                    for i, c in enumerate(collected.classes)})
                for layer in sorted(collected.counts)},
    )
    # The map is derived from the scores as written, exactly as `release check` re-derives it.
    scores = parse_scores(scores.to_bytes(), scores_out.name)
    try:
        kept = scores.kept()
    except InputError as exc:  # keep_top_per_class forces more experts than a layer keeps
        raise InputError([Problem(recipe_file, f"{recipe_field}.keep_top_per_class".lstrip("."), p.message)
                          for p in exc.problems]) from exc
    drop_map_bytes = render_drop_map(base.repo, num_experts, kept, _source(scores, recipe, scores_out.name))
    drop_map = parse_drop_map(drop_map_bytes, out.name)
    bad = check_against_config(drop_map, config, family, config_file=config_file, base_repo=base.repo)
    if bad:
        raise WorkError("the derived drop map fails its own check: " + "; ".join(str(p) for p in bad))
    scores = dataclasses.replace(scores, drop_map_sha256=sha256_hex(drop_map_bytes))
    _write_together([(scores_out, scores.to_bytes()), (out, drop_map_bytes)])
    return DropmapResult(out, scores_out, recipe, kept, kept_share(scores, kept), collected.tokens,
                         collected.seconds, collected.layer_bytes, collected.activation_bytes)


def out_problem(out: Path) -> None:
    """Refuse an --out the results could not be written to, before anything is read or loaded (a
    collection can take hours; finding out at its end loses them)."""
    if out.suffix != ".json":
        raise InputError("the drop map is a .json file", file="--out")
    if out.is_dir():
        raise InputError(f"{out} is a folder; give the drop map's file name", file="--out")
    why = folder_problem(out.parent.absolute(), probe=True)
    if why:
        raise InputError(f"cannot write {out.name} there: {why}", file="--out")


def _tokenizer(base_dir: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(base_dir)
    except (OSError, ValueError) as exc:
        raise InputError(f"no usable tokenizer in the base checkpoint: {exc}", file=str(base_dir)) from exc


def _source(scores: ExpertScores, recipe: Recipe, scores_name: str) -> str:
    files = ", ".join(f"{c.file} sha256:{c.sha256}" for _, c in sorted(scores.classes.items()))
    tokens = sum(c.tokens for c in scores.classes.values())
    return (f"release dropmap ({scores.tool}): recipe {recipe.describe()}; keeps {scores.experts_kept} of "
            f"{scores.num_experts} experts per MoE layer by REAP (router weight x expert output norm) measured on "
            f"{scores.base}@{scores.revision[:12]} over {tokens} calibration tokens ({scores.dtype}, "
            f"{scores.device}); calibration: {files}; scores: {scores_name}")


def render_drop_map(base: str, num_experts: int, kept: dict[int, tuple[int, ...]], source: str) -> bytes:
    drop = {str(layer): [j for j in range(num_experts) if j not in set(keep)] for layer, keep in sorted(kept.items())}
    data = {"format": DROP_MAP_FORMAT, "base": base, "num_experts": num_experts, "source": source, "drop": drop}
    return dumps(data).encode("utf-8")


def _write_together(files: list[tuple[Path, bytes]]) -> None:
    """Write every file under a temporary name first; rename them only once all are complete."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged.append((tmp, path))
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)


def drop_map_of(release: Release, artifact: Any) -> Any:
    """The drop map a built `dropmap` artifact holds, from its recorded facts (the file itself may be on
    another machine), checked against the base config like a given one."""
    kept = {int(layer): tuple(v) for layer, v in artifact.facts["kept"].items()}
    dm = DropMap(file=release.drop_map.file, base=release.definition.base.repo,
                 num_experts=release.drop_map.num_experts, kept=kept, sha256=artifact.files[0].sha256 or "",
                 source=str(artifact.facts.get("source", "")))
    problems = check_against_config(dm, release.base_config, release.family, config_file=release.definition.base.config,
                                    base_repo=release.definition.base.repo)
    if dm.kept_count != release.definition.prune.experts_kept:
        problems.append(Problem(dm.file, "keep", f"keeps {dm.kept_count} per layer, not "
                                                 f"{release.definition.prune.experts_kept}"))
    if problems:
        raise WorkError(f"the derived drop map ({artifact.id}) does not fit the base: "
                        + "; ".join(str(p) for p in problems[:3]))
    return dm
