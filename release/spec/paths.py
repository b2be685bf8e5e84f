"""The one resolver for paths a definition names: a definition never reaches outside its folder.

Every path field of `release.toml` (base.config, base.path, prune.drop_map, cards.scores, gguf.imatrix,
ollama.template / system / license) is relative to the release folder. Refused: an absolute path, a
`..` component, and a path whose symlinks resolve outside the folder — otherwise a definition could
publish any file of the machine it runs on (`ollama.license = "/etc/passwd"`). The single exception
is a base checkpoint kept elsewhere, which `[base] path_outside = true` declares in the definition.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class PathRefused(ValueError):
    """Why a path of a definition is not used (the message names the rule it breaks)."""


def resolve_inside(folder: Path, rel: str, *, allow_outside: bool = False) -> Path:
    """`folder / rel` with every symlink resolved; PathRefused unless it stays inside `folder`.

    `folder` must already be resolved. With `allow_outside`, only a symlink loop is refused.
    """
    if "\0" in rel:
        raise PathRefused(f"{rel!r} contains a NUL character")
    pure = PurePosixPath(rel)
    if not allow_outside:
        if pure.is_absolute() or rel.startswith("~"):
            raise PathRefused(f"{rel!r} is absolute; paths are relative to the release folder")
        if ".." in pure.parts:
            raise PathRefused(f"{rel!r} contains '..'; paths stay inside the release folder")
    try:
        resolved = (folder / Path(rel).expanduser() if allow_outside else folder / rel).resolve()
    except (RuntimeError, OSError) as exc:  # RuntimeError: pathlib's "Symlink loop" (Python 3.11)
        raise PathRefused(f"{rel!r}: symlink loop") from exc
    if not allow_outside and not resolved.is_relative_to(folder):
        raise PathRefused(f"{rel!r} is a symlink to {resolved}, outside the release folder")
    return resolved
