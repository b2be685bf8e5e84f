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
from ..fsutil import atomic_write_text, staging_dir
from ..manifest import ArtifactRegistry
from ..quality.facts import withheld
from ..spec.load import Release
from .context import HUB, OLLAMA, Size, artifact_size, build_context, hub_resolve_url, ollama_name, slug
from .render import TEMPLATES_DIR, _gb, card_kinds

_MD = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
_HREF = re.compile(r'(<a\s+href=")([^"]*)(")')
_IMG = re.compile(r'(<img\s+src=")([^"]*)(")')


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
        self.repos = {s.repo for s in d.hub_sections().values()}
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


def markdown_to_html(markdown: str, urls: UrlMap, images: dict[str, str] | None = None) -> str:
    """The card as HTML, its links to this release mapped to preview pages and its images of this
    release (`images`: published URL → file in the preview folder) shown from the local copy."""
    body = _MD.render(markdown)
    local = images or {}

    def img(m: re.Match[str]) -> str:
        target = local.get(html.unescape(m.group(2)))
        return m.group(0) if target is None else f"{m.group(1)}{html.escape(target)}{m.group(3)}"

    body = _IMG.sub(img, body)

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
        if dest is None or dest.kind != "hub" or withheld(release, artifacts, a):
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


# ---- what has been published ----------------------------------------------------------------------
#
# `dist/<name>/published.json` records, after each publish, every Hub file (path → sha256) and Ollama tag
# (manifest digest) that the remotes now hold. The preview compares it with the files as they are now, so
# it says what is published, what changed locally since, and what never was.

PUBLISHED_RECORD = "published.json"


def _record_path(preview_dir: Path) -> Path:
    return preview_dir.parent / PUBLISHED_RECORD


