"""Quality of every artifact, measured by the tool from the built files: `release build demo` fills
facts.quality of every GGUF tier (against the F16 conversion, through libllama) and of NVFP4 (against the
BF16 checkpoint, through transformers); one tier's KL divergence recomputed independently with
llama-cpp-python's high-level API agrees; unchanged inputs recompute nothing; the cards, the chart (rendered
by headless Chromium in the preview), the thresholds that remove a tier, and `check` refusing the imatrix
calibration text as held-out text."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from card_rows import table_row

from release.manifest import Artifact, ArtifactRegistry, FileEntry, Manifest
from release.quality.facts import FIGURES, apply_quality, quality_removed, removed_conflicts, withheld
from release.quality.windows import cut
from release.spec.load import load_release

ROOT = Path(__file__).resolve().parents[1]
PROVENANCE = {"tool_version": "0.1.0", "pipelines_commit": "0" * 40, "pipelines_dirty": False}


def _release(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_DISABLE_XET": "1", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, env=env,
                          timeout=900, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"release {' '.join(args)} → {proc.returncode}\n{proc.stderr[-4000:]}")
    return proc


def _copy_demo(dest: Path) -> Path:
    shutil.copytree(ROOT / "pipelines" / "demo", dest, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _copy_dist(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, copy_function=os.link)  # every output is replaced by rename, never rewritten
    (dest / "demo" / "hashes.json").unlink(missing_ok=True)
    return dest


def _built(output: str) -> list[str]:
    line = next(ln for ln in output.splitlines() if ln.startswith("built: "))
    return [] if "nothing" in line else [i.strip() for i in line[len("built: "):].split(",")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(pipeline, dist) of the demo built once."""
    root = tmp_path_factory.mktemp("quality")
    pipeline = _copy_demo(root / "pipelines" / "demo")
    _release("build", str(pipeline), "--dist", str(root / "dist"))
    return pipeline, root / "dist"


def _manifest(dist: Path) -> dict[str, dict]:
    return {a["id"]: a for a in json.loads((dist / "demo" / "manifest.json").read_text())["artifacts"]}


def _registry(dist: Path) -> ArtifactRegistry:
    return Manifest.read(dist / "demo" / "manifest.json").artifacts


# ---- the measurement ------------------------------------------------------------------------------------

def test_build_fills_quality_of_every_tier_and_nvfp4(demo: tuple[Path, Path]) -> None:
    pipeline, dist = demo
    arts = _manifest(dist)
    release = load_release(str(pipeline))
    text = (pipeline / "heldout.txt").read_bytes()
    figures = {}
    for aid in [f"gguf:{t}" for t in release.definition.gguf.tiers] + ["nvfp4"]:
        q = arts[aid]["facts"]["quality"]
        assert set(q) == set(FIGURES), aid
        assert q["reference"] == ("bf16" if aid == "nvfp4" else "gguf:F16")
        assert q["text_sha256"] == hashlib.sha256(text).hexdigest()
        assert q["tokens"] > 1000 and 0 < q["kld_mean"] < q["kld_p99"] and 0 <= q["top1_agreement"] <= 1
        assert q["ppl"] > 1 and q["ppl_reference"] > 1
        figures[aid] = q
    # More bits, less divergence: Q8_0 below Q6_K below Q4_K_M, and agreeing more often on the top token.
    kld = {a: f["kld_mean"] for a, f in figures.items()}
    assert kld["gguf:Q8_0"] < kld["gguf:Q6_K"] < kld["gguf:Q4_K_M"]
    assert figures["gguf:Q8_0"]["top1_agreement"] > figures["gguf:Q4_K_M"]["top1_agreement"]
    # Every tier is measured on the same tokens against the same reference perplexity.
    assert len({(f["tokens"], f["ppl_reference"]) for a, f in figures.items() if a != "nvfp4"}) == 1
    # The baseline is the reference, not a measured tier; the measurements are not published.
    assert "quality" not in arts["gguf:F16"]["facts"]
    for aid, a in arts.items():
        if a["kind"] == "quality":
            assert a["destination"] is None and a["status"] == "built", aid
    state = json.loads((dist / "demo" / "state.json").read_text())["artifacts"]
    assert {"quality:reference", "quality:Q4_K_M", "quality:nvfp4"} <= set(state)


