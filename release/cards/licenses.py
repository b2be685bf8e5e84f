"""How a card names a release's license and where it links: one answer for the License section, the link
check and anyone else who needs it, from `[release] license`, `license_name` and `license_link`.

A Hub license id the Hub knows (https://huggingface.co/docs/hub/repositories-licenses) is named by its
full title and linked to its canonical text unless the definition gives its own link; `other` is named by
`license_name` and linked to `license_link` (the Hub needs both for `other`); any other id is shown as is.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec.definition import ReleaseSection

# Hub license id → (title, canonical text). Ids from the Hub's license list (URL above); texts from the
# licensors themselves.
KNOWN_LICENSES: dict[str, tuple[str, str]] = {
    "apache-2.0": ("Apache License 2.0", "https://www.apache.org/licenses/LICENSE-2.0"),
    "mit": ("MIT License", "https://opensource.org/license/mit"),
    "bsd-3-clause": ("BSD 3-Clause License", "https://opensource.org/license/bsd-3-clause"),
    "cc-by-4.0": ("Creative Commons Attribution 4.0", "https://creativecommons.org/licenses/by/4.0/"),
    "gemma": ("Gemma Terms of Use", "https://ai.google.dev/gemma/terms"),
    "llama4": ("Llama 4 Community License",
               "https://github.com/meta-llama/llama-models/blob/main/models/llama4/LICENSE"),
}


@dataclass(frozen=True)
class LicenseTerms:
    id: str  # the Hub license id of the card metadata
    name: str  # what a reader calls it
    url: str  # where its text is ("" when neither known nor given)

    @property
    def shows_id(self) -> bool:
        """Whether the id adds anything next to the name (not for `other` or an id shown as its own name)."""
        return self.id != "other" and self.name != self.id


def license_terms(r: ReleaseSection) -> LicenseTerms:
    if r.license == "other":
        return LicenseTerms("other", r.license_name or "other", r.license_link)
    known = KNOWN_LICENSES.get(r.license)
    if known is not None:
        return LicenseTerms(r.license, known[0], r.license_link or known[1])
    return LicenseTerms(r.license, r.license_name or r.license, r.license_link)
