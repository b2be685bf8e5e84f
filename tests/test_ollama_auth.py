"""ollama.com signed auth: the measured test vector, key loading, no secret in reprs or errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

# The signing key needs `cryptography` (pinned in pyproject); a machine without it skips rather than
# breaking collection of every other test.
pytest.importorskip("cryptography", reason="cryptography==50.0.2 is not installed")
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from release.errors import InputError
from release.ollama.auth import Challenge, load_key, parse_challenge, signed_data, token_url

VECTOR_URL = ("https://registry.ollama.ai/v2/token?nonce=AAAAAAAAAAAAAAAAAAAAAA&scope=repository%3Amannix%2F"
              "gemma4-98e-v4%3Apush%2Cpull&service=registry.ollama.ai&ts=1790000000")
VECTOR_TAIL = b",ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ=="


def test_token_url_and_signed_data_vector() -> None:
    header = ('Bearer realm="https://registry.ollama.ai/v2/token",service="registry.ollama.ai",'
              'scope="repository:mannix/gemma4-98e-v4:push,pull"')
    ch = parse_challenge(header)
    assert ch == Challenge("https://registry.ollama.ai/v2/token", "registry.ollama.ai",
                           "repository:mannix/gemma4-98e-v4:push,pull")
    url = token_url(ch, nonce=bytes(16), ts=1790000000)
    assert url == VECTOR_URL
    assert signed_data("GET", url) == b"GET," + VECTOR_URL.encode() + VECTOR_TAIL
    assert parse_challenge('Basic realm="x"') is None


def test_several_scopes_each_get_a_parameter() -> None:
    ch = Challenge("https://r.example/v2/token", "svc", "repository:a/b:pull repository:c/d:pull")
    url = token_url(ch, nonce=bytes(16), ts=1)
    assert "scope=repository%3Aa%2Fb%3Apull&scope=repository%3Ac%2Fd%3Apull&service=svc&ts=1" in url


def _pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())


def test_key_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pem = _pem()
    path = tmp_path / "k"
    path.write_bytes(pem)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OLLAMA_KEY", raising=False)
    with pytest.raises(InputError, match="id_ed25519"):
        load_key()
    (tmp_path / "home" / ".ollama").mkdir(parents=True)
    (tmp_path / "home" / ".ollama" / "id_ed25519").write_bytes(pem)
    home_key = load_key()
    monkeypatch.setenv("OLLAMA_KEY", str(path))
    assert load_key().fingerprint == home_key.fingerprint and "OLLAMA_KEY=" in load_key().source
    monkeypatch.setenv("OLLAMA_KEY", pem.decode())
    key = load_key()
    assert key.source == "OLLAMA_KEY (key text)"
    secret = pem.decode().splitlines()[1]
    assert secret not in repr(key) and secret not in key.public_line
    # The signature verifies with the public key, over exactly the signed data.
    auth = key.authorization(b"data")
    pub_b64, sig_b64 = auth.split(":")
    assert pub_b64 == key.public_line.split()[1]
    raw_pub = base64.b64decode(pub_b64)[-32:]
    Ed25519PublicKey.from_public_bytes(raw_pub).verify(base64.b64decode(sig_b64), b"data")


def test_bad_key_text_names_source_only(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0c2VjcmV0\n-----END OPENSSH PRIVATE KEY-----"
    monkeypatch.setenv("OLLAMA_KEY", fake)
    with pytest.raises(InputError) as err:
        load_key()
    assert "OLLAMA_KEY (key text)" in str(err.value) and "c2VjcmV0c2VjcmV0" not in str(err.value)
