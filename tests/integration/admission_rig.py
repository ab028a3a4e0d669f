"""zen-flow's admission webhooks registered with the real kube-apiserver, for the tests that exercise them
with kubectl (test_admission*.py).

The webhook server runs in this process, in a thread with its own event loop (a test blocked in a
kubectl subprocess must not stop it from answering the apiserver), on 127.0.0.1 with a serving
certificate from a throwaway CA. The webhook configurations are the shipped config/webhook/*.yaml with
`clientConfig.service` replaced by a URL, the CA as `caBundle`, and a namespaceSelector for the test
namespaces (label zenflow.test/namespace=true), so the shipped rules, failure policy and timeouts are
what the apiserver applies.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import ssl
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from cryptography import x509
from jobflow_objects import Kubectl, flow, job

from zen_flow.api.constants import ANNOTATION_CREATED_BY
from zen_flow.kube.access_reviews import AccessReviews
from zen_flow.kube.client import KubeClient
from zen_flow.kube.config import load_config
from zen_flow.kube.flow_templates import FlowTemplateClient
from zen_flow.kube.transport import ClientOptions
from zen_flow.webhook.approvers import ApprovalAuthorizer
from zen_flow.webhook.server import WebhookServer
from zen_flow_dev.cluster import (
    CertificateAuthority,
    LocalCluster,
    create_ca,
    find_kubectl,
    issue_serving_cert,
)
from zen_flow_dev.cluster.adminclient import WaitTimeout, wait_until
from zen_flow_dev.testing.crd import REPO
from zen_flow_dev.testing.kubectl import kubectl_runner
from zen_flow_dev.webhooks import url_configurations

WEBHOOK_MANIFESTS = REPO / "config" / "webhook"
CONFIGURATIONS = {
    "validatingwebhookconfiguration": WEBHOOK_MANIFESTS / "validating-webhook.yaml",
    "mutatingwebhookconfiguration": WEBHOOK_MANIFESTS / "mutating-webhook.yaml",
}
TEST_NAMESPACE_LABEL = {"zenflow.test/namespace": "true"}  # what the `namespace` fixture sets
DENIED = 'admission webhook "validate.jobflows.workflow.kube-zen.io" denied the request'
ZZZ = 'spec.steps[1].dependencies[0]: Not found: "zzz"'
# Short, so a rotation is picked up quickly; checking is a hash of two small files.
RELOAD_INTERVAL = 0.1
DEADLINE = 30.0
# The apiserver calls https://127.0.0.1:<port> and so sends no SNI; our own probes send this name.
PROBE_NAME = "localhost"

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread; `run` a coroutine on it from the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="webhook-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = DEADLINE) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(self.loop.shutdown_asyncgens())
        self.run(self.loop.shutdown_default_executor())  # the review worker threads
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(DEADLINE)
        self.loop.close()


def serial_of(cert_path: Path) -> int:
    return x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number


@dataclass
class Webhook:
    """The running server, its certificate directory and CA, and the user kubectl acts as."""

    server: WebhookServer
    cert_dir: Path
    ca: CertificateAuthority
    user: str
    versions: int = 0

    def publish_cert(self) -> int:
        """Write a new serving cert from the same CA the way the kubelet updates a Secret volume: files
        in a fresh `..<version>` directory, then one atomic rename of the `..data` symlink (tls.crt and
        tls.key are symlinks through it). Returns the new certificate's serial."""
        self.versions += 1
        stage = self.cert_dir / f"..v{self.versions}"
        cert, _ = issue_serving_cert(self.ca, stage, ["127.0.0.1", PROBE_NAME], name="tls")
        swap = self.cert_dir / "..data_tmp"
        swap.symlink_to(stage.name)
        os.replace(swap, self.cert_dir / "..data")
        for name in ("tls.crt", "tls.key"):
            link = self.cert_dir / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        return serial_of(cert)

    def presented_serial(self) -> int:
        """The serial of the certificate a new TLS handshake gets, verified against the CA. Sends SNI
        `PROBE_NAME`, so the server side can tell these handshakes from the apiserver's (no SNI)."""
        context = ssl.create_default_context(cafile=str(self.ca.cert_path))
        with (
            socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname=PROBE_NAME) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def registered(port: int, ca: CertificateAuthority) -> list[dict[str, Any]]:
    """The shipped webhook configurations pointed at this process (what `zen-flow-dev webhooks` prints),
    for the tests' namespaces only."""
    configs = url_configurations(f"https://127.0.0.1:{port}", ca.cert_path.read_bytes())
    for config in configs:
        for hook in config["webhooks"]:
            hook["namespaceSelector"] = {"matchLabels": TEST_NAMESPACE_LABEL}
    return configs


