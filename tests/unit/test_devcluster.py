"""The dev cluster's pure parts: certificates, kubeconfig round-trip, binary lookup, kwok stages."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from zen_flow_dev.cluster import (
    MissingBinariesError,
    create_ca,
    find_bin_dir,
    issue_client_cert,
    issue_serving_cert,
)
from zen_flow_dev.cluster.kubeconfig import read_current_target, write_kubeconfig
from zen_flow_dev.cluster.stages import EXIT_CODE_ANNOTATION, FAIL_ATTEMPTS_ANNOTATION, kwok_stages_yaml


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_serving_cert_verifies_for_its_ip_and_name_only(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    cert_path, key_path = issue_serving_cert(ca, tmp_path, ("127.0.0.1", "localhost"), name="webhook")
    assert key_path.exists()
    verifier = PolicyBuilder().store(Store([_load(ca.cert_path)])).build_server_verifier
    cert = _load(cert_path)
    verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))).verify(cert, [])
    verifier(x509.DNSName("localhost")).verify(cert, [])
    with pytest.raises(VerificationError):
        verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.2"))).verify(cert, [])


def test_serving_cert_from_another_ca_is_rejected(tmp_path: Path) -> None:
    trusted, other = create_ca(tmp_path / "a"), create_ca(tmp_path / "b")
    cert_path, _ = issue_serving_cert(other, tmp_path / "b", ("127.0.0.1",))
    verifier = PolicyBuilder().store(Store([_load(trusted.cert_path)]))
    with pytest.raises(VerificationError):
        verifier.build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))).verify(
            _load(cert_path), []
        )


def test_client_cert_carries_user_and_groups(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    cert_path, _ = issue_client_cert(ca, tmp_path, "alice", ("team-a", "team-b"))
    subject = _load(cert_path).subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["alice"]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "team-a",
        "team-b",
    ]


def test_kubeconfig_round_trip(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    cert, key = issue_client_cert(ca, tmp_path, "admin")
    path = write_kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:6443", ca.cert_path, cert, key)
    target = read_current_target(path)
    assert target.server == "https://127.0.0.1:6443"
    assert target.ca_pem == ca.cert_path.read_bytes()
    assert path.stat().st_mode & 0o077 == 0  # holds a private key


def test_missing_binaries_error_says_how_to_build_them(tmp_path: Path) -> None:
    with pytest.raises(MissingBinariesError, match="make controlplane") as raised:
        find_bin_dir(environ={"ZENFLOW_CONTROLPLANE_BIN": str(tmp_path)})
    assert "kube-apiserver" in str(raised.value)


def test_bin_dir_from_environment_wins(tmp_path: Path) -> None:
    for name in ("etcd", "kube-apiserver"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    found = find_bin_dir(("etcd", "kube-apiserver"), environ={"KUBEBUILDER_ASSETS": str(tmp_path)})
    assert found == tmp_path


def test_pod_stages_never_compete() -> None:
    """kwok picks at random among matching stages; ours must partition the pod states instead."""
    stages = {doc["metadata"]["name"]: doc["spec"] for doc in yaml.safe_load_all(kwok_stages_yaml())}
    succeed = {
        e["jq"]["key"]: (e["jq"]["operator"], tuple(e["jq"].get("values", ())))
        for e in stages["zenflow-pod-succeed"]["selector"]["matchExpressions"]
    }
    fail = {
        e["jq"]["key"]: (e["jq"]["operator"], tuple(e["jq"].get("values", ())))
        for e in stages["zenflow-pod-fail"]["selector"]["matchExpressions"]
    }
    # One boolean expression decides between them (exit-code annotation, limited to the first
    # `fail-attempts` attempts): succeed takes "false", fail takes "true".
    (will_fail,) = [key for key in succeed if EXIT_CODE_ANNOTATION in key]
    assert FAIL_ATTEMPTS_ANNOTATION in will_fail
    assert (succeed[will_fail], fail[will_fail]) == (("In", ("false",)), ("In", ("true",)))
    terminal = ("Succeeded", "Failed")
    for name in ("zenflow-pod-start", "zenflow-pod-succeed", "zenflow-pod-fail", "zenflow-pod-terminate"):
        phases = next(
            e["jq"]["values"]
            for e in stages[name]["selector"]["matchExpressions"]
            if e["jq"]["key"] == ".status.phase"
        )
        assert not set(phases) & set(terminal), name
