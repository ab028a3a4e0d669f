"""The Helm chart rendered and linted by the real helm: `helm lint --strict`, and the default rendering is
what config/ holds, with real flags. Its values: test_helm_values.py, test_helm_flags.py.

Tools tier: helm is built from its Go module by tools/build-gotool.sh (cached under ~/.cache/zen-flow/tools);
the tests are skipped only when it cannot be built, with the reason.
"""

from __future__ import annotations

import copy
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from helm_rig import deployment, identity, render

from deploy_manifests import CHART, CONFIG, container, documents, find, find_all, objects, settings_of


def test_helm_lint_strict(helm: str) -> None:
    done = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_default_release_renders_the_objects_of_config_default(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    for doc in docs:
        assert doc["apiVersion"], doc
        assert doc["kind"], doc
        assert doc["metadata"]["name"], doc
    config = [
        d
        for d in objects("crd", "rbac", "user-roles", "manager", "webhook")
        # Helm installs into the release namespace (--create-namespace); the VPA is opt-in.
        if d["kind"] not in ("Namespace", "VerticalPodAutoscaler")
    ]
    assert identity(docs) == identity(config)


def test_default_deployment_runs_with_the_settings_of_config(helm: str, tmp_path: Path) -> None:
    chart = deployment(render(helm, tmp_path))
    config = find(objects("manager"), "Deployment")
    chart_settings, config_settings = settings_of(chart), settings_of(config)
    # The chart names its Lease after the release; config/ leaves the default, which --instance-id
    # changes: the same Lease.
    assert chart_settings.lease_name == config_settings.lease_name
    assert replace(chart_settings, leader_election_name="") == config_settings
    assert chart["spec"]["replicas"] == config["spec"]["replicas"] == 2
    chart_pod, config_pod = chart["spec"]["template"]["spec"], config["spec"]["template"]["spec"]
    for key in ("securityContext", "volumes", "serviceAccountName", "terminationGracePeriodSeconds"):
        assert chart_pod[key] == config_pod[key], key
    c, k = container(chart), container(config)
    for key in (
        "image",
        "env",
        "ports",
        "resources",
        "securityContext",
        "volumeMounts",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
    ):
        assert c[key] == k[key], key


def test_default_rbac_and_webhooks_equal_config(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    config = objects("rbac", "webhook")
    for kind in ("ClusterRole", "Role"):
        mine = find(config, kind)
        # The chart grants pods/log only with archive.logs on (config/rbac keeps it, saying so).
        ours = [r for r in mine["rules"] if r["resources"] != ["pods/log"]]
        assert find(docs, kind, mine["metadata"]["name"])["rules"] == ours, kind
    for role in objects("user-roles"):  # view, edit and admin get the same grants from either
        chart_role = find(docs, "ClusterRole", role["metadata"]["name"])
        assert chart_role["rules"] == role["rules"]
        assert chart_role["metadata"]["labels"].items() >= role["metadata"]["labels"].items()
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        chart, ours = find(docs, kind), find(config, kind)
        assert chart["webhooks"] == ours["webhooks"], kind
        assert chart["metadata"]["annotations"] == ours["metadata"]["annotations"], kind
    for kind in ("Certificate", "Issuer"):
        assert [d["spec"] for d in find_all(docs, kind)] == [d["spec"] for d in find_all(config, kind)], kind
    chart_service, config_service = find(docs, "Service", "zen-flow-webhook"), find(config, "Service")
    assert chart_service["spec"]["ports"] == config_service["spec"]["ports"]
    # The chart also selects its release (app.kubernetes.io/instance), so two releases never mix.
    assert chart_service["spec"]["selector"].items() >= config_service["spec"]["selector"].items()


def test_services_select_the_pods_of_the_release(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"metrics": {"serviceMonitor": {"enabled": True}}})
    pod_labels = deployment(docs)["spec"]["template"]["metadata"]["labels"]
    for service in find_all(docs, "Service"):
        assert service["spec"]["selector"].items() <= pod_labels.items()
    assert find(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    monitor = find(docs, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    selected = [s for s in find_all(docs, "Service") if monitor.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == ["zen-flow-controller-metrics"]


@pytest.mark.parametrize(
    "name",
    [
        "jobflows.workflow.kube-zen.io",
        "cronjobflows.workflow.kube-zen.io",
        "jobflowtemplates.workflow.kube-zen.io",
        "clusterjobflowtemplates.workflow.kube-zen.io",
    ],
)
def test_crd_is_config_crd_kept_on_uninstall(helm: str, tmp_path: Path, name: str) -> None:
    crd = find(render(helm, tmp_path), "CustomResourceDefinition", name)
    source = documents(CONFIG / "crd" / f"{name}.yaml")[0]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["labels"].items() >= source["metadata"]["labels"].items()
    stripped = copy.deepcopy(crd)
    stripped["metadata"] = {"name": crd["metadata"]["name"]}
    source["metadata"] = {"name": source["metadata"]["name"]}
    assert stripped == source  # the round trip through the template changed nothing


def test_crds_install_false_leaves_the_crd_out(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"crds": {"install": False}})
    assert not find_all(docs, "CustomResourceDefinition")
