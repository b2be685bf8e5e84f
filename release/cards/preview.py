"""A static HTML preview of the whole release family, `dist/<name>/preview/index.html`: one page per
Hub repo (rendered card, metadata, file list with sizes), one per Ollama tag (what ollama.com shows:
digest, size, family · parameters · file type, badges, template, parameters, license, readme), and
an index. Links of the cards that point at this release's repos, files and tags are rewritten to the
preview's own pages, so the whole family can be clicked through offline before anything is published.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import jinja2
import yaml
from markdown_it import MarkdownIt

from ..errors import InputError
from ..fsutil import staging_dir
from ..manifest import ArtifactRegistry
from ..spec.load import Release
from .context import HUB, OLLAMA, Size, artifact_size, build_context, slug
from .render import TEMPLATES_DIR, _gb, card_kinds

_MD = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
_HREF = re.compile(r'(<a\s+href=")([^"]*)(")')


def hub_page(repo: str) -> str:
    return f"hf-{repo.replace('/', '--')}.html"


def ollama_tag_page(tag: str) -> str:
    return f"ollama-{slug(tag)}.html"


def file_anchor(path: str) -> str:
    return "file-" + slug(path)


class UrlMap:
    """Maps the published URLs of this release to preview pages; anything else stays external."""

    def __init__(self, release: Release, files: dict[str, list[dict[str, Any]]]) -> None:
        d = release.definition
        self.repos = {getattr(d, k).repo for k in ("bf16", "gguf", "nvfp4") if getattr(d, k)}
        self.files = {repo: {f["path"] for f in rows} | {f["folder"] for f in rows if f["folder"]}
                      for repo, rows in files.items()}
        self.ollama = d.ollama.model if d.ollama else None
        self.tags = set(d.ollama.tags) if d.ollama else set()

    def __call__(self, url: str) -> str | None:
        url = html.unescape(url)
        parsed = urlparse(url)
        origin = f"{parsed.scheme}://{parsed.netloc}"
        parts = [unquote(p) for p in parsed.path.strip("/").split("/") if p]
        if origin == HUB and len(parts) >= 2:
            repo = "/".join(parts[:2])
            if repo not in self.repos:
                return None
            if len(parts) == 2:
                return hub_page(repo)
            if len(parts) >= 4 and parts[2] in ("blob", "resolve", "tree"):
                path = "/".join(parts[4:])
                if path in self.files.get(repo, set()):
                    return f"{hub_page(repo)}#{file_anchor(path)}"
            return None
        if origin == OLLAMA and self.ollama:
            model, _, tag = "/".join(parts).partition(":")
            if model != self.ollama:
                return None
            if not tag:
                return "ollama.html"
            if tag == "latest":
                return "ollama.html"
            return ollama_tag_page(tag) if tag in self.tags else None
        return None


def markdown_to_html(markdown: str, urls: UrlMap) -> str:
    body = _MD.render(markdown)

    def sub(m: re.Match[str]) -> str:
        target = urls(m.group(2))
        if target is None:
            if m.group(2).startswith("#"):
                return m.group(0)
            return f'<a class="external" target="_blank" rel="noopener" href="{m.group(2)}"'
        return f'{m.group(1)}{html.escape(target)}{m.group(3)}'

    return _HREF.sub(sub, body)


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            return yaml.safe_load(text[4:end]) or {}, text[end + 5:]
    return {}, text


def repo_files(release: Release, artifacts: ArtifactRegistry) -> dict[str, list[dict[str, Any]]]:
    """Hub repo → its files (path, size, estimated), README first, in registry order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for a in artifacts:
        dest = a.destination
        if dest is None or dest.kind != "hub":
            continue
        rows = out.setdefault(dest.repo, [])
        size = artifact_size(a)
        for f in a.files:
            path = f"{dest.path_in_repo.strip('/')}/{f.path}".strip("/")
            if f.size is not None:
                fsize = Size(f.size, False)
            elif len(a.files) == 1 and a.kind != "card":
                fsize = size
            else:
                fsize = Size(None, True)
            rows.append({"path": path, "size": fsize, "artifact": a.id, "anchor": file_anchor(path),
                         "folder": path.split("/")[0] if "/" in path else "", "pending": ""})
        if not a.files:  # a checkpoint folder not built yet: one row for the whole artifact
            rows.append({"path": "", "size": size, "artifact": a.id, "anchor": file_anchor(a.id), "folder": "",
                         "pending": a.id})
    for rows in out.values():
        rows.sort(key=lambda r: (r["path"] != "README.md",))
        seen: set[str] = set()
        for r in rows:  # the first file of a split folder also answers links to the folder
            r["folder_anchor"] = file_anchor(r["folder"]) if r["folder"] and r["folder"] not in seen else ""
            seen.add(r["folder"])
    return out


