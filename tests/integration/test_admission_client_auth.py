"""Mutual TLS between the real kube-apiserver and the webhook server (--webhook-client-ca,
--webhook-client-names), configured as docs/WEBHOOKS.md ("Client authentication") tells an operator to:
an AdmissionConfiguration (`--admission-control-config-file`) whose kubeconfig gives the apiserver a
client certificate for the webhook's host. The module runs its own apiserver (that file is read when it
starts), and the webhook server of admission_rig's kind, which serves no client without a certificate
from its client CA carrying an allowed name."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from admission_rig import (
    PROBE_NAME,
    LoopThread,
    admin_kubectl,
    annotations_of,
    registered,
    wait_until_webhooks_answer,
)
from jobflow_objects import Kubectl, flow, job

from zen_flow.api.constants import ANNOTATION_CREATED_BY
from zen_flow.webhook.client_auth import ClientAuth
from zen_flow.webhook.server import WebhookServer
from zen_flow_dev.cluster import LocalCluster, create_ca, find_kubectl, issue_client_cert, issue_serving_cert
from zen_flow_dev.testing.crd import install_crd

pytestmark = pytest.mark.integration

CLIENT_NAME = "kube-apiserver-webhook-client"


@dataclass
class MutualTLS:
    cluster: LocalCluster
    server: WebhookServer
    serving_ca: Path
    user: str


def apiserver_admission_config(directory: Path, host: str, cert: Path, key: Path) -> Path:
    """The apiserver's side: an AdmissionConfiguration naming, for both webhook plugins, a kubeconfig
    whose user for `host` (the webhook URL's host:port; a Service's would be <name>.<namespace>.svc)
    presents `cert`."""
    kubeconfig = directory / "webhook-kubeconfig.yaml"
    users = [{"name": host, "user": {"client-certificate": str(cert), "client-key": str(key)}}]
    kubeconfig.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "users": users}))
    plugin = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "WebhookAdmissionConfiguration",
        "kubeConfigFile": str(kubeconfig),
    }
    config = directory / "admission-config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "AdmissionConfiguration",
                "plugins": [
                    {"name": name, "configuration": plugin}
                    for name in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")
                ],
            }
        )
    )
    return config


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory, _kubectl_cache_dir: Path) -> Iterator[MutualTLS]:
    workdir = tmp_path_factory.mktemp("admission-client-auth")
    client_ca = create_ca(workdir / "client-ca", "apiserver-webhook-client-ca")
    client_cert, client_key = issue_client_cert(client_ca, workdir / "apiserver", CLIENT_NAME)
    serving_ca = create_ca(workdir / "serving-ca", "webhook-serving-ca")
    cert_dir = workdir / "certs"
    issue_serving_cert(serving_ca, cert_dir, ["127.0.0.1", PROBE_NAME], name="tls")
    loop = LoopThread()
    server = WebhookServer(cert_dir, client_auth=ClientAuth(client_ca.cert_path, frozenset({CLIENT_NAME})))
    cluster: LocalCluster | None = None
    try:
        loop.run(server.start("127.0.0.1", 0))
        assert server.not_ready_reason() is None
        config = apiserver_admission_config(workdir, f"127.0.0.1:{server.port}", client_cert, client_key)
        cluster = LocalCluster(
            "apiserver",
            workdir=workdir / "cluster",
            smoke_job=False,
            extra_apiserver_args=[f"--admission-control-config-file={config}"],
        )
        cluster.start()
        install_crd(find_kubectl(cluster.bin_dir), cluster.kubeconfig)
        kubectl = admin_kubectl(cluster, _kubectl_cache_dir)
        for webhooks in registered(server.port, serving_ca):
            kubectl("apply", "-f", "-", input=json.dumps(webhooks))
        user = kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout
        probe = "zf-client-auth-probe"
        namespace = {"metadata": {"name": probe, "labels": {"zenflow.test/namespace": "true"}}}
        kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace", **namespace}))
        wait_until_webhooks_answer(kubectl, probe, user)
        yield MutualTLS(cluster, server, serving_ca.cert_path, user)
    finally:
        try:
            loop.run(server.stop())
        finally:
            loop.close()
            if cluster is not None:
                cluster.stop()


@pytest.fixture(scope="module")
def cluster(mtls: MutualTLS) -> LocalCluster:
    """This module's apiserver, for the `kubectl` and `namespace` fixtures."""
    return mtls.cluster


def test_the_apiserver_with_its_client_certificate_is_served_and_a_flow_admitted(
    mtls: MutualTLS, kubectl: Kubectl, namespace: str
) -> None:
    body = json.dumps(flow("admitted", namespace, [{"name": "a", "template": job()}]))
    created = kubectl("create", "-o", "json", "-f", "-", input=body)
    # Through the mutating webhook, over a connection the apiserver authenticated with its certificate.
    assert annotations_of(json.loads(created.stdout))[ANNOTATION_CREATED_BY] == mtls.user
    assert mtls.server.client_names is not None
    assert mtls.server.client_names.refused == 0


def healthz_answer(port: int, context: ssl.SSLContext) -> bytes:
    """What GET /healthz on a new connection gets back ("" when the server closed it without one)."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname=PROBE_NAME) as tls,
        ):
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return tls.recv(1024)
    except (ssl.SSLError, ConnectionError):  # under TLS 1.2 in the handshake, under 1.3 right after it
        return b""


def test_a_caller_without_a_client_certificate_gets_no_answer(mtls: MutualTLS) -> None:
    # What anyone on the network could do before: a TLS client trusting the serving CA, with no
    # certificate of its own.
    assert healthz_answer(mtls.server.port, ssl.create_default_context(cafile=str(mtls.serving_ca))) == b""
