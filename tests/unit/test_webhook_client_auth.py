"""Mutual TLS on the webhook port (--webhook-client-ca, --webhook-client-names): with a client CA only a
client presenting a certificate that CA signed (and, with names, one of those names) gets a TLS session,
so nobody else can use the webhooks as an oracle for other namespaces' templates or for access reviews
(docs/SECURITY.md). Real aiohttp server on loopback, real TLS, certificates from zen_flow_dev's PKI."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import shutil
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from zen_flow.webhook.client_auth import ClientAuth
from zen_flow.webhook.server import WebhookServer
from zen_flow_dev.cluster.pki import CertificateAuthority, create_ca, issue_client_cert, issue_serving_cert

UID = "b0a3d0a8-0000-4000-8000-000000000002"
# What the red team sent: a CREATE in someone else's namespace naming their template.
PROBE = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": UID,
        "operation": "CREATE",
        "namespace": "victim",
        "userInfo": {"username": "mallory"},
        "object": {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "kind": "JobFlow",
            "metadata": {"name": "probe", "namespace": "victim"},
            "spec": {"templateRef": {"name": "payroll"}},
        },
    },
}
SECRET = "hunter2-victim-secret"


class VictimTemplates:
    """The templates the webhook reads with the controller's cluster-wide rights."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, str]] = []

    async def get(self, namespace: str, name: str, *, cluster: bool = False) -> dict[str, Any] | None:
        self.reads.append((namespace, name))
        container = {
            "name": "c",
            "image": "corp/payroll:1",
            "env": [{"name": "DB_PASSWORD", "value": SECRET}],
        }
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "spec": {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}},
        }
        return {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "kind": "JobFlowTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"steps": [{"name": "pay", "template": job}]},
        }


def leaked(answer: dict[str, Any]) -> bool:
    """Does the answer's patch hold the victim's template?"""
    return SECRET in base64.b64decode(answer["response"].get("patch", "")).decode()


@pytest.fixture
def server_ca(tmp_path: Path) -> CertificateAuthority:
    return create_ca(tmp_path / "server-ca", "serving-ca")


@pytest.fixture
def client_ca(tmp_path: Path) -> CertificateAuthority:
    return create_ca(tmp_path / "client-ca", "apiserver-client-ca")


@pytest.fixture
def cert_dir(tmp_path: Path, server_ca: CertificateAuthority) -> Path:
    issue_serving_cert(server_ca, tmp_path / "certs", ["127.0.0.1"], name="tls")
    return tmp_path / "certs"


def client_context(
    server_ca: CertificateAuthority, cert: tuple[Path, Path] | None = None, *, tls12: bool = False
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(server_ca.cert_path))
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


async def healthz(server: WebhookServer, context: ssl.SSLContext) -> bytes:
    """What GET /healthz on a new connection gets back: b"" when the handshake failed or the server
    closed the connection without an answer (under TLS 1.3 the server verifies the client's certificate
    after the client's side of the handshake is done, so a refusal shows as the end of the stream)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context)
    except (ssl.SSLError, ConnectionError):
        return b""
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read(15)
    except (ssl.SSLError, ConnectionError):
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


SERVED = b"HTTP/1.1 200 OK"


async def start(cert_dir: Path, client_auth: ClientAuth | None, **kwargs: Any) -> WebhookServer:
    server = WebhookServer(cert_dir, client_auth=client_auth, **{"reload_interval": 3600.0, **kwargs})
    await server.start("127.0.0.1", 0)
    return server


@pytest.fixture
async def templates() -> VictimTemplates:
    return VictimTemplates()


@pytest.fixture
async def mtls(
    tmp_path: Path, cert_dir: Path, client_ca: CertificateAuthority, templates: VictimTemplates
) -> AsyncIterator[WebhookServer]:
    ca_file = tmp_path / "client-ca.crt"
    shutil.copy(client_ca.cert_path, ca_file)
    server = await start(cert_dir, ClientAuth(ca_file), templates=templates)
    yield server
    await server.stop()


async def probe(server: WebhookServer, context: ssl.SSLContext) -> dict[str, Any]:
    """The red team's request; the AdmissionReview answered, or the client's error."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"https://127.0.0.1:{server.port}/mutate-jobflow", json=PROBE, ssl=context) as resp,
    ):
        assert resp.status == 200
        answer: dict[str, Any] = await resp.json()
        return answer


REFUSED = (aiohttp.ClientError, ssl.SSLError, ConnectionError)