def build_preview(release: Release, artifacts: ArtifactRegistry, cards_dir: Path, out_dir: Path,
                  *, templates_dir: Path = TEMPLATES_DIR) -> Path:
    """Write the preview into `out_dir` (replaced atomically) and return its index.html."""
    d = release.definition
    ctx = build_context(release, artifacts, provenance={})
    files = repo_files(release, artifacts)
    urls = UrlMap(release, files)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir / "preview")),
                             undefined=jinja2.StrictUndefined, autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["gb"] = _gb

    cards: dict[str, dict[str, Any]] = {}
    for kind in card_kinds(release):
        path = cards_dir / kind / "README.md"
        if not path.is_file():
            raise InputError("card not rendered yet (run `release cards` first)", file=str(path))
        text = path.read_text(encoding="utf-8")
        meta, body = split_front_matter(text)
        cards[kind] = {"meta": meta, "html": markdown_to_html(body, urls)}

    pages: dict[str, str] = {}
    repos = []
    for kind in ("bf16", "gguf", "nvfp4"):
        section = getattr(d, kind)
        if section is None:
            continue
        repo = section.repo
        rows = files.get(repo, [])
        repos.append({"kind": kind, "repo": repo, "page": hub_page(repo), "files": len(rows),
                      "size": Size(sum(r["size"].bytes or 0 for r in rows) or None,
                                   any(r["size"].estimated for r in rows if r["size"])),
                      "meta": cards[kind]["meta"]})
    family = {"release": ctx["release"], "me": ctx["me"], "repos": repos,
              "ollama": ctx["ollama"], "siblings": ctx["siblings"], "base": ctx["base"]}
    for r in repos:
        pages[r["page"]] = env.get_template("repo.html.j2").render(
            **family, page=r, card=cards[r["kind"]], file_rows=files.get(r["repo"], []), hub=HUB)
    if d.ollama:
        o = d.ollama
        tags = ctx["ollama"]["tags"]
        template_text = ctx["ollama"]["template_text"]
        badges = []
        if o.renderer or ".Tools" in template_text:
            badges.append("tools")
        if o.parser:
            badges.append("thinking")
        params_json = json.dumps(dict(o.parameters), indent=2, ensure_ascii=False)
        license_text = ctx["ollama"]["license_text"]
        common = {**family, "badges": badges, "params_json": params_json, "template_text": template_text,
                  "license_text": license_text, "readme": cards["ollama"]["html"] if "ollama" in cards else "",
                  "tag_page": ollama_tag_page, "arch": release.family.family}
        pages["ollama.html"] = env.get_template("ollama_model.html.j2").render(**common)
        for t in tags:
            pages[ollama_tag_page(t["tag"])] = env.get_template("ollama_tag.html.j2").render(**common, tag=t)
    pages["index.html"] = env.get_template("index.html.j2").render(
        **family, tag_page=ollama_tag_page, has_ollama=d.ollama is not None)

    with staging_dir(out_dir) as tmp:
        (tmp / "style.css").write_text((templates_dir / "preview" / "style.css").read_text(encoding="utf-8"),
                                       encoding="utf-8")
        for name, content in pages.items():
            (tmp / name).write_text(content, encoding="utf-8")
    return out_dir / "index.html"
