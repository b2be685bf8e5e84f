"""Our Modelfiles: written per tag so `ollama create -f` reproduces the tag, and read back by tests.

The grammar is ollama's (parser/parser.go, per the team notes): one command per line, `#` comments,
values that are bare (to end of line, trimmed), `"…"` or `\"\"\"…\"\"\"` (may span lines). A quoted
value ends at the first line end where the text so far, trimmed, is a complete quoted string, and there
is no escaping; so some texts cannot be written in a Modelfile at all. `render` refuses those instead of
writing a file that ollama would read differently.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .layers import param_text

COMMANDS = ("from", "parameter", "template", "system", "adapter", "license", "message", "requires",
            "renderer", "parser", "draft")
MESSAGE_ROLES = ("system", "user", "assistant")


class ModelfileError(ValueError):
    """A text that cannot be written to, or a line that cannot be read from, a Modelfile."""


@dataclass
class Modelfile:
    from_: str
    template: str | None = None
    system: str | None = None
    licenses: list[str] = field(default_factory=list)
    parameters: list[tuple[str, str]] = field(default_factory=list)  # (name, text), in order
    messages: list[dict[str, str]] = field(default_factory=list)
    renderer: str | None = None
    parser: str | None = None
    requires: str | None = None

    def params_texts(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, text in self.parameters:
            out.setdefault(name, []).append(text)
        return out


def _unquote(s: str) -> tuple[str, bool]:
    if s.startswith('"""'):
        if len(s) >= 6 and s.endswith('"""'):
            return s[3:-3], True
        return "", False
    if s.startswith('"'):
        if len(s) >= 2 and s.endswith('"'):
            return s[1:-1], True
        return "", False
    return s, True


def _check_printable(text: str, what: str) -> None:
    # ollama's reader keeps only runes Go calls printable (letters, marks, numbers, punctuation,
    # symbols, ASCII space) plus the spaces and line ends it steps on; anything else vanishes.
    for ch in text:
        if ch in " \t\n":
            continue
        if ch == "\r":
            raise ModelfileError(f"{what}: carriage returns do not survive a Modelfile; use LF line ends")
        if unicodedata.category(ch)[0] not in "LMNPS":
            raise ModelfileError(f"{what}: character U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')}) would be "
                                 f"silently dropped by ollama's Modelfile reader")


def quote_block(text: str, what: str) -> str:
    """`text` as a triple-quoted value that ollama's parser reads back to exactly `text`."""
    _check_printable(text, what)
    lines = text.split("\n")
    collected = '"""'
    for line in lines[:-1]:
        collected += line
        stripped = collected.strip()
        if len(stripped) >= 6 and stripped.endswith('"""'):
            raise ModelfileError(f"{what}: a line ending in \"\"\" cannot be written in a Modelfile")
        collected += "\n"
    value = '"""' + text + '"""'
    if _unquote(value.strip())[0] != text:
        raise ModelfileError(f"{what}: leading or trailing text would be lost in a Modelfile")
    return value


def quote_inline(text: str, what: str) -> str:
    """A one-line value (parameter, name): bare when safe, else in double quotes."""
    if "\n" in text or "\r" in text:
        raise ModelfileError(f"{what}: a line break cannot be written in a one-line Modelfile value")
    _check_printable(text, what)
    if text and text == text.strip() and not text.startswith('"'):
        return text
    quoted = f'"{text}"'
    if _unquote(quoted)[0] != text or '"""' in quoted[:3]:
        raise ModelfileError(f"{what}: {text!r} cannot be written as a Modelfile value")
    return quoted


def render(*, from_: str, template: str | None = None, system: str | None = None,
           license: str | None = None, parameters: Mapping[str, Any] | None = None,
           messages: Sequence[Mapping[str, str]] = (), renderer: str | None = None,
           parser: str | None = None, requires: str | None = None) -> str:
    """The Modelfile text; commands in the order `ollama show --modelfile` prints them."""
    out = [f"FROM {quote_inline(from_, 'FROM')}"]
    if template is not None:
        out.append(f"TEMPLATE {quote_block(template, 'template')}")
    if system is not None:
        out.append(f"SYSTEM {quote_block(system, 'system')}")
    if renderer:
        out.append(f"RENDERER {quote_inline(renderer, 'renderer')}")
    if parser:
        out.append(f"PARSER {quote_inline(parser, 'parser')}")
    if requires:
        out.append(f"REQUIRES {quote_inline(requires, 'requires')}")
    for name, value in (parameters or {}).items():
        for text in param_text(value):
            out.append(f"PARAMETER {name} {quote_inline(text, f'parameter {name}')}")
    if license is not None:
        out.append(f"LICENSE {quote_block(license, 'license')}")
    for m in messages:
        if m["role"] not in MESSAGE_ROLES:
            raise ModelfileError(f"message role {m['role']!r} must be one of {', '.join(MESSAGE_ROLES)}")
        out.append(f"MESSAGE {m['role']} {quote_block(m['content'], 'message content')}")
    return "\n".join(out) + "\n"


def parse(text: str) -> Modelfile:
    """Read a Modelfile the way ollama does (the subset of commands we write, plus comments)."""
    commands: list[tuple[str, str]] = []
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        cmd, _, rest = stripped.partition(" ")
        if cmd.lower() not in COMMANDS:
            raise ModelfileError(f"line {i}: command must be one of {', '.join(c.upper() for c in COMMANDS)}")
        rest = line.lstrip()[len(cmd):].lstrip(" \t")
        if cmd.lower() == "parameter":
            name, _, rest = rest.partition(" ")
            cmd = f"parameter:{name}"
        elif cmd.lower() == "message":
            role, _, rest = rest.partition(" ")
            cmd = f"message:{role}"
        collected = rest
        while True:
            value, ok = _unquote(collected.strip())
            if ok:
                break
            if i >= len(lines):
                raise ModelfileError(f"unterminated quoted value for {cmd.split(':')[0].upper()}")
            collected += "\n" + lines[i]
            i += 1
        commands.append((cmd.lower() if ":" not in cmd else cmd, value))
    froms = [v for c, v in commands if c == "from"]
    if not froms:
        raise ModelfileError("no FROM line")
    mf = Modelfile(from_=froms[0])
    for cmd, value in commands:
        if cmd.startswith("parameter:"):
            mf.parameters.append((cmd.split(":", 1)[1], value))
        elif cmd.startswith("message:"):
            mf.messages.append({"role": cmd.split(":", 1)[1], "content": value})
        elif cmd == "license":
            mf.licenses.append(value)
        elif cmd in ("template", "system", "renderer", "parser", "requires"):
            setattr(mf, cmd, value)
    return mf
