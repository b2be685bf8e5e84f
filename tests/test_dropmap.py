"""`release dropmap`: the layer-streamed collector against full-model forwards, planted experts on the demo,
recipes, the scores file and its check, and the outputs accepted by `check` and `prune`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from model_factory import make_checkpoint
from safetensors.torch import load_file, save_file

from release.cli import cli
from release.demo import generate_tiny_gemma4
from release.dropmap.calibration import TokenizedClass
from release.dropmap.collect import collect, make_batches
from release.dropmap.stream import LayerStream
from release.prune import inspect_checkpoint
from release.spec.dropmap import load_drop_map
from release.spec.expert_scores import parse_scores

ROOT = Path(__file__).resolve().parents[1]
PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "A mixture of experts routes every token to a few experts.",
    "Pruning removes experts that the router rarely picks; the remaining experts keep their weights exactly.",
    "Hello! How are you today? I am a tiny model made for testing a release pipeline, not for chatting.",
    "User asks a question, the model answers. System prompts set the tone. Tools return results.",
    "Mathematics, logic, code, science and creative writing are task classes scored per layer.",
]
CODE = ["def add(a, b): return a + b", "print(add(x, y))", "class Foo: pass",
        "for item in items: total = total + item", "if value is None: raise ValueError(name)",
        "with open(path) as fh: data = fh.read()"]
DIGITS = [" ".join(str((i * 7 + j * 3) % 10) for j in range(60)) for i in range(6)]


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def demo_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_tiny_gemma4(tmp_path_factory.mktemp("demo") / "base")


def demo_release(tmp: Path, base: Path, edit: Callable[[str, torch.Tensor], torch.Tensor] | None = None, *,
                 generated: bool = False) -> Path:
    """A copy of pipelines/demo with `base` in it: as the generated base (its stamp copied, so ensure_base takes
    it as current) or as a local checkpoint, which tests may edit (an edited generated base is regenerated)."""
    folder = tmp / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    shutil.copytree(base, folder / "base")
    if generated:
        assert edit is None
        shutil.copy(base.with_name(f".{base.name}.demo.json"), folder / ".base.demo.json")
        return folder
    toml = folder / "release.toml"
    toml.write_text(toml.read_text().replace('generator = "tiny-gemma4"\n', ""))
    if edit is not None:
        for shard in sorted((folder / "base").glob("*.safetensors")):
            tensors = load_file(shard)
            save_file({n: edit(n, t) for n, t in tensors.items()}, shard, metadata={"format": "pt"})
    return folder


def write_calibration(folder: Path, classes: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, samples in classes.items():
        (folder / f"{name}.txt").write_text("\n\n".join(samples) + "\n")
    return folder


def random_classes(vocab: int, seed: int = 0) -> list[TokenizedClass]:
    gen = torch.Generator().manual_seed(seed)

    def samples(n: int) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(torch.randint(4, vocab, (int(torch.randint(5, 30, (1,), generator=gen)),),
                                         generator=gen).tolist()) for _ in range(n))

    return [TokenizedClass("a", "a.txt", "0" * 64, samples(5)), TokenizedClass("b", "b.txt", "0" * 64, samples(4))]


def _full_model(path: Path, dtype: torch.dtype) -> torch.nn.Module:
    import transformers

    config = transformers.AutoConfig.from_pretrained(path)
    return getattr(transformers, config.architectures[0]).from_pretrained(path, dtype=dtype).eval()


def _text_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    return next(m for m in model.modules() if hasattr(m, "embed_tokens") and hasattr(m, "layers")).layers


# -- the collector is the model's own math ------------------------------------------------------------

def test_stream_equals_full_forward_and_reap_by_hand(demo_base: Path) -> None:
    """Layer-by-layer hidden states = a full-model forward's; routing counts = the model's router; the
    REAP sums = router weight × ‖expert output‖ computed by hand from the expert weights."""
    info = inspect_checkpoint(demo_base)
    classes = random_classes(1024)
    got = collect(info, info.family, classes, device=torch.device("cpu"), dtype=torch.float32, batch_tokens=64,
                  keep_hidden=True)
    batches = make_batches(classes, batch_tokens=64, pad_id=0)
    assert len(batches) > 2 and any(not b.attention_mask.all() for b in batches)  # padding is exercised

    model = _full_model(demo_base, torch.float32)
    layers = _text_layers(model)
    last: list[torch.Tensor] = []
    layers[-1].register_forward_hook(lambda m, a, o: last.append(o))
    counts = {i: torch.zeros(2, 8, dtype=torch.int64) for i in info.moe_layers}
    sums = {i: torch.zeros(2, 8, dtype=torch.float64) for i in info.moe_layers}
    current: dict[str, torch.Tensor | int] = {}

    def by_hand(layer: int) -> Callable[..., None]:
        def hook(experts: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            hidden, index, weights = args
            valid = current["mask"]
            for t in torch.nonzero(valid).flatten().tolist():
                for slot, j in enumerate(index[t].tolist()):
                    gate, up = (experts.gate_up_proj[j] @ hidden[t]).chunk(2)
                    out = experts.down_proj[j] @ (experts.act_fn(gate) * up)
                    counts[layer][current["label"], j] += 1
                    sums[layer][current["label"], j] += float(weights[t, slot]) * float(out.norm())
        return hook

    for i in info.moe_layers:
        layers[i].experts.register_forward_pre_hook(by_hand(i))
    with torch.no_grad():
        for b in batches:
            current.update(mask=b.attention_mask.reshape(-1).bool(), label=b.label)
            model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)

    assert got.final_hidden is not None
    for b, (ours, full) in enumerate(zip(got.final_hidden, last, strict=True)):
        real = batches[b].attention_mask.bool()
        scale = full[real].abs().max().item()
        assert (ours - full)[real].abs().max().item() <= 1e-5 * scale
    for i in info.moe_layers:
        assert torch.equal(got.counts[i], counts[i]), i
        torch.testing.assert_close(got.sums[i], sums[i], rtol=1e-4, atol=1e-6)
        assert (got.counts[i].sum(dim=1) == 2 * torch.tensor(got.class_tokens)).all()  # top-2: two per token


@pytest.mark.parametrize("family", ["qwen3_moe", "mixtral", "olmoe", "deepseek_v3", "glm4_moe", "gpt_oss",
                                    "qwen3_5_moe", "qwen3_next"])
def test_stream_equals_full_forward_in_every_family_with_a_collector(family: str, tmp_path: Path) -> None:
    """Families as data: per-expert tensors fused by transformers' own loader (Qwen3, Mixtral, OLMoE …), dense
    first layers and grouped sigmoid routing (DeepSeek-V3, GLM), router bias (gpt-oss), linear attention
    (Qwen3-Next, Qwen3.5)."""
    base = make_checkpoint(family, tmp_path / "ck", with_tokenizer=False)
    info = inspect_checkpoint(base)
    classes = random_classes(320, seed=1)
    got = collect(info, info.family, classes, device=torch.device("cpu"), dtype=torch.float32, batch_tokens=64,
                  keep_hidden=True)
    model = _full_model(base, torch.float32)
    layers = _text_layers(model)
    spec = info.family.collect()
    assert spec is not None
    last: list[torch.Tensor] = []
    layers[-1].register_forward_hook(lambda m, a, o: last.append(o))
    routed: dict[int, list[torch.Tensor]] = {i: [] for i in info.moe_layers}
    for i in info.moe_layers:
        layers[i].get_submodule(spec.experts).register_forward_pre_hook(
            lambda m, a, i=i: routed[i].append(a[1]))
    batches = make_batches(classes, batch_tokens=64, pad_id=0)
    with torch.no_grad():
        for b in batches:
            model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)
    assert got.final_hidden is not None
    for b, (ours, full) in enumerate(zip(got.final_hidden, last, strict=True)):
        real = batches[b].attention_mask.bool()
        assert (ours - full)[real].abs().max().item() <= 1e-5 * full[real].abs().max().item()
    assert sorted(got.counts) == info.moe_layers
    for i in info.moe_layers:
        expected = torch.zeros(info.num_experts, dtype=torch.int64)
        for b, index in zip(batches, routed[i], strict=True):
            expected += torch.bincount(index[b.attention_mask.reshape(-1).bool()].reshape(-1),
                                       minlength=info.num_experts)
        assert torch.equal(got.counts[i].sum(dim=0), expected), i


def test_layers_go_back_to_meta_after_running(demo_base: Path) -> None:
    info = inspect_checkpoint(demo_base)
    classes = random_classes(1024)
    stream = LayerStream(info, device=torch.device("cpu"), dtype=torch.float32)
    try:
        stream.record(make_batches(classes, batch_tokens=64, pad_id=0))
        assert stream.text.embed_tokens.weight.is_meta  # freed before the first layer
        before = [h.clone() for h in stream.hidden]
        stream.run_layer(0)
        assert all(p.is_meta for p in stream.text.layers[0].parameters())
        assert all(p.is_meta for p in stream.text.layers[1].parameters())  # not loaded yet
        assert all(not torch.equal(a, b) for a, b in zip(before, stream.hidden, strict=True))
        assert stream.layer_bytes(0) == sum(e.numel for s in info.shards for e in s.entries
                                            if ".language_model.layers.0." in e.name) * 4
    finally:
        stream.close()


def test_bfloat16_stream_follows_the_bfloat16_model(demo_base: Path) -> None:
    """The demo is stored in BF16; `auto` computes in BF16 on the same code path a GPU run takes."""
    info = inspect_checkpoint(demo_base)
    classes = random_classes(1024, seed=3)
    got = collect(info, info.family, classes, device=torch.device("cpu"), dtype=torch.bfloat16, batch_tokens=64,
                  keep_hidden=True)
    assert got.final_hidden is not None and got.final_hidden[0].dtype == torch.bfloat16
    model = _full_model(demo_base, torch.bfloat16)
    last: list[torch.Tensor] = []
    _text_layers(model)[-1].register_forward_hook(lambda m, a, o: last.append(o))
    batches = make_batches(classes, batch_tokens=64, pad_id=0)
    with torch.no_grad():
        for b in batches:
            model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)
    for b, (ours, full) in enumerate(zip(got.final_hidden, last, strict=True)):
        real = batches[b].attention_mask.bool()
        assert (ours.float() - full.float())[real].abs().max().item() <= 2e-2 * full[real].abs().max().item()


# -- planted experts on the demo, end to end through the command line ---------------------------------

ZEROED = {0: (1, 6), 1: (0, 3), 2: (2, 7), 3: (4, 5)}


def _zero_outputs(name: str, t: torch.Tensor) -> torch.Tensor:
    for layer, experts in ZEROED.items():
        if name == f"model.language_model.layers.{layer}.experts.down_proj":
            t = t.clone()
            t[list(experts)] = 0
    return t


def test_planted_zero_experts_are_dropped_and_check_and_prune_accept_the_map(demo_base: Path, tmp_path: Path) -> None:
    folder = demo_release(tmp_path, demo_base, _zero_outputs)
    cal = write_calibration(tmp_path / "cal", {"prose": PROSE, "code": CODE, "digits": DIGITS[:2]})
    out = folder / "dropmap.json"
    for recipe in ("max-class", "pooled"):
        code, output = _run("dropmap", str(folder), "--calibration", str(cal), "--out", str(out), "--recipe", recipe)
        assert code == 0, output
        drop_map = load_drop_map(out)
        scores = parse_scores((folder / "dropmap.scores.json").read_bytes(), "dropmap.scores.json")
        for layer, zeroed in ZEROED.items():
            routed = [sum(scores.layers[layer].tokens_routed[c][j] for c in scores.classes) for j in range(8)]
            assert all(routed[j] > 0 for j in range(8) if j not in zeroed)  # the others measured something
            assert drop_map.dropped(layer) == zeroed, (recipe, layer)
            assert all(scores.layers[layer].weighted_norm_sum[c][j] == 0.0 for c in scores.classes for j in zeroed)
        assert scores.recipe.name == recipe and scores.dtype == "bfloat16"  # auto: the checkpoint's dtype

    # The same inputs give the same bytes.
    first = out.read_bytes(), (folder / "dropmap.scores.json").read_bytes()
    assert _run("dropmap", str(folder), "--calibration", str(cal), "--out", str(out), "--recipe", "pooled")[0] == 0
    assert (out.read_bytes(), (folder / "dropmap.scores.json").read_bytes()) == first

    source = json.loads(out.read_text())["source"]
    assert "recipe pooled" in source and "moe-release" in source
    for f in ("code.txt", "digits.txt", "prose.txt"):
        assert f"{f} sha256:{__import__('hashlib').sha256((cal / f).read_bytes()).hexdigest()}" in source

    code, output = _run("check", str(folder), "--json")
    assert code == 0, output
    code, output = _run("prune", "--base", str(folder / "base"), "--drop-map", str(out), "--out",
                        str(tmp_path / "pruned"))
    assert code == 0, output
    pruned = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert pruned["text_config"]["num_experts"] == 6


def _specialist(name: str, t: torch.Tensor, *, a_only: set[int]) -> torch.Tensor:
    """Expert 5 answers only to digit tokens, through a direction (K1) that no expert reads, so on digits every
    expert's output is small; expert 2 takes the second top-k slot of digit tokens with ~0 weight."""
    s, partner, k1, k2 = 5, 2, 7, 11
    w = t.float().clone()
    if name.endswith("embed_tokens.weight"):
        w[:, k1], w[:, k2] = 0.0, 0.5
        w[sorted(a_only), k1], w[sorted(a_only), k2] = 8.0, 0.0
    elif name.endswith("router.proj.weight"):
        w[:, k1] = w[:, k2] = 0.0
        w[s] = w[partner] = 0.0
        w[s, k1], w[partner, k1] = 100.0, 50.0
        w[s, k2] = w[partner, k2] = -300.0
    elif name.endswith("experts.gate_up_proj"):
        w[:, :, k1] = 0.0
    elif name.endswith("experts.down_proj"):
        w[s] *= 0.5
    else:
        return t
    return w.to(t.dtype)


