"""llama.cpp toolchain: doctor rows, the NotAvailable message, and the idempotent install."""

from __future__ import annotations

import pytest

from release import toolchain
from release.errors import NotAvailable


def test_doctor_reports_installed_toolchain():
    rows = {c: (ok, d) for c, ok, d in toolchain.doctor()}
    assert rows["llama-cpp-python"][0], rows
    assert "portable" in rows["llama-cpp-python"][1]
    assert rows["llama.cpp converter"][0], rows
    tc = toolchain.ensure_toolchain()
    assert tc.converter.name == "convert_hf_to_gguf.py"
    assert (tc.gguf_py / "gguf" / "__init__.py").is_file()
    assert tc.converter_env()["PYTHONPATH"].split(":")[0] == str(tc.gguf_py)


def test_missing_converter_names_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MOE_RELEASE_CACHE", str(tmp_path))
    with pytest.raises(NotAvailable) as exc:
        toolchain.ensure_toolchain()
    assert "python" in str(exc.value) and "-m release.toolchain --install" in str(exc.value)
    rows = {c: ok for c, ok, _ in toolchain.doctor()}
    assert rows["llama.cpp converter"] is False


def test_install_is_a_no_op_when_done(monkeypatch):
    def no_pip(*args, **kwargs):
        raise AssertionError(f"pip called: {args}")

    monkeypatch.setattr(toolchain, "_pip", no_pip)
    monkeypatch.setattr(toolchain, "build_wheel", no_pip)
    toolchain.install()


def test_unpack_converter_from_cached_sdist(tmp_path, monkeypatch):
    sdist = toolchain.sdist_path()
    if not sdist.is_file():
        pytest.skip("no cached sdist")
    monkeypatch.setenv("MOE_RELEASE_CACHE", str(tmp_path))
    dest = toolchain.unpack_converter(sdist)
    assert (dest / "convert_hf_to_gguf.py").is_file()
    assert (dest / "conversion" / "gemma.py").is_file()
    assert (dest / "gguf-py" / "gguf" / "gguf_writer.py").is_file()
    assert not (dest / "src").exists()  # only what the converter needs
    assert toolchain.unpack_converter(sdist) == dest  # idempotent