async def test_without_a_client_ca_anyone_gets_the_review_as_before(
    cert_dir: Path, server_ca: CertificateAuthority, templates: VictimTemplates
) -> None:
    server = await start(cert_dir, None, templates=templates)
    try:
        answer = await probe(server, client_context(server_ca))
        assert answer["response"]["allowed"] is True
        assert leaked(answer)  # the oracle the red team found: why the setting exists
        assert templates.reads == [("victim", "payroll")]
    finally:
        await server.stop()


async def test_a_client_without_a_certificate_is_refused_and_nothing_is_read(
    mtls: WebhookServer, server_ca: CertificateAuthority, templates: VictimTemplates
) -> None:
    assert await healthz(mtls, client_context(server_ca)) == b""
    with pytest.raises(REFUSED):
        await probe(mtls, client_context(server_ca))
    assert templates.reads == []


async def test_a_client_with_a_certificate_from_the_ca_is_served(
    mtls: WebhookServer,
    tmp_path: Path,
    server_ca: CertificateAuthority,
    client_ca: CertificateAuthority,
    templates: VictimTemplates,
) -> None:
    apiserver = issue_client_cert(client_ca, tmp_path / "clients", "kube-apiserver")
    assert await healthz(mtls, client_context(server_ca, apiserver)) == SERVED
    answer = await probe(mtls, client_context(server_ca, apiserver))
    assert answer["response"]["uid"] == UID
    assert answer["response"]["allowed"] is True
    assert leaked(answer)  # the apiserver gets the expansion, as before
    assert templates.reads == [("victim", "payroll")]
    # TLS 1.3 only: TLS 1.2 would resume sessions from the server's cache without a certificate check.
    assert await healthz(mtls, client_context(server_ca, apiserver, tls12=True)) == b""


async def test_a_certificate_from_another_ca_is_refused(
    mtls: WebhookServer, tmp_path: Path, server_ca: CertificateAuthority, templates: VictimTemplates
) -> None:
    other = create_ca(tmp_path / "other-ca", "someone-elses-ca")
    forged = issue_client_cert(other, tmp_path / "clients", "kube-apiserver")
    assert await healthz(mtls, client_context(server_ca, forged)) == b""
    with pytest.raises(REFUSED):
        await probe(mtls, client_context(server_ca, forged))
    assert templates.reads == []