def admin_kubectl(cluster: Any, cache_dir: Path) -> Kubectl:
    """The `kubectl` fixture's runner, for module-scoped fixtures (that fixture is per test)."""
    return kubectl_runner(
        find_kubectl(getattr(cluster, "bin_dir", None)), cluster.kubeconfig, cache_dir=cache_dir
    )


def unknown_dependency_flow(name: str, namespace: str) -> dict[str, Any]:
    return flow(name, namespace, [{"name": "a", "template": job()}, {"name": "b", "dependencies": ["zzz"]}])


@pytest.fixture(name="webhook", scope="module")
def webhook_fixture(
    cluster: Any, jobflow_crd: Any, tmp_path_factory: pytest.TempPathFactory, _kubectl_cache_dir: Path
) -> Iterator[Webhook]:
    if not isinstance(cluster, LocalCluster):
        pytest.skip("the apiserver must reach a webhook on this machine's 127.0.0.1 (a local cluster)")
    kubectl = admin_kubectl(cluster, _kubectl_cache_dir)
    workdir = tmp_path_factory.mktemp("webhook")
    cert_dir = workdir / "certs"
    cert_dir.mkdir()
    user = kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout
    loop = LoopThread()
    # Who may decide Manual steps: asked of this apiserver with the admin's client, as the controller
    # asks with its own (the admin may create LocalSubjectAccessReviews).
    kube = loop.run(_client(cluster.kubeconfig))
    # The templates a flow names, read with the same client, as the controller's webhook reads them.
    server = WebhookServer(
        cert_dir,
        reload_interval=RELOAD_INTERVAL,
        authorize=ApprovalAuthorizer(AccessReviews(kube)),
        templates=FlowTemplateClient(kube),
    )
    hook = Webhook(server, cert_dir, create_ca(workdir / "ca"), user)
    hook.publish_cert()
    probe_namespace = f"zf-admission-{secrets.token_hex(4)}"
    try:
        loop.run(hook.server.start("127.0.0.1", 0))
        assert hook.server.not_ready_reason() is None
        for config in registered(hook.server.port, hook.ca):
            kubectl("apply", "-f", "-", input=json.dumps(config))
        namespace = {"metadata": {"name": probe_namespace, "labels": TEST_NAMESPACE_LABEL}}
        kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace", **namespace}))
        wait_until_webhooks_answer(kubectl, probe_namespace, user)
        yield hook
    finally:
        for kind, path in CONFIGURATIONS.items():
            name = yaml.safe_load(path.read_text())["metadata"]["name"]
            kubectl("delete", kind, name, "--ignore-not-found", check=False)
        kubectl("delete", "namespace", probe_namespace, "--wait=false", "--ignore-not-found", check=False)
        try:
            loop.run(hook.server.stop())
            loop.run(kube.close())
        finally:
            loop.close()


async def _client(kubeconfig: Path) -> KubeClient:
    return KubeClient(await load_config(str(kubeconfig)), ClientOptions(user_agent="zen-flow-tests"))


def wait_until_webhooks_answer(kubectl: Kubectl, namespace: str, user: str) -> None:
    """Registration is eventually consistent: dry-run requests until both webhooks act on them."""
    last: list[str] = []

    def both_called() -> bool:
        bad = json.dumps(unknown_dependency_flow("probe", namespace))
        denied = kubectl("create", "--dry-run=server", "-f", "-", input=bad, check=False)
        good = json.dumps(flow("probe", namespace, [{"name": "a", "template": job()}]))
        mutated = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=good, check=False)
        last[:] = [denied.stderr, mutated.stderr, mutated.stdout[:1500]]
        return (
            ZZZ in denied.stderr
            and mutated.returncode == 0
            and annotations_of(json.loads(mutated.stdout)).get(ANNOTATION_CREATED_BY) == user
        )

    try:
        wait_until(both_called, timeout=DEADLINE, what="the apiserver to call both webhooks")
    except WaitTimeout as exc:
        pytest.fail(f"{exc}; last kubectl errors: {last}")


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = obj["metadata"].get("annotations") or {}
    return found


def apply(kubectl: Kubectl, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "-f", "-", input=json.dumps(body), check=False)


def get_flow(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(kubectl("get", "jobflow", name, "-n", namespace, "-o", "json").stdout)
    return got


def field_errors(stderr: str, name: str) -> list[str]:
    """What kubectl prints for an Invalid JobFlow: a heading with one error, or one `* ` line each."""
    heading = f'The JobFlow "{name}" is invalid: '
    assert stderr.startswith(heading), stderr
    lines = stderr[len(heading) :].strip().splitlines()
    return lines if len(lines) == 1 else [line.removeprefix("* ") for line in lines]
