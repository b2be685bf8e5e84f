"""Benchmark scores (`scores.json`): the harness, reference vs variant rows, per-quant scores and
removed tiers. Cards compute every delta from these numbers; nobody types a delta by hand.

    {"format": "moe-release-scores/1",
     "harness": {"description": "…", "engine": "vLLM", "artifact": "NVFP4A16", "decoding": "greedy"},
     "benchmarks": [{"name": "HumanEval", "n": 164, "metric": "pass@1", "reference": 96.95, "variant": 96.95,
                     "dataset": {"id": "openai/openai_humaneval", "split": "test"}}],
     "per_quant": {"benchmarks": ["HumanEval+"], "scores": {"Q4_K_M": {"HumanEval+": 91.46}}},
     "removed_tiers": [{"tier": "Q2_K", "size_gb": 8.4, "scores": {"HumanEval+": 6.1}, "reason": "…"}]}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from ..errors import InputError, Problem
from .names import hub_repo_problem
from .readers import read_json
from .validation import pydantic_problems

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
Number = float | int


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LmEvalRun(_Strict):
    """Where imported scores came from: one lm-evaluation-harness results file."""

    version: str = ""  # lm_eval_version
    model: str = ""  # config.model, e.g. "vllm"
    model_args: str = ""  # config.model_args, as the harness recorded it
    tasks: list[NonEmpty] = []
    limit: Number | None = None  # config.limit: a subset of every task when set
    date: Number | None = None  # the run's start (UNIX time)
    file_sha256: str = ""
    # What the run scored, per benchmark row: a row is made once both sides of it are imported.
    scores: dict[NonEmpty, Number] = {}
    n: dict[NonEmpty, Annotated[int, Field(ge=1, le=10**9)]] = {}


class Harness(_Strict):
    description: NonEmpty  # how the scores were measured, in one or two sentences
    engine: str = ""
    artifact: str = ""  # which artifact was evaluated (e.g. "NVFP4A16")
    decoding: str = ""
    notes: str = ""
    # "reference", "variant" or a tier → every run imported for it, in the order of import
    lm_eval: dict[NonEmpty, list[LmEvalRun]] = {}

    @field_validator("lm_eval", mode="before")
    @classmethod
    def _one_run_per_side(cls, value: Any) -> Any:
        """Files written before several runs per side were kept hold one run object per side."""
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, dict) else v for k, v in value.items()}
        return value


class Dataset(_Strict):
    """The Hub dataset a benchmark ran on, for the model-index of the card (hub-docs modelcard.md)."""

    id: NonEmpty  # namespace/name on the Hub, e.g. "openai/gsm8k"
    config: str = ""  # load_dataset(id, config)
    split: str = ""
    revision: str = ""


class Benchmark(_Strict):
    name: NonEmpty
    n: Annotated[int, Field(ge=1, le=10**9)] | None = None  # items evaluated
    metric: str = ""
    reference: Number
    variant: Number
    higher_is_better: bool = True
    percent: bool = True  # scores are percentages (0–100); false for an unbounded metric (e.g. perplexity)
    dataset: Dataset | None = None


class PerQuant(_Strict):
    benchmarks: list[NonEmpty]
    scores: dict[NonEmpty, dict[NonEmpty, Number]]  # tier → benchmark → score


class RemovedTier(_Strict):
    tier: NonEmpty
    size_gb: Number | None = None
    scores: dict[NonEmpty, Number | None] = {}
    reason: NonEmpty


class Scores(_Strict):
    format: Literal["moe-release-scores/1"]
    harness: Harness
    benchmarks: list[Benchmark]
    per_quant: PerQuant | None = None
    removed_tiers: list[RemovedTier] = []

    def benchmark(self, name: str) -> Benchmark | None:
        return next((b for b in self.benchmarks if b.name == name), None)


def semantic_problems(scores: Scores, file: str) -> list[Problem]:
    problems: list[Problem] = []
    names = [b.name for b in scores.benchmarks]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(Problem(file, f"benchmarks[{i}].name", f"duplicate benchmark {name!r}"))
    if not scores.benchmarks:
        problems.append(Problem(file, "benchmarks", "at least one benchmark row is needed"))
    for i, b in enumerate(scores.benchmarks):
        if b.dataset is not None and (why := hub_repo_problem(b.dataset.id)):
            problems.append(Problem(file, f"benchmarks[{i}].dataset.id", f"not a Hub dataset id: {why}"))
    problems += _non_finite(scores, file)
    problems += _out_of_range(scores, file)
    known = set(names)
    pq = scores.per_quant
    if pq is not None:
        for i, b in enumerate(pq.benchmarks):
            if b not in known:
                problems.append(Problem(file, f"per_quant.benchmarks[{i}]",
                                        f"unknown benchmark {b!r} (not in 'benchmarks')"))
        listed = set(pq.benchmarks)
        for tier, row in pq.scores.items():
            for b in row:
                if b not in listed:
                    problems.append(Problem(file, f"per_quant.scores.{tier}.{b}",
                                            f"unknown benchmark {b!r} (not in per_quant.benchmarks)"))
    for i, removed in enumerate(scores.removed_tiers):
        for b in removed.scores:
            if b not in known:
                problems.append(Problem(file, f"removed_tiers[{i}].scores.{b}",
                                        f"unknown benchmark {b!r} (not in 'benchmarks')"))
    return problems


def _non_finite(scores: Scores, file: str) -> list[Problem]:
    """JSON parsers accept NaN and Infinity; a card cannot show or subtract them."""
    found: list[tuple[str, float | None]] = []
    for i, b in enumerate(scores.benchmarks):
        found += [(f"benchmarks[{i}].reference", b.reference), (f"benchmarks[{i}].variant", b.variant)]
    if scores.per_quant is not None:
        found += [(f"per_quant.scores.{t}.{b}", v)
                  for t, row in scores.per_quant.scores.items() for b, v in row.items()]
    for i, r in enumerate(scores.removed_tiers):
        found += [(f"removed_tiers[{i}].size_gb", r.size_gb)]
        found += [(f"removed_tiers[{i}].scores.{b}", v) for b, v in r.scores.items()]
    for key, runs in scores.harness.lm_eval.items():
        found += [(f"harness.lm_eval.{key}[{i}].scores.{b}", v) for i, run in enumerate(runs)
                  for b, v in run.scores.items()]
    return [Problem(file, where, f"not a finite number ({value!r})") for where, value in found
            if value is not None and not math.isfinite(value)]


def _out_of_range(scores: Scores, file: str) -> list[Problem]:
    """A percentage outside 0–100 is a typo (or a fraction/per-mille), and a size is positive."""
    percent = {b.name for b in scores.benchmarks if b.percent}
    found: list[tuple[str, float | None]] = []
    for i, b in enumerate(scores.benchmarks):
        if b.percent:
            found += [(f"benchmarks[{i}].reference", b.reference), (f"benchmarks[{i}].variant", b.variant)]
    if scores.per_quant is not None:
        found += [(f"per_quant.scores.{t}.{b}", v)
                  for t, row in scores.per_quant.scores.items() for b, v in row.items() if b in percent]
    for i, r in enumerate(scores.removed_tiers):
        found += [(f"removed_tiers[{i}].scores.{b}", v) for b, v in r.scores.items() if b in percent]
    problems = [Problem(file, where, f"{value!r} is not a percentage (0–100); set \"percent\": false on the "
                                     "benchmark for a metric that is not one")
                for where, value in found if value is not None and math.isfinite(value) and not 0 <= value <= 100]
    for i, r in enumerate(scores.removed_tiers):
        if r.size_gb is not None and math.isfinite(r.size_gb) and not 0 < r.size_gb <= 100_000:
            problems.append(Problem(file, f"removed_tiers[{i}].size_gb", f"{r.size_gb!r} is out of range "
                                                                          "(0, 100000] GB"))
    return problems


def load_scores(path: Path, display: str) -> Scores:
    data = read_json(path, display)
    try:
        scores = Scores.model_validate(data)
    except ValidationError as exc:
        raise InputError(pydantic_problems(exc, display)) from exc
    problems = semantic_problems(scores, display)
    if problems:
        raise InputError(problems)
    return scores