def client_cert_with_sans(
    ca: CertificateAuthority, directory: Path, common_name: str, sans: list[x509.GeneralName]
) -> tuple[Path, Path]:
    """A client certificate with subjectAltNames (zen_flow_dev's client certificates have none)."""
    ca_cert, ca_key = ca.load()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{common_name}.crt", directory / f"{common_name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_with_names_only_those_certificates_of_the_ca_are_served(
    tmp_path: Path,
    cert_dir: Path,
    server_ca: CertificateAuthority,
    client_ca: CertificateAuthority,
    templates: VictimTemplates,
) -> None:
    # The CA may sign other clients too (a cluster's client CA signs every user's certificate).
    names = frozenset({"kube-apiserver", "apiserver.example.com", "spiffe://cluster/apiserver"})
    server = await start(cert_dir, ClientAuth(client_ca.cert_path, names), templates=templates)
    clients = tmp_path / "clients"
    try:
        by_cn = issue_client_cert(client_ca, clients, "kube-apiserver")
        by_dns = client_cert_with_sans(client_ca, clients, "a", [x509.DNSName("apiserver.example.com")])
        by_uri = client_cert_with_sans(
            client_ca, clients, "b", [x509.UniformResourceIdentifier("spiffe://cluster/apiserver")]
        )
        for allowed in (by_cn, by_dns, by_uri):
            assert (await probe(server, client_context(server_ca, allowed)))["response"]["allowed"] is True
        user = issue_client_cert(client_ca, clients, "mallory", ["system:masters"])
        near = client_cert_with_sans(client_ca, clients, "c", [x509.DNSName("evil.apiserver.example.com")])
        for refused in (user, near):
            with pytest.raises(REFUSED):
                await probe(server, client_context(server_ca, refused))
        assert len(templates.reads) == 3
        assert server.client_names is not None
        assert server.client_names.refused == 2
    finally:
        await server.stop()


async def test_a_new_client_ca_is_picked_up_without_a_restart(
    mtls: WebhookServer,
    tmp_path: Path,
    server_ca: CertificateAuthority,
    client_ca: CertificateAuthority,
) -> None:
    clients = tmp_path / "clients"
    old_client = issue_client_cert(client_ca, clients, "kube-apiserver", name="old")
    new_ca = create_ca(tmp_path / "new-client-ca", "apiserver-client-ca-2")
    new_client = issue_client_cert(new_ca, clients, "kube-apiserver", name="new")
    assert await healthz(mtls, client_context(server_ca, old_client)) == SERVED
    assert await healthz(mtls, client_context(server_ca, new_client)) == b""

    ca_file = tmp_path / "client-ca.crt"
    # The new CA beside the old one while the apiserver switches over, then the new one alone.
    ca_file.write_bytes(client_ca.cert_path.read_bytes() + new_ca.cert_path.read_bytes())
    assert mtls.certs.check() is True
    for client in (old_client, new_client):
        assert await healthz(mtls, client_context(server_ca, client)) == SERVED
    ca_file.write_bytes(new_ca.cert_path.read_bytes())
    assert mtls.certs.check() is True
    assert await healthz(mtls, client_context(server_ca, new_client)) == SERVED
    assert await healthz(mtls, client_context(server_ca, old_client)) == b""


async def test_a_session_from_before_the_ca_was_removed_is_not_resumed(
    mtls: WebhookServer,
    tmp_path: Path,
    server_ca: CertificateAuthority,
    client_ca: CertificateAuthority,
) -> None:
    # A resumed session skips the certificate check: a client keeping one would outlive its CA.
    old_client = issue_client_cert(client_ca, tmp_path / "clients", "kube-apiserver")
    context = client_context(server_ca, old_client)

    def session_then_resume(replace_ca: Callable[[], None]) -> tuple[bytes, bool]:
        with (
            socket.create_connection(("127.0.0.1", mtls.port)) as sock,
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert tls.recv(15) == SERVED
            session = tls.session  # any tickets came with the answer
        replace_ca()
        try:
            with (
                socket.create_connection(("127.0.0.1", mtls.port)) as sock,
                context.wrap_socket(sock, server_hostname="127.0.0.1", session=session) as tls,
            ):
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                return tls.recv(15), tls.session_reused
        except (ssl.SSLError, ConnectionError):
            return b"", False

    def replace_ca() -> None:
        (tmp_path / "client-ca.crt").write_bytes(create_ca(tmp_path / "new-ca", "new").cert_path.read_bytes())
        assert mtls.certs.check() is True

    loop = asyncio.get_running_loop()  # the server runs on this loop: the blocking client in a thread
    assert await loop.run_in_executor(None, session_then_resume, replace_ca) == (b"", False)


async def test_an_unreadable_client_ca_keeps_the_server_unready_and_refusing(
    tmp_path: Path, cert_dir: Path, server_ca: CertificateAuthority, client_ca: CertificateAuthority
) -> None:
    ca_file = tmp_path / "not-yet" / "ca.crt"
    server = await start(cert_dir, ClientAuth(ca_file), reload_interval=0.01)
    try:
        reason = server.not_ready_reason()
        assert reason is not None
        assert str(ca_file) in reason
        apiserver = issue_client_cert(client_ca, tmp_path / "clients", "kube-apiserver")
        with pytest.raises(REFUSED):
            await probe(server, client_context(server_ca, apiserver))
        ca_file.parent.mkdir()
        ca_file.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
        assert server.certs.check() is False  # a CA file that does not load is no CA: still refusing
        assert server.not_ready_reason() is not None
        shutil.copy(client_ca.cert_path, ca_file)
        deadline = time.monotonic() + 10
        while server.not_ready_reason() is not None:  # the poller loads it
            assert time.monotonic() < deadline, "the client CA was not picked up"
            await asyncio.sleep(0.01)
        assert (await probe(server, client_context(server_ca, apiserver)))["response"]["allowed"] is True
    finally:
        await server.stop()


def test_the_settings_and_their_checks() -> None:
    from zen_flow.cli import build_parser
    from zen_flow.config import load

    env = {
        "ZEN_FLOW_WEBHOOK_CLIENT_CA": "/etc/ca.crt",
        "ZEN_FLOW_WEBHOOK_CLIENT_NAMES": "kube-apiserver, a.b",
    }
    settings = load(build_parser().parse_args(["run"]), env=env)
    assert settings.webhook_client_ca == "/etc/ca.crt"
    assert settings.webhook_client_names == ("kube-apiserver", "a.b")
    assert load(build_parser().parse_args(["run"]), env={}).webhook_client_ca == ""
    args = build_parser().parse_args(["run", "--webhook-client-names", "kube-apiserver"])
    with pytest.raises(ValueError, match="--webhook-client-names needs --webhook-client-ca"):
        load(args, env={})
