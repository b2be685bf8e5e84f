"""The header writer reproduces the safetensors library's bytes, which is what makes identity prunes exact."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from release.errors import InputError
from release.prune.jsontext import dump_object, object_style, replace_value, value_span
from release.prune.safetensors_header import encode_header, read_header

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool, torch.float8_e4m3fn, torch.float8_e5m2, torch.uint16, torch.uint32]


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}, {"format": "pt", "note": "ünï \"quoted\" / ok"}])
def test_header_round_trip_is_byte_identical(tmp_path: Path, metadata: dict[str, str] | None) -> None:
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for i, dtype in enumerate(DTYPES):
        t = torch.randint(0, 2, (3, i + 1), generator=gen).to(dtype)
        tensors[f"layers.{i}.w_{str(dtype).split('.')[-1]}"] = t
    tensors["name with spaces, ünïcödé and \"quotes\""] = torch.zeros(2)
    tensors["scalar"] = torch.tensor(1.5)
    tensors["empty"] = torch.zeros(0, 4)
    path = tmp_path / "t.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = read_header(path)
    assert encode_header(list(header.entries), header.metadata_json) == raw[:8 + n]
    assert {e.name for e in header.entries} == set(tensors)


def test_header_with_sub_byte_dtype_sizes(tmp_path: Path) -> None:
    """F4 packs two elements per byte: [E, 3, 4] F4 is 6 bytes per expert, sliceable on dim 0."""
    from release.prune.safetensors_header import TensorEntry, expected_nbytes

    assert expected_nbytes("F4", (8, 3, 4)) == 48
    entries = [TensorEntry("w", "F4", (8, 3, 4), 0, 48)]
    path = tmp_path / "f4.safetensors"
    path.write_bytes(encode_header(entries, None) + bytes(48))
    assert read_header(path).entries == tuple(entries)
    path.write_bytes(encode_header([TensorEntry("w", "F4", (8, 3, 4), 0, 96)], None) + bytes(96))
    with pytest.raises(InputError, match="needs 48 bytes"):
        read_header(path)


def test_raw_json_edits_keep_every_other_byte() -> None:
    text = ('{\n  "a": 1,\n  "text_config": {"num_experts": 128, "nested": {"num_experts": 7}},\n'
            '  "num_experts": 5,\n  "f": 1.0e-6\n}\n')
    out = replace_value(text, ("text_config", "num_experts"), "98")
    assert out == text.replace('"num_experts": 128', '"num_experts": 98')
    assert text[slice(*value_span(text, ("f",)))] == "1.0e-6"  # number spelling untouched
    with pytest.raises(KeyError):
        value_span(text, ("text_config", "missing"))
    index = '{\n  "metadata": {},\n  "weight_map": {\n    "a": "1",\n    "b": "2"\n  }\n}'
    style = object_style(index, ("weight_map",))
    assert replace_value(index, ("weight_map",), dump_object([("a", "1"), ("b", "2")], style,
                                                              ensure_ascii=True)) == index
