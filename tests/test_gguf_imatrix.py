"""The imatrix file: llama-imatrix's GGUF layout, and the normalisation llama-quantize applies when loading."""

from __future__ import annotations

import numpy as np
import pytest

from release.errors import InputError
from release.gguf.imatrix import Stats, _filter_name, load_imatrix, write_imatrix


def test_round_trip_normalises_like_llama_quantize(tmp_path):
    import gguf

    values = np.arange(12, dtype=np.float64).reshape(3, 4)  # 3 experts × ne0 4
    stats = {
        "blk.0.ffn_gate_up_exps.weight": Stats(values, np.array([2, 0, 4])),
        "blk.0.attn_q.weight": Stats(np.full((1, 4), 6.0), np.array([3])),
    }
    path = tmp_path / "m-imatrix.gguf"
    write_imatrix(path, stats, dataset="calib.txt", chunk_count=5, chunk_size=64)
    r = gguf.GGUFReader(str(path))
    assert "general.architecture" not in r.fields  # as llama-imatrix writes it
    assert r.fields["general.type"].contents() == "imatrix"
    assert r.fields["imatrix.chunk_size"].contents() == 64
    shapes = {t.name: [int(x) for x in t.shape] for t in r.tensors}
    assert shapes["blk.0.ffn_gate_up_exps.weight.in_sum2"] == [4, 3]
    assert shapes["blk.0.ffn_gate_up_exps.weight.counts"] == [1, 3]
    assert shapes["blk.0.attn_q.weight.in_sum2"] == [4] and shapes["blk.0.attn_q.weight.counts"] == [1]
    # llama-imatrix's order: weights sorted by name, each as in_sum2 then counts
    assert [t.name for t in r.tensors] == [f"{n}.{k}" for n in sorted(stats) for k in ("in_sum2", "counts")]

    data, meta = load_imatrix(path)
    assert meta["chunks"] == 5 and meta["datasets"] == ["calib.txt"] and meta["entries"] == 2
    exps = data["blk.0.ffn_gate_up_exps.weight"].reshape(3, 4)
    assert np.allclose(exps[0], values[0] / 2)
    assert np.all(exps[1] == 1.0)  # an expert that saw no token: neutral importance
    assert np.allclose(exps[2], values[2] / 4)
    assert np.allclose(data["blk.0.attn_q.weight"], 2.0)


def test_refuses_a_model_file(tmp_path):
    import gguf

    path = tmp_path / "model.gguf"
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_tensor("x", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(InputError, match=r"general\.type"):
        load_imatrix(path)


def test_filter_name():
    assert _filter_name("CUDA0#blk.0.attn_k.weight#0") == "blk.0.attn_k.weight"
    assert _filter_name("blk.0.attn_k.weight") == "blk.0.attn_k.weight"