def _independent_logits(path: Path, window: list[int]) -> np.ndarray:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=len(window), n_batch=len(window), n_ubatch=len(window),
                          logits_all=True, n_threads=2, verbose=False)
    try:
        llm.eval(window)
        return np.array(llm.scores[:len(window)], dtype=np.float64)
    finally:
        llm.close()


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def test_kld_agrees_with_an_independent_computation(demo: tuple[Path, Path]) -> None:
    """llama-cpp-python's own Llama class (not release.gguf.runtime), float64 throughout, the windows of
    llama-perplexity (BOS first, second half scored): Q4_K_M's figures agree within 1 %."""
    import llama_cpp

    pipeline, dist = demo
    q = _manifest(dist)["gguf:Q4_K_M"]["facts"]["quality"]
    gguf = dist / "demo" / "gguf"
    f16, tier = gguf / "tiny-gemma4-6e-F16.gguf", gguf / "tiny-gemma4-6e-Q4_K_M.gguf"
    vocab = llama_cpp.Llama(model_path=str(f16), vocab_only=True, verbose=False)
    tokens = vocab.tokenize((pipeline / "heldout.txt").read_bytes(), add_bos=True, special=False)
    bos = vocab.token_bos()
    ctx, first = 512, 256
    kl, same, nll_q, nll_r = [], 0, 0.0, 0.0
    for w in range(min(len(tokens), 8192) // ctx):
        window = [bos, *tokens[w * ctx + 1:(w + 1) * ctx]]
        targets = np.array(tokens[w * ctx + first + 1:(w + 1) * ctx])
        ref = _log_softmax(_independent_logits(f16, window))[first:ctx - 1]
        quant = _log_softmax(_independent_logits(tier, window))[first:ctx - 1]
        kl += list((np.exp(ref) * (ref - quant)).sum(axis=1))
        same += int((ref.argmax(axis=1) == quant.argmax(axis=1)).sum())
        nll_q -= quant[np.arange(len(targets)), targets].sum()
        nll_r -= ref[np.arange(len(targets)), targets].sum()
    assert len(kl) == q["tokens"]
    assert q["kld_mean"] == pytest.approx(float(np.mean(kl)), rel=0.01)
    assert q["kld_p99"] == pytest.approx(float(np.percentile(kl, 99)), rel=0.01)
    assert q["top1_agreement"] == pytest.approx(same / len(kl), abs=0.01)
    assert q["ppl"] == pytest.approx(float(np.exp(nll_q / len(kl))), rel=0.001)
    assert q["ppl_reference"] == pytest.approx(float(np.exp(nll_r / len(kl))), rel=0.001)


def test_nvfp4_is_measured_on_the_same_tokens_with_its_own_dequantized_weights(demo: tuple[Path, Path]) -> None:
    """NVFP4's tokens come from the checkpoint's tokenizer and equal libllama's; the tensors the NVFP4 pass
    loads differ from the BF16 ones exactly in the quantized modules, by what compressed-tensors' decompressor
    gives."""
    import torch

    from release.dropmap.stream import TensorReader
    from release.nvfp4.checkpoint import read_quant_shard_headers
    from release.nvfp4.verify import _dequantizer
    from release.prune import inspect_checkpoint
    from release.quality.nvfp4 import NvfpPatch, tokenize

    pipeline, dist = demo
    text = (pipeline / "heldout.txt").read_text()
    tokens, bos = tokenize(dist / "demo" / "bf16", text)
    meta = json.loads((dist / "demo" / ".quality" / "quality-reference.json").read_text())
    assert tokens[:len(meta["tokens"])] == meta["tokens"] and bos == meta["bos"]
    arts = _manifest(dist)
    assert arts["nvfp4"]["facts"]["quality"]["tokens"] == meta["scored"]

    info = inspect_checkpoint(dist / "demo" / "bf16")
    reader = TensorReader(info.base_dir, info.shards)
    names = sorted(reader.where)
    before = {n: t.to(torch.float32) for n, t in reader.read(names).items()}
    patch = NvfpPatch(dist / "demo" / "nvfp4", info, torch.float32)
    try:
        after = patch(0, reader.read(names))
    finally:
        patch.close()
    assert patch.applied == patch.modules > 0
    changed = {n for n in names if not torch.equal(after[n], before[n])}
    assert changed and all(".experts." in n or ".self_attn." in n or ".mlp." in n for n in changed), changed
    # One expert's gate projection, against compressed-tensors' own decompressor (the oracle).
    ct, label = _dequantizer("compressed-tensors")
    out = read_quant_shard_headers(dist / "demo" / "nvfp4")
    module = next(n[:-len(".weight_packed")] for n in sorted(out) if ".experts.1.gate_proj.weight_packed" in n)

    def tensor(name: str) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(dist / "demo" / "nvfp4" / out[name][0], "pt") as f:
            return f.get_tensor(name)

    def decompressed(m: str) -> torch.Tensor:
        return ct(tensor(f"{m}.weight_packed"), tensor(f"{m}.weight_scale"), tensor(f"{m}.weight_global_scale"))

    gate, up = decompressed(module), decompressed(module.replace(".gate_proj", ".up_proj"))
    container = module.rsplit(".", 2)[0]  # …experts
    gate_up = after[f"{container}.gate_up_proj"][1]
    assert torch.equal(gate_up, torch.cat([gate, up]).to(torch.float32)), label


def test_streamed_nvfp4_figures_equal_the_whole_model_measurement(demo: tuple[Path, Path], tmp_path: Path) -> None:
    """The layer-streamed measurement gives the figures of the whole model in transformers (loaded with
    `from_pretrained`, every quantized module's weight replaced by compressed-tensors' decompression, each
    window decoded on its own) within 1e-3 relative."""
    import torch

    from release.nvfp4.checkpoint import read_quant_shard_headers
    from release.nvfp4.layout import SrcTensor
    from release.nvfp4.verify import _dequantizer, _locate
    from release.prune.exactness import load_model
    from release.quality.divergence import compare, reference_logprobs
    from release.quality.nvfp4 import measure_nvfp4, tokenize

    pipeline, dist = demo
    release = load_release(str(pipeline))
    q = release.quality
    text = (pipeline / "heldout.txt").read_text()
    bf16, nvfp4 = dist / "demo" / "bf16", dist / "demo" / "nvfp4"
    streamed = measure_nvfp4(bf16, nvfp4, text, q, shown="heldout.txt", work=tmp_path / "work")

    tokens, bos = tokenize(bf16, text)
    windows = cut(tokens, context=q.context, max_tokens=q.max_tokens, bos=bos, shown="heldout.txt")
    model = load_model(bf16, torch.float32)  # the demo is well below 2 GB: float32, as the measurement

    def logits(window: list[int]) -> np.ndarray:
        with torch.inference_mode():
            return model(input_ids=torch.tensor([window])).logits[0].float().numpy()

    out = np.zeros((windows.scored, model.get_output_embeddings().weight.shape[0]), dtype=np.float16)
    ref = reference_logprobs(logits, windows, out)
    ct, _ = _dequantizer("compressed-tensors")
    params = dict(model.named_parameters())
    src = {n: SrcTensor(n, "BF16", tuple(p.shape)) for n, p in params.items()}
    quant = read_quant_shard_headers(nvfp4)

    def tensor(name: str) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(nvfp4 / quant[name][0], "pt") as f:
            return f.get_tensor(name)

    with torch.no_grad():
        for m in sorted({n[:-len(".weight_packed")] for n in quant if n.endswith(".weight_packed")}):
            t, e, r0, r1, _ = _locate(m, src)
            w = ct(tensor(f"{m}.weight_packed"), tensor(f"{m}.weight_scale"), tensor(f"{m}.weight_global_scale"))
            (params[t.name].data if e is None else params[t.name].data[e])[r0:r1] = w.to(torch.float32)
    whole = compare(logits, windows, ref, reference="bf16", text_sha256=streamed.text_sha256)
    assert streamed.tokens == whole.tokens
    for name in ("kld_mean", "kld_p99", "top1_agreement", "ppl", "ppl_reference"):
        assert getattr(streamed, name) == pytest.approx(getattr(whole, name), rel=1e-3), name


def test_unchanged_inputs_recompute_nothing_and_a_new_text_only_the_measurements(demo: tuple[Path, Path],
                                                                                tmp_path: Path) -> None:
    pipeline, dist = demo
    assert _built(_release("build", str(pipeline), "--dist", str(dist)).stderr) == []
    copy = _copy_demo(tmp_path / "pipelines" / "demo")
    shutil.copytree(pipeline / "base", copy / "base", copy_function=os.link)
    shutil.copy2(pipeline / ".base.demo.json", copy / ".base.demo.json")
    work = _copy_dist(dist, tmp_path / "dist")
    # A threshold changes what the cards say, not what was measured.
    _edit(copy / "release.toml", "# max_kld = 0.5", "max_kld = 5.0")
    assert _built(_release("build", str(copy), "--dist", str(work)).stderr) == \
        ["card:bf16", "card:gguf", "card:nvfp4", "card:ollama"]
    # Another held-out text: every measurement again (and the cards), nothing else.
    with (copy / "heldout.txt").open("a") as f:
        f.write("\nOne more paragraph of held-out text, written for this test and found nowhere else.\n")
    built = _built(_release("build", str(copy), "--dist", str(work)).stderr)
    assert {b for b in built if not b.startswith("card:")} == \
        {a for a in _manifest(work) if a.startswith("quality:")}
    after = _manifest(work)["gguf:Q4_K_M"]["facts"]["quality"]
    assert after["text_sha256"] == hashlib.sha256((copy / "heldout.txt").read_bytes()).hexdigest()
    assert after["text_sha256"] != _manifest(dist)["gguf:Q4_K_M"]["facts"]["quality"]["text_sha256"]


# ---- facts.quality follows the files it was measured on -------------------------------------------------

def test_figures_are_copied_only_onto_the_files_they_measured(demo: tuple[Path, Path]) -> None:
    _, dist = demo
    reg = _registry(dist)
    tier, measurement = reg["gguf:Q4_K_M"], reg["quality:Q4_K_M"]
    tier.facts.pop("quality")
    apply_quality(reg)
    assert tier.facts["quality"] == measurement.facts["quality"]
    # The tier rebuilt (another file): the old figures do not describe it.
    reg.add(Artifact(id=tier.id, kind="gguf", status="built", root=tier.root, recipe=tier.recipe,
                     destination=tier.destination, files=[FileEntry(tier.files[0].path, 1, "0" * 64)],
                     facts={"quality": measurement.facts["quality"]}))
    apply_quality(reg)
    assert "quality" not in reg["gguf:Q4_K_M"].facts
    # A measurement that is only planned copies nothing either.
    reg.add(tier)
    reg["quality:Q4_K_M"].status = "planned"
    apply_quality(reg)
    assert "quality" not in reg["gguf:Q4_K_M"].facts


def test_verify_gate_checks_the_figures(demo: tuple[Path, Path]) -> None:
    from release.quality.facts import figure_problems

    _, dist = demo
    reg = _registry(dist)
    assert figure_problems(reg, reg["quality:CD-Q3"]) == []
    reg["quality:CD-Q3"].facts["quality"] = {**reg["quality:CD-Q3"].facts["quality"], "kld_mean": float("nan")}
    assert any("kld_mean" in p for p in figure_problems(reg, reg["quality:CD-Q3"]))
    reg["gguf:Q8_0"].files = [FileEntry("other.gguf", 1, "1" * 64)]
    assert any("measured other files" in p for p in figure_problems(reg, reg["quality:Q8_0"]))


def test_measurements_are_staged_beside_what_they_measure(demo: tuple[Path, Path]) -> None:
    from release.distributed.records import stage_repo
    from release.pipeline import Context, Options

    pipeline, dist = demo
    ctx = Context(load_release(str(pipeline)), Options(dist_root=dist, quiet=True), estimates=False)
    d = ctx.release.definition
    assert stage_repo(ctx, ctx.artifacts["quality:reference"]) == d.gguf.repo
    assert stage_repo(ctx, ctx.artifacts["quality:Q4_K_M"]) == d.gguf.repo
    assert stage_repo(ctx, ctx.artifacts["quality:nvfp4"]) == d.nvfp4.repo


# ---- cards, chart, preview ------------------------------------------------------------------------------



def test_cards_show_every_measured_figure(demo: tuple[Path, Path]) -> None:
    from release.cards.render import _kld, _share

    pipeline, dist = demo
    arts = _manifest(dist)
    cards = {k: (dist / "demo" / "cards" / k / "README.md").read_text() for k in ("gguf", "nvfp4", "ollama")}
    header = table_row(cards["gguf"], "Tier")
    for tier in load_release(str(pipeline)).definition.gguf.tiers:
        q = arts[f"gguf:{tier}"]["facts"]["quality"]
        row = table_row(cards["gguf"], tier + (" ★" if tier == "Q4_K_M" else ""))
        assert row[header.index("KLD")] == _kld(q["kld_mean"]) != "—"
        assert row[header.index("Top-1")] == _share(q["top1_agreement"])
    assert table_row(cards["gguf"], "F16")[header.index("KLD")] == "reference"
    assert f"over {arts['gguf:Q8_0']['facts']['quality']['tokens']} tokens of held-out text" in cards["gguf"]
    nq = arts["nvfp4"]["facts"]["quality"]
    assert f"is {_kld(nq['kld_mean'])} nats/token (99th percentile {_kld(nq['kld_p99'])})" in cards["nvfp4"]
    tags = table_row(cards["ollama"], "Tag")
    for tag, tier in load_release(str(pipeline)).definition.ollama.tags.items():
        ref = f"| `127.0.0.1:5000/demo/tiny-gemma4-6e:{tag}`"
        line = next(ln for ln in cards["ollama"].splitlines() if ln.startswith(ref))
        row = [c.strip() for c in line.strip("|").split("|")]
        assert row[tags.index("KLD")] == _kld(arts[f"gguf:{tier}"]["facts"]["quality"]["kld_mean"])


def test_card_says_how_the_imatrix_was_made(demo: tuple[Path, Path]) -> None:
    """The imatrix line states what the file records and that it was computed from the BF16 weights."""
    _, dist = demo
    im = _manifest(dist)["gguf:imatrix"]
    assert im["facts"]["computed_from"] == "bf16" and "bf16" in im["needs"]
    line = next(ln for ln in (dist / "demo" / "cards" / "gguf" / "README.md").read_text().splitlines()
                if "importance matrix" in ln)
    assert f"the file records {im['facts']['chunks']} chunks of {im['facts']['chunk_size']} tokens" in line
    assert "computed from the BF16 weights, layer by layer" in line


def test_chart_is_a_file_of_the_gguf_repo_drawn_from_facts(demo: tuple[Path, Path]) -> None:
    from release.cards.context import quality_chart
    from release.quality.chart import CHART_FILE

    pipeline, dist = demo
    arts = _manifest(dist)
    card = arts["card:gguf"]
    assert card["destination"]["repo"] == "demo/tiny-gemma4-6e-it-GGUF"
    assert [f["path"] for f in card["files"]] == ["README.md", CHART_FILE]
    svg = (dist / "demo" / "cards" / "gguf" / CHART_FILE).read_text()
    assert svg.startswith("<svg") and hashlib.sha256(svg.encode()).hexdigest() == card["files"][1]["sha256"]
    for tier in load_release(str(pipeline)).definition.gguf.tiers:
        assert f">{tier}{' ★' if tier == 'Q4_K_M' else ''}</text>" in svg
    url = f"https://huggingface.co/demo/tiny-gemma4-6e-it-GGUF/resolve/main/{CHART_FILE}"
    assert f"]({url})" in (dist / "demo" / "cards" / "gguf" / "README.md").read_text()
    # From the facts alone: another machine (finish) draws the same bytes.
    assert quality_chart(load_release(str(pipeline)), _registry(dist)) == svg


def test_card_push_sends_the_chart_with_the_readme(demo: tuple[Path, Path], tmp_path: Path) -> None:
    """`release cards --push` commits the GGUF card and the chart it embeds; nothing else, once."""
    from huggingface_hub import HfApi

    from release.localhub import LocalHub
    from release.quality.chart import CHART_FILE

    pipeline, dist = demo
    work = _copy_dist(dist, tmp_path / "dist")
    token = "hf_qualityCHARTtoken_7e1d"
    hub = LocalHub(tmp_path / "hub", {token: ["demo"]})
    url = hub.start()
    try:
        env = {**os.environ, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf")}
        args = [sys.executable, "-m", "release", "cards", str(pipeline), "--dist", str(work), "--push",
                "--hub-endpoint", url, "--json"]
        for commits in (3, 0):  # BF16, GGUF, NVFP4; then nothing changed
            proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert json.loads(proc.stdout[proc.stdout.index("{"):])["commits"] == commits
        api = HfApi(endpoint=url, token=token)
        files = [f for f in api.list_repo_files("demo/tiny-gemma4-6e-it-GGUF") if f != ".gitattributes"]
        assert sorted(files) == ["README.md", CHART_FILE]
        got = Path(api.hf_hub_download("demo/tiny-gemma4-6e-it-GGUF", CHART_FILE, cache_dir=tmp_path / "dl"))
        assert got.read_bytes() == (work / "demo" / "cards" / "gguf" / CHART_FILE).read_bytes()
    finally:
        hub.stop()


def _png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit non-interlaced PNG, as Chromium writes them."""
    data = path.read_bytes()
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def test_preview_renders_the_chart_in_headless_chromium(demo: tuple[Path, Path], tmp_path: Path) -> None:
    from test_preview import _chromium, _run_chromium, parse

    from release.quality.chart import RECOMMENDED

    binary = _chromium()
    if binary is None:
        pytest.skip("no browser (release.doctor.BROWSERS); scripts/bootstrap.sh installs chromium on Debian")
    _, dist = demo
    preview = dist / "demo" / "preview"
    page = preview / "hf-demo--tiny-gemma4-6e-it-GGUF.html"
    profile = tmp_path / "chromium-profile"
    run = _run_chromium(binary, profile, "--dump-dom", page.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    dom = parse(run.stdout)
    assert "release preview" in dom.title
    import re

    srcs = re.findall(r'<img src="([^"]+)"', run.stdout)
    assert srcs == ["gguf-quality-kld-vs-size.svg"] and (preview / srcs[0]).is_file()
    # The page as Chromium paints it: the chart's recommended-tier marker colour is on screen.
    shot = tmp_path / "gguf.png"
    run = _run_chromium(binary, profile, "--window-size=1280,3000", "--hide-scrollbars", f"--screenshot={shot}",
                        page.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    width, _, rows = _png_pixels(shot)
    bpp = len(rows[0]) // width
    want = bytes.fromhex(RECOMMENDED[1:])
    hits = sum(1 for r in rows for i in range(0, len(r), bpp) if r[i:i + 3] == want)
    assert hits > 50, f"the chart's recommended marker was not painted ({hits} pixels of {RECOMMENDED})"
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copy(shot, artifacts / "preview-demo-gguf-quality.png")


# ---- thresholds ---------------------------------------------------------------------------------------

def test_a_threshold_removes_the_tier_with_its_measured_reason(demo: tuple[Path, Path], tmp_path: Path) -> None:
    from release.cards import render_card_texts
    from release.cards.context import quality_chart

    _, dist = demo
    reg = _registry(dist)
    kld = {a.id.split(":")[1]: a.facts["quality"]["kld_mean"] for a in reg.of_kind("gguf") if "quality" in a.facts}
    worst = max(kld, key=kld.get)
    assert worst == "CD-Q3"
    limit = round((kld["CD-Q3"] + sorted(kld.values())[-2]) / 2, 4)
    copy = _copy_demo(tmp_path / "demo")
    _edit(copy / "release.toml", "# max_kld = 0.5", f"max_kld = {limit}")
    release = load_release(str(copy))
    assert list(quality_removed(release, reg)) == ["CD-Q3"]
    assert withheld(release, reg, reg["gguf:CD-Q3"]) and not withheld(release, reg, reg["gguf:Q4_K_M"])
    # The Ollama tag made from it: a publish refuses to go on (flow.refuse_removed_conflicts).
    assert any("Ollama tag CD-Q3" in c for c in removed_conflicts(release, reg))
    cards = render_card_texts(release, reg, provenance=PROVENANCE)
    files_table = cards["gguf"].split("## Files")[1].split("\n\n")[1]
    assert "CD-Q3" not in files_table
    row = table_row(cards["gguf"], "`tiny-gemma4-6e-CD-Q3.gguf`")
    assert f"KL divergence {kld['CD-Q3']:.4g} nats/token is above max_kld {limit:g}" in row[-1]
    assert "are not published" in cards["gguf"]
    assert ">CD-Q3 (removed)</text>" in quality_chart(release, reg)


# ---- the definition ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("edit", "field", "message"), [
    ('text = "heldout.txt"', 'text = "calibration.txt"', "is the imatrix calibration text"),
    ("max_tokens = 8192", "max_tokens = 8192\nmax_kld = -1", "greater than 0"),
    ("max_tokens = 8192", "max_tokens = 8192\nmin_top1 = 1.5", "less than or equal to 1"),
    ("max_tokens = 8192", "max_tokens = 8192\ntokens = 5", "unknown key"),
    ("max_tokens = 8192", "max_tokens = 256", "less than one window"),
    ("context = 512", "context = 100000", "less than or equal to 8192"),
    ('text = "heldout.txt"', 'text = "../demo/heldout.txt"', "inside the release folder"),
    ('text = "heldout.txt"', 'text = "missing.txt"', "not found"),
])
def test_check_refuses_a_bad_quality_section(tmp_path: Path, edit: str, field: str, message: str) -> None:
    copy = _copy_demo(tmp_path / "demo")
    _edit(copy / "release.toml", edit, field)
    proc = _release("check", str(copy), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "demo/release.toml: quality" in proc.stderr and message in proc.stderr, proc.stderr


def test_check_refuses_a_copy_of_the_calibration_text(tmp_path: Path) -> None:
    copy = _copy_demo(tmp_path / "demo")
    shutil.copy(copy / "calibration.txt", copy / "heldout.txt")
    proc = _release("check", str(copy), check=False)
    assert proc.returncode == 2 and "same content as the imatrix calibration text" in proc.stderr, proc.stderr
    # A text that borrows one long line from it is refused too.
    line = next(ln for ln in (copy / "calibration.txt").read_text().splitlines() if len(ln) >= 40)
    (copy / "heldout.txt").write_text((ROOT / "pipelines" / "demo" / "heldout.txt").read_text() + line + "\n")
    proc = _release("check", str(copy), check=False)
    assert proc.returncode == 2 and "shares text with the imatrix calibration text" in proc.stderr, proc.stderr


def test_without_a_held_out_text_nothing_is_measured(tmp_path: Path) -> None:
    from release.plan import plan_artifacts

    copy = _copy_demo(tmp_path / "demo")
    text = (copy / "release.toml").read_text()
    start = text.index("[quality]")
    (copy / "release.toml").write_text(text[:start] + text[text.index("[ollama]"):])
    assert load_release(str(copy)).quality is not None  # heldout.txt is there: measured with the defaults
    (copy / "heldout.txt").unlink()
    release = load_release(str(copy))
    assert release.quality is None
    reg = plan_artifacts(release, estimates=False)
    assert not reg.of_kind("quality") and [f.path for f in reg["card:gguf"].files] == ["README.md"]


def test_windows_follow_llama_perplexity() -> None:
    w = cut(list(range(100, 1400)), context=512, max_tokens=8192, bos=2, shown="t")
    assert w.count == 2 and w.first == 256 and w.per_window == 255 and w.scored == 510
    assert w.inputs(1)[0] == 2 and w.inputs(1)[1:] == list(range(613, 1124))
    assert w.targets(0) == list(range(357, 612))  # what positions 256…510 predict
    assert cut(list(range(5000)), context=512, max_tokens=1100, bos=None, shown="t").count == 2
    from release.errors import InputError

    with pytest.raises(InputError, match="fewer than one window"):
        cut(list(range(300)), context=512, max_tokens=8192, bos=2, shown="heldout.txt")
