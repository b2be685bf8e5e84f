"""The GGUF steps: one conversion, the importance matrix, a parallel quantization sweep within a memory
budget, splits above the size limit, facts read back from every file, and the Ollama side files.

    job = GgufJob(release, out_dir)
    convert_baseline(job, pruned_dir) -> gguf:<BASELINE>       (needs bf16)
    make_imatrix(job, baseline_source(...), pruned_dir) -> gguf:imatrix   (needs the baseline and bf16)
    quantize_tiers(job, tiers, source, imatrix) -> gguf:<TIER> (needs the baseline and the imatrix)
    build_gguf(release, pruned_dir, out_dir) -> all of them in one call

Layout of `out_dir` (= the GGUF repo root, `dist/<release>/gguf/`):

    <prefix>-<BASELINE>.gguf              F16/BF16 conversion (published when [gguf] publish_baseline)
    <prefix>-<TIER>.gguf                  every tier ≤ split_size_gb
    <prefix>-<TIER>/<prefix>-<TIER>-00001-of-0000N.gguf    tiers above it (llama.cpp split format)
    <prefix>-imatrix.gguf                 importance matrix (llama-imatrix GGUF format)
    template, params                      for `ollama run hf.co/<repo>:<tier>`

Work files (the unsplit baseline when it is split or not published) go to `out_dir/../.gguf-work/`,
never into the repo folder.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, WorkError
from ..fsutil import atomic_write_bytes, link_or_copy, sha256_file
from ..manifest import Artifact, Destination, FileEntry
from ..ollama.layers import params_blob, typed_params
from ..procs import stop_pool, worker_init, workers_start_deaf
from ..toolchain import LLAMA_CPP_COMMIT, LLAMA_CPP_PYTHON, ensure_toolchain
from . import GGUF_WORK
from . import tiers as T
from .checks import imatrix_is_calibration, recipe_problems, release_tensors, requested_types, tier_recipe
from .convert import checkpoint_bytes, convert
from .imatrix import load_imatrix
from .imatrix_stream import METHOD as STREAMED_IMATRIX
from .imatrix_stream import stream_imatrix
from .inspect import _field, _reader, file_facts, read_tensors
from .metadata import release_metadata
from .names import ExpectedTensor
from .quantize import QuantizeJob, run_job
from .split import split_gguf

if TYPE_CHECKING:
    from ..spec.load import Release

# progress(description, total) -> update(done, total); Context.task has this shape.
ProgressFactory = Callable[..., Callable[[int, int], None]]  # (description, total, unit="bytes") → update
Log = Callable[[str], None]

GB = 1_000_000_000

# Relative quantization cost per ftype (CPU-s per GB of F16 input, docs/gguf.md §5, medium model);
# used to start the slowest tiers first so the pool drains evenly.
_COST = {"Q8_0": 4, "Q4_0": 15, "Q6_K": 12, "Q3_K_S": 17, "Q3_K_M": 18, "Q4_K_S": 43, "Q4_K_M": 40,
         "Q3_K_L": 31, "Q2_K": 45, "Q5_K_S": 56, "Q5_K_M": 48, "IQ4_XS": 98, "IQ4_NL": 99, "IQ3_M": 118,
         "IQ3_XS": 153, "IQ3_S": 120, "IQ2_M": 94, "IQ2_S": 100, "IQ2_XS": 110, "IQ2_XXS": 110, "Q2_K_S": 45}
# Overrides can make a cheap ftype expensive (CD-Q3: Q3_K_M with q4_k/q5_k experts ran 2× its ftype).
_TYPE_COST = {"q8_0": 4, "q4_0": 15, "q4_1": 15, "q5_0": 15, "q5_1": 15, "q6_k": 12, "q3_k": 18, "q2_k": 45,
              "q4_k": 40, "q5_k": 48, "iq4_xs": 98, "iq4_nl": 99, "iq3_s": 120, "iq3_xxs": 150, "iq2_s": 100,
              "iq2_xs": 110, "iq2_xxs": 110, "iq1_s": 110, "iq1_m": 110}


def tier_cost(recipe: T.TierRecipe) -> int:
    """Relative CPU cost of quantizing a tier (for ordering the sweep and its progress bar)."""
    costs = [_COST.get(recipe.ftype, 50)] + [_TYPE_COST.get(t, 50) for _, t in recipe.overrides]
    return max(costs)


@dataclass
class SweepPlan:
    """How many quantize processes run at once, and with how many threads each."""

    workers: int
    threads: int
    per_job_bytes: int
    budget_bytes: int


def mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * GB


def quantize_memory(tensors: list[ExpectedTensor] | None, source_bytes: int) -> int:
    """Peak RSS of one llama_model_quantize: its largest tensor as F16 input + f32 working copy (+ output
    buffers), plus the process (libllama, imatrix). Measured at ≈0.78 GB F16 + 1.6 GB f32 for the 26B."""
    # Unknown family: assume ≥20 tensors of similar size.
    largest = max(t.n_elements for t in tensors) if tensors else source_bytes // 20
    return int(largest * 7 + 400 * 1_000_000)


def plan_sweep(n_tiers: int, *, jobs: int, max_memory: int | None, per_job: int) -> SweepPlan:
    budget = max_memory if max_memory is not None else int(mem_available() * 0.8)
    by_memory = max(1, budget // max(per_job, 1))
    workers = max(1, min(jobs, n_tiers, by_memory))
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers)
    return SweepPlan(workers, threads, per_job, budget)


def _null_progress(_desc: str, _total: int | None, unit: str = "bytes") -> Callable[[int, int], None]:
    return lambda done, total: None


@dataclass
class GgufJob:
    """What the three GGUF steps share: the release, where outputs go, progress and log."""

    release: Release
    out_dir: Path  # the GGUF repo folder (dist/<release>/gguf)
    root: str = "gguf"  # Artifact.root of out_dir
    work_root: str = GGUF_WORK  # Artifact.root of the work folder (unpublished files)
    progress: ProgressFactory | None = None
    log: Log | None = None

    def __post_init__(self) -> None:
        g = self.release.definition.gguf
        if g is None:
            raise InputError("the release has no [gguf] section", file="release.toml", field="gguf")
        problems = recipe_problems(self.release)
        if problems:
            raise InputError(problems)
        self.g = g
        self.dest = Destination(kind="hub", repo=g.repo, path_in_repo="")
        self.split_bytes = int(g.split_size_gb * GB)
        self.work = self.out_dir.parent / self.work_root
        self.progress = self.progress or _null_progress

    def say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)


def baseline_source(dist_release: Path, baseline: Artifact) -> Path:
    """The file every tier and the imatrix are made from: the unsplit conversion when this machine made
    it, else the baseline's (first) file as published or fetched — libllama loads a split from its first
    shard."""
    unsplit = baseline.facts.get("unsplit")
    if unsplit:
        path = dist_release / unsplit["path"]
        if path.is_file() and path.stat().st_size == unsplit["size"]:
            return path
    return dist_release / baseline.root / baseline.files[0].path


def convert_baseline(job: GgufJob, pruned_dir: Path) -> Artifact:
    """gguf:<BASELINE>: llama.cpp's converter on the pruned checkpoint. Published ones are placed in the
    repo folder (split above the size limit); unpublished ones stay in the work folder."""
    g, release = job.g, job.release
    assert job.progress is not None
    if not (pruned_dir / "config.json").is_file():
        raise InputError("not a Hugging Face checkpoint (no config.json)", file=str(pruned_dir))
    tc = ensure_toolchain()
    model_name = g.model_name or release.definition.release.title
    name = T.gguf_filename(g.prefix, g.baseline)
    source = job.work / name
    t = convert(tc, pruned_dir, source, outtype=g.baseline, model_name=model_name,
                metadata=release_metadata(release),
                progress=job.progress(f"gguf: convert → {g.baseline}", checkpoint_bytes(pruned_dir)))
    experts, used = _expert_counts(pruned_dir)
    facts = file_facts([source], expected_experts=experts, expected_used=used)
    if not facts["checks"]["chat_template"]:
        raise WorkError(f"{source.name}: the converter wrote no tokenizer.chat_template")
    facts.update(convert_wall_s=t["wall_s"])
    recipe = {"ftype": g.baseline, "baseline": True, "note": "unquantized conversion",
              "converter": f"llama.cpp {LLAMA_CPP_COMMIT} convert_hf_to_gguf.py", "model_name": model_name}
    if not g.publish_baseline:
        facts.update(split=False)
        return _artifact(f"gguf:{g.baseline}", job.work_root, job.work, [source], None, recipe, facts)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    files = _place(source, job.out_dir, g.prefix, g.baseline, job.split_bytes, job.progress, copy=True)
    facts.update(split=len(files) > 1)
    if len(files) > 1:
        facts["unsplit"] = {"path": f"{job.work_root}/{name}", "size": source.stat().st_size}
    else:
        source.unlink()  # the published file is the same bytes (a hard link or a copy)
    return _artifact(f"gguf:{g.baseline}", job.root, job.out_dir, files, job.dest, recipe, facts)


def make_imatrix(job: GgufJob, source: Path | None, checkpoint: Path | None = None) -> Artifact:
    """gguf:imatrix: computed layer by layer from the pruned BF16 `checkpoint` over the calibration text,
    named and tokenized as the baseline `source` (release/gguf/imatrix_stream.py), or the given file."""
    g, release = job.g, job.release
    assert g.imatrix and job.progress is not None
    job.out_dir.mkdir(parents=True, exist_ok=True)
    path = job.out_dir / f"{g.prefix}-imatrix.gguf"
    src = release.path(g.imatrix)
    meta: dict[str, Any]
    if imatrix_is_calibration(g.imatrix):
        assert source is not None and checkpoint is not None, "a computed imatrix needs the baseline and bf16"
        started = time.perf_counter()
        res = stream_imatrix(checkpoint, source, src, path, chunks=g.imatrix_chunks,
                             progress=job.progress("gguf: importance matrix (layers)", None, unit="layers"))
        _, meta = load_imatrix(path)
        meta.update(tokens=res.tokens, wall_s=round(time.perf_counter() - started, 2), partial=res.partial,
                    computed_from="bf16")
        method = STREAMED_IMATRIX
    else:
        if not path.is_file() or sha256_file(path) != sha256_file(src):
            atomic_write_bytes(path, src.read_bytes())
        _, meta = load_imatrix(path)
        method = "provided file"
    if meta.get("partial"):
        job.say(f"gguf: imatrix: {len(meta['partial'])} expert weights have experts the calibration "
                "text never reached (neutral importance 1.0 used for them)")
    return _artifact("gguf:imatrix", job.root, job.out_dir, [path], job.dest,
                     {"source": g.imatrix, "chunks": g.imatrix_chunks, "method": method},
                     {k: v for k, v in meta.items() if k != "sha256"})


def quantize_tiers(job: GgufJob, tiers: list[str], source: Path, imatrix: Path | None, *, jobs: int = 2,
                   max_memory: int | None = None) -> list[Artifact]:
    """gguf:<TIER> for every tier: a parallel sweep from `source` within a memory budget."""
    if not tiers:
        return []
    ensure_toolchain()
    imatrix_meta = load_imatrix(imatrix)[1] if imatrix is not None else {}
    experts, used = _expert_counts_gguf(source)
    return _sweep(job.release, tiers, source, job.out_dir, job.root, job.dest, imatrix, imatrix_meta,
                  release_tensors(job.release), job.split_bytes, jobs, max_memory, job.progress or _null_progress,
                  job.say, experts, used)


def build_gguf(release: Release, pruned_dir: Path, out_dir: Path, *, only: set[str] | None = None,
               jobs: int = 2, max_memory: int | None = None, progress: ProgressFactory | None = None,
               log: Log | None = None, root: str = "gguf") -> list[Artifact]:
    """Every GGUF artifact of the release (or those in `only`: tier names, "imatrix", "ollama-files",
    the baseline name) from the pruned checkpoint, in one call: convert → imatrix → sweep. The pipeline
    runs the same three steps one artifact kind at a time (release/kinds/gguf.py); this is for
    callers that hold a pruned checkpoint and want the files (tests, benchmarks)."""
    job = GgufJob(release, out_dir, root=root, progress=progress, log=log)
    g = job.g
    want = (lambda k: True) if only is None else (lambda k: k in only)
    tiers = [t for t in g.tiers if want(t)]
    out: list[Artifact] = []
    baseline = convert_baseline(job, pruned_dir)
    if want(g.baseline):
        out.append(baseline)
    source = baseline_source(out_dir.parent, baseline)
    imatrix = None
    if g.imatrix and (tiers or want("imatrix")):
        art = make_imatrix(job, source, pruned_dir)
        imatrix = out_dir.parent / art.root / art.files[0].path
        if want("imatrix"):
            out.append(art)
    out += quantize_tiers(job, tiers, source, imatrix, jobs=jobs, max_memory=max_memory)
    if release.definition.ollama is not None and want("ollama-files"):
        out.append(write_ollama_files(release, out_dir, root, job.dest))
    return out


def _expert_counts(pruned_dir: Path) -> tuple[int | None, int | None]:
    cfg = json.loads((pruned_dir / "config.json").read_text())
    tcfg = cfg.get("text_config") or cfg
    experts = tcfg.get("num_experts") or tcfg.get("num_local_experts") or tcfg.get("n_routed_experts")
    used = tcfg.get("top_k_experts") or tcfg.get("num_experts_per_tok")
    return experts, used


def _expert_counts_gguf(source: Path) -> tuple[int | None, int | None]:
    r = _reader(source)
    arch = _field(r, "general.architecture")
    return _field(r, f"{arch}.expert_count"), _field(r, f"{arch}.expert_used_count")


def _sweep(release: Release, tiers: list[str], source: Path, out_dir: Path, root: str, dest: Destination,
           imatrix_path: Path | None, imatrix_meta: dict[str, Any], tensors: list[ExpectedTensor] | None,
           split_bytes: int, jobs: int, max_memory: int | None, progress: ProgressFactory, say: Log,
           experts: int | None, used: int | None) -> list[Artifact]:
    g = release.definition.gguf
    assert g is not None
    per_job = quantize_memory(tensors, source.stat().st_size)
    plan = plan_sweep(len(tiers), jobs=jobs, max_memory=max_memory, per_job=per_job)
    say(f"gguf: quantizing {len(tiers)} tiers, {plan.workers} at a time × {plan.threads} threads "
        f"(≈{per_job / GB:.1f} GB each, budget {plan.budget_bytes / GB:.1f} GB)")
    recipes = {t: tier_recipe(release, t) for t in tiers}
    order = sorted(tiers, key=lambda t: -tier_cost(recipes[t]))
    staging = out_dir / ".partial"
    shutil.rmtree(staging, ignore_errors=True)  # a run killed with -9 could not remove its own
    staging.mkdir()
    jobs_ = {t: QuantizeJob(t, str(source), str(staging / T.gguf_filename(g.prefix, t)), recipes[t].ftype,
                            recipes[t].embed_type, recipes[t].output_type, recipes[t].overrides,
                            str(imatrix_path) if imatrix_path else None,
                            _dataset(imatrix_meta) if imatrix_path else None, plan.threads)
             for t in order}
    update = progress(f"gguf: quantize {len(tiers)} tiers", len(tiers), unit="tiers")
    results: dict[str, Artifact] = {}
    ctx = multiprocessing.get_context("spawn")  # never fork a process holding torch/libllama state
    with ProcessPoolExecutor(max_workers=plan.workers, mp_context=ctx, initializer=worker_init,
                             initargs=(os.getpid(),)) as pool:
        pending: dict[Future, str] = {}
        try:
            with workers_start_deaf():  # workers start as jobs are submitted
                pending.update({pool.submit(run_job, jobs_[t]): t for t in order})
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    tier = pending.pop(fut)
                    timing = fut.result()
                    results[tier] = _finish_tier(release, tier, recipes[tier], Path(jobs_[tier].out), out_dir,
                                                 root, dest, imatrix_path, imatrix_meta, tensors, split_bytes,
                                                 timing, progress, say, experts, used)
                    update(len(results), len(tiers))
        except BaseException:  # a failed tier, Ctrl-C, SIGTERM (Terminated): nothing half-made stays
            stop_pool(pool)
            shutil.rmtree(staging, ignore_errors=True)
            raise
    shutil.rmtree(staging, ignore_errors=True)
    return [results[t] for t in tiers]


def _dataset(meta: dict[str, Any]) -> str | None:
    ds = meta.get("datasets")
    return str(ds[0]) if isinstance(ds, list) and ds else None


def _finish_tier(release: Release, tier: str, recipe: T.TierRecipe, produced: Path, out_dir: Path, root: str,
                 dest: Destination, imatrix_path: Path | None, imatrix_meta: dict[str, Any],
                 tensors: list[ExpectedTensor] | None, split_bytes: int, timing: dict[str, Any],
                 progress: ProgressFactory, say: Log, experts: int | None, used: int | None) -> Artifact:
    g = release.definition.gguf
    assert g is not None
    requested = requested_types(recipe, tensors) if tensors else _requested_from_file(recipe, produced)
    facts = file_facts([produced], requested=requested, ftype=recipe.ftype, expected_experts=experts,
                       expected_used=used)
    files = _place(produced, out_dir, g.prefix, tier, split_bytes, progress, copy=False)
    explicit = [f for f in facts["fallbacks"] if f["explicit"]]
    warnings = [f"{tier}: {f['requested']} on {f['tensor']} (×{f['count']}) became {f['actual']}"
                + (f" (row width {f['ne0']} not a multiple of 256)" if f["ne0"] % 256 else "")
                for f in explicit]
    for w in warnings:
        say(f"gguf: warning: {w}")
    facts.update(timing, split=len(files) > 1, warnings=warnings)
    rec = {"ftype": recipe.ftype, "embed_type": recipe.embed_type, "output_type": recipe.output_type,
           "overrides": [list(o) for o in recipe.overrides], "note": g.notes.get(tier, recipe.note),
           "imatrix": imatrix_path is not None, "imatrix_sha256": imatrix_meta.get("sha256"),
           "llama_cpp": f"llama-cpp-python {LLAMA_CPP_PYTHON} ({LLAMA_CPP_COMMIT})"}
    return _artifact(f"gguf:{tier}", root, out_dir, files, dest, rec, facts)


def _requested_from_file(recipe: T.TierRecipe, produced: Path) -> dict[str, str]:
    rows, _ = read_tensors([produced])
    ts = [ExpectedTensor(n, ne0, ne, typ != "f32") for n, typ, ne0, ne in rows]
    return requested_types(recipe, ts)


def _place(produced: Path, out_dir: Path, prefix: str, tier: str, split_bytes: int,
           progress: ProgressFactory, *, copy: bool) -> list[Path]:
    """Move (or copy) a finished file to its published place: single file, or split into a tier folder."""
    stem = f"{prefix}-{tier}"
    single = out_dir / f"{stem}.gguf"
    folder = out_dir / stem
    if produced.stat().st_size > split_bytes:
        size = produced.stat().st_size
        shards = split_gguf(produced, folder, stem, split_bytes, progress(f"gguf: split {tier}", size))
        single.unlink(missing_ok=True)
        if not copy:
            produced.unlink()
        return shards
    if folder.is_dir():
        shutil.rmtree(folder)
    if copy:
        link_or_copy(produced, single)
    else:
        os.replace(produced, single)
    return [single]


def _artifact(aid: str, root: str, out_dir: Path, files: list[Path], dest: Destination | None, recipe: dict[str, Any],
              facts: dict[str, Any]) -> Artifact:
    entries = [FileEntry(str(p.relative_to(out_dir)), p.stat().st_size, sha256_file(p)) for p in files]
    return Artifact(id=aid, kind="gguf", status="built", root=root, files=entries, recipe=recipe,
                    destination=dest, facts=facts)


def ollama_params_json(parameters: dict[str, Any]) -> bytes:
    """The `params` file: the same JSON bytes as the params layer of the release's Ollama tags."""
    return params_blob(typed_params(parameters))


def write_ollama_files(release: Release, out_dir: Path, root: str, dest: Destination) -> Artifact:
    o = release.definition.ollama
    assert o is not None
    files: list[Path] = []
    if o.template:
        path = out_dir / "template"
        atomic_write_bytes(path, release.path(o.template).read_bytes())
        files.append(path)
    path = out_dir / "params"
    atomic_write_bytes(path, ollama_params_json(dict(o.parameters or {})))
    files.append(path)
    return _artifact("gguf:ollama-files", root, out_dir, files, dest,
                     {"for": "ollama run hf.co/<repo>:<tier>", "template": o.template or None},
                     {"parameters": dict(o.parameters or {})})