def read_published(preview_dir: Path) -> dict[str, Any]:
    """The publish record beside the preview; an unreadable or malformed one counts as none."""
    try:
        data = json.loads(_record_path(preview_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"hub": {}, "ollama": {}}
    if not isinstance(data, dict):
        return {"hub": {}, "ollama": {}}
    hub = data.get("hub") if isinstance(data.get("hub"), dict) else {}
    ollama = data.get("ollama") if isinstance(data.get("ollama"), dict) else {}
    return {"hub": {k: v for k, v in hub.items() if isinstance(v, dict) and isinstance(v.get("files"), dict)},
            "ollama": {k: v for k, v in ollama.items() if isinstance(v, dict)}}


def _hub_files_now(release: Release, artifacts: ArtifactRegistry, repo: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for a in artifacts:
        dest = a.destination
        if dest is None or dest.kind != "hub" or dest.repo != repo or withheld(release, artifacts, a):
            continue
        if not a.files:
            out[f"({a.id})"] = None  # not built yet: cannot be what was published
        for f in a.files:
            out[f"{dest.path_in_repo.strip('/')}/{f.path}".strip("/")] = f.sha256 if a.status != "planned" else None
    return out


def _tag_digest_now(artifacts: ArtifactRegistry, tag: str) -> str:
    a = artifacts.get(f"ollama:{tag}")
    if a is None or a.status == "planned":
        return ""
    return str(a.facts.get("manifest_digest") or a.facts.get("digest") or "")


def record_publish(release: Release, artifacts: ArtifactRegistry, dist: Path, *, hub: dict[str, str],
                   ollama: dict[str, str], ollama_registry: str = "", templates_dir: Path = TEMPLATES_DIR) -> Path:
    """After a publish: record what the remotes now hold (`hub`: repo → its URL; `ollama`: tag → manifest
    digest, pushed to `ollama_registry` or else the definition's) in `dist/published.json`, then
    re-render the preview so it stops saying nothing is published. Returns the record's path."""
    preview_dir = dist / "preview"
    record = read_published(preview_dir)
    for repo, url in hub.items():
        entry = record["hub"].get(repo) or {"files": {}}
        files = {p: sha for p, sha in _hub_files_now(release, artifacts, repo).items() if sha}
        record["hub"][repo] = {"url": url, "files": {**entry["files"], **files}}
    d = release.definition
    for tag, digest in ollama.items():
        if digest:
            ref = ollama_name(d.ollama.model, ollama_registry or d.ollama.registry) if d.ollama else ""
            record["ollama"][tag] = {"ref": f"{ref}:{tag}", "digest": digest}
    path = _record_path(preview_dir)
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    cards_dir = dist / "cards"
    if all((cards_dir / kind / "README.md").is_file() for kind in card_kinds(release)):
        build_preview(release, artifacts, cards_dir, preview_dir, templates_dir=templates_dir)
    return path


def publish_state(release: Release, artifacts: ArtifactRegistry, record: dict[str, Any]) -> dict[str, Any]:
    """Per Hub repo and Ollama tag: "published" (the remote holds exactly these files / this manifest),
    "changed" (published, but the local files differ now) or "unpublished"; plus counts for the banner."""
    d = release.definition
    repos: dict[str, dict[str, str]] = {}
    for section in d.hub_sections().values():
        rec = record["hub"].get(section.repo)
        if rec is None:
            repos[section.repo] = {"state": "unpublished", "url": ""}
            continue
        now = _hub_files_now(release, artifacts, section.repo)
        same = bool(now) and all(sha is not None and rec["files"].get(path) == sha for path, sha in now.items())
        repos[section.repo] = {"state": "published" if same else "changed", "url": str(rec.get("url", ""))}
    tags: dict[str, dict[str, str]] = {}
    for tag in (d.ollama.tags if d.ollama else {}):
        rec = record["ollama"].get(tag)
        if rec is None:
            tags[tag] = {"state": "unpublished", "ref": "", "digest": ""}
            continue
        now = _tag_digest_now(artifacts, tag)
        tags[tag] = {"state": "published" if now and now == rec.get("digest") else "changed",
                     "ref": str(rec.get("ref", "")), "digest": str(rec.get("digest", ""))}
    states = [*repos.values(), *tags.values()]
    # Where it went, so a rehearsal on a local stand-in Hub never reads as a public release.
    hosts = sorted({f"{urlparse(r['url']).scheme}://{urlparse(r['url']).netloc}" for r in repos.values() if r["url"]})
    return {"repos": repos, "tags": tags, "hub_hosts": hosts,
            "any": any(s["state"] != "unpublished" for s in states),
            "repos_published": sum(r["state"] == "published" for r in repos.values()),
            "tags_published": sum(t["state"] == "published" for t in tags.values()),
            "changed": sum(s["state"] == "changed" for s in states)}


def build_preview(release: Release, artifacts: ArtifactRegistry, cards_dir: Path, out_dir: Path,
                  *, templates_dir: Path = TEMPLATES_DIR) -> Path:
    """Write the preview into `out_dir` (replaced atomically) and return its index.html. What is
    published comes from the publish record beside it (see record_publish)."""
    d = release.definition
    ctx = build_context(release, artifacts, provenance={})
    published = publish_state(release, artifacts, read_published(out_dir))
    files = repo_files(release, artifacts)
    urls = UrlMap(release, files)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir / "preview")),
                             undefined=jinja2.StrictUndefined, autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["gb"] = _gb

    # Files a card's repo ships beside it (the GGUF quality chart): copied, so its page shows them offline.
    images: dict[str, str] = {}
    copies: dict[str, Path] = {}
    for kind in card_kinds(release):
        section = getattr(d, kind, None)
        for extra in sorted((cards_dir / kind).glob("*")) if section is not None else []:
            if extra.is_file() and extra.name != "README.md":
                name = f"{kind}-{extra.name}"
                copies[name] = extra
                images[hub_resolve_url(section.repo, extra.name)] = name
    cards: dict[str, dict[str, Any]] = {}
    for kind in card_kinds(release):
        path = cards_dir / kind / "README.md"
        if not path.is_file():
            raise InputError("card not rendered yet (run `release cards` first)", file=str(path))
        text = path.read_text(encoding="utf-8")
        meta, body = split_front_matter(text)
        cards[kind] = {"meta": meta, "html": markdown_to_html(body, urls, images)}

    pages: dict[str, str] = {}
    repos = []
    for kind, section in d.hub_sections().items():
        repo = section.repo
        rows = files.get(repo, [])
        repos.append({"kind": kind, "repo": repo, "page": hub_page(repo), "files": len(rows),
                      "size": Size(sum(r["size"].bytes or 0 for r in rows) or None,
                                   any(r["size"].estimated for r in rows if r["size"])),
                      "meta": cards[kind]["meta"]})
    family = {"release": ctx["release"], "me": ctx["me"], "repos": repos,
              "ollama": ctx["ollama"], "siblings": ctx["siblings"], "base": ctx["base"], "published": published}
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
        for name, src in copies.items():
            (tmp / name).write_bytes(src.read_bytes())
    return out_dir / "index.html"
