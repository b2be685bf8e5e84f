"""Every fenced code block of every card, run against the built demo release.

The demo is built once (`release build`) and its Hub repos published once to the stand-in Hub on
127.0.0.1 (`release publish --only …`). Then every fenced block of the four cards is classified:

- Python with transformers: run with the model id swapped for the built folder of that repo;
- Python with llama-cpp-python: run as shown, against the stand-in Hub (HF_ENDPOINT);
- `hf download …`: run as shown, against the stand-in Hub, and the downloaded files compared with the
  built ones;
- the Ollama `PARAMETER` block and the Go template: compared with what the GGUF repo and every built
  Ollama tag carry;
- commands whose tools cannot run here (`ollama`, `llama-cli`, `llama-server`, `vllm`): listed, and the
  tool checked to be absent — once it is installed, the test says to run it instead.

A block the classifier does not know fails the test, so a new block cannot reach a card unrun.
Plus: the preview reflects what was published (and what changed locally since).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from release.localhub import LocalHub

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_cardcommands_token_0123456789"
KINDS = ("bf16", "gguf", "nvfp4", "ollama")
HUB_KINDS = ("bf16", "gguf", "nvfp4", "cards")

# Tools a card may show that cannot run on this machine, and why.
NOT_HERE = {
    "ollama": "Ollama is not installed here (its registry side is tested with docker-registry)",
    "llama-cli": "llama.cpp's command-line binaries are not built here (llama-cpp-python is)",
    "llama-server": "llama.cpp's command-line binaries are not built here (llama-cpp-python is)",
    "vllm": "vLLM needs a GPU",
}


# ---- blocks and their classification ---------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    card: str
    line: int  # 1-based line of the opening fence
    info: str
    text: str
    after: str  # the HTML just before the fence (a <details><summary> names what it shows)

    def where(self) -> str:
        return f"card:{self.card} line {self.line}"


@dataclass(frozen=True)
class Step:
    how: str  # transformers | llama-cpp-python | hf-download | ollama-parameters | ollama-template | not-here
    text: str
    why: str = ""


class UnknownBlock(AssertionError):
    pass


def fenced_blocks(card: str, markdown: str) -> list[Block]:
    blocks = []
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    for i, t in enumerate(tokens):
        if t.type == "fence":
            before = tokens[i - 1] if i else None
            after = before.content if before is not None and before.type == "html_block" else ""
            blocks.append(Block(card, (t.map[0] + 1) if t.map else 0, t.info.strip(), t.content, after))
    return blocks


def _commands(text: str) -> list[str]:
    """Shell commands of a block: comments and blank lines dropped, `\\` continuations joined."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def classify(block: Block) -> list[Step]:
    """The steps that check a block; UnknownBlock for anything this test does not know how to check."""
    text = block.text
    if block.info == "python":
        if "from transformers import pipeline" in text and "model_id = " in text:
            return [Step("transformers", text)]
        if "from llama_cpp import Llama" in text and "Llama.from_pretrained(" in text:
            return [Step("llama-cpp-python", text)]
    elif block.info in ("sh", "bash", "shell"):
        steps = []
        for cmd in _commands(text):
            argv = shlex.split(cmd)
            if argv[:2] == ["hf", "download"]:
                steps.append(Step("hf-download", cmd))
            elif argv[0] in NOT_HERE:
                steps.append(Step("not-here", cmd, NOT_HERE[argv[0]]))
            else:
                raise UnknownBlock(f"{block.where()}: no runner for the command {cmd!r}")
        if steps:
            return steps
    elif block.info == "":
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if lines and all(ln.startswith("PARAMETER ") for ln in lines):
            return [Step("ollama-parameters", text)]
        if "<summary>Go template" in block.after:
            return [Step("ollama-template", text)]
    raise UnknownBlock(f"{block.where()}: a ```{block.info} block this test does not know how to run:\n{text}")


# ---- the built and published demo ------------------------------------------------------------------

@dataclass
class Demo:
    pipeline: Path
    dist: Path  # dist/demo
    hub_url: str

    def card(self, kind: str) -> str:
        return (self.dist / "cards" / kind / "README.md").read_text(encoding="utf-8")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_ENDPOINT", "HF_TOKEN")}
    return {**env, "HF_HUB_DISABLE_XET": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **extra}


def _release(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, cwd=ROOT,
                          env=_env(**env), timeout=900)
    assert proc.returncode == 0, f"release {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


