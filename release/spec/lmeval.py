"""`release scores import`: benchmark rows of scores.json from an lm-evaluation-harness results file.

The harness (github.com/EleutherAI/lm-evaluation-harness, `lm_eval --output_path`) writes one JSON per run:

    {"results":  {"gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.79, "exact_match,flexible-extract": 0.86,
                            "exact_match_stderr,flexible-extract": 0.0096, …}, …},
     "n-samples": {"gsm8k": {"original": 1319, "effective": 100}, …},   # effective < original with --limit
     "configs": {"gsm8k": {…the task's YAML…}}, "versions": {"gsm8k": 3.0}, "group_subtasks": {…},
     "config": {"model": "vllm", "model_args": "pretrained=…", "limit": 100, …}, "lm_eval_version": "0.4.13", …}

Each `<metric>,<filter>` key a row maps (the definition's `[[lm_eval]]` entries first, then DEFAULT_ROWS)
becomes one score: a fraction 0–1 shown as a percentage (two decimals), `n` the effective sample count
(summed over the subtasks of a group), the run (harness version, model, model args with credentials
redacted, its scores) appended to `harness.lm_eval[side]` — every run is kept, one list per side. A row
needs both sides: a new benchmark's score waits in its run's record until a run of the other side has it,
then the row is made, whatever the order and number of imports. Imports at the same time take turns
(a lock file beside scores.json; each reads the file afresh inside it). scores.json is rewritten — to a
temporary name, then renamed — only when the result validates as the release's scores; a bad results
file is one error naming it and the key, and so is a run whose `model_args` name another model than the
side's (the reference is the [base] repo; the variant one of the release's repos, its Ollama model or a
path in its outputs) unless `--allow-other-model` says it is that model by another name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..errors import InputError, Problem
from ..fsutil import atomic_write_text
from ..lock import file_lock
from ..publish.redact import redact_args
from .definition import LmEvalRow
from .readers import parse_json, read_input_bytes, read_json_object
from .rules import per_quant_problems
from .scores import Scores, semantic_problems
from .validation import pydantic_problems

if TYPE_CHECKING:
    from .load import Release

# Task metrics that have one obvious row (what model cards usually report for the task).
DEFAULT_ROWS: tuple[LmEvalRow, ...] = tuple(LmEvalRow(task=t, metric=m, benchmark=b, label=lb) for t, m, b, lb in (
    ("gsm8k", "exact_match,flexible-extract", "GSM8K", "flex"),
    ("gsm8k_cot", "exact_match,flexible-extract", "GSM8K (CoT)", "flex"),
    ("ifeval", "prompt_level_strict_acc,none", "IFEval", "prompt_strict"),
    ("mmlu", "acc,none", "MMLU", "acc"),
    ("mmlu_pro", "exact_match,custom-extract", "MMLU-Pro", "exact_match"),
    ("arc_challenge", "acc_norm,none", "ARC-Challenge", "acc_norm"),
    ("arc_easy", "acc_norm,none", "ARC-Easy", "acc_norm"),
    ("hellaswag", "acc_norm,none", "HellaSwag", "acc_norm"),
    ("winogrande", "acc,none", "WinoGrande", "acc"),
    ("piqa", "acc_norm,none", "PIQA", "acc_norm"),
    ("truthfulqa_mc2", "acc,none", "TruthfulQA MC2", "acc"),
    ("gpqa_diamond_zeroshot", "acc_norm,none", "GPQA Diamond", "acc_norm"),
    ("bbh", "exact_match,get-answer", "BBH", "exact_match"),
    ("humaneval", "pass@1,create_test", "HumanEval", "pass@1"),
    ("mbpp", "pass_at_1,none", "MBPP", "pass@1"),
))
REQUIRED = ("results", "n-samples", "configs", "versions")
# model_args keys that name the evaluated model: `pretrained` (hf, vllm, sglang), `model` (the API models).
MODEL_KEYS = ("pretrained", "model", "model_name", "model_path")


@dataclass
class Imported:
    benchmark: str
    metric: str  # the row's metric label
    task: str
    value: float
    n: int | None
    percent: bool = True
    higher_is_better: bool = True


@dataclass
class ImportResult:
    scores_file: str
    side: str  # "reference", "variant" or the tier
    rows: list[Imported] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # tasks of the file no row maps
    pending: list[str] = field(default_factory=list)  # rows that wait for the other side's results


def read_results(path: Path) -> tuple[dict[str, Any], str]:
    """(the results object, its sha256), or InputError naming the file and the key that is wrong."""
    shown = str(path)
    raw = read_input_bytes(path, shown)
    data = parse_json(raw, shown)
    if not isinstance(data, dict):
        raise InputError("not an lm-evaluation-harness results object", file=shown)
    for key in REQUIRED:
        if key not in data:
            raise InputError("missing: not an lm-evaluation-harness results file (lm_eval --output_path)",
                             file=shown, field=key)
        if not isinstance(data[key], dict):
            raise InputError(f"expected an object, got {type(data[key]).__name__}", file=shown, field=key)
    return data, hashlib.sha256(raw).hexdigest()


def _effective(data: dict[str, Any], task: str, shown: str, seen: frozenset[str] = frozenset()) -> int:
    """Documents scored for a task, or for a group the sum over its subtasks."""
    counts = data["n-samples"].get(task)
    if counts is not None:
        n = counts.get("effective") if isinstance(counts, dict) else None
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InputError(f"{n!r} is not a sample count", file=shown, field=f"n-samples.{task}.effective")
        return n
    subtasks = (data.get("group_subtasks") or {}).get(task)
    if isinstance(subtasks, list) and subtasks and task not in seen:
        return sum(_effective(data, s, shown, seen | {task}) for s in subtasks)
    raise InputError(f"no sample count for {task!r}", file=shown, field=f"n-samples.{task}")


def _rows_for(release: Release) -> list[LmEvalRow]:
    """The definition's rows, then the defaults for tasks the definition does not map."""
    own = list(release.definition.lm_eval)
    mapped = {r.task for r in own}
    return own + [r for r in DEFAULT_ROWS if r.task not in mapped]


