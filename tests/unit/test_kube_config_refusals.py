"""A kubeconfig that cannot mean what it says is refused as kubectl refuses it, naming what is wrong: a
context's user that no `users:` entry defines, a `*-data` field that is not base64."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow.kube import KubeError, load_config
from zen_flow_dev.cluster.pki import create_ca, issue_client_cert


def write(path: Path, *, cluster: dict[str, Any], user: dict[str, Any], context_user: str = "u") -> str:
    doc = {
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": context_user}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)


async def test_a_context_naming_an_undefined_user_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "kc", cluster={"server": "https://127.0.0.1:6443"}, user={}, context_user="alice")
    with pytest.raises(KubeError, match="context 'x': user 'alice' not found"):
        await load_config(path)


async def test_a_context_without_a_user_is_anonymous_as_with_kubectl(tmp_path: Path) -> None:
    path = write(tmp_path / "kc", cluster={"server": "https://127.0.0.1:6443"}, user={}, context_user="")
    config = await load_config(path)
    assert await config.credentials.authorization() is None


async def test_certificate_authority_data_that_is_not_base64_is_named(tmp_path: Path) -> None:
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority-data": "not*base64!"}
    path = write(tmp_path / "kc", cluster=cluster, user={"token": "t"})
    with pytest.raises(KubeError, match="cluster 'c': certificate-authority-data is not base64"):
        await load_config(path)


@pytest.mark.parametrize("bad", ["client-certificate-data", "client-key-data"])
async def test_client_data_that_is_not_base64_is_named(tmp_path: Path, bad: str) -> None:
    ca = create_ca(tmp_path / "pki")
    cert, key = issue_client_cert(ca, tmp_path / "pki", "bob")
    user = {
        "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(key.read_bytes()).decode(),
    }
    user[bad] = "%%% not base64 %%%"
    path = write(tmp_path / "kc", cluster={"server": "https://127.0.0.1:6443"}, user=user)
    with pytest.raises(KubeError, match=f"user 'u': {bad} is not base64"):
        await load_config(path)


async def test_base64_wrapped_over_lines_is_still_read(tmp_path: Path) -> None:
    create_ca(tmp_path / "pki")
    encoded = base64.encodebytes((tmp_path / "pki" / "ca.crt").read_bytes()).decode()  # 76-column lines
    assert "\n" in encoded
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority-data": encoded}
    config = await load_config(write(tmp_path / "kc", cluster=cluster, user={"token": "t"}))
    assert config.ssl_context is not None
    assert config.ssl_context.get_ca_certs()[0]["subject"][0][0][1] == "zenflow-dev-ca"


# PEM armour around something that is no certificate.
NOT_A_CERTIFICATE = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
)


@pytest.mark.parametrize(
    "data", [NOT_A_CERTIFICATE, base64.b64encode(b"hello"), base64.b64encode(b"\xff\xfe")]
)
async def test_certificate_authority_data_holding_no_certificate_is_named(
    tmp_path: Path, data: bytes
) -> None:
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority-data": data.decode()}
    path = write(tmp_path / "kc", cluster=cluster, user={"token": "t"})
    with pytest.raises(KubeError, match="cluster 'c': certificate-authority-data holds no PEM certificate"):
        await load_config(path)


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ("client-certificate-data", "client-certificate-data holds no PEM certificate"),
        ("client-key-data", "client-key-data holds no PEM private key"),
    ],
)
async def test_client_data_holding_no_certificate_or_key_is_named(
    tmp_path: Path, bad: str, said: str
) -> None:
    ca = create_ca(tmp_path / "pki")
    cert, key = issue_client_cert(ca, tmp_path / "pki", "bob")
    user = {
        "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(key.read_bytes()).decode(),
    }
    user[bad] = NOT_A_CERTIFICATE.decode()
    path = write(tmp_path / "kc", cluster={"server": "https://127.0.0.1:6443"}, user=user)
    with pytest.raises(KubeError, match=f"user 'u': {said}"):
        await load_config(path)


async def test_a_client_key_of_another_certificate_is_named(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "pki")
    cert, _ = issue_client_cert(ca, tmp_path / "pki", "bob")
    _, other_key = issue_client_cert(ca, tmp_path / "other", "alice")
    user = {
        "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(other_key.read_bytes()).decode(),
    }
    path = write(tmp_path / "kc", cluster={"server": "https://127.0.0.1:6443"}, user=user)
    mismatch = "user 'u': client-key-data is not the key of client-certificate-data"
    with pytest.raises(KubeError, match=mismatch):
        await load_config(path)


LABEL = "# NetLock Arany (Class Gold) Főtanúsítvány\n".encode()


async def test_pem_files_with_non_ascii_comment_lines_are_read(tmp_path: Path) -> None:
    # A system CA bundle labels its certificates in UTF-8, `openssl pkcs12` writes non-ASCII friendlyNames
    # above a client certificate: both are read as kubectl (and `cafile=`) reads them.
    ca = create_ca(tmp_path / "pki")
    cert, key = issue_client_cert(ca, tmp_path / "pki", "bob")
    bundle, client = tmp_path / "bundle.pem", tmp_path / "client.pem"
    bundle.write_bytes(LABEL + ca.cert_path.read_bytes())
    client.write_bytes(b"Bag Attributes\n    friendlyName: B\xc3\xb6b\n" + cert.read_bytes())
    user = {"client-certificate": str(client), "client-key": str(key)}
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority": str(bundle)}
    config = await load_config(write(tmp_path / "kc", cluster=cluster, user=user))
    assert config.ssl_context is not None
    assert len(config.ssl_context.get_ca_certs()) == 1


async def test_a_pem_file_of_only_a_non_ascii_comment_is_named(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(LABEL)
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority": str(bundle)}
    path = write(tmp_path / "kc", cluster=cluster, user={"token": "t"})
    with pytest.raises(
        KubeError, match=f"cluster 'c': certificate-authority {bundle} holds no PEM certificate"
    ):
        await load_config(path)