def _copy_pipeline(dest: Path) -> Path:
    shutil.copytree(ROOT / "pipelines" / "demo", dest, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    return dest


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("card-commands")
    pipeline = _copy_pipeline(root / "pipelines" / "demo")
    dist = root / "dist"
    _release("build", str(pipeline), "--dist", str(dist))
    hub = LocalHub(root / "hub", tokens={TOKEN: ["demo"]})
    url = hub.start()
    try:
        only = [a for k in HUB_KINDS for a in ("--only", k)]
        _release("publish", str(pipeline), "--dist", str(dist), *only, "--hub-endpoint", url, "--json",
                 HF_TOKEN=TOKEN)
        yield Demo(pipeline, dist / "demo", url)
    finally:
        hub.stop()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _local_folders(demo: Demo) -> dict[str, Path]:
    """Hub repo → the built folder holding what it publishes."""
    from release.spec.load import load_release

    d = load_release(str(demo.pipeline)).definition
    return {d.bf16.repo: demo.dist / "bf16", d.nvfp4.repo: demo.dist / "nvfp4", d.gguf.repo: demo.dist / "gguf"}


def _ollama_layers(demo: Demo, media: str) -> dict[str, bytes]:
    """tag → the bytes of that built tag's layer of `media` type (params, template)."""
    out = {}
    for manifest in (demo.dist / "ollama" / "manifests").rglob("*"):
        if manifest.is_file():
            layers = json.loads(manifest.read_text())["layers"]
            digest = next(x["digest"] for x in layers if x["mediaType"] == f"application/vnd.ollama.image.{media}")
            out[manifest.name] = (demo.dist / "ollama" / "blobs" / digest.replace(":", "-")).read_bytes()
    assert out, "no Ollama tag was built"
    return out


# ---- runners: each returns a problem, or "" when the block did what the card says ---------------------

def _run_python(script: str, tmp: Path, env: dict[str, str]) -> str:
    path = tmp / "snippet.py"
    path.write_text(script, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=tmp, env=env,
                          timeout=600)
    if proc.returncode != 0:
        return f"exit {proc.returncode}:\n{proc.stderr[-3000:]}"
    if not proc.stdout.strip("\n"):
        return "printed nothing"
    return ""


def run_transformers(demo: Demo, step: Step, tmp: Path) -> str:
    folders = _local_folders(demo)
    line = next(ln for ln in step.text.splitlines() if ln.startswith("model_id = "))
    repo = json.loads(line.removeprefix("model_id = "))
    if repo not in folders:
        return f"model_id {repo!r} is not a repo of this release"
    script = step.text.replace(line, f"model_id = {json.dumps(str(folders[repo]))}")
    # Offline: the only model it may load is the built folder.
    return _run_python(script, tmp, _env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf-home")))


def run_llama_cpp(demo: Demo, step: Step, tmp: Path) -> str:
    return _run_python(step.text, tmp, _env(HF_ENDPOINT=demo.hub_url, HF_HOME=str(tmp / "hf-home")))


def run_hf_download(demo: Demo, step: Step, tmp: Path) -> str:
    import fnmatch

    argv = shlex.split(step.text)
    hf = Path(sys.executable).with_name("hf")
    proc = subprocess.run([str(hf), *argv[1:]], capture_output=True, text=True, cwd=tmp, timeout=300,
                          env=_env(HF_ENDPOINT=demo.hub_url, HF_HOME=str(tmp / "hf-home")))
    if proc.returncode != 0:
        return f"exit {proc.returncode}:\n{proc.stderr[-3000:]}"
    repo = argv[2]
    local = Path(tmp / argv[argv.index("--local-dir") + 1]) if "--local-dir" in argv else None
    if local is None:
        return "the card's download names no --local-dir, so its result cannot be checked here"
    built = _local_folders(demo)[repo]
    patterns = [argv[i + 1] for i, a in enumerate(argv) if a == "--include"]
    wanted = [p for p in built.rglob("*") if p.is_file()
              and any(fnmatch.fnmatch(str(p.relative_to(built)), pat) for pat in patterns)]
    if not wanted:
        return f"{patterns} matches no built file of {repo}"
    for src in wanted:
        got = local / src.relative_to(built)
        if not got.is_file() or _sha256(got) != _sha256(src):
            return f"{got} is not the built {src.name}"
    return ""


def check_parameters(demo: Demo, step: Step, tmp: Path) -> str:
    shown: dict[str, list[str]] = {}
    for line in step.text.splitlines():
        if line.strip():
            _, key, value = line.split(" ", 2)
            shown.setdefault(key, []).append(value)

    def as_lines(params: dict) -> dict[str, list[str]]:
        return {k: [repr(x) if isinstance(x, float) else str(x) for x in (v if isinstance(v, list) else [v])]
                for k, v in params.items()}

    sources = {"gguf/params": (demo.dist / "gguf" / "params").read_bytes(),
               **{f"ollama tag {t}": b for t, b in _ollama_layers(demo, "params").items()}}
    for name, data in sources.items():
        if as_lines(json.loads(data)) != shown:
            return f"the card shows {shown}, {name} holds {json.loads(data)}"
    return ""


def check_template(demo: Demo, step: Step, tmp: Path) -> str:
    sources = {"gguf/template": (demo.dist / "gguf" / "template").read_bytes(),
               **{f"ollama tag {t}": b for t, b in _ollama_layers(demo, "template").items()}}
    for name, data in sources.items():
        if data.decode("utf-8").strip() != step.text.strip():
            return f"the card's Go template is not the one {name} carries"
    return ""


def check_not_here(demo: Demo, step: Step, tmp: Path) -> str:
    tool = shlex.split(step.text)[0]
    if shutil.which(tool):
        return f"{tool} is installed here: run {step.text!r} in this test instead of listing it as not runnable"
    return ""


RUNNERS = {"transformers": run_transformers, "llama-cpp-python": run_llama_cpp, "hf-download": run_hf_download,
           "ollama-parameters": check_parameters, "ollama-template": check_template, "not-here": check_not_here}


# ---- tests -----------------------------------------------------------------------------------------

@pytest.mark.slow  # builds and publishes the demo once per module
def test_every_code_block_of_every_card_runs(demo: Demo, tmp_path: Path) -> None:
    steps: list[tuple[Block, Step]] = []
    unknown = []
    for kind in KINDS:
        blocks = fenced_blocks(kind, demo.card(kind))
        assert blocks, f"card:{kind} has no code block"
        for block in blocks:
            try:
                steps += [(block, s) for s in classify(block)]
            except UnknownBlock as exc:
                unknown.append(str(exc))
    assert not unknown, "\n\n".join(unknown)
    hows = {s.how for _, s in steps}
    assert set(RUNNERS) <= hows, f"the demo cards no longer show {set(RUNNERS) - hows}"

    problems = []
    done: dict[tuple[str, str], str] = {}  # the same snippet on several cards runs once
    for i, (block, step) in enumerate(steps):
        key = (step.how, step.text)
        if key not in done:
            work = tmp_path / f"step-{i}"
            work.mkdir()
            done[key] = RUNNERS[step.how](demo, step, work)
        if done[key]:
            problems.append(f"{block.where()} ({step.how}): {step.text.strip()[:200]}\n  → {done[key]}")
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize(("info", "text", "after"), [
    ("sh", "curl -L https://example.com/x.gguf -o x.gguf\n", ""),
    ("sh", "# just a comment\nllama-bench -m x.gguf\n", ""),
    ("python", "from vllm import LLM\nLLM('x')\n", ""),
    ("bash", "hf download demo/x --local-dir .\npip install accelerate\n", ""),
    ("", "FROM ./x.gguf\n", ""),
    ("json", "{}\n", ""),
])
def test_unknown_blocks_fail(info: str, text: str, after: str) -> None:
    with pytest.raises(UnknownBlock):
        classify(Block("gguf", 1, info, text, after))


def test_classifier_knows_the_shapes_the_cards_use() -> None:
    steps = classify(Block("gguf", 1, "sh", "# chat\nllama-cli -hf a/b:Q4_K_M --jinja\n\n"
                                            "hf download a/b --include \"x.gguf\" --local-dir .\n", ""))
    assert [s.how for s in steps] == ["not-here", "hf-download"]
    assert classify(Block("gguf", 1, "", "x\n", "<details><summary>Go template (t)</summary>"))[0].how == \
        "ollama-template"


@pytest.mark.slow  # builds and publishes the demo once per module
def test_transformers_snippet_fails_the_way_the_old_card_did(demo: Demo, tmp_path: Path) -> None:
    """The runner is a real check: the quick start as it was (`pipe(text=messages)`) fails it."""
    block = next(b for b in fenced_blocks("bf16", demo.card("bf16")) if b.info == "python")
    old = block.text.replace("pipe(messages,", "pipe(text=messages,")
    assert old != block.text
    problem = run_transformers(demo, Step("transformers", old), tmp_path)
    assert "TypeError" in problem


# ---- the NVFP4 card's transformers claim, checked on the built checkpoint -------------------------------

@pytest.mark.slow  # builds and publishes the demo once per module
def test_nvfp4_in_transformers_loads_with_random_experts(demo: Demo) -> None:
    """What the NVFP4 card says next to its quick start: transformers loads the checkpoint without an
    error, but reports every per-expert tensor as unexpected and leaves the fused experts missing
    (randomly initialised). If a transformers release maps them, this fails and the card must change."""
    import transformers

    from release.spec.load import load_release

    release = load_release(str(demo.pipeline))
    layers = len(release.drop_map.kept)
    model, info = transformers.AutoModelForImageTextToText.from_pretrained(
        str(demo.dist / "nvfp4"), output_loading_info=True)
    del model
    per_expert = [k for k in info["unexpected_keys"] if ".experts." in k and k.split(".experts.")[1][0].isdigit()]
    kept = release.drop_map.kept_count
    assert len(per_expert) == layers * kept * 3 * 3  # gate, up, down × packed weight, scale, global scale
    missing = {k for k in info["missing_keys"] if ".experts." in k}
    assert len(missing) == 2 * layers and all(k.endswith((".gate_up_proj", ".down_proj")) for k in missing)
    assert not info["error_msgs"]
    assert "transformers loads this NVFP4A16 checkpoint without an error" in demo.card("nvfp4")
    assert "leaves every routed expert randomly initialised" in demo.card("nvfp4")


# ---- the preview after a publish -------------------------------------------------------------------

def _banner(preview: Path) -> str:
    import re

    m = re.search(r'<span class="note">(.*?)</span>', (preview / "index.html").read_text())
    assert m, "no banner"
    return re.sub(r"<[^>]+>", "", m.group(1))


@pytest.mark.slow  # builds and publishes the demo once per module
def test_preview_reflects_publish(demo: Demo, tmp_path: Path) -> None:
    # Work on copies: the other tests read the published demo as it is.
    pipeline = _copy_pipeline(tmp_path / "pipelines" / "demo")
    dist = tmp_path / "dist"
    shutil.copytree(demo.dist, dist / "demo", copy_function=os.link)
    (dist / "demo" / "hashes.json").unlink(missing_ok=True)  # keyed by absolute path
    preview = dist / "demo" / "preview"

    banner = _banner(preview)
    assert "nothing here is published yet" not in banner
    assert f"published: 3 of 3 Hub repos (to {demo.hub_url})" in banner and "0 of 3 Ollama tags" in banner
    gguf_page = (preview / "hf-demo--tiny-gemma4-6e-it-GGUF.html").read_text()
    assert f'Published: <a class="external" target="_blank" rel="noopener" href="{demo.hub_url}/demo/' \
           'tiny-gemma4-6e-it-GGUF">' in gguf_page
    assert "Not published yet" in (preview / "ollama-q4-k-m.html").read_text()

    _release("preview", str(pipeline), "--dist", str(dist))  # a later preview still knows
    assert "published: 3 of 3 Hub repos" in _banner(preview)

    # A tag pushed with the digest built here reads as published; one with another digest as changed.
    from release.cards.preview import record_publish
    from release.manifest import Artifact, ArtifactRegistry
    from release.spec.load import load_release

    state = json.loads((dist / "demo" / "state.json").read_text())["artifacts"]
    artifacts = ArtifactRegistry([Artifact.from_json(rec["artifact"]) for rec in state.values()])
    built = artifacts["ollama:Q4_K_M"].facts["manifest_digest"]
    record_publish(load_release(str(pipeline)), artifacts, dist / "demo", hub={},
                   ollama={"Q4_K_M": built, "Q8_0": "sha256:" + "0" * 64}, ollama_registry="http://127.0.0.1:5999")
    banner = _banner(preview)
    assert "published: 3 of 3 Hub repos" in banner and "1 of 3 Ollama tags; 1 changed here since" in banner
    tag_page = (preview / "ollama-q4-k-m.html").read_text()
    assert f"Published as <code>127.0.0.1:5999/demo/tiny-gemma4-6e:Q4_K_M</code> ({built[7:19]})" in tag_page
    assert "the tag built here differs" in (preview / "ollama-q8-0.html").read_text()

    scores = pipeline / "scores.json"
    scores.write_text(scores.read_text().replace('"variant": 60', '"variant": 61'))
    _release("cards", str(pipeline), "--dist", str(dist))
    banner = _banner(preview)
    assert "published: 0 of 3 Hub repos" in banner and "4 changed here since" in banner
    assert "the files here differ from what was published" in (preview / "hf-demo--tiny-gemma4-6e-it.html").read_text()


def test_unpublished_preview_says_so(tmp_path: Path) -> None:
    from release.cards import build_preview, render_cards
    from release.plan import plan_artifacts
    from release.spec.load import load_release

    release = load_release("v4")
    artifacts = plan_artifacts(release)
    render_cards(release, artifacts, tmp_path / "cards", provenance={})
    (tmp_path / "published.json").write_text("[not json")  # unreadable record: as if none
    build_preview(release, artifacts, tmp_path / "cards", tmp_path / "preview")
    assert _banner(tmp_path / "preview").endswith("nothing here is published yet")
    assert "Not published yet" in (tmp_path / "preview" / "hf-ManniX-ITA--gemma-4-A4B-98e-v4-it.html").read_text()
