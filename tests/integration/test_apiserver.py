"""The integration tier's control plane is a real, secured kube-apiserver: it answers /readyz and
refuses requests RBAC does not allow."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from zen_flow_dev.cluster import LocalCluster, issue_client_cert

NOBODY = "zf-nobody"


def _get(server: str, path: str, context: ssl.SSLContext) -> tuple[int, Any]:
    url = urllib.parse.urlsplit(server)
    connection = http.client.HTTPSConnection(url.hostname or "", url.port, context=context, timeout=10)
    try:
        connection.request("GET", path, headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read().decode()
    finally:
        connection.close()
    try:
        return response.status, json.loads(body)
    except json.JSONDecodeError:
        return response.status, body


def _context(cluster: Any, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cluster.ca_cert) if cluster.ca_cert else None)
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


def test_readyz_answers_ok(kubectl: Any) -> None:
    result = kubectl("get", "--raw", "/readyz")
    assert result.stdout.strip() == "ok"


def test_admin_can_list_namespaces(kubectl: Any, namespace: str) -> None:
    names = kubectl("get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    assert namespace in names
    assert "kube-system" in names


def test_unauthenticated_request_is_refused(cluster: Any) -> None:
    status, body = _get(cluster.server, "/api/v1/namespaces", _context(cluster))
    # 403 for system:anonymous under RBAC, or 401 where anonymous auth is off (external clusters).
    assert status in (401, 403), body


def test_impersonated_user_without_rbac_is_forbidden(kubectl: Any, namespace: str) -> None:
    denied = kubectl("get", "pods", "-n", namespace, f"--as={NOBODY}", check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()


def test_role_binding_grants_exactly_its_namespace(kubectl: Any, namespace: str) -> None:
    kubectl("create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace)
    kubectl("create", "rolebinding", "nobody-reads", "--role=pod-reader", f"--user={NOBODY}", "-n", namespace)

    def can_list_pods(ns: str) -> str:
        result = kubectl("auth", "can-i", "list", "pods", "-n", ns, f"--as={NOBODY}", check=False)
        return result.stdout.strip()

    assert can_list_pods(namespace) == "yes"
    assert can_list_pods("default") == "no"


def test_client_certificate_identifies_the_user(cluster: Any, tmp_path: Path) -> None:
    if not isinstance(cluster, LocalCluster):
        pytest.skip("needs the CA key of a cluster we started")
    cert = issue_client_cert(cluster.pki.ca, tmp_path, NOBODY, groups=("zf-testers",))
    status, body = _get(cluster.server, "/api/v1/namespaces/default/pods", _context(cluster, cert))
    assert status == 403, body
    # The refusal names the user from the certificate's CN: authentication worked, authorization refused.
    assert f'"{NOBODY}"' in body["message"]
