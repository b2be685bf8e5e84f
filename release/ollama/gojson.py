"""JSON bytes exactly as Go's encoding/json writes them (json.Marshal / json.Encoder).

Ollama hashes these bytes into blob and manifest digests, so a single differing byte changes a
tag's identity. Differences from Python's json module that matter here:
- `<`, `>`, `&` are escaped as \\u003c, \\u003e, \\u0026 (Go's HTML-safe default), U+2028/U+2029 too;
  other non-ASCII is written as raw UTF-8; control characters use \\n \\r \\t \\b \\f (Go ≥ 1.22, which
  every current ollama is built with) or \\u00XX with lowercase hex.
- Floats are the shortest decimal that round-trips at the field's width (float32 for api.Options),
  positional unless the magnitude is < 1e-6 or ≥ 1e21, with no trailing ".0" on integral values.
- Maps (Python dict) have sorted keys; structs (`Struct`) keep declaration order.
- `Encoder.Encode` appends "\\n"; `Marshal` does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Float32:
    """A float that Go holds as float32 (every float field of ollama's api.Options)."""

    value: float


class Struct(tuple):
    """A Go struct: (name, value) pairs written in this order; a value of `OMIT` is left out."""


OMIT = object()

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_UNICODE_ESCAPED = {"<", ">", "&", "\u2028", "\u2029"}


def _string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ch < " " or ch in _UNICODE_ESCAPED:
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            # A lone surrogate is invalid UTF-8; Go writes the replacement character for it.
            out.append("\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _shortest_digits(value: float, bits: int) -> tuple[str, int]:
    """(digits, exponent) with value == 0.digits × 10**exponent, shortest that round-trips at `bits`."""
    import numpy as np  # lazy: numpy (≈0.1 s) only when a float32 is written, not at start-up

    # numpy's float32 formatting is the shortest round-trip (like Go's); repr is that for float64.
    text = np.format_float_scientific(np.float32(value), unique=True, trim="-") if bits == 32 else repr(value)
    _sign, digits, exp = Decimal(text).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    # Decimal gives value = int(digits) × 10**exp; convert to 0.ds × 10**point.
    point = len(digits) + int(exp)
    return ds, point


def _float(value: float, bits: int) -> str:
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {value}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    neg = value < 0
    digits, point = _shortest_digits(abs(value), bits)
    if bits == 32:
        import numpy as np  # lazy: as in _shortest_digits

        # Go compares in float32 against float32(1e-6): 1e-6 itself stays positional.
        mag32 = np.float32(abs(value))
        scientific = bool(mag32 < np.float32(1e-6) or mag32 >= np.float32(1e21))
    else:
        scientific = abs(value) < 1e-6 or abs(value) >= 1e21
    if scientific:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        e = point - 1
        # Go's %e writes at least two exponent digits, then encoding/json trims "e-07" to "e-7".
        exp = f"e{'-' if e < 0 else '+'}{abs(e):02d}"
        if exp.startswith("e-0"):
            exp = "e-" + exp[3:]
        text = mant + exp
    elif point <= 0:
        text = "0." + "0" * (-point) + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    return ("-" if neg else "") + text


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, Float32):
        out.append(_float(value.value, 32))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_float(value, 64))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Struct):
        out.append("{")
        first = True
        for name, item in value:
            if item is OMIT:
                continue
            if not first:
                out.append(",")
            first = False
            out.append(_string(name))
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, Mapping):
        out.append("{")
        # Go sorts map keys by their UTF-8 bytes.
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-8", "surrogatepass"))):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, Sequence):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"gojson: cannot encode {type(value).__name__}")


def marshal(value: Any) -> bytes:
    """Bytes of Go's json.Marshal(value)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8", "surrogatepass")


def encode(value: Any) -> bytes:
    """Bytes of Go's json.NewEncoder(w).Encode(value): Marshal plus a newline."""
    return marshal(value) + b"\n"
