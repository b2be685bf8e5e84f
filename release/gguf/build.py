"""The GGUF step: one conversion, the importance matrix, a parallel quantization sweep within a memory
budget, splits above the size limit, facts read back from every file, and the Ollama side files.

    build_gguf(release, pruned_dir, out_dir) -> list[Artifact]

Layout of `out_dir` (= the GGUF repo root, `dist/<release>/gguf/`):

    <prefix>-<BASELINE>.gguf              F16/BF16 conversion (published when [gguf] publish_baseline)
    <prefix>-<TIER>.gguf                  every tier ≤ split_size_gb
    <prefix>-<TIER>/<prefix>-<TIER>-00001-of-0000N.gguf    tiers above it (llama.cpp split format)
    <prefix>-imatrix.gguf                 importance matrix (llama-imatrix GGUF format)
    template, params                      for `ollama run hf.co/<repo>:<tier>`

Work files (the unsplit baseline when it is split or not published) go to `work_dir`
(default `out_dir/../.gguf-work/`), never into the repo folder.
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
from ..fsutil import atomic_write_bytes, atomic_write_text, link_or_copy, sha256_file
from ..manifest import Artifact, Destination, FileEntry
from ..toolchain import LLAMA_CPP_COMMIT, LLAMA_CPP_PYTHON, ensure_toolchain
from . import tiers as T
from .checks import imatrix_is_calibration, recipe_problems, release_tensors, requested_types, tier_recipe
from .convert import checkpoint_bytes, convert
from .imatrix import compute_imatrix, load_imatrix
from .inspect import file_facts
from .metadata import release_metadata
from .names import ExpectedTensor
from .quantize import QuantizeJob, run_job
from .split import split_gguf

if TYPE_CHECKING:
    from ..spec.load import Release

# progress(description, total) -> update(done, total); Context.task has this shape.
ProgressFactory = Callable[[str, int | None], Callable[[int, int], None]]
Log = Callable[[str], None]

GB = 1_000_000_000

# Relative quantization cost per ftype (CPU-s per GB of F16 input, shared/notes/gguf.md §5, medium model);
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


def _fingerprint(paths: list[Path], extra: dict[str, Any]) -> str:
    rows = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(paths)]
    return json.dumps({"files": rows, **extra}, sort_keys=True)


def _null_progress(_desc: str, _total: int | None) -> Callable[[int, int], None]:
    return lambda done, total: None


def build_gguf(release: Release, pruned_dir: Path, out_dir: Path, *, only: set[str] | None = None,
               jobs: int = 2, max_memory: int | None = None, work_dir: Path | None = None,
               progress: ProgressFactory | None = None, log: Log | None = None,
               root: str = "gguf") -> list[Artifact]:
    """Build the release's GGUF artifacts from the pruned HF checkpoint `pruned_dir` into `out_dir`.

    only        tier names (and "imatrix", "ollama-files", the baseline name) to build; None = all.
                The baseline conversion and the imatrix are made whenever a selected tier needs them.
    jobs        at most this many quantize processes at once (threads split the cores between them)
    max_memory  bytes the parallel quantizers may use together (default 80 % of MemAvailable)
    progress    progress(description, total) -> update(done, total), e.g. pipeline.Context.task
    log         one-line messages (warnings about fallbacks, what was reused)
    root        Artifact.root (the folder of `out_dir` relative to dist/<release>/)

    Raises InputError (bad recipe, before any work), NotAvailable (toolchain missing), WorkError.
    """
    g = release.definition.gguf
    if g is None:
        return []
    problems = recipe_problems(release)
    if problems:
        raise InputError(problems)
    if not (pruned_dir / "config.json").is_file():
        raise InputError("not a Hugging Face checkpoint (no config.json)", file=str(pruned_dir))
    tc = ensure_toolchain()
    progress = progress or _null_progress
    say = log or (lambda _m: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = work_dir or out_dir.parent / ".gguf-work"
    work.mkdir(parents=True, exist_ok=True)
    dest = Destination(kind="hub", repo=g.repo, path_in_repo="")
    split_bytes = int(g.split_size_gb * GB)
    tensors = release_tensors(release)
    model_name = g.model_name or release.definition.release.title
    want = (lambda k: True) if only is None else (lambda k: k in only)
    tiers = [t for t in g.tiers if want(t)]
    artifacts: list[Artifact] = []
    pruned_cfg = json.loads((pruned_dir / "config.json").read_text())
    tcfg = pruned_cfg.get("text_config") or pruned_cfg
    experts = tcfg.get("num_experts") or tcfg.get("num_local_experts") or tcfg.get("n_routed_experts")
    used = tcfg.get("top_k_experts") or tcfg.get("num_experts_per_tok")

    # 1. The baseline conversion (reused when the checkpoint, converter and name are unchanged).
    base_name = T.gguf_filename(g.prefix, g.baseline)
    publish_base = g.publish_baseline and want(g.baseline)
    source = work / base_name
    stamp = source.with_suffix(".source.json")
    metadata = release_metadata(release)
    fp = _fingerprint(list(pruned_dir.glob("*")), {"converter": LLAMA_CPP_PYTHON, "name": model_name,
                                                    "outtype": g.baseline, "metadata": metadata.overrides,
                                                    "license": metadata.license})
    convert_s = 0.0
    if source.is_file() and stamp.is_file() and stamp.read_text() == fp:
        say(f"gguf: reusing {source.name} (checkpoint unchanged)")
    else:
        t = convert(tc, pruned_dir, source, outtype=g.baseline, model_name=model_name, metadata=metadata,
                    progress=progress(f"gguf: convert → {g.baseline}", checkpoint_bytes(pruned_dir)))
        convert_s = t["wall_s"]
        atomic_write_text(stamp, fp)
    base_facts = file_facts([source], expected_experts=experts, expected_used=used)
    if not base_facts["checks"]["chat_template"]:
        raise WorkError(f"{source.name}: the converter wrote no tokenizer.chat_template")
    if publish_base:
        files = _place(source, out_dir, g.prefix, g.baseline, split_bytes, progress, copy=True)
        facts = dict(base_facts, convert_wall_s=convert_s, split=len(files) > 1)
        artifacts.append(_artifact(f"gguf:{g.baseline}", root, out_dir, files, dest,
                                   {"ftype": g.baseline, "baseline": True, "note": "unquantized conversion",
                                    "converter": f"llama.cpp {LLAMA_CPP_COMMIT} convert_hf_to_gguf.py",
                                    "model_name": model_name}, facts))

    # 2. The importance matrix: computed from calibration text, or the given file published as is.
    imatrix_path: Path | None = None
    imatrix_meta: dict[str, Any] = {}
    if g.imatrix:
        imatrix_path = out_dir / f"{g.prefix}-imatrix.gguf"
        src = release.path(g.imatrix)
        if imatrix_is_calibration(g.imatrix):
            istamp = work / f"{g.prefix}-imatrix.source.json"
            ifp = json.dumps({"model": fp, "calibration": sha256_file(src), "chunks": g.imatrix_chunks})
            if imatrix_path.is_file() and istamp.is_file() and istamp.read_text() == ifp:
                say(f"gguf: reusing {imatrix_path.name}")
                _, imatrix_meta = load_imatrix(imatrix_path)
            else:
                started = time.perf_counter()
                res = compute_imatrix(source, src, imatrix_path, chunks=g.imatrix_chunks,
                                      threads=os.cpu_count() or 2,
                                      progress=progress("gguf: importance matrix", g.imatrix_chunks))
                atomic_write_text(istamp, ifp)
                _, imatrix_meta = load_imatrix(imatrix_path)
                imatrix_meta.update(tokens=res.tokens, wall_s=round(time.perf_counter() - started, 2),
                                    partial=res.partial)
        else:
            if not imatrix_path.is_file() or sha256_file(imatrix_path) != sha256_file(src):
                atomic_write_bytes(imatrix_path, src.read_bytes())
            _, imatrix_meta = load_imatrix(imatrix_path)
        if want("imatrix"):
            artifacts.append(_artifact(
                "gguf:imatrix", root, out_dir, [imatrix_path], dest,
                {"source": g.imatrix, "chunks": g.imatrix_chunks,
                 "method": "libllama forward pass on the baseline GGUF with a cb_eval collector "
                           "(llama-imatrix's accumulation and file format)"
                 if imatrix_is_calibration(g.imatrix) else "provided file"},
                {k: v for k, v in imatrix_meta.items() if k != "sha256"}))
        if imatrix_meta.get("partial"):
            say(f"gguf: imatrix: {len(imatrix_meta['partial'])} expert weights have experts the calibration "
                "text never reached (neutral importance 1.0 used for them)")

    # 3. The sweep.
    if tiers:
        artifacts += _sweep(release, tiers, source, out_dir, root, dest, imatrix_path, imatrix_meta, tensors,
                            split_bytes, jobs, max_memory, progress, say, experts, used)

    # 4. Files that make `ollama run hf.co/<repo>:<tier>` use the release's template and parameters.
    if release.definition.ollama is not None and want("ollama-files"):
        artifacts.append(write_ollama_files(release, out_dir, root, dest))
    return artifacts


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
    staging.mkdir(exist_ok=True)
    jobs_ = {t: QuantizeJob(t, str(source), str(staging / T.gguf_filename(g.prefix, t)), recipes[t].ftype,
                            recipes[t].embed_type, recipes[t].output_type, recipes[t].overrides,
                            str(imatrix_path) if imatrix_path else None,
                            _dataset(imatrix_meta) if imatrix_path else None, plan.threads)
             for t in order}
    total_cost = sum(tier_cost(recipes[t]) for t in tiers)
    update = progress(f"gguf: quantize {len(tiers)} tiers", total_cost)
    done_cost = 0
    results: dict[str, Artifact] = {}
    ctx = multiprocessing.get_context("spawn")  # never fork a process holding torch/libllama state
    with ProcessPoolExecutor(max_workers=plan.workers, mp_context=ctx) as pool:
        pending: dict[Future, str] = {pool.submit(run_job, jobs_[t]): t for t in order}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    tier = pending.pop(fut)
                    timing = fut.result()
                    results[tier] = _finish_tier(release, tier, recipes[tier], Path(jobs_[tier].out), out_dir,
                                                 root, dest, imatrix_path, imatrix_meta, tensors, split_bytes,
                                                 timing, progress, say, experts, used)
                    done_cost += tier_cost(recipes[tier])
                    update(done_cost, total_cost)
        except BaseException:
            for fut in pending:
                fut.cancel()
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
    from .inspect import read_tensors

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


def _artifact(aid: str, root: str, out_dir: Path, files: list[Path], dest: Destination, recipe: dict[str, Any],
              facts: dict[str, Any]) -> Artifact:
    entries = [FileEntry(str(p.relative_to(out_dir)), p.stat().st_size, sha256_file(p)) for p in files]
    return Artifact(id=aid, kind="gguf", status="built", root=root, files=entries, recipe=recipe,
                    destination=dest, facts=facts)


def ollama_params_json(parameters: dict[str, Any]) -> bytes:
    """The `params` file: the same JSON bytes as the params layer of the release's Ollama tags."""
    from ..ollama.layers import params_blob, typed_params

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
