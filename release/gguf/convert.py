"""HF checkpoint → F16/BF16 GGUF with llama.cpp's own converter (vendored in the pinned sdist).

Run as a child process from its own tree so it imports its own gguf-py (G3); `--model-name` always
(else `general.name` comes from the folder name). The chat template must end up in the file
(`tokenizer.chat_template`): it is read from the checkpoint's chat_template.jinja / tokenizer_config.json,
and a file without one is refused (runtimes then fall back to a wrong template).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError, WorkError
from ..procs import child_preexec
from ..toolchain import Toolchain

OUTTYPES = {"F16": "f16", "BF16": "bf16", "F32": "f32", "Q8_0": "q8_0"}


def checkpoint_bytes(hf_dir: Path) -> int:
    return sum(p.stat().st_size for p in hf_dir.glob("*.safetensors"))


def converter_command(tc: Toolchain, hf_dir: Path, out: Path, outtype: str, model_name: str) -> list[str]:
    return [tc.python, str(tc.converter), str(hf_dir), "--outtype", OUTTYPES[outtype], "--model-name", model_name,
            "--outfile", str(out)]


def convert(tc: Toolchain, hf_dir: Path, out: Path, *, outtype: str = "F16", model_name: str,
            progress: Callable[[int, int], None] | None = None, log: Path | None = None) -> dict[str, float]:
    """Convert `hf_dir` into `out` (written under a temporary name, renamed when complete)."""
    if not (hf_dir / "config.json").is_file():
        raise InputError("not a Hugging Face checkpoint (no config.json)", file=str(hf_dir))
    has_template = (hf_dir / "chat_template.jinja").is_file() or '"chat_template"' in \
        _read(hf_dir / "tokenizer_config.json")
    if not has_template:
        raise InputError("no chat template (chat_template.jinja or tokenizer_config.json chat_template): "
                         "the GGUF would carry none", file=str(hf_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    tmp.unlink(missing_ok=True)
    expected = checkpoint_bytes(hf_dir) * (2 if outtype == "F32" else 1)
    log = log or out.with_name(f".{out.name}.convert.log")
    started = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(converter_command(tc, hf_dir, tmp, outtype, model_name), env=tc.converter_env(),
                                stdout=fh, stderr=subprocess.STDOUT, cwd=str(tc.converter.parent),
                                preexec_fn=child_preexec)
        stop = threading.Event()

        def watch() -> None:
            # The converter writes tensors in order; the growing file is an honest progress measure.
            while not stop.wait(0.5):
                if progress and tmp.exists():
                    progress(min(tmp.stat().st_size, expected), expected)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            tmp.unlink(missing_ok=True)
            raise
        finally:
            stop.set()
            watcher.join()
    if rc != 0:
        tmp.unlink(missing_ok=True)
        tail = log.read_text(errors="replace")[-2500:]
        if "No space left on device" in tail or "[Errno 28]" in tail:
            free = shutil.disk_usage(out.parent).free
            raise WorkError(f"no space left on device while converting {hf_dir.name} to {out} (it needs about "
                            f"{expected / 1e9:.1f} GB; {free / 1e9:.1f} GB are free there now); free some and run "
                            "again")
        raise WorkError(f"llama.cpp converter failed on {hf_dir} (exit {rc}); log {log}:\n{tail}")
    os.replace(tmp, out)
    if progress:
        progress(expected, expected)
    return {"wall_s": round(time.perf_counter() - started, 2)}


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""
