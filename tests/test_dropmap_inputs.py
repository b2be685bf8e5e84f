"""`release dropmap` on inputs a user hits (issue 19.14): a huge single-line calibration file is read and
tokenized in bounded pieces (memory does not grow with the file), and an `--out` that cannot be written is
refused before anything is loaded."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_dropmap import CODE, PROSE, demo_release, write_calibration

from release.demo import generate_tiny_gemma4
from release.dropmap.calibration import read_calibration, tokenize

ROOT = Path(__file__).resolve().parents[1]
BIG_BYTES = 20 << 20
# The command, run in a process of its own that reports its peak resident memory as it ends.
_MEASURED = """
import resource, sys
from release.cli import main
sys.argv = ["release", *sys.argv[1:]]
try:
    main()
finally:
    print(f"maxrss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
"""


@pytest.fixture(scope="module")
def demo_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_tiny_gemma4(tmp_path_factory.mktemp("demo") / "base")


def _single_line(path: Path, size: int) -> Path:
    sentence = "The harbour log records eleven arrivals, nine departures and one broken winch. "
    path.write_text((sentence * (size // len(sentence) + 1))[:size])
    return path


def _measured(*args: str) -> tuple[int, str, int]:
    proc = subprocess.run([sys.executable, "-c", _MEASURED, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=900, env={**os.environ, "COLUMNS": "200"})
    peak = re.search(r"maxrss_kb=(\d+)", proc.stderr)
    assert peak, proc.stderr[-3000:]
    return proc.returncode, proc.stderr, int(peak.group(1)) * 1024


def test_a_20_mb_single_line_sample_is_cut_to_max_tokens_in_bounded_memory(demo_base: Path, tmp_path: Path) -> None:
    """The same command on a small file and on a 20 MB one-line file: the peak grows by less than twice the
    file (measured: 14 MB, the hashing buffer; it used to tokenize all of it — millions of tokens — before
    the cut to 512)."""
    folder = demo_release(tmp_path, demo_base, generated=True)
    small = write_calibration(tmp_path / "small", {"prose": PROSE, "code": CODE})
    big = write_calibration(tmp_path / "big", {"code": CODE})
    _single_line(big / "prose.txt", BIG_BYTES)
    runs = {}
    for name, calibration in (("small", small), ("big", big)):
        code, stderr, peak = _measured("dropmap", str(folder), "--calibration", str(calibration),
                                       "--out", str(tmp_path / name / "dropmap.json"))
        assert code == 0, stderr[-3000:]
        runs[name] = peak
    grew = runs["big"] - runs["small"]
    assert grew < 2 * BIG_BYTES, f"peak {runs['big'] >> 20} MiB with the 20 MB file, {runs['small'] >> 20} MiB without"


def test_incremental_tokens_are_the_whole_sample_s_first_tokens(demo_base: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_base)
    folder = tmp_path / "cal"
    folder.mkdir()
    _single_line(folder / "prose.txt", 2 << 20)
    (folder / "code.txt").write_text("\n\n".join(CODE) + "\n\n   \n\n" + "x = 1\r\ny = 2\r\n")
    (folder / "chat.jsonl").write_text('{"messages": [{"role": "user", "content": "' + "word " * 40_000 + '"}]}\n')
    for max_tokens in (7, 512):
        classes = read_calibration(folder, max_tokens=max_tokens)
        tokenized = {c.name: c for c in tokenize(classes, tokenizer, max_tokens)}
        whole_text = (folder / "prose.txt").read_text()
        assert tokenized["prose"].samples == (tuple(tokenizer(whole_text)["input_ids"][:max_tokens]),)
        assert len(tokenized["prose"].samples[0]) == max_tokens
        assert [list(s) for s in tokenized["code"].samples] == \
            [tokenizer(s)["input_ids"][:max_tokens] for s in [*CODE, "x = 1\r\ny = 2"]]
        chat = tokenizer.apply_chat_template([{"role": "user", "content": "word " * 40_000}], tokenize=True,
                                             return_dict=True)["input_ids"][:max_tokens]
        assert list(tokenized["chat"].samples[0]) == list(chat)
    # The file's sha256 is of all of it, however little of it is kept.
    import hashlib

    prose = next(c for c in read_calibration(folder, max_tokens=7) if c.name == "prose")
    assert prose.sha256 == hashlib.sha256((folder / "prose.txt").read_bytes()).hexdigest()


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write in: chmod 555, or for root (whom modes do not stop) a sysfs folder."""
    if os.geteuid() == 0:
        return Path("/sys/kernel")
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


@pytest.mark.parametrize("where", ["under a file", "read-only folder"])
def test_an_out_that_cannot_be_written_is_refused_before_anything_is_loaded(tmp_path: Path, where: str) -> None:
    """The demo copy has no base yet: reaching the model would generate one. A refused --out leaves none."""
    import shutil

    folder = tmp_path / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    cal = write_calibration(tmp_path / "cal", {"prose": PROSE})
    if where == "under a file":
        (tmp_path / "a-file").write_text("not a folder")
        out = tmp_path / "a-file" / "maps" / "dropmap.json"
    else:
        out = _read_only_folder(tmp_path) / "dropmap.json"
    proc = subprocess.run([sys.executable, "-m", "release", "dropmap", str(folder), "--calibration", str(cal),
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: --out: ") and ("not a folder" in line or "not writable" in line), line
    assert not (folder / "base").exists(), "the base was loaded (generated) before --out was checked"
    assert not out.exists()
