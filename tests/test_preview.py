"""The static preview of a release family: every page loads in headless Chromium, every internal link
(page and #fragment) resolves, the release's own Hub and Ollama links point at preview pages, and a
screenshot of the v4 index is kept under test-artifacts/ for review.
"""

from __future__ import annotations

import html as html_lib
import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest

from release.cards import build_preview, render_cards
from release.doctor import BROWSERS, browser
from release.plan import plan_artifacts
from release.spec.load import load_release

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
PROVENANCE = {"tool_version": "0.1.0", "pipelines_commit": "0" * 40, "pipelines_dirty": False}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag in ("a", "link") and a.get("href"):
            self.hrefs.append(str(a["href"]))
        self._in_title = tag == "title"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False


def parse(html: str) -> _Links:
    p = _Links()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def v4_preview(tmp_path_factory) -> Path:
    release = load_release("v4")
    artifacts = plan_artifacts(release)
    dist = tmp_path_factory.mktemp("dist") / "v4"
    render_cards(release, artifacts, dist / "cards", provenance=PROVENANCE)
    index = build_preview(release, artifacts, dist / "cards", dist / "preview")
    assert index == dist / "preview" / "index.html"
    return index.parent


def internal_link_problems(pages: dict[str, _Links]) -> list[str]:
    """Relative links whose page or #fragment does not exist (pages: file name → parsed DOM)."""
    problems = []
    for name, page in pages.items():
        for href in page.hrefs:
            url = urlparse(href)
            if url.scheme or url.netloc:
                continue
            target = url.path or name
            if target not in pages and not target.endswith(".css"):
                problems.append(f"{name}: {href}: no page {target}")
            elif url.fragment and target in pages and url.fragment not in pages[target].ids:
                problems.append(f"{name}: {href}: no element with id {url.fragment!r} in {target}")
    return problems


def test_preview_pages(v4_preview):
    names = sorted(p.name for p in v4_preview.iterdir())
    assert names == sorted([
        "index.html", "style.css", "ollama.html", "ollama-q4-k-m.html", "ollama-q6-k.html", "ollama-cd-q3-k-m.html",
        "hf-ManniX-ITA--gemma-4-A4B-98e-v4-it.html", "hf-ManniX-ITA--gemma-4-A4B-98e-v4-it-GGUF.html",
        "hf-ManniX-ITA--gemma-4-A4B-98e-v4-NVFP4A16.html"])  # no chart: no tier is measured yet
    assert not list(v4_preview.parent.glob(".preview.*"))  # staging folder renamed away


def test_internal_links_resolve_in_source(v4_preview):
    pages = {p.name: parse(p.read_text()) for p in v4_preview.glob("*.html")}
    assert internal_link_problems(pages) == []
    # Links to this release's repos, files and tags were mapped to preview pages.
    for name, page in pages.items():
        for href in page.hrefs:
            assert "gemma-4-A4B-98e-v4-" not in href or "huggingface.co" not in href, (name, href)
            assert "ollama.com/mannix/gemma4-98e-v4" not in href, (name, href)
    gguf = pages["hf-ManniX-ITA--gemma-4-A4B-98e-v4-it-GGUF.html"]
    assert "hf-ManniX-ITA--gemma-4-A4B-98e-v4-it-GGUF.html#file-gemma-4-a4b-98e-v4-q4-k-m-gguf" in gguf.hrefs
    assert "ollama-cd-q3-k-m.html" in pages["ollama.html"].hrefs


def test_repo_page_shows_card_metadata_and_files(v4_preview):
    html = (v4_preview / "hf-ManniX-ITA--gemma-4-A4B-98e-v4-it-GGUF.html").read_text()
    assert "quantized from <code>ManniX-ITA/gemma-4-A4B-98e-v4-it</code>" in html
    assert "<code>gemma-4-A4B-98e-v4-Q4_K_M.gguf</code></td><td>≈13.23 GB</td>" in html
    assert "Bits/weight</th>" in html  # the card's quant table rendered as HTML
    tag = html_lib.unescape((v4_preview / "ollama-q6-k.html").read_text())
    assert "gemma4 · ≈20.4B · Q6_K" in tag
    assert '"num_ctx": 256000' in tag and "tools" in tag


def _chromium() -> str | None:
    """Chromium or Google Chrome, whichever this machine has (Debian: chromium; GitHub's Ubuntu runners:
    google-chrome)."""
    return browser()


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(profile)}  # keep the browser's files out of the real home
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120, env=env, check=False)


def test_preview_in_headless_chromium(v4_preview, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip(f"no browser ({', '.join(BROWSERS)}); scripts/bootstrap.sh installs chromium on Debian")
    profile = tmp_path / "chromium-profile"
    pages: dict[str, _Links] = {}
    for path in sorted(v4_preview.glob("*.html")):
        run = _run_chromium(binary, profile, "--dump-dom", path.as_uri())
        assert run.returncode == 0, f"{path.name}: chromium exited {run.returncode}: {run.stderr[-2000:]}"
        dom = parse(run.stdout)
        assert "release preview" in dom.title, f"{path.name} did not load: {run.stdout[:300]!r}"
        assert dom.hrefs, f"{path.name}: no links in the loaded page"
        pages[path.name] = dom
    assert len(pages) == 8
    assert internal_link_problems(pages) == []

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "preview-v4-index.png"
    shot.unlink(missing_ok=True)
    run = _run_chromium(binary, profile, "--window-size=1280,1600", f"--screenshot={shot}",
                        (v4_preview / "index.html").as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_preview_needs_rendered_cards(tmp_path):
    from release.errors import InputError

    release = load_release("v4")
    with pytest.raises(InputError, match="not rendered yet"):
        build_preview(release, plan_artifacts(release), tmp_path / "cards", tmp_path / "preview")
    assert not (tmp_path / "preview").exists()


def test_split_folder_links_resolve(tmp_path):
    from release.manifest import Artifact, FileEntry

    release = load_release("v4")
    reg = plan_artifacts(release)
    planned = reg["gguf:Q6_K"]
    shards = [f"gemma-4-A4B-98e-v4-Q6_K/gemma-4-A4B-98e-v4-Q6_K-0000{i}-of-00002.gguf" for i in (1, 2)]
    reg.add(Artifact(id="gguf:Q6_K", kind="gguf", status="built", root="gguf",
                     files=[FileEntry(p, 9_000_000_000, "3" * 64) for p in shards],
                     recipe=planned.recipe, destination=planned.destination, facts={"bpw": 7.0}))
    render_cards(release, reg, tmp_path / "cards", provenance=PROVENANCE)
    out = build_preview(release, reg, tmp_path / "cards", tmp_path / "preview").parent
    pages = {p.name: parse(p.read_text()) for p in out.glob("*.html")}
    assert internal_link_problems(pages) == []
    gguf = pages["hf-ManniX-ITA--gemma-4-A4B-98e-v4-it-GGUF.html"]
    assert "hf-ManniX-ITA--gemma-4-A4B-98e-v4-it-GGUF.html#file-gemma-4-a4b-98e-v4-q6-k" in gguf.hrefs
    assert "file-gemma-4-a4b-98e-v4-q6-k" in gguf.ids
