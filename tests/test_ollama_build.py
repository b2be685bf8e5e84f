"""Ollama tag build: byte-exact blobs against the measured reference vectors, store layout, Modelfiles."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from ollama_helpers import V4_PARAMS, make_gguf, make_release

from release.errors import InputError
from release.ollama import gojson, layers, modelfile
from release.ollama.build import artifacts, build_tags, load_builds

PARAMS_VECTOR = "sha256:2769392e6952746d5bb32fc694cc0f2e2186a35063435a12f0fb4d13efcbd340"
CONFIG_VECTOR = "sha256:b13a38e60b86ea465cab4cf855f782c3251bf57b0eff5e66b3c18481ca99fe31"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_params_vector() -> None:
    data = layers.params_blob(layers.typed_params(V4_PARAMS))
    assert data.endswith(b"\n") and b"\\u003cturn|\\u003e" in data
    assert sha(data) == PARAMS_VECTOR


def test_config_vector() -> None:
    data = layers.config_blob(family="gemma4", model_type=layers.human_number(40),
                              file_type=layers.file_type_name(15), renderer="gemma4", parser="gemma4")
    assert len(data) == 189
    assert sha(data) == CONFIG_VECTOR


@pytest.mark.parametrize(("value", "f32", "f64"), [
    (0.95, "0.95", "0.95"), (0.123456789, "0.12345679", "0.123456789"), (1.0, "1", "1"),
    (1e-7, "1e-7", "1e-7"), (1e21, "1e+21", "1e+21"), (-2.5, "-2.5", "-2.5"), (123456789.0, "123456790", "123456789"),
    (0.000001, "0.000001", "0.000001"),
])
def test_go_floats(value: float, f32: str, f64: str) -> None:
    assert gojson.marshal(gojson.Float32(value)).decode() == f32
    assert gojson.marshal(value).decode() == f64


def test_go_strings_and_order() -> None:
    got = gojson.marshal({"b": "<&>\u2028é\x01\b\t\"\\", "a": [1, True, None]})
    assert got == b'{"a":[1,true,null],"b":"\\u003c\\u0026\\u003e\\u2028\xc3\xa9\\u0001\\b\\t\\"\\\\"}'
    assert gojson.encode(gojson.Struct((("z", 1), ("a", gojson.OMIT), ("b", 2)))) == b'{"z":1,"b":2}\n'


def test_human_number() -> None:
    assert [layers.human_number(n) for n in (40, 1000, 1_234_567, 26_000_000, 19_912_000_000, 26_000_000_000)] == \
        ["40", "1K", "1.23M", "26M", "19.9B", "26B"]


def test_param_typing_like_ollama() -> None:
    typed = layers.typed_params({"temperature": 1, "top_k": 64, "use_mmap": True, "stop": "x"})
    assert layers.params_blob(typed) == b'{"stop":["x"],"temperature":1,"top_k":64,"use_mmap":true}\n'
    with pytest.raises(ValueError, match="unknown parameter"):
        layers.typed_params({"num_ctxx": 1})
    with pytest.raises(ValueError, match="invalid int"):
        layers.typed_params({"num_ctx": 1.5})


def test_build_layout_and_bytes(tmp_path: Path) -> None:
    section, ggufs, pipeline = make_release(tmp_path, messages=[{"role": "user", "content": "hi <3"}])
    out = tmp_path / "dist" / "demo" / "ollama"
    builds = build_tags(section, ggufs, out, pipeline_dir=pipeline)
    assert [b.tag for b in builds] == ["Q4_K_M", "Q6_K", "CD-Q3_K_M"]
    q4 = builds[0]
    # ollama's layer order: model, template, (system), license, params, messages.
    assert [b.media_type.rsplit(".", 1)[-1] for b in q4.layers] == ["model", "template", "license", "params",
                                                                     "messages"]
    assert q4.layers[0].digest == sha(ggufs["Q4_K_M"].read_bytes())
    assert q4.layers[3].digest == PARAMS_VECTOR
    assert q4.config.digest == CONFIG_VECTOR  # 40 elements, ftype 15, gemma4 defaults
    assert builds[2].facts["file_type"] == "Q3_K_M" and builds[1].facts["file_type"] == "Q6_K"
    # Every blob in the store hashes to its name.
    for b in builds:
        for blob in b.blobs:
            data = b.blob_file(blob).read_bytes()
            assert sha(data) == blob.digest and len(data) == blob.size
    # The model blob is the GGUF itself (hardlinked: same filesystem).
    assert os.stat(q4.blob_file(q4.layers[0])).st_ino == os.stat(ggufs["Q4_K_M"]).st_ino
    # On disk: json.Encoder (newline); registry: json.Marshal (no newline); latest = alias of Q4_K_M.
    mdir = out / "manifests" / "registry.ollama.ai" / "mannix" / "gemma4-98e-v4"
    assert (mdir / "Q4_K_M").read_bytes() == q4.manifest + b"\n"
    assert (mdir / "latest").read_bytes() == q4.manifest + b"\n"
    assert sha(q4.manifest) == q4.manifest_digest != q4.local_manifest_digest
    doc = json.loads(q4.manifest)
    assert list(doc) == ["schemaVersion", "mediaType", "config", "layers"]
    assert list(doc["layers"][0]) == ["mediaType", "digest", "size"]
    # Reloading build.json gives the same builds.
    model, latest, again = load_builds(out)
    assert (model, latest) == ("mannix/gemma4-98e-v4", "Q4_K_M")
    assert [b.manifest for b in again] == [b.manifest for b in builds]
    arts = artifacts(builds, registry=section.registry, name=section.model, dist_release=out.parent)
    assert arts[0].id == "ollama:Q4_K_M" and arts[0].root == "ollama" and arts[0].destination.tag == "Q4_K_M"


def test_modelfile_reproduces_the_tag(tmp_path: Path) -> None:
    """What `ollama create -f Modelfile` would read gives the same blobs as our direct build."""
    section, ggufs, pipeline = make_release(tmp_path, system="system.txt",
                                            messages=[{"role": "assistant", "content": 'says "hi"\n'}])
    (pipeline / "system.txt").write_text('You are "helpful".\n  indented\n')
    out = tmp_path / "dist" / "demo" / "ollama"
    q4 = build_tags(section, ggufs, out, pipeline_dir=pipeline)[0]
    mf = modelfile.parse(Path(q4.modelfile).read_text())
    assert (Path(q4.modelfile).parent / mf.from_).resolve() == ggufs["Q4_K_M"].resolve()
    texts = mf.params_texts()
    typed = {k: layers.type_param(k, v) for k, v in texts.items()}
    by_type = {b.media_type: b for b in q4.layers}
    assert sha(layers.params_blob(typed)) == by_type[layers.MT_PARAMS].digest
    assert sha(mf.template.encode()) == by_type[layers.MT_TEMPLATE].digest
    assert sha(mf.system.encode()) == by_type[layers.MT_SYSTEM].digest
    assert sha(mf.licenses[0].encode()) == by_type[layers.MT_LICENSE].digest
    assert sha(layers.messages_blob(mf.messages)) == by_type[layers.MT_MESSAGES].digest
    # No RENDERER/PARSER lines: ollama applies the gemma4 defaults itself, as our config has them.
    assert mf.renderer is None and q4.facts["renderer"] == "gemma4"


def test_gemma4_stop_default_only_without_stop(tmp_path: Path) -> None:
    section, ggufs, pipeline = make_release(tmp_path, parameters={"temperature": 1.0})
    q4 = build_tags(section, ggufs, tmp_path / "o", pipeline_dir=pipeline)[0]
    params = next(b for b in q4.layers if b.media_type == layers.MT_PARAMS)
    assert q4.blob_file(params).read_bytes() == b'{"stop":["\\u003cturn|\\u003e"],"temperature":1}\n'
    section.parameters = {"stop": ["<eos>"]}
    q4 = build_tags(section, ggufs, tmp_path / "o", pipeline_dir=pipeline)[0]
    params = next(b for b in q4.layers if b.media_type == layers.MT_PARAMS)
    assert q4.blob_file(params).read_bytes() == b'{"stop":["\\u003ceos\\u003e"]}\n'


def test_explicit_renderer_and_non_gemma(tmp_path: Path) -> None:
    section, ggufs, pipeline = make_release(tmp_path, renderer="gemma4", parser="gemma4", requires="0.21.0")
    q4 = build_tags(section, ggufs, tmp_path / "o", pipeline_dir=pipeline)[0]
    cfg = json.loads(q4.blob_file(q4.config).read_bytes())
    assert (cfg["renderer"], cfg["parser"], cfg["requires"]) == ("gemma4", "gemma4", "0.21.0")
    text = Path(q4.modelfile).read_text()
    assert "RENDERER gemma4" in text and "REQUIRES 0.21.0" in text
    llama = make_gguf(tmp_path / "llama.gguf", arch="llama", file_type=27, n_params=3_000_000)
    section2, _, _ = make_release(tmp_path / "b", parameters={"top_k": 40})
    section2.tags = {"IQ3_M": "IQ3_M"}
    section2.latest = "IQ3_M"
    b = build_tags(section2, {"IQ3_M": llama}, tmp_path / "o2", pipeline_dir=tmp_path / "b" / "pipeline")[0]
    cfg = b.blob_file(b.config).read_bytes()
    assert cfg == (b'{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"3M",'
                   b'"file_type":"IQ3_M","architecture":"amd64","os":"linux"}\n')


def test_rebuild_is_stable_and_prunes(tmp_path: Path) -> None:
    section, ggufs, pipeline = make_release(tmp_path)
    out = tmp_path / "o"
    first = build_tags(section, ggufs, out, pipeline_dir=pipeline)
    section.tags = {"Q4_K_M": "Q4_K_M"}
    second = build_tags(section, ggufs, out, pipeline_dir=pipeline)
    assert second[0].manifest == first[0].manifest
    mdir = out / "manifests" / "registry.ollama.ai" / "mannix" / "gemma4-98e-v4"
    assert sorted(p.name for p in mdir.iterdir()) == ["Q4_K_M", "latest"]
    assert not first[1].blob_file(first[1].layers[0]).exists()  # Q6_K's model blob is gone


def test_bad_inputs_name_the_field(tmp_path: Path) -> None:
    section, ggufs, pipeline = make_release(tmp_path, parameters={"temprature": 0.5}, system="missing.txt")
    with pytest.raises(InputError) as err:
        build_tags(section, ggufs, tmp_path / "o", pipeline_dir=pipeline)
    fields = {p.field for p in err.value.problems}
    assert {"ollama.parameters.temprature", "ollama.system"} <= fields
    section, ggufs, pipeline = make_release(tmp_path / "x")
    del ggufs["Q6_K"]
    with pytest.raises(InputError, match="no GGUF file for tier"):
        build_tags(section, ggufs, tmp_path / "o", pipeline_dir=pipeline)
    bad = make_gguf(tmp_path / "bad.gguf", file_type=99)
    with pytest.raises(InputError, match=r"general\.file_type"):
        layers.read_gguf_facts(bad)


def test_modelfile_quoting_limits() -> None:
    with pytest.raises(modelfile.ModelfileError):
        modelfile.quote_block('ends with quotes"""\nmore', "template")
    text = 'has """ inside a line\nand "quotes"\n'
    assert modelfile.parse(f"FROM x\nTEMPLATE {modelfile.quote_block(text, 't')}\n").template == text
    rendered = modelfile.render(from_="a b.gguf", parameters={"stop": [" lead", "<x>"]})
    mf = modelfile.parse(rendered)
    assert mf.from_ == "a b.gguf" and mf.params_texts()["stop"] == [" lead", "<x>"]


