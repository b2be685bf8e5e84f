"""Verify an NVFP4A16 checkpoint against the BF16 checkpoint it was made from, module by module.

Checks, streaming one module at a time:
- every quantized module dequantizes to within `max_rel_error` relative Frobenius error of its
  source weight (Gaussian-like weights give ≈0.095; all-ties tensors ≈0.16);
- its global scale is the one compressed-tensors derives from its fusion group's amax, and equal
  across the group (what vLLM assumes when it fuses q/k/v and gate/up);
- every other tensor is byte-identical to the source, and nothing is missing or extra;
- config.json's quantization_config is the NVFP4A16 one, and its `ignore` lists every linear kept
  BF16 while naming no quantized module.

Dequantizer: compressed-tensors' own `NVFP4PackedCompressor.decompress` when it is importable (it is
in the `test` extra), else our `numerics.dequantize`, whose bf16 output is bit-identical to it
(tests/test_nvfp4.py proves that). The report says which one ran.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import VerifyError
from ..prune.checkpoint import CONFIG
from . import numerics
from .checkpoint import open_source, read_2d, read_quant_shard_headers
from .layout import _EMBEDDING_LEAVES, SrcTensor, fusion_key
from .parallel import default_workers, ordered_map
from .qconfig import quantization_config

DEFAULT_MAX_REL_ERROR = 0.2
_COMPARE_CHUNK = 16 << 20


@dataclass
class ModuleCheck:
    module: str
    source: str
    rel_error: float
    ok: bool


@dataclass
class VerifyReport:
    dequantizer: str
    max_rel_error: float
    modules: list[ModuleCheck] = field(default_factory=list)
    passthrough: int = 0  # tensors compared byte for byte
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def worst(self) -> ModuleCheck | None:
        return max(self.modules, key=lambda m: m.rel_error, default=None)

    def summary(self) -> str:
        worst = self.worst
        tail = f", worst {worst.rel_error:.4f} ({worst.module})" if worst else ""
        state = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        return (f"NVFP4 verify {state}: {len(self.modules)} modules within {self.max_rel_error} relative "
                f"error{tail}; {self.passthrough} tensors byte-identical; dequantizer {self.dequantizer}")

    def raise_if_failed(self) -> None:
        if not self.ok:
            shown = "\n".join(self.problems[:20])
            more = f"\n… and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
            raise VerifyError(f"{self.summary()}\n{shown}{more}")


def verify_checkpoint(quant_dir: Path, src_dir: Path, *, max_rel_error: float = DEFAULT_MAX_REL_ERROR,
                      dequantizer: str = "auto", workers: int | None = None) -> VerifyReport:
    """dequantizer: "auto" (compressed-tensors if importable), "compressed-tensors" or "own"."""
    quant_dir = Path(quant_dir)
    dequant, label = _dequantizer(dequantizer)
    report = VerifyReport(dequantizer=label, max_rel_error=max_rel_error)
    src = open_source(Path(src_dir))
    out = read_quant_shard_headers(quant_dir)
    qc = _check_config(quant_dir, report)
    src_by_name = {t.name: t for t in src.tensors}

    modules = sorted({n[: -len(".weight_packed")] for n in out if n.endswith(".weight_packed")})
    sources: dict[str, tuple[SrcTensor, int | None, int, int, int]] = {}
    for m in modules:
        located = _locate(m, src_by_name)
        if located is None:
            report.problems.append(f"{m}: quantized module with no source weight in {src_dir}")
        else:
            sources[m] = located
    consumed = {s[0].name for s in sources.values()}

    # opened up front: the group checks below run on several threads
    fds: dict[Path, int] = {}
    for path in {src.root / t.file for t in src.tensors} | {quant_dir / f for f, _, _ in out.values()}:
        fds[path] = os.open(path, os.O_RDONLY)

    def fd(path: Path) -> int:
        return fds[path]

    def src_weight(m: str) -> torch.Tensor:
        t, e, r0, r1, cols = sources[m]
        item = 2 if t.dtype == "BF16" else 4
        per_expert = math.prod(t.shape[1:]) * item if e is not None else 0
        return read_2d(fd(src.root / t.file), t.begin + (e or 0) * per_expert + r0 * cols * item, t.dtype,
                       r1 - r0, cols)

    def out_tensor(name: str) -> torch.Tensor:
        file, entry, offset = out[name]
        shape = entry.shape if len(entry.shape) == 2 else (1, max(1, math.prod(entry.shape)))
        return read_2d(fd(quant_dir / file), offset, entry.dtype, shape[0], shape[1])

    try:
        groups: dict[str, list[str]] = {}
        for m in sources:
            groups.setdefault(fusion_key(m), []).append(m)
        def check_group(members: list[str]) -> tuple[list[ModuleCheck], list[str]]:
            checks: list[ModuleCheck] = []
            problems: list[str] = []
            weights = {m: src_weight(m) for m in members}
            amax = max(numerics.amax(w).item() for w in weights.values())
            dtype = next(iter(weights.values())).dtype
            want_gs = numerics.global_scale(torch.tensor(amax, dtype=dtype))
            for m in members:
                missing = [s for s in ("weight_packed", "weight_scale", "weight_global_scale")
                           if f"{m}.{s}" not in out]
                if missing:
                    problems.append(f"{m}: missing {', '.join(missing)}")
                    continue
                packed = out_tensor(f"{m}.weight_packed")
                scale = out_tensor(f"{m}.weight_scale")
                gs = out_tensor(f"{m}.weight_global_scale").reshape(1)
                w = weights[m]
                if packed.shape != (w.shape[0], w.shape[1] // 2) or scale.shape != (w.shape[0], w.shape[1] // 16):
                    problems.append(f"{m}: packed {list(packed.shape)} / scale {list(scale.shape)} do "
                                    f"not fit the source weight {list(w.shape)}")
                    continue
                if not torch.equal(gs, want_gs):
                    problems.append(f"{m}: global scale {gs.item()} ≠ {want_gs.item()} expected from "
                                    f"the amax of its fusion group ({', '.join(members)})")
                deq = dequant(packed, scale.view(torch.float8_e4m3fn), gs)
                ref = w.to(torch.float32)
                norm = ref.norm().item()
                err = (deq.to(torch.float32) - ref).norm().item()
                rel = err / norm if norm > 0 else (0.0 if err == 0 else math.inf)
                ok = rel <= max_rel_error
                checks.append(ModuleCheck(m, _label(sources[m]), rel, ok))
                if not ok:
                    problems.append(f"{m}: relative error {rel:.4f} > {max_rel_error} "
                                    f"(source {_label(sources[m])})")
            return checks, problems

        for checks, problems in ordered_map(check_group, groups.values(), workers or default_workers()):
            report.modules.extend(checks)
            report.problems.extend(problems)

        quant_names = {f"{m}.{s}" for m in modules for s in ("weight_packed", "weight_scale", "weight_global_scale")}
        for t in src.tensors:
            if t.name in consumed:
                continue
            if t.name not in out:
                report.problems.append(f"{t.name}: in the source, missing from the NVFP4 checkpoint")
                continue
            file, entry, offset = out[t.name]
            if entry.dtype != t.dtype or tuple(entry.shape) != t.shape:
                report.problems.append(f"{t.name}: {entry.dtype} {list(entry.shape)} ≠ source {t.dtype} "
                                       f"{list(t.shape)}")
            elif not _same_bytes(fd(src.root / t.file), t.begin, fd(quant_dir / file), offset, t.nbytes):
                report.problems.append(f"{t.name}: bytes differ from the source (must be copied unchanged)")
            else:
                report.passthrough += 1
        for name in out:
            if name not in quant_names and name not in src_by_name:
                report.problems.append(f"{name}: in the NVFP4 checkpoint but not in the source")
    finally:
        for f in fds.values():
            os.close(f)

    if qc is not None:
        _check_ignore(qc, modules, src, consumed, report)
    return report


def _dequantizer(choice: str) -> tuple[Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], str]:
    if choice not in ("auto", "compressed-tensors", "own"):
        raise ValueError(f"dequantizer must be auto, compressed-tensors or own, not {choice!r}")
    if choice != "own":
        try:
            import compressed_tensors
            from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
            from compressed_tensors.quantization import QuantizationScheme
            from compressed_tensors.quantization.quant_scheme import NVFP4A16
        except ImportError:
            if choice == "compressed-tensors":
                raise
        else:
            scheme = QuantizationScheme(targets=["Linear"], **NVFP4A16)

            def ct(packed: torch.Tensor, scale: torch.Tensor, gs: torch.Tensor) -> torch.Tensor:
                state = {"weight_packed": packed, "weight_scale": scale, "weight_global_scale": gs}
                return NVFP4PackedCompressor.decompress(state, scheme)["weight"]

            return ct, f"compressed-tensors {compressed_tensors.__version__}"
    return numerics.dequantize, "own (release.nvfp4.numerics.dequantize, bit-identical to compressed-tensors)"


def _locate(module: str, src: dict[str, SrcTensor]) -> tuple[SrcTensor, int | None, int, int, int] | None:
    t = src.get(f"{module}.weight")
    if t is not None and len(t.shape) == 2:
        return t, None, 0, t.shape[0], t.shape[1]
    m = re.match(r"^(?P<c>.*\.experts)\.(?P<e>\d+)\.(?P<leaf>gate_proj|up_proj|down_proj)$", module)
    if not m:
        return None
    e = int(m["e"])
    if m["leaf"] == "down_proj":
        t = src.get(f"{m['c']}.down_proj")
        if t is None or len(t.shape) != 3 or e >= t.shape[0]:
            return None
        return t, e, 0, t.shape[1], t.shape[2]
    t = src.get(f"{m['c']}.gate_up_proj")
    if t is None or len(t.shape) != 3 or e >= t.shape[0]:
        return None
    half = t.shape[1] // 2
    return (t, e, 0, half, t.shape[2]) if m["leaf"] == "gate_proj" else (t, e, half, t.shape[1], t.shape[2])


def _label(located: tuple[SrcTensor, int | None, int, int, int]) -> str:
    t, e, r0, r1, _ = located
    return t.name if e is None else f"{t.name}[{e}, {r0}:{r1}]"


def _same_bytes(fa: int, oa: int, fb: int, ob: int, n: int) -> bool:
    done = 0
    while done < n:
        k = min(_COMPARE_CHUNK, n - done)
        if os.pread(fa, k, oa + done) != os.pread(fb, k, ob + done):
            return False
        done += k
    return True


def _check_config(quant_dir: Path, report: VerifyReport) -> dict[str, Any] | None:
    try:
        config = json.loads((quant_dir / CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        report.problems.append(f"{CONFIG}: unreadable ({exc})")
        return None
    qc = config.get("quantization_config")
    if not isinstance(qc, dict) or not isinstance(qc.get("ignore"), list):
        report.problems.append(f"{CONFIG}: no quantization_config with an ignore list")
        return None
    want = quantization_config(qc["ignore"])
    for key, value in want.items():
        if key != "version" and qc.get(key) != value:
            report.problems.append(f"{CONFIG}: quantization_config.{key} = {qc.get(key)!r}, expected {value!r}")
    return qc


def _check_ignore(qc: dict[str, Any], modules: list[str], src: Any, consumed: set[str],
                  report: VerifyReport) -> None:
    ignore = set(qc["ignore"])
    for m in modules:
        if m in ignore:
            report.problems.append(f"{CONFIG}: quantization_config.ignore names {m}, which is quantized")
    for t in src.tensors:
        if t.name in consumed or not t.name.endswith(".weight") or len(t.shape) != 2:
            continue
        module = t.name[: -len(".weight")]
        if module.rpartition(".")[2] in _EMBEDDING_LEAVES:
            continue
        if module not in ignore:
            report.problems.append(f"{CONFIG}: quantization_config.ignore lacks {module}, which stays "
                                   f"{t.dtype} (vLLM would expect NVFP4 tensors for it)")
