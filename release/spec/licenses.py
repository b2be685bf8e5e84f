"""`release.license` against `release.license_link`: the two must name the same terms.

The cards say "Released under `<license>`, see the license terms (<link>)"; with `license = "apache-2.0"`
and a link to the Gemma Terms of Use they name two different licenses, and a user cannot tell which
applies. That is an error, not a warning: the cards state legal terms, and nothing can be published
until the definition says one thing. A link this table does not recognise (the base model's own
LICENSE file, say) is accepted as is.

On the Hub, `license_name` and `license_link` describe a license the Hub has no id for, and go with
`license: other` (the model card spec, github.com/huggingface/hub-docs modelcard.md); a Hub license id
brings its own link.
"""

from __future__ import annotations

from urllib.parse import urlparse

from ..errors import Problem

# Well-known license texts: (the Hub license ids they are, URL prefixes (host + path) that show them).
_KNOWN: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "the Apache License 2.0": (("apache-2.0",), ("apache.org/licenses/license-2.0",
                                                  "opensource.org/licenses/apache-2.0",
                                                  "opensource.org/license/apache-2-0")),
    "the MIT License": (("mit",), ("opensource.org/licenses/mit", "opensource.org/license/mit")),
    "the Gemma Terms of Use": (("gemma",), ("ai.google.dev/gemma/terms",)),
    "a Llama community license": (("llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4"),
                                  ("llama.com/", "llama.meta.com/", "ai.meta.com/llama/license",
                                   "github.com/meta-llama/")),
    "CC BY 4.0": (("cc-by-4.0",), ("creativecommons.org/licenses/by/4.0",)),
    "CC BY-NC 4.0": (("cc-by-nc-4.0",), ("creativecommons.org/licenses/by-nc/4.0",)),
}


def _what(link: str) -> str | None:
    """Which known license text `link` shows, or None."""
    url = urlparse(link.strip().lower())
    where = (url.hostname or "").removeprefix("www.") + url.path.rstrip("/")
    for name, (_, prefixes) in _KNOWN.items():
        if any(where.startswith(p.rstrip("/")) for p in prefixes):
            return name
    return None


def license_problems(license_id: str, link: str, file: str) -> list[Problem]:
    shown = _what(link) if link else None
    if shown is None or license_id == "other" or license_id in _KNOWN[shown][0]:
        return []
    ids = ", ".join(repr(i) for i in _KNOWN[shown][0])
    return [Problem(file, "release.license_link",
                    f"links to {shown} ({ids}), but release.license is {license_id!r}; the cards would name two "
                    "licenses — make license and license_link agree (a Hub license id needs no link)")]