def test_what_ollamas_modelfile_reader_would_change_is_refused_or_matched(tmp_path: Path) -> None:
    # Non-printable runes vanish in ollama's reader: refuse rather than build a different tag.
    with pytest.raises(modelfile.ModelfileError, match=r"U\+200B"):
        modelfile.quote_block("zero\u200bwidth", "template")
    with pytest.raises(modelfile.ModelfileError, match="carriage"):
        modelfile.quote_block("a\r\nb", "template")
    tabbed = modelfile.quote_block("tab\there", "system")
    assert modelfile.parse(f"FROM x\nSYSTEM {tabbed}\n").system == "tab\there"
    # Deprecated parameters are dropped from the params blob; REQUIRES loses its "v".
    section, ggufs, pipeline = make_release(tmp_path, parameters={"temperature": 1, "mirostat": 2},
                                            requires="v0.21.0")
    q4 = build_tags(section, ggufs, tmp_path / "o", pipeline_dir=pipeline)[0]
    params = next(b for b in q4.layers if b.media_type == layers.MT_PARAMS)
    assert q4.blob_file(params).read_bytes() == b'{"stop":["\\u003cturn|\\u003e"],"temperature":1}\n'
    assert json.loads(q4.blob_file(q4.config).read_bytes())["requires"] == "0.21.0"
    section.requires = "latest"
    with pytest.raises(InputError, match="semantic version"):
        build_tags(section, ggufs, tmp_path / "o", pipeline_dir=pipeline)
    section.requires = ""
    (pipeline / "template.gotmpl").write_text("nbsp\u00a0here")
    with pytest.raises(InputError, match=r"U\+00A0"):
        build_tags(section, ggufs, tmp_path / "o", pipeline_dir=pipeline)


def test_empty_texts_give_no_layer_and_typical_p_is_refused(tmp_path: Path) -> None:
    section, ggufs, pipeline = make_release(tmp_path, system="empty.txt")
    (pipeline / "empty.txt").write_text("")
    q4 = build_tags(section, ggufs, tmp_path / "o", pipeline_dir=pipeline)[0]
    assert layers.MT_SYSTEM not in {b.media_type for b in q4.layers}
    section.parameters = {"typical_p": 0.9}
    with pytest.raises(InputError, match="typical_p"):
        build_tags(section, ggufs, tmp_path / "o", pipeline_dir=pipeline)
