"""The GGUF card says what each file really stores: types read back from the built files (standard tiers'
row-width fallbacks and mixtures included, not only what a recipe asked for), notes that cannot
contradict them, and a `general.base_model` in every GGUF that names the repo it was converted from, as
the card's `base_model` does.

Built with llama.cpp's real converter and quantizer on the demo (its experts are 192 wide, not a multiple
of 256, so K-quants on `ffn_down_exps` fall back as they do on the 26B's 704-wide rows).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import ModelCard

from release.cards import render_card_texts
from release.errors import InputError
from release.plan import plan_artifacts
from release.spec.load import load_release

ROOT = Path(__file__).resolve().parents[1]
PROVENANCE = {"tool_version": "0.1.0", "pipelines_commit": "0" * 40, "pipelines_dirty": False}
TIERS = ["Q4_K_M", "Q6_K", "IQ4_XS", "CD-Q3"]

pytestmark = pytest.mark.slow


def _demo_copy(folder: Path) -> Path:
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", "dist"))
    toml = folder / "release.toml"
    toml.write_text(toml.read_text().replace('path = "base"\ngenerator = "tiny-gemma4"\n', ""))
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The demo's F16 and four tiers, built, with the cards rendered from their recorded facts."""
    from release.demo import generate_tiny_gemma4
    from release.gguf.build import build_gguf
    from release.prune import prune_checkpoint
    from release.toolchain import ensure_toolchain

    ensure_toolchain()
    root = tmp_path_factory.mktemp("stored")
    release = load_release(str(_demo_copy(root / "demo")))
    generate_tiny_gemma4(root / "base")
    prune_checkpoint(root / "base", release.drop_map, root / "bf16")
    gguf_dir = root / "gguf"
    arts = build_gguf(release, root / "bf16", gguf_dir, only={"F16", *TIERS})
    reg = plan_artifacts(release)
    for a in arts:
        reg.add(a)
    cards = render_card_texts(release, reg, provenance=PROVENANCE)
    return release, gguf_dir, {a.id: a for a in arts}, cards


def _file_types(path: Path) -> dict[str, dict[str, set[int]]]:
    """Tensor kind → type → layers, read with the gguf package (the oracle, independent of the tool)."""
    import gguf

    out: dict[str, dict[str, set[int]]] = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        m = re.match(r"blk\.(\d+)\.(.+)\.weight$", t.name)
        if m:
            out.setdefault(m.group(2), {}).setdefault(t.tensor_type.name.upper(), set()).add(int(m.group(1)))
    return out


def _layers(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        a, _, b = part.strip().partition("–")
        out.update(range(int(a), int(b or a) + 1))
    return out


def _cell_types(cell: str, all_layers: set[int]) -> dict[str, set[int]]:
    """"Q5_0 (layers 1–3), Q8_0 (layers 0, 4–5)" → {Q5_0: {1, 2, 3}, Q8_0: {0, 4, 5}}."""
    found = re.findall(r"([A-Z][A-Z0-9_]*)(?: \(layers? ([0-9–, ]+)\))?", cell)
    return {typ: _layers(layers) if layers else set(all_layers) for typ, layers in found}


def _stored_table(card: str) -> dict[str, dict[str, str]]:
    start = card.index("What each file stores")
    lines = card[start:].splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("| Tier |"))
    header = [c.strip() for c in lines[head].strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for ln in lines[head + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_card_lists_what_each_file_stores(built):
    _release, gguf_dir, arts, cards = built
    table = _stored_table(cards["gguf"])
    for tier in TIERS:
        truth = _file_types(gguf_dir / arts[f"gguf:{tier}"].files[0].path)
        row = table[tier]
        for kind, column in (("ffn_down_exps", "Experts (down)"), ("ffn_gate_up_exps", "Experts (gate/up)")):
            layers = set().union(*truth[kind].values())
            assert _cell_types(row[column], layers) == truth[kind], (tier, kind, row[column])
    # Standard tiers store their expert down-projections in other types than their name says: the card
    # says so because the file says so (no recipe asked for any of them).
    assert set(_cell_types(table["Q4_K_M"]["Experts (down)"], set(range(6)))) - {"Q4_K"}
    assert "Q4_K" not in _cell_types(table["Q4_K_M"]["Experts (down)"], set(range(6)))
    assert set(_cell_types(table["Q6_K"]["Experts (down)"], set(range(6)))) == {"Q8_0"}
    assert set(_cell_types(table["IQ4_XS"]["Experts (down)"], set(range(6)))) == {"IQ4_NL"}


def test_built_rows_are_read_from_the_files_not_planned(built):
    _release, _dir, _arts, cards = built
    table = _stored_table(cards["gguf"])
    for tier in [*TIERS, "F16"]:
        assert tier in table, tier  # a built tier's row carries no "≈"
    assert "Q8_0 ≈" in table  # not built here: the row llama.cpp's rules give, marked as planned


def test_gguf_base_model_is_the_repo_it_was_converted_from(built):
    """general.base_model of every GGUF names the pruned BF16 repo, as the card's `base_model` does."""
    import gguf
    from gguf.metadata import Metadata

    release, gguf_dir, arts, cards = built
    bf16_repo = release.definition.bf16.repo
    assert ModelCard(cards["gguf"]).data.base_model == bf16_repo
    name, org, *_ = Metadata.get_model_id_components(bf16_repo, 0)
    for aid in ("gguf:F16", "gguf:Q4_K_M"):
        fields = gguf.GGUFReader(str(gguf_dir / arts[aid].files[0].path)).fields
        assert fields["general.base_model.count"].contents() == 1
        assert fields["general.base_model.0.repo_url"].contents() == f"https://huggingface.co/{bf16_repo}"
        assert fields["general.base_model.0.name"].contents() == Metadata.id_to_title(name)
        assert fields["general.base_model.0.organization"].contents() == Metadata.id_to_title(org)


# ---- notes cannot contradict the files ---------------------------------------------------------------

@pytest.mark.parametrize(("old", "new", "field"), [
    ('note = "layer 0 experts raised most, the other experts one step above the Q3_K_M tier"',
     'note = "layer 0 experts at Q5_K, other experts at Q4_K, attention at Q3_K"', "gguf.recipes.CD-Q3.note"),
    ('Q4_K_M = "default"', 'Q4_K_M = "default; experts at 4–5 bits"', "gguf.notes.Q4_K_M"),
    ('Q8_0 = "near-lossless"', 'Q8_0 = "near-lossless, stored as q8_0 throughout"', "gguf.notes.Q8_0"),
])
def test_a_note_stating_types_is_refused(tmp_path, old, new, field):
    folder = _demo_copy(tmp_path / "demo")
    toml = folder / "release.toml"
    assert old in toml.read_text()
    toml.write_text(toml.read_text().replace(old, new))
    with pytest.raises(InputError) as exc:
        load_release(str(folder))
    problem = next(p for p in exc.value.problems if p.field == field)
    assert problem.file == "demo/release.toml"
    assert "read from" in problem.message  # says where the types come from instead

    from release.cli import cli

    result = CliRunner().invoke(cli, ["check", str(folder)])
    assert result.exit_code == 2 and field in result.output


def test_a_note_may_name_a_tier(tmp_path):
    folder = _demo_copy(tmp_path / "demo")
    toml = folder / "release.toml"
    toml.write_text(toml.read_text().replace('Q8_0 = "near-lossless"', 'Q8_0 = "larger than the Q6_K tier, '
                                                                        'smaller than Q4_K_M twice"'))
    assert load_release(str(folder)).definition.gguf.notes["Q8_0"].startswith("larger than the Q6_K tier")
