"""The card link check: every link and every model reference in a command points at a repo, file or
tag of this release, at the base model, or at a sibling release. Anything else is dangling.

Cards are Markdown; links are taken from markdown-it's tokens (so a URL inside prose or a table is
found the same way a renderer would find it), model references from code blocks by the command
shapes the quick starts use (`ollama run`, `llama-cli -hf`, `hf download`, `vllm serve`,
`from_pretrained`).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

from markdown_it import MarkdownIt

from ..dropmap.summary import REAP_URL
from ..errors import InputError, Problem
from ..gguf.tiers import gguf_filename
from ..manifest import Artifact, ArtifactRegistry, Destination, FileEntry
from ..spec.load import Release
from .context import HUB, OLLAMA, ollama_host, ollama_name
from .licenses import license_terms


class CardLinkError(InputError):
    """A card links to something that is not part of the release family (exit 2: fix the template or
    the definition). Each problem names the card (file) and the link (field)."""


@dataclass
class HubRepo:
    files: set[str] = field(default_factory=set)
    folders: set[str] = field(default_factory=set)
    revisions: set[str] = field(default_factory=lambda: {"main"})
    any_file: bool = False  # the base model: we do not know its file list, only that it exists


@dataclass
class LinkIndex:
    """What a card of this release may point at."""

    hub: dict[str, HubRepo] = field(default_factory=dict)
    ollama: dict[str, set[str]] = field(default_factory=dict)  # model (host-prefixed off ollama.com) → tags
    registries: set[str] = field(default_factory=set)  # origins of other OCI registries (no browser pages)
    gguf_tiers: dict[str, set[str]] = field(default_factory=dict)  # GGUF repo → tiers (for `-hf repo:TIER`)
    urls: set[str] = field(default_factory=set)  # the license text's (declared, or the id's canonical one)

    def add_registry(self, release: Release, artifacts: ArtifactRegistry) -> None:
        d = release.definition
        for a in artifacts:
            dest = a.destination
            if dest is None:
                continue
            if dest.kind == "hub":
                repo = self.hub.setdefault(dest.repo, HubRepo())
                for f in a.files:
                    path = f"{dest.path_in_repo.strip('/')}/{f.path}".strip("/")
                    repo.files.add(path)
                    parts = path.split("/")
                    for i in range(1, len(parts)):
                        repo.folders.add("/".join(parts[:i]))
            elif dest.kind == "ollama":
                tags = self.ollama.setdefault(dest.name, set())
                tags.add(dest.tag)
                tags.update(a.recipe.get("aliases", []))
        for section in d.hub_sections().values():
            self.hub.setdefault(section.repo, HubRepo()).files.add("README.md")
        if d.gguf:
            self.gguf_tiers.setdefault(d.gguf.repo, set()).update(
                [*d.gguf.tiers, *([d.gguf.baseline] if d.gguf.publish_baseline else [])])
        if d.ollama:
            tags = [*d.ollama.tags, "latest"]
            self.ollama.setdefault(d.ollama.model, set()).update(tags)
            if ollama_host(d.ollama.registry):
                self.ollama.setdefault(ollama_name(d.ollama.model, d.ollama.registry), set()).update(tags)
                reg = urlparse(d.ollama.registry)
                self.registries.add(f"{reg.scheme}://{reg.netloc}")
        terms = license_terms(d.release)
        if terms.url:
            self.urls.add(terms.url)

        self.urls.add(REAP_URL)  # the measure a generated selection section cites


def link_index(release: Release, artifacts: ArtifactRegistry) -> LinkIndex:
    idx = LinkIndex()
    idx.add_registry(release, artifacts)
    base = release.definition.base
    idx.hub.setdefault(base.repo, HubRepo(any_file=True)).revisions.add(base.revision)
    for sib in release.siblings:
        idx.add_registry(sib, _sibling_artifacts(sib))
    return idx


def _sibling_artifacts(sib: Release) -> ArtifactRegistry:
    """What a sibling publishes, from its definition alone: its repos, GGUF files and Ollama tags.
    (Its full plan would also estimate sizes, which links do not need and which costs time.)"""
    d = sib.definition
    reg = ArtifactRegistry()
    if d.gguf:
        g = d.gguf
        tiers = ([g.baseline] if g.publish_baseline else []) + list(g.tiers)
        reg.add(Artifact(id="gguf", kind="gguf", destination=Destination(kind="hub", repo=g.repo),
                         files=[FileEntry(gguf_filename(g.prefix, t)) for t in tiers]))
    if d.ollama:
        for tag in d.ollama.tags:
            reg.add(Artifact(id=f"ollama:{tag}", kind="ollama", recipe={"aliases": ["latest"]},
                             destination=Destination(kind="ollama", name=d.ollama.model, tag=tag)))
    return reg


_MD = MarkdownIt("commonmark", {"html": True}).enable("table")
_HREF = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)

# Model references inside code: (pattern, kind). Each captures one reference.
_COMMANDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bollama\s+(?:run|pull|show)\s+(\S+)"), "ollama"),
    (re.compile(r"(?:\s-hf|--hf-repo)\s+(\S+)"), "hf-tier"),
    (re.compile(r"\bhf\s+download\s+(\S+)((?:\s+--include\s+\S+)*)"), "hf-download"),
    (re.compile(r"\bvllm\s+serve\s+(\S+)"), "hub"),
    (re.compile(r"""from_pretrained\(\s*["']([^"']+)["']"""), "hub"),
    (re.compile(r"""\bLLM\(\s*(?:model\s*=\s*)?["']([^"']+)["']"""), "hub"),
    (re.compile(r"""\bmodel_id\s*=\s*["']([^"']+)["']"""), "hub"),
    (re.compile(r"""\brepo_id\s*=\s*["']([^"']+)["'](?:\s*,\s*filename\s*=\s*["']([^"']+)["'])?"""), "hf-file"),
]


def extract_links(markdown: str) -> tuple[list[str], list[str]]:
    """(links, code) of a card: every href/src, and the text of every code block or span."""
    links: list[str] = []
    code: list[str] = []

    def walk(tokens: list) -> None:
        for t in tokens:
            if t.type == "link_open":
                links.append(str(t.attrs.get("href", "")))
            elif t.type == "image":
                links.append(str(t.attrs.get("src", "")))
            elif t.type in ("html_block", "html_inline"):
                links.extend(_HREF.findall(t.content))
            elif t.type in ("fence", "code_block", "code_inline"):
                code.append(t.content)
            if t.children:
                walk(t.children)

    walk(_MD.parse(markdown))
    return links, code


def _strip_front_matter(markdown: str) -> str:
    if markdown.startswith("---\n"):
        end = markdown.find("\n---\n", 4)
        if end != -1:
            return markdown[end + 5:]
    return markdown


def _check_hub_url(idx: LinkIndex, url: str) -> str | None:
    parsed = urlparse(url)
    parts = [unquote(p) for p in parsed.path.strip("/").split("/") if p]
    if len(parts) < 2:
        return "not a repository link"
    repo_id = "/".join(parts[:2])
    repo = idx.hub.get(repo_id)
    if repo is None:
        return f"{repo_id} is not a repo of this release, its base model or a sibling release"
    rest = parts[2:]
    if not rest:
        return None
    if rest[0] in ("blob", "resolve", "tree") and len(rest) >= 2:
        rev, path = rest[1], "/".join(rest[2:])
        if rev not in repo.revisions:
            return f"revision {rev!r} of {repo_id} is not the one this release uses"
        if not path or repo.any_file:
            return None
        if rest[0] == "tree":
            return None if path in repo.folders else f"{repo_id} has no folder {path!r} in this release"
        return None if path in repo.files else f"{repo_id} has no file {path!r} in this release"
    return f"unexpected Hub path {'/'.join(rest)!r}"


def _check_ollama_ref(idx: LinkIndex, ref: str) -> str | None:
    # host:port/ns/model:tag — the tag is after the last ':' that follows the last '/'
    model, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        model, tag = ref, ""
    tags = idx.ollama.get(model)
    if tags is None:
        return f"{model} is not an Ollama model of this release or a sibling release"
    tag = tag or "latest"
    return None if tag in tags else f"{model} has no tag {tag!r}"


def _check_hub_ref(idx: LinkIndex, ref: str, *, tier: bool = False) -> str | None:
    repo_id, _, quant = ref.partition(":")
    if repo_id not in idx.hub:
        return f"{repo_id} is not a repo of this release, its base model or a sibling release"
    if quant:
        if not tier:
            return f"unexpected ':' in {ref!r}"
        tiers = {t.upper() for t in idx.gguf_tiers.get(repo_id, set())}
        if quant.upper() not in tiers:
            return f"{repo_id} has no GGUF tier {quant!r}"
    return None


def check_url(idx: LinkIndex, url: str) -> str | None:
    """None when `url` is allowed, else why not."""
    if not url:
        return "empty link"
    if url.startswith("#"):
        return None
    if url in idx.urls:
        return None
    parsed = urlparse(url)
    origin = f"{parsed.scheme}://{parsed.netloc}"
    if origin == HUB:
        return _check_hub_url(idx, url.split("#")[0])
    if origin == OLLAMA:
        return _check_ollama_ref(idx, unquote(parsed.path.strip("/")))
    if origin in idx.registries:
        # An OCI registry serves an API, not pages: a browser gets 400 (no Accept header) or JSON.
        return f"{origin} is a registry API, not a page a browser can open; show the pull command instead"
    if not parsed.scheme:
        return "relative link (cards are shown on several sites; link absolutely)"
    return "external link not declared in the release definition"


def check_code(idx: LinkIndex, code: str) -> list[tuple[str, str]]:
    """(reference, problem) for every model reference in a code block that does not resolve."""
    out: list[tuple[str, str]] = []
    for line in code.splitlines():
        if line.lstrip().startswith("#"):
            continue  # shell comments describe; they do not reference
        for pattern, kind in _COMMANDS:
            for m in pattern.finditer(line):
                ref = m.group(1).strip("\"'")
                if kind == "ollama":
                    if ref.startswith("hf.co/"):
                        problem = _check_hub_ref(idx, ref.removeprefix("hf.co/"), tier=True)
                    else:
                        problem = _check_ollama_ref(idx, ref)
                elif kind == "hf-tier":
                    problem = _check_hub_ref(idx, ref, tier=True)
                elif kind in ("hf-download", "hf-file"):
                    problem = _check_hub_ref(idx, ref)
                    if problem is None and m.group(2):
                        repo = idx.hub[ref]
                        pats = re.findall(r"--include\s+(\S+)", m.group(2)) if kind == "hf-download" else [m.group(2)]
                        for pat in pats:
                            pat = pat.strip("\"'")
                            if not repo.any_file and not fnmatch.filter(sorted(repo.files), pat):
                                problem = f"{ref} has no file matching {pat!r} in this release"
                else:
                    problem = _check_hub_ref(idx, ref)
                if problem:
                    out.append((m.group(0).strip(), problem))
    return out


def card_problems(idx: LinkIndex, card: str, markdown: str) -> list[Problem]:
    links, code = extract_links(_strip_front_matter(markdown))
    problems = [Problem(card, url, why) for url in links if (why := check_url(idx, url))]
    for block in code:
        problems += [Problem(card, ref, why) for ref, why in check_code(idx, block)]
    return problems


def check_links(release: Release, artifacts: ArtifactRegistry, cards: dict[str, str]) -> None:
    """Raise CardLinkError naming every dangling link of every card ({card name: markdown})."""
    idx = link_index(release, artifacts)
    problems: list[Problem] = []
    for name, text in cards.items():
        problems += card_problems(idx, name, text)
    if problems:
        raise CardLinkError(problems)