def test_a_specialist_survives_max_class_and_is_dropped_by_pooled(demo_base: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer_json = json.loads((demo_base / "tokenizer.json").read_text())
    tokenizer_json["post_processor"] = None  # no BOS: every token of a digits sample is a digit token
    plain = tmp_path / "tok"
    plain.mkdir()
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(demo_base / f, plain / f)
    (plain / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    tok = AutoTokenizer.from_pretrained(plain)
    ids = {name: {i for s in samples for i in tok(s)["input_ids"]}
           for name, samples in (("digits", DIGITS), ("prose", PROSE), ("code", CODE))}
    a_only = ids["digits"] - ids["prose"] - ids["code"]
    assert a_only == ids["digits"]

    folder = demo_release(tmp_path, demo_base, lambda n, t: _specialist(n, t, a_only=a_only))
    shutil.copy(plain / "tokenizer.json", folder / "base" / "tokenizer.json")
    cal = write_calibration(tmp_path / "cal", {"digits": DIGITS, "prose": PROSE, "code": CODE})
    kept = {}
    for recipe in ("max-class", "pooled"):
        out = tmp_path / recipe / "dropmap.json"
        code, output = _run("dropmap", str(folder), "--calibration", str(cal), "--out", str(out), "--recipe", recipe,
                            "--dtype", "float32")
        assert code == 0, output
        kept[recipe] = load_drop_map(out).kept
        scores = parse_scores(out.with_name("dropmap.scores.json").read_bytes(), "scores")
    for layer, s in scores.layers.items():
        assert s.tokens_routed["digits"][5] == scores.classes["digits"].tokens  # every digit token …
        assert s.tokens_routed["prose"][5] == s.tokens_routed["code"][5] == 0  # … and nothing else
        assert 5 in kept["max-class"][layer]
    for layer in (1, 2, 3):
        assert 5 not in kept["pooled"][layer], layer
    # Layer 0 of the demo routes this text to only six experts: the two that measured nothing go first.
    silent = [j for j in range(8) if all(scores.layers[0].tokens_routed[c][j] == 0 for c in scores.classes)]
    assert set(range(8)) - set(kept["pooled"][0]) == set(silent)


# -- the scores file and `release check` --------------------------------------------------------------

def test_check_refuses_a_map_that_does_not_follow_from_its_scores(demo_base: Path, tmp_path: Path) -> None:
    folder = demo_release(tmp_path, demo_base, generated=True)
    stamp = (folder / ".base.demo.json").read_bytes()
    cal = write_calibration(tmp_path / "cal", {"prose": PROSE, "code": CODE})
    out = folder / "dropmap.json"
    assert _run("dropmap", str(folder), "--calibration", str(cal), "--out", str(out))[0] == 0
    assert (folder / ".base.demo.json").read_bytes() == stamp  # the generated base was used, not regenerated
    assert _run("check", str(folder))[0] == 0
    original = out.read_text()

    data = json.loads(original)
    kept_one = next(j for j in range(8) if j not in data["drop"]["2"])
    data["drop"]["2"] = sorted([*data["drop"]["2"][1:], kept_one])
    out.write_text(json.dumps(data))
    code, output = _run("check", str(folder))
    assert code == 2 and "drop.2" in output and "does not follow from dropmap.scores.json" in output

    out.write_text(original)
    scores_file = folder / "dropmap.scores.json"
    scores = json.loads(scores_file.read_text())
    scores["layers"]["1"]["weighted_norm_mean"]["code"][0] += 1.0
    scores_file.write_text(json.dumps(scores))
    code, output = _run("check", str(folder))
    assert code == 2 and "layers.1.weighted_norm_mean.code" in output


def test_kept_share_comes_from_the_scores_and_the_map(demo_base: Path, tmp_path: Path) -> None:
    from release.dropmap import kept_share

    folder = demo_release(tmp_path, demo_base, _zero_outputs)
    cal = write_calibration(tmp_path / "cal", {"prose": PROSE})
    code, output = _run("dropmap", str(folder), "--calibration", str(cal), "--out", str(folder / "dropmap.json"),
                        "--json")
    assert code == 0, output
    scores = parse_scores((folder / "dropmap.scores.json").read_bytes(), "s")
    drop_map = load_drop_map(folder / "dropmap.json")
    share = kept_share(scores, drop_map.kept)
    assert share == {layer: 1.0 for layer in ZEROED}  # only zero-output experts were dropped
    assert json.loads(output[output.index("{"):])["kept_share"] == {str(k): 1.0 for k in ZEROED}
    everything = {layer: tuple(range(8)) for layer in ZEROED}
    nothing_kept_of_layer0 = {**everything, 0: ()}
    assert kept_share(scores, everything) == share
    assert kept_share(scores, nothing_kept_of_layer0)[0] == 0.0


# -- bad input: one clear error, exit 2, nothing written ----------------------------------------------

def test_bad_inputs_write_nothing(demo_base: Path, tmp_path: Path) -> None:
    folder = demo_release(tmp_path, demo_base)
    out = tmp_path / "new" / "dropmap.json"
    cal = write_calibration(tmp_path / "cal", {"prose": PROSE})

    code, output = _run("dropmap", str(folder), "--calibration", str(tmp_path / "nope"), "--out", str(out))
    assert code == 2 and "nope" in output and "calibration folder not found" in output
    code, output = _run("dropmap", str(folder), "--out", str(out))
    assert code == 2 and "--calibration" in output
    (cal / "chat.jsonl").write_text('{"text": "fine"}\n{"txt": 1}\n')
    code, output = _run("dropmap", str(folder), "--calibration", str(cal), "--out", str(out))
    assert code == 2 and "chat.jsonl: line 2" in output
    (cal / "chat.jsonl").unlink()
    code, output = _run("dropmap", str(folder), "--calibration", str(cal), "--out", str(out),
                        "--class-weight", "poetry=2")
    assert code == 2 and "class_weights.poetry" in output and "no calibration class 'poetry'" in output
    code, output = _run("dropmap", str(folder), "--calibration", str(cal), "--out", str(out),
                        "--keep-top-per-class", "7")
    assert code == 2 and "keep_top_per_class: 7 is more than the 6 experts kept" in output
    two = write_calibration(tmp_path / "two", {"prose": PROSE, "code": CODE})
    code, output = _run("dropmap", str(folder), "--calibration", str(two), "--out", str(out),
                        "--keep-top-per-class", "6")
    assert code == 2 and "command line: keep_top_per_class: keep_top_per_class = 6 forces" in output
    code, output = _run("dropmap", str(folder), "--calibration", str(cal), "--out", str(out),
                        "--class-weight", "prose")
    assert code == 2 and "--class-weight" in output and "expected CLASS=WEIGHT" in output
    if not torch.cuda.is_available():
        code, output = _run("dropmap", str(folder), "--calibration", str(cal), "--out", str(out), "--device", "cuda")
        assert code == 2 and "--device" in output and "no CUDA device" in output
    toml = folder / "release.toml"
    toml.write_text(toml.read_text().replace("experts_kept = 6", "experts_kept = 1"))
    code, output = _run("dropmap", str(folder), "--calibration", str(cal), "--out", str(out))
    assert code == 2 and "prune.experts_kept" in output and "top-k = 2" in output
    assert not out.parent.exists()


def test_definition_section_supplies_recipe_and_calibration(demo_base: Path, tmp_path: Path) -> None:
    folder = demo_release(tmp_path, demo_base)
    write_calibration(folder / "calibration", {"prose": PROSE, "code": CODE})
    toml = folder / "release.toml"
    toml.write_text(toml.read_text().replace("[bf16]", '[dropmap]\nrecipe = "pooled"\nkeep_top_per_class = 1\n'
                                                       'class_weights = { code = 2.0 }\n\n[bf16]'))
    code, output = _run("check", str(folder))
    assert code == 0 and "the dropmap section of the definition asks for a derived map" in output  # warns
    code, output = _run("dropmap", str(folder), "--out", str(folder / "dropmap.json"))
    assert code == 0, output
    scores = parse_scores((folder / "dropmap.scores.json").read_bytes(), "s")
    assert scores.recipe.to_json() == {"name": "pooled", "keep_top_per_class": 1, "class_weights": {"code": 2.0}}
    assert _run("check", str(folder))[0] == 0
    toml.write_text(toml.read_text().replace('recipe = "pooled"', 'recipe = "max-class"'))
    code, output = _run("check", str(folder))
    assert code == 2 and "dropmap.scores.json: recipe: derived with" in output
