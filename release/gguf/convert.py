"""HF checkpoint → F16/BF16 GGUF with llama.cpp's own converter (vendored in the pinned sdist).

Run as a child process from its own tree so it imports its own gguf-py (G3); `--model-name` always
(else `general.name` comes from the folder name). The chat template must end up in the file
(`tokenizer.chat_template`): it is read from the checkpoint's chat_template.jinja / tokenizer_config.json,
and a file without one is refused (runtimes then fall back to a wrong template).

With release metadata (release.gguf.metadata) the converter reads a view of the checkpoint: links to its
files, with the release's model card in place of any README.md (the converter takes `general.license` only
from a card's YAML header), plus `--metadata` with the other `general.*` values.
"""

from __future__ import annotations

import json
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
from .metadata import GgufMetadata

OUTTYPES = {"F16": "f16", "BF16": "bf16", "F32": "f32", "Q8_0": "q8_0"}


def checkpoint_bytes(hf_dir: Path) -> int:
    return sum(p.stat().st_size for p in hf_dir.glob("*.safetensors"))


def converter_command(tc: Toolchain, hf_dir: Path, out: Path, outtype: str, model_name: str,
                      metadata_file: Path | None = None) -> list[str]:
    cmd = [tc.python, str(tc.converter), str(hf_dir), "--outtype", OUTTYPES[outtype], "--model-name", model_name,
           "--outfile", str(out)]
    if metadata_file is not None:
        cmd += ["--metadata", str(metadata_file)]
    return cmd


def convert(tc: Toolchain, hf_dir: Path, out: Path, *, outtype: str = "F16", model_name: str,
            metadata: GgufMetadata | None = None, progress: Callable[[int, int], None] | None = None,
            log: Path | None = None) -> dict[str, float]:
    """Convert `hf_dir` into `out` (written under a temporary name, renamed when complete)."""
    if not (hf_dir / "config.json").is_file():
        raise InputError("not a Hugging Face checkpoint (no config.json)", file=str(hf_dir))
    if "tokenizer.chat_template" not in expected_chat_templates(hf_dir)[0]:
        raise InputError("no chat template (chat_template.jinja or tokenizer_config.json chat_template): "
                         "the GGUF would carry none", file=str(hf_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    tmp.unlink(missing_ok=True)
    expected = checkpoint_bytes(hf_dir) * (2 if outtype == "F32" else 1)
    log = log or out.with_name(f".{out.name}.convert.log")
    started = time.perf_counter()
    # absolute: the converter runs from its own folder
    view = out.with_name(f".{out.name}.input").absolute()
    meta_file = out.with_name(f".{out.name}.metadata.json").absolute()
    source, meta_arg = hf_dir, None
    if metadata is not None:
        source, meta_arg = _view(hf_dir, view, metadata), meta_file
        meta_file.write_text(json.dumps(metadata.overrides, indent=1, ensure_ascii=False), encoding="utf-8")
    try:
        rc = _run(converter_command(tc, source, tmp, outtype, model_name, meta_arg), tc, tmp, log, expected,
                  progress)
    finally:
        shutil.rmtree(view, ignore_errors=True)
        meta_file.unlink(missing_ok=True)
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


def _view(hf_dir: Path, view: Path, metadata: GgufMetadata) -> Path:
    """`view`: links to the checkpoint's files, with the release's card as README.md."""
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir(parents=True)
    for p in hf_dir.iterdir():
        if p.is_file() and p.name != "README.md":
            (view / p.name).symlink_to(p.resolve())
    (view / "README.md").write_text(metadata.card(), encoding="utf-8")
    return view


def _run(cmd: list[str], tc: Toolchain, tmp: Path, log: Path, expected: int,
         progress: Callable[[int, int], None] | None) -> int:
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=tc.converter_env(), stdout=fh, stderr=subprocess.STDOUT,
                                cwd=str(tc.converter.parent), preexec_fn=child_preexec)
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
    return rc


def expected_chat_templates(hf_dir: Path) -> tuple[dict[str, str], str]:
    """The chat template keys the converter writes for `hf_dir` (`tokenizer.chat_template`, plus
    `tokenizer.chat_template.<name>` for named ones) and the file they come from.

    gguf-py SpecialVocab._try_load_from_tokenizer_json (0c1e570): tokenizer_config.json's `chat_template`
    wins; else chat_template.jinja (with additional_chat_templates/*.jinja as named ones), else
    chat_template.json. GGUFWriter.add_chat_template keeps a list's "default" entry as the plain key.
    """
    source, value = "", None
    config_path = hf_dir / "tokenizer_config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"unreadable: {exc}", file=str(config_path)) from exc
        if isinstance(config, dict) and config.get("chat_template") is not None:
            source, value = "tokenizer_config.json", config["chat_template"]
    if value is None:
        jinja, as_json = hf_dir / "chat_template.jinja", hf_dir / "chat_template.json"
        if jinja.is_file():
            source, value = "chat_template.jinja", jinja.read_text(encoding="utf-8")
            extra = sorted((hf_dir / "additional_chat_templates").glob("*.jinja"))
            if extra:
                value = [{"name": "default", "template": value}] + [
                    {"name": p.stem, "template": p.read_text(encoding="utf-8")} for p in extra]
        elif as_json.is_file():
            try:
                value = json.loads(as_json.read_text(encoding="utf-8")).get("chat_template")
            except (OSError, ValueError, AttributeError) as exc:
                raise InputError(f"unreadable: {exc}", file=str(as_json)) from exc
            source = "chat_template.json"
    out: dict[str, str] = {}
    if isinstance(value, str):
        out["tokenizer.chat_template"] = value
    elif isinstance(value, list):
        for choice in value:
            if not isinstance(choice, dict):
                continue
            name = "".join(c if c.isascii() and c.isalnum() else "_" for c in str(choice.get("name", "")))
            template = choice.get("template")
            if name and isinstance(template, str):
                out["tokenizer.chat_template" if name == "default" else f"tokenizer.chat_template.{name}"] = template
    return out, source