def imported_rows(release: Release, data: dict[str, Any], shown: str) -> tuple[list[Imported], list[str]]:
    """(scores the file gives for mapped task metrics, tasks of the file that nothing maps)."""
    results = data["results"]
    rows: list[Imported] = []
    for m in _rows_for(release):
        if m.task not in results:
            continue
        metrics = results[m.task]
        where = f"results.{m.task}"
        if not isinstance(metrics, dict):
            raise InputError("expected an object of metric values", file=shown, field=where)
        if m.metric not in metrics:
            have = sorted(k for k in metrics if "," in k and "_stderr," not in k)
            raise InputError(f"no metric {m.metric!r} (the file has {', '.join(have) or 'none'}); map another "
                             "in [[lm_eval]] of release.toml", file=shown, field=f"{where}.{m.metric}")
        value = metrics[m.metric]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InputError(f"{value!r} is not a number", file=shown, field=f"{where}.{m.metric}")
        if m.percent and not 0 <= value <= 1:
            raise InputError(f"{value!r} is not a fraction 0–1; set percent = false on its [[lm_eval]] row "
                             "for a metric that is not one", file=shown, field=f"{where}.{m.metric}")
        if m.task not in data["versions"]:
            raise InputError("missing: the task's version", file=shown, field=f"versions.{m.task}")
        if m.task not in data["configs"] and m.task not in (data.get("group_subtasks") or {}):
            raise InputError("missing: the task's configuration", file=shown, field=f"configs.{m.task}")
        n = _effective(data, m.task, shown)
        name = m.metric.split(",")[0]
        hib = ((data.get("higher_is_better") or {}).get(m.task) or {}).get(name)
        rows.append(Imported(m.benchmark, m.label or name, m.task,
                             round(100 * value, 2) if m.percent else float(value), n, m.percent, hib is not False))
    names = [r.benchmark for r in rows]
    twice = sorted({b for b in names if names.count(b) > 1})
    if twice:
        raise InputError(f"{', '.join(twice)} mapped from more than one task metric of this file", file=shown,
                         field="results")
    grouped = {s for subs in (data.get("group_subtasks") or {}).values() if isinstance(subs, list) for s in subs}
    unmapped = sorted(t for t in results if t not in {r.task for r in rows} and t not in grouped)
    return rows, unmapped


def _run(data: dict[str, Any], sha256: str, tasks: list[str]) -> dict[str, Any]:
    cfg = data.get("config") if isinstance(data.get("config"), dict) else {}
    args = redact_args(cfg.get("model_args", ""))
    args = json.dumps(args, sort_keys=True) if isinstance(args, dict) else str(args or "")
    run: dict[str, Any] = {"version": str(data.get("lm_eval_version") or ""), "model": str(cfg.get("model") or ""),
                           "model_args": args, "tasks": tasks, "file_sha256": sha256}
    for key, value in (("limit", cfg.get("limit")), ("date", data.get("date"))):
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            run[key] = value
    return run


