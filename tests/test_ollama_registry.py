"""Ollama push/pull/verify against Debian's docker-registry on 127.0.0.1 (started by the tests),
with a loopback proxy injecting faults and, for the signed-auth tests, acting as ollama.com's token
endpoint (verifying the ed25519 signature with the public key)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import ssl
from pathlib import Path

import pytest
from ollama_helpers import make_release
from registry_fixture import (
    Registry,
    registry_fixture,  # noqa: F401 - registers the `registry` fixture
)
from registry_proxy import Fault, fault_proxy

from release.errors import InputError, RemoteError
from release.ollama.build import TagBuild, build_tags
from release.ollama.registry import RegistryClient, plan_tags, pull_tag, push_tags, verify_tags

PART = 1000  # small parts so the model blob goes in several PATCHes


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[TagBuild]:
    tmp = tmp_path_factory.mktemp("ollama-build")
    section, ggufs, pipeline = make_release(tmp, extra_bytes=4500)
    # Two tags on one GGUF: its blob must be uploaded once.
    section.tags = {"Q4_K_M": "Q4_K_M", "Q4_K_M-alt": "Q4_K_M", "Q6_K": "Q6_K", "CD-Q3_K_M": "CD-Q3"}
    return build_tags(section, ggufs, tmp / "ollama", pipeline_dir=pipeline)


def client(url: str, **kw: object) -> RegistryClient:
    return RegistryClient(url, part_size=PART, backoff=0.01, **kw)  # type: ignore[arg-type]


def test_push_pull_verify_and_rerun(registry: Registry, built: list[TagBuild], tmp_path: Path) -> None:
    name = "mannix/e2e"
    with fault_proxy(registry.url) as (url, st):
        c = client(url)
        result = push_tags(c, name, built, "Q4_K_M")
        model = built[0].layers[0]
        assert built[1].layers[0] == model
        # The shared GGUF went up once, in several parts, with ollama's header shapes.
        patches = st.requests("PATCH")
        assert result.blobs[model.digest] == "uploaded" and result.bytes_sent[model.digest] == model.size
        unique = {x.digest: x for t in built for x in t.blobs}
        assert sum(s.length for s in patches) == sum(b.size for b in unique.values())
        assert len(patches) > model.size // PART
        assert result.manifests_put == ["Q4_K_M", "Q4_K_M-alt", "Q6_K", "CD-Q3_K_M", "latest"]
        assert len(st.requests("PUT", "/manifests/latest")) == 1
        # Second publish: nothing uploaded, no manifest PUT.
        n_patch, n_put = len(st.requests("PATCH")), len(st.requests("PUT"))
        again = push_tags(c, name, built, "Q4_K_M")
        assert again.total_sent == 0 and set(again.blobs.values()) == {"exists"}
        assert again.manifests_put == [] and len(again.manifests_unchanged) == 5
        assert len(st.requests("PATCH")) == n_patch and len(st.requests("PUT")) == n_put
        assert {p.action for p in plan_tags(c, name, built, "Q4_K_M")} == {"unchanged"}
    # Read back directly from the registry (no proxy): every digest and size, blobs hashed.
    c = client(registry.url)
    assert verify_tags(c, name, built, "Q4_K_M", deep=True) == []
    dest = tmp_path / "pulled"
    for ref in ("Q6_K", "latest"):
        mpath = pull_tag(c, name, ref, dest)
        want = next(b for b in built if b.tag == ("Q4_K_M" if ref == "latest" else ref))
        assert mpath.read_bytes() == want.manifest  # registry bytes verbatim, as `ollama pull` writes
        for blob in want.blobs:
            data = (dest / "blobs" / blob.digest.replace(":", "-")).read_bytes()
            assert "sha256:" + hashlib.sha256(data).hexdigest() == blob.digest and len(data) == blob.size
    got = c.get_manifest(name, "latest")
    assert got is not None and got[1] == built[0].manifest_digest
    tags = json.loads(c.request("GET", f"/v2/{name}/tags/list").body)["tags"]
    assert sorted(tags) == sorted(["latest", "Q4_K_M", "Q4_K_M-alt", "Q6_K", "CD-Q3_K_M"])


def test_cross_repo_mount(registry: Registry, built: list[TagBuild]) -> None:
    c = client(registry.url)
    push_tags(c, "mannix/mount-src", built[:1], None)
    result = push_tags(c, "mannix/mount-dst", built[:1], None, mount_from=["mannix/mount-src"])
    assert set(result.blobs.values()) == {"mounted"} and result.total_sent == 0


@pytest.mark.parametrize("fault", [
    Fault("PATCH", r"/blobs/uploads/", "500", times=2),
    Fault("PATCH", r"/blobs/uploads/", "429", times=1),
    Fault("PATCH", r"/blobs/uploads/", "reset", times=1),
    Fault("PATCH", r"/blobs/uploads/", "reset_mid_body", times=1),
    Fault("PATCH", r"/blobs/uploads/", "reset_after", times=2),
    Fault("PUT", r"/blobs/uploads/.*digest=", "reset_after", times=1),
    Fault("PUT", r"/blobs/uploads/.*digest=", "503", times=1),
    Fault("HEAD", r"/blobs/", "503", times=3),
    Fault("PUT", r"/manifests/", "reset_after", times=1),
], ids=lambda f: f"{f.method}-{f.action}")
def test_faults_end_with_correct_tags(registry: Registry, built: list[TagBuild], fault: Fault) -> None:
    name = f"faults/{fault.method.lower()}-{fault.action.replace('_', '-')}-{fault.path.count('digest')}"
    # Let the first PATCH through so the fault hits mid-upload, after some parts landed.
    faults = [Fault("PATCH", r"/blobs/uploads/", "pass", times=1), fault] if fault.method == "PATCH" else [fault]
    with fault_proxy(registry.url, faults=faults) as (url, _st):
        push_tags(client(url), name, built[:2], "Q4_K_M")
        assert fault.fired == fault.times
    assert verify_tags(client(registry.url), name, built[:2], "Q4_K_M", deep=True) == []


def test_next_run_resumes_an_interrupted_upload(registry: Registry, built: list[TagBuild], tmp_path: Path) -> None:
    name = "faults/resume"
    state = tmp_path / "uploads.json"
    model = built[0].layers[0]
    faults = [Fault("PATCH", r"/blobs/uploads/", "pass", times=3), Fault("PATCH", r"/blobs/uploads/", "400")]
    with fault_proxy(registry.url, faults=faults) as (url, st):
        with pytest.raises(RemoteError, match="HTTP 400"):
            push_tags(client(url, state_file=state), name, built[:1], "Q4_K_M")
        assert "@" + model.digest in state.read_text()
        before = len(st.requests("PATCH"))
        second = push_tags(client(url, state_file=state), name, built[:1], "Q4_K_M")
        # The three parts that landed in the first run are not sent again.
        assert second.bytes_sent[model.digest] == model.size - 3 * PART
        assert sum(s.length for s in st.requests("PATCH")[before:]) < sum(b.size for b in built[0].blobs)
    assert model.digest not in state.read_text()
    assert verify_tags(client(registry.url), name, built[:1], "Q4_K_M", deep=True) == []


def test_persistent_failure_leaves_no_tag(registry: Registry, built: list[TagBuild]) -> None:
    name = "faults/persistent"
    with fault_proxy(registry.url, faults=[Fault("PATCH", r"/blobs/uploads/", "500", times=10_000)]) as (url, st):
        with pytest.raises(RemoteError, match=r"kept failing|gave up"):
            push_tags(RegistryClient(url, part_size=PART, backoff=0.001, retries=2), name, built, "Q4_K_M")
        assert st.requests("PUT", "/manifests/") == []
    c = client(registry.url)
    assert all(c.get_manifest(name, ref) is None for ref in ("Q4_K_M", "latest"))


def test_manifest_never_sent_for_missing_blob(registry: Registry, built: list[TagBuild]) -> None:
    """A registry that claims a commit it never did: the HEAD check catches it before any manifest."""
    name = "faults/liar"
    faults = [Fault("PUT", r"/blobs/uploads/.*digest=", "fake_201", times=10_000)]
    with fault_proxy(registry.url, faults=faults) as (url, st):
        with pytest.raises(RemoteError, match=r"size None"):
            push_tags(client(url), name, built[:1], "Q4_K_M")
        assert st.requests("PUT", "/manifests/") == []
    assert client(registry.url).get_manifest(name, "Q4_K_M") is None


def test_ollama_com_style_redirected_parts(registry: Registry, built: list[TagBuild], tmp_path: Path) -> None:
    """307 per part: the part goes to the storage URL without auth, the next URL from Docker-Upload-Location."""
    key, pub = _keypair(tmp_path, "k")
    # With signed auth on: the storage URL refuses any Authorization header (the token must not leak there).
    with fault_proxy(registry.url, redirect_uploads=True, auth_keys=[pub]) as (url, st):
        push_tags(client(url, key_path=key), "redirect/model", built[:1], "Q4_K_M")
        model = built[0].layers[0]
        assert st.storage_puts >= model.size // PART
        final = st.requests("PUT", r"digest=sha256:" + model.hex)
        assert final and re.search(r"etag=[0-9a-f]{32}-\d+", final[-1].path)
    assert verify_tags(client(registry.url), "redirect/model", built[:1], "Q4_K_M", deep=True) == []


def test_early_307_before_the_part_is_read(registry: Registry, tmp_path: Path) -> None:
    """A server that answers 307 without reading the part (then drains and closes) loses no answer."""
    section, ggufs, pipeline = make_release(tmp_path, extra_bytes=6 << 20, model="redirect/early")
    section.tags = {"Q4_K_M": "Q4_K_M"}
    builds = build_tags(section, ggufs, tmp_path / "ollama", pipeline_dir=pipeline)
    with fault_proxy(registry.url, redirect_uploads="early") as (url, st):
        push_tags(RegistryClient(url, part_size=4 << 20, backoff=0.01), "redirect/early", builds, "Q4_K_M")
        model = builds[0].layers[0]
        assert st.storage_puts == 2 + (len(builds[0].blobs) - 1)  # two model parts, one per small blob
        # How much of each part went out before the answer was seen depends on timing and socket
        # buffers, so it is not asserted; that every answer was used is (no PATCH was retried).
        assert model.size > 4 << 20 and len(st.requests("PATCH")) == st.storage_puts
    assert verify_tags(client(registry.url), "redirect/early", builds, "Q4_K_M", deep=True) == []


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    import datetime

    pytest.importorskip("cryptography", reason="cryptography==50.0.2 is not installed")

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.mark.parametrize("redirect", [False, "early"])
def test_over_tls_with_signed_auth(registry: Registry, tmp_path: Path, redirect: bool | str) -> None:
    """HTTPS + signed auth + (optionally) 307s answered before the part is read, as on ollama.com."""
    cert, cert_key = _self_signed(tmp_path)
    key, pub = _keypair(tmp_path, "k")
    section, ggufs, pipeline = make_release(tmp_path, extra_bytes=3 << 20, model=f"tls/m{int(bool(redirect))}")
    section.tags = {"Q4_K_M": "Q4_K_M"}
    builds = build_tags(section, ggufs, tmp_path / "ollama", pipeline_dir=pipeline)
    ctx = ssl.create_default_context(cafile=str(cert))
    with fault_proxy(registry.url, tls=(cert, cert_key), auth_keys=[pub], redirect_uploads=redirect) as (url, st):
        assert url.startswith("https://")
        c = RegistryClient(url, part_size=1 << 20, backoff=0.01, key_path=key, ssl_context=ctx, timeout=20)
        push_tags(c, section.model, builds, "Q4_K_M")
        assert st.token_requests >= 1
        assert verify_tags(c, section.model, builds, "Q4_K_M", deep=True) == []
        if redirect:
            assert st.storage_puts >= 4


def test_plain_http_only_for_loopback() -> None:
    with pytest.raises(InputError, match="insecure"):
        RegistryClient("http://registry.example.org:5000")
    assert RegistryClient("http://registry.example.org:5000", insecure=True).base.startswith("http://")
    assert RegistryClient("127.0.0.1:5000", insecure=True).base == "http://127.0.0.1:5000"
    assert RegistryClient("registry.ollama.ai").base == "https://registry.ollama.ai"


# ---- signed auth -----------------------------------------------------------------------------------

def _keypair(tmp: Path, name: str) -> tuple[Path, bytes]:
    pytest.importorskip("cryptography", reason="cryptography==50.0.2 is not installed")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    from release.ollama.auth import SigningKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    path = tmp / name
    path.write_bytes(pem)
    return path, SigningKey(pem, str(path)).public_wire


def test_signed_auth_push(registry: Registry, built: list[TagBuild], tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    good, good_pub = _keypair(tmp_path, "id_ed25519")
    with fault_proxy(registry.url, auth_keys=[good_pub]) as (url, st):
        # The key from OLLAMA_KEY given as key text (how a CI secret arrives).
        monkeypatch.setenv("OLLAMA_KEY", good.read_text())
        c = client(url)
        push_tags(c, "signed/model", built[:1], "Q4_K_M")
        assert st.token_requests >= 1 and st.tokens
        assert verify_tags(c, "signed/model", built[:1], "Q4_K_M") == []
    secret_line = good.read_text().splitlines()[1]
    assert secret_line not in caplog.text
    assert not any(token in caplog.text for token in st.tokens)


def test_token_expiry_mid_upload(registry: Registry, built: list[TagBuild], tmp_path: Path) -> None:
    key, pub = _keypair(tmp_path, "k")
    faults = [Fault("PATCH", r"/blobs/uploads/", "pass", times=2), Fault("PATCH", r"/blobs/uploads/", "revoke_tokens"),
              Fault("PUT", r"digest=", "revoke_tokens")]
    with fault_proxy(registry.url, auth_keys=[pub], faults=faults) as (url, st):
        push_tags(client(url, key_path=key), "signed/expiry", built[:1], "Q4_K_M")
        assert st.token_requests >= 3 and all(f.fired == f.times for f in faults)
    assert verify_tags(client(registry.url), "signed/expiry", built[:1], "Q4_K_M", deep=True) == []


def test_signed_auth_wrong_key(registry: Registry, built: list[TagBuild], tmp_path: Path) -> None:
    _, good_pub = _keypair(tmp_path, "good")
    wrong, _ = _keypair(tmp_path, "wrong")
    with fault_proxy(registry.url, auth_keys=[good_pub]) as (url, st):
        with pytest.raises(RemoteError) as err:
            push_tags(client(url, key_path=wrong), "signed/wrong", built[:1], "Q4_K_M")
        assert st.requests("PATCH") == [] and st.requests("PUT") == []
    msg = str(err.value)
    assert "refused the Ollama key" in msg and str(wrong) in msg and "SHA256:" in msg
    assert wrong.read_text().splitlines()[1] not in msg


def test_missing_key_is_input_error(registry: Registry, built: list[TagBuild], tmp_path: Path) -> None:
    _, good_pub = _keypair(tmp_path, "good")
    with fault_proxy(registry.url, auth_keys=[good_pub]) as (url, _st), pytest.raises(InputError, match="nokey"):
        push_tags(client(url, key_path=tmp_path / "nokey"), "signed/nokey", built[:1], None)


def test_plan_and_publish_from_build_dir(registry: Registry, tmp_path: Path) -> None:
    from release.ollama.publish import plan_ollama, publish_ollama

    section, ggufs, pipeline = make_release(tmp_path, model="plan/model")
    out = tmp_path / "ollama"
    build_tags(section, ggufs, out, pipeline_dir=pipeline)
    before = plan_ollama(out, registry=registry.url)
    assert set(before) == {"ollama:Q4_K_M", "ollama:Q6_K", "ollama:CD-Q3_K_M", "ollama:latest"}
    assert {f.action for files in before.values() for f in files} == {"upload"}
    result = publish_ollama(out, registry=registry.url)
    assert result.manifests_put[-1] == "latest"
    after = plan_ollama(out, registry=registry.url)
    assert {f.action for files in after.values() for f in files} == {"unchanged"}
    # A tag dropped from the definition stays on the registry and shows as "keep".
    section.tags = {"Q4_K_M": "Q4_K_M", "Q6_K": "Q6_K"}
    build_tags(section, ggufs, out, pipeline_dir=pipeline)
    dropped = plan_ollama(out, registry=registry.url)
    assert [f.action for f in dropped["ollama:CD-Q3_K_M"]] == ["keep"]
