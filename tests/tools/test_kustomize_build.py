"""config/ builds with kustomize as users run it (`kubectl kustomize`), overlays with components included.

Tools tier: it runs the kubectl built with the local control plane (`make controlplane`), or one on PATH.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from deploy_manifests import CONFIG, find, objects, settings_of
from zen_flow.config import split_addr
from zen_flow_dev.cluster import find_kubectl
from zen_flow_dev.testing.kubectl import kustomize_with_components
from zen_flow_dev.testing.rbac import granted, webhook_permissions

SETTINGS = settings_of(find(objects("manager"), "Deployment", "zen-flow-controller"))


def test_kustomize_builds_the_default_composition() -> None:
    # The kubectl built with the local control plane (make controlplane), or one on PATH.
    kubectl = find_kubectl()
    out = subprocess.run(
        [str(kubectl), "kustomize", str(CONFIG / "default")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    built = {(d["kind"], d["metadata"]["name"]) for d in docs}
    expected = {
        (d["kind"], d["metadata"]["name"])
        for d in objects("crd", "rbac", "user-roles", "manager", "webhook")
        if d["kind"] != "VerticalPodAutoscaler"  # applied on its own
    }
    assert built == expected
    # Kubernetes' view, edit and admin roles take in zen-flow's kinds (docs/RBAC.md, "Users' roles").
    for role in ("view", "edit", "admin"):
        labels = find(docs, "ClusterRole", f"zen-flow-aggregate-to-{role}")["metadata"]["labels"]
        assert labels[f"rbac.authorization.k8s.io/aggregate-to-{role}"] == "true"


def _kustomize_overlay(tmp_path: Path, components: list[str]) -> list[dict[str, Any]]:
    return kustomize_with_components(find_kubectl(), CONFIG, components, tmp_path)


def test_the_namespaced_rbac_component_binds_only_the_watched_namespaces(tmp_path: Path) -> None:
    docs = _kustomize_overlay(tmp_path, ["namespaced-rbac"])
    # Two cluster-wide bindings: reading ClusterJobFlowTemplates (no RoleBinding can), and what the
    # webhooks' reviews send (read from the code: they review flows in every namespace). Nothing else.
    cluster_bindings = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert sorted(b["roleRef"]["name"] for b in cluster_bindings) == [
        "zen-flow-controller-cluster-templates",
        "zen-flow-controller-webhook",
    ]
    for binding in cluster_bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "zen-flow-controller", "namespace": "zen-flow-system"}
        ]
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    assert roles["zen-flow-controller-cluster-templates"]["rules"] == [
        {"apiGroups": ["workflow.kube-zen.io"], "resources": ["clusterjobflowtemplates"], "verbs": ["get"]}
    ]
    assert granted(roles["zen-flow-controller-webhook"]["rules"]) == {
        p.key for p in webhook_permissions() if p.resource != "clusterjobflowtemplates"
    }
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["kind"] == "ClusterRole"]
    assert [(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings] == [
        ("team-a", "zen-flow-controller")
    ]
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    assert settings_of(deploy).namespaces == ("team-a",)


def test_the_network_policy_component_selects_the_controller_pods(tmp_path: Path) -> None:
    docs = _kustomize_overlay(tmp_path, ["network-policy"])
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    assert policy["metadata"]["namespace"] == deploy["metadata"]["namespace"]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert ports == {split_addr(SETTINGS.metrics_addr)[1], split_addr(SETTINGS.webhook_addr)[1]}


def test_the_webhook_client_auth_component_mounts_the_ca_it_names(tmp_path: Path) -> None:
    (deploy,) = [
        d for d in _kustomize_overlay(tmp_path, ["webhook-client-auth"]) if d["kind"] == "Deployment"
    ]
    pod = deploy["spec"]["template"]["spec"]
    (ca_arg,) = [a for a in pod["containers"][0]["args"] if a.startswith("--webhook-client-ca=")]
    ca_file = Path(ca_arg.partition("=")[2])
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if Path(m["mountPath"]) == ca_file.parent]
    volume = {v["name"]: v for v in pod["volumes"]}[mount["name"]]
    assert volume["configMap"] == {"name": "zen-flow-webhook-client-ca", "optional": True}
    assert ca_file.name == "ca.crt"


def test_the_no_cert_manager_component_leaves_no_cert_manager_object(tmp_path: Path) -> None:
    # On a cluster without cert-manager one such object fails the whole apply ("no matches for kind").
    docs = _kustomize_overlay(tmp_path, ["no-cert-manager"])
    assert [d["kind"] for d in docs if d["apiVersion"].startswith("cert-manager.io/")] == []
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        assert "cert-manager.io/inject-ca-from" not in (find(docs, kind)["metadata"].get("annotations") or {})


def test_the_dev_overlay_changes_only_the_log_flags() -> None:
    # It replaces args 1 and 2 by position (its JSON patch tests they are still the log flags).
    out = subprocess.run(
        [str(find_kubectl()), "kustomize", str(CONFIG / "overlays" / "dev")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    dev = settings_of(find([d for d in yaml.safe_load_all(out) if d], "Deployment", "zen-flow-controller"))
    assert (dev.log_format, dev.log_level) == ("console", "debug")
    assert dev == replace(SETTINGS, log_format="console", log_level="debug")