def _named_model(data: dict[str, Any]) -> tuple[str, str] | None:
    """(key, value) of the model the run's model_args name (`pretrained=…`, `model=…`), or None."""
    cfg = data.get("config") if isinstance(data.get("config"), dict) else {}
    args = cfg.get("model_args")
    if isinstance(args, str):
        args = dict(pair.split("=", 1) for pair in args.split(",") if "=" in pair)
    if not isinstance(args, dict):
        return None
    for key in MODEL_KEYS:
        value = args.get(key)
        if isinstance(value, str) and value.strip():
            return key, value.strip()
    return None


def _repo_id(name: str) -> str:
    """A Hub or Ollama model name as a comparable id: no `hf.co/` or URL prefix, no `:TAG` or `@revision`."""
    bare = re.sub(r"^(?:https?://)?(?:huggingface\.co|hf\.co)/", "", name.strip())
    return re.split(r"[:@]", bare, maxsplit=1)[0].strip("/").casefold()


def _is_local_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or os.path.exists(name)


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.is_relative_to(folder.resolve())


def other_model_problem(release: Release, data: dict[str, Any], shown: str, *, side: str,
                        dist: Path) -> Problem | None:
    """Why a results file is not of the model `side` names, or None. The reference is the [base] repo, its
    local copy ([base] path) or its Hugging Face cache snapshot; the variant one of this release's repos or
    its Ollama model, a cache snapshot of one, or a local path in `dist/<name>/` or in the release folder
    (not its base)."""
    named = _named_model(data)
    if named is None:
        return None
    key, value = named
    d = release.definition
    base_path = release.base_path
    repos = [d.base.repo] if side == "reference" else \
        [s.repo for s in (d.bf16, d.gguf, d.nvfp4) if s is not None] + ([d.ollama.model] if d.ollama else [])
    if _repo_id(value) in {_repo_id(r) for r in repos}:
        return None
    if _is_local_path(value):
        path = Path(value).expanduser().resolve()
        snapshots = {f"models--{r.replace('/', '--')}".casefold() for r in repos}
        if any(part.casefold() in snapshots for part in path.parts):
            return None
        if side == "reference" and _inside(path, base_path):
            return None
        if side != "reference" and (_inside(path, dist / release.name)
                                    or (_inside(path, release.dir) and not _inside(path, base_path))):
            return None
    if side == "reference":
        want = f"the base {d.base.repo} ([base] repo)" + (f" or its copy {base_path}" if base_path else "")
    else:
        want = f"one of this release's models ({', '.join(repos)}) or its outputs ({dist / release.name}/…)"
    return Problem(shown, f"config.model_args.{key}",
                   f"the run evaluated {value!r}, not {want}: scores imported --as {side} are that model's — import "
                   f"the right results file, or pass --allow-other-model if {value!r} is that model by another name")


def import_lm_eval(release: Release, results: Path, *, side: str, quant: str | None = None,
                   dist: Path = Path("dist"), allow_other_model: bool = False) -> ImportResult:
    """Fold one results file into the release's scores.json (rewritten only when the result validates).

    Concurrent imports take turns: the read-modify-write holds a lock file beside scores.json."""
    shown = str(results)
    scores_rel = release.definition.cards.scores
    if quant is not None and side != "variant":
        raise InputError("per-quant scores are the variant's (--as variant --quant TIER)", file="--quant")
    g = release.definition.gguf
    if quant is not None and quant not in ([*g.tiers, g.baseline] if g else []) and quant not in ("NVFP4A16",
                                                                                                  "BF16"):
        raise InputError(f"{quant!r} is not a tier of this release", file="--quant")
    data, sha256 = read_results(results)
    rows, unmapped = imported_rows(release, data, shown)
    if not rows:
        raise InputError(f"no task of this file has a row (tasks: {', '.join(sorted(data['results'])) or 'none'}); "
                         "map them with [[lm_eval]] in release.toml", file=shown, field="results")
    other_model = None if allow_other_model else other_model_problem(release, data, shown, side=side, dist=dist)
    if other_model is not None:
        raise InputError(other_model)
    path = release.path(scores_rel)
    lock = path.with_name(f".{path.name}.lock")
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock(lock))
        except OSError as exc:
            raise InputError(f"cannot lock it for writing ({exc.strerror or exc}: {lock.name})",
                             file=release.display(scores_rel)) from exc
        pending = _fold(release, rows, data, sha256, path, shown, side=side, quant=quant)
    return ImportResult(release.display(scores_rel), quant or side, rows, unmapped, pending)


def _fold(release: Release, rows: list[Imported], data: dict[str, Any], sha256: str, path: Path, shown: str, *,
          side: str, quant: str | None) -> list[str]:
    """Under the lock: read scores.json as it is now, add this run and the rows it completes, write it back."""
    scores_file = release.display(release.definition.cards.scores)
    current = read_json_object(path, scores_file)
    benchmarks: list[dict[str, Any]] = current.setdefault("benchmarks", [])
    by_name = {b.get("name"): b for b in benchmarks}
    key = quant or side
    lm_eval = current.setdefault("harness", {}).setdefault("lm_eval", {})
    for k, v in list(lm_eval.items()):  # one run object per side, as files before several runs were kept
        if isinstance(v, dict):
            lm_eval[k] = [v]
    other = "variant" if side == "reference" else "reference"
    # The other side's runs, latest first: a score waits there until this side's results come.
    other_runs = [r for r in reversed(lm_eval.get(other) or []) if isinstance(r, dict)] if quant is None else []
    pending: list[str] = []
    for r in rows:
        row = by_name.get(r.benchmark)
        if quant is not None:
            if row is None:
                raise InputError(f"no row {r.benchmark!r} in benchmarks yet: import the reference's or the "
                                 "variant's results first (--as reference / --as variant)", file=scores_file,
                                 field="benchmarks")
            pq = current.setdefault("per_quant", {"benchmarks": [], "scores": {}})
            if r.benchmark not in pq["benchmarks"]:
                pq["benchmarks"].append(r.benchmark)
            pq["scores"].setdefault(quant, {})[r.benchmark] = r.value
            continue
        if row is None:
            theirs = next((run for run in other_runs if r.benchmark in (run.get("scores") or {})), None)
            if theirs is None:
                pending.append(r.benchmark)
                continue
            their_n = (theirs.get("n") or {}).get(r.benchmark)
            if their_n is not None and their_n != r.n:
                raise InputError(f"{r.benchmark}: the {other} was scored on {their_n} items, this file on {r.n}: "
                                 "compare runs of the same size (lm_eval --limit)", file=shown,
                                 field=f"n-samples.{r.task}.effective")
            row = {"name": r.benchmark, "n": r.n, "metric": r.metric, other: theirs["scores"][r.benchmark]}
            if not r.higher_is_better:
                row["higher_is_better"] = False
            if not r.percent:
                row["percent"] = False
            benchmarks.append(row)
            by_name[r.benchmark] = row
        else:
            i = benchmarks.index(row)
            if row.get("metric") and row["metric"] != r.metric:
                raise InputError(f"the row's metric is {row['metric']!r}; this file maps {r.task} to "
                                 f"{r.metric!r} — map the same metric ([[lm_eval]] label) or rename the row",
                                 file=scores_file, field=f"benchmarks[{i}].metric")
            if row.get("n") is not None and row["n"] != r.n:
                raise InputError(f"{r.benchmark} was scored on {row['n']} items, this file on {r.n}: compare "
                                 "runs of the same size (lm_eval --limit)", file=shown,
                                 field=f"n-samples.{r.task}.effective")
            row["n"], row["metric"] = r.n, r.metric
        row[side] = r.value
    run = {**_run(data, sha256, sorted({r.task for r in rows})),
           "scores": {r.benchmark: r.value for r in rows}, "n": {r.benchmark: r.n for r in rows if r.n}}
    # Every run is kept; importing the same file again replaces its record rather than adding a second.
    lm_eval[key] = [x for x in lm_eval.get(key) or [] if not (isinstance(x, dict) and x.get("file_sha256") == sha256)]
    lm_eval[key].append(run)
    problems = _validate(current, scores_file)
    if not problems:
        scores = Scores.model_validate(current)
        problems = per_quant_problems(scores, release.definition, scores_file)
    if problems:
        raise InputError(problems)
    atomic_write_text(path, json.dumps(current, indent=2, ensure_ascii=False) + "\n")
    return pending


def _validate(data: dict[str, Any], file: str) -> list[Problem]:
    try:
        scores = Scores.model_validate(data)
    except ValidationError as exc:
        return pydantic_problems(exc, file)
    return semantic_problems(scores, file)
