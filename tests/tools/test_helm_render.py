"""The Helm chart rendered and linted by the real helm: it renders what config/ holds, with real flags, and
its values change what they say.

Tools tier: helm is built from its Go module by tools/build-gotool.sh (cached under ~/.cache/zen-flow/tools);
the tests are skipped only when it cannot be built, with the reason.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy_manifests import (
    CHART,
    CONFIG,
    ROOT,
    container,
    documents,
    find,
    find_all,
    load_dashboard,
    metric_catalog,
    objects,
    selectors,
    settings_of,
)
from zen_flow import config
from zen_flow.archive_keys import ArchiveKeys
from zen_flow.cli import build_parser
from zen_flow_dev.testing.prometheus import alert_rules
from zen_flow_dev.testing.rbac import rules_allow

RELEASE, NAMESPACE = "zen-flow", "zen-flow-system"  # the names config/ uses


@pytest.fixture(scope="session")
def helm() -> str:
    if override := os.environ.get("ZENFLOW_HELM"):
        return override
    done = subprocess.run(
        [str(ROOT / "tools" / "build-gotool.sh"), "helm"], capture_output=True, text=True, timeout=1200
    )
    if done.returncode != 0:
        pytest.skip(f"helm could not be built: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


def render(
    helm: str,
    tmp_path: Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values or {}))
    done = subprocess.run(
        [helm, "template", release, str(CHART), "--namespace", namespace, "--values", str(values_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RenderError(done.stderr)
    return [d for d in yaml.safe_load_all(done.stdout) if d]


class RenderError(Exception):
    pass


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "Deployment")


def identity(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace", "")) for d in docs}


# --- helm lint and the default rendering ------------------------------------------------------------


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
        for d in objects("crd", "rbac", "manager", "webhook")
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
        ours = find(config, kind)["rules"]
        # The chart grants pods/log only with archive.logs on (config/rbac keeps it, saying so).
        ours = [r for r in ours if r["resources"] != ["pods/log"]]
        assert find(docs, kind)["rules"] == ours, kind
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


# --- values do what they say ------------------------------------------------------------------------


def test_other_release_name_keeps_every_reference_consistent(helm: str, tmp_path: Path) -> None:
    values = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}
    docs = render(helm, tmp_path, values, release="flows", namespace="ops")
    dep = deployment(docs)
    settings = settings_of(dep)
    pod = dep["spec"]["template"]["spec"]
    sa = find(docs, "ServiceAccount")["metadata"]
    assert pod["serviceAccountName"] == sa["name"]
    assert sa["namespace"] == "ops"
    role = find(docs, "Role")
    assert role["metadata"]["namespace"] == "ops"
    assert rules_allow(role["rules"], "coordination.k8s.io", "leases", "patch", settings.lease_name)
    for binding in find_all(docs, "RoleBinding") + find_all(docs, "ClusterRoleBinding"):
        assert {"kind": "ServiceAccount", "name": sa["name"], "namespace": "ops"} in binding["subjects"]
    cert = find(docs, "Certificate", "flows-zen-flow-webhook-cert")
    webhook_service = find(docs, "Service", "flows-zen-flow-webhook")
    assert "flows-zen-flow-webhook.ops.svc" in cert["spec"]["dnsNames"]
    volume = next(v for v in pod["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == cert["spec"]["secretName"]
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        config = find(docs, kind)
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
            f"ops/{cert['metadata']['name']}"
        )
        hook = config["webhooks"][0]
        assert hook["clientConfig"]["service"] == {
            "name": webhook_service["metadata"]["name"],
            "namespace": "ops",
            "path": hook["clientConfig"]["service"]["path"],
            "port": 443,
        }
        # No namespace left out by default, the release's own included: where the webhooks do not run,
        # anyone could write the audit annotations (who approved a step) that the controller records.
        assert "namespaceSelector" not in hook
    left_out = render(helm, tmp_path, {"webhook": {"excludeNamespaces": ["sandbox"]}})
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        selector = find(left_out, kind)["webhooks"][0]["namespaceSelector"]["matchExpressions"]
        assert selector == [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["sandbox"]}
        ]
    # The alerts select the job Prometheus gives this release's metrics Service.
    metrics_service = find(docs, "Service", "flows-zen-flow-controller-metrics")["metadata"]["name"]
    for rule in alert_rules(find(docs, "PrometheusRule")):
        for sel in selectors(rule["expr"]):
            assert sel.matchers.get("job") == metrics_service, rule["alert"]
            assert sel.metric in metric_catalog() or sel.metric == "up"


def test_watch_namespaces_bind_per_namespace_and_restrict_the_informers(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"watchNamespaces": ["team-a", "team-b"]})
    assert settings_of(deployment(docs)).namespaces == ("team-a", "team-b")
    # One cluster-wide binding, of one grant: reading ClusterJobFlowTemplates (no RoleBinding can).
    (binding,) = find_all(docs, "ClusterRoleBinding")
    role = find(docs, "ClusterRole", binding["roleRef"]["name"])
    assert role["rules"] == [
        {"apiGroups": ["workflow.kube-zen.io"], "resources": ["clusterjobflowtemplates"], "verbs": ["get"]}
    ]
    bindings = [b for b in find_all(docs, "RoleBinding") if b["roleRef"]["kind"] == "ClusterRole"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]


def test_rbac_cluster_templates_false_leaves_out_every_grant_on_cluster_templates(
    helm: str, tmp_path: Path
) -> None:
    # The one cluster-wide binding of a watchNamespaces install, and the rule in the ClusterRole, go.
    scoped = render(helm, tmp_path, {"watchNamespaces": ["team-a"], "rbac": {"clusterTemplates": False}})
    assert not find_all(scoped, "ClusterRoleBinding")
    assert [r["metadata"]["name"] for r in find_all(scoped, "ClusterRole")] == ["zen-flow-controller"]
    for docs in (scoped, render(helm, tmp_path, {"rbac": {"clusterTemplates": False}})):
        resources = {
            res for role in find_all(docs, "ClusterRole") for r in role["rules"] for res in r["resources"]
        }
        assert "clusterjobflowtemplates" not in resources
        assert "jobflowtemplates" in resources


def test_the_network_policy_is_the_kustomize_components(helm: str, tmp_path: Path) -> None:
    assert not find_all(render(helm, tmp_path), "NetworkPolicy")  # off by default
    docs = render(helm, tmp_path, {"networkPolicy": {"enabled": True}})
    chart_policy = find(docs, "NetworkPolicy")
    (component,) = documents(CONFIG / "components" / "network-policy" / "networkpolicy.yaml")
    assert chart_policy["spec"]["ingress"] == component["spec"]["ingress"]
    assert chart_policy["spec"]["policyTypes"] == component["spec"]["policyTypes"]
    # It selects exactly the controller's pods.
    pod_labels = deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert chart_policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_the_network_policy_lets_in_the_ports_the_pods_serve(helm: str, tmp_path: Path) -> None:
    # With other ports, a policy still naming 9443 cut the apiserver off the webhooks (failurePolicy
    # Fail: every JobFlow write refused), and one naming 8080 cut Prometheus off /metrics.
    values = {"networkPolicy": {"enabled": True}, "webhook": {"port": 10443}, "metrics": {"port": 9090}}
    docs = render(helm, tmp_path, values)
    allowed = {p["port"] for rule in find(docs, "NetworkPolicy")["spec"]["ingress"] for p in rule["ports"]}
    served = {p["containerPort"] for p in container(deployment(docs))["ports"]}
    assert allowed == served == {10443, 9090}
    off = render(helm, tmp_path, {"networkPolicy": {"enabled": True}, "webhook": {"enabled": False}})
    assert [p["port"] for rule in find(off, "NetworkPolicy")["spec"]["ingress"] for p in rule["ports"]] == [
        8080
    ]


def test_webhook_disabled_runs_without_webhooks_or_certificates(helm: str, tmp_path: Path) -> None:
    values = {"webhook": {"enabled": False}, "metrics": {"prometheusRule": {"enabled": True}}}
    docs = render(helm, tmp_path, values)
    kinds = {d["kind"] for d in docs}
    assert not kinds & {
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "Certificate",
        "Issuer",
    }
    dep = deployment(docs)
    assert settings_of(dep).webhook_addr == ""  # the controller's way to disable them
    assert all("secret" not in v for v in dep["spec"]["template"]["spec"]["volumes"])
    alerts = {r["alert"] for r in alert_rules(find(docs, "PrometheusRule"))}
    assert not {a for a in alerts if a.startswith("ZenFlowWebhook")}


def test_single_replica_without_leader_election(helm: str, tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="leaderElection"):
        render(helm, tmp_path, {"leaderElection": {"enabled": False}})
    values = {
        "replicaCount": 1,
        "leaderElection": {"enabled": False},
        "metrics": {"prometheusRule": {"enabled": True}},
    }
    docs = render(helm, tmp_path, values)
    assert settings_of(deployment(docs)).leader_elect is False
    assert not find_all(docs, "Role")
    assert not find_all(docs, "PodDisruptionBudget")
    alerts = {r["alert"] for r in alert_rules(find(docs, "PrometheusRule"))}
    assert "ZenFlowNoLeader" not in alerts
    assert "ZenFlowControllerDown" in alerts


def test_shards_become_the_flag_and_the_role_lets_the_replicas_reach_every_member_lease(
    helm: str, tmp_path: Path
) -> None:
    docs = render(helm, tmp_path, {"leaderElection": {"shards": 4}})
    assert settings_of(deployment(docs)).shards == 4
    role = find(docs, "Role")
    # Member Leases are named after the replicas: get/patch cannot be limited to names any more.
    for verb in ("get", "patch", "list", "delete"):
        assert rules_allow(role["rules"], "coordination.k8s.io", "leases", verb, name="zf-member-0123456789")
    default = find(render(helm, tmp_path), "Role")
    assert not rules_allow(default["rules"], "coordination.k8s.io", "leases", "patch", name="zf-member-0")
    for bad in (0, 65):
        with pytest.raises(RenderError, match=r"leaderElection\.shards must be between 1 and 64"):
            render(helm, tmp_path, {"leaderElection": {"shards": bad}})
    with pytest.raises(RenderError, match=r"leaderElection\.shards > 1 needs leaderElection\.enabled"):
        render(helm, tmp_path, {"replicaCount": 1, "leaderElection": {"enabled": False, "shards": 2}})


def test_without_cert_manager_an_existing_secret_and_ca_are_required(helm: str, tmp_path: Path) -> None:
    no_cert_manager = {"certManager": {"enabled": False}}
    with pytest.raises(RenderError, match=r"webhook\.secretName"):
        render(helm, tmp_path, {"webhook": {**no_cert_manager, "caBundle": "Q0E="}})
    with pytest.raises(RenderError, match=r"webhook\.caBundle"):
        render(helm, tmp_path, {"webhook": {**no_cert_manager, "secretName": "my-tls"}})
    values = {"webhook": {"certManager": {"enabled": False}, "secretName": "my-tls", "caBundle": "Q0E="}}
    docs = render(helm, tmp_path, values)
    assert not find_all(docs, "Certificate")
    assert not find_all(docs, "Issuer")
    volume = next(v for v in deployment(docs)["spec"]["template"]["spec"]["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "my-tls"
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        config = find(docs, kind)
        assert config["webhooks"][0]["clientConfig"]["caBundle"] == "Q0E="
        assert "cert-manager.io/inject-ca-from" not in (config["metadata"].get("annotations") or {})


@pytest.mark.parametrize("number", [0, 1234567, True])
def test_an_instance_id_that_is_no_string_is_refused_naming_the_field(
    helm: str, tmp_path: Path, number: object
) -> None:
    # Unquoted, 0 would drop the flag (two releases running the same unlabelled flows, each leading on a
    # Lease of its own) and 1234567 would become --instance-id=1.234567e+06.
    with pytest.raises(RenderError, match=r"controller\.instanceId must be a string"):
        render(helm, tmp_path, {"controller": {"instanceId": number}})


@pytest.mark.parametrize("quoted", ["0", "1234567", "team-a.2"])
def test_a_quoted_instance_id_becomes_the_flag_verbatim(helm: str, tmp_path: Path, quoted: str) -> None:
    docs = render(helm, tmp_path, {"controller": {"instanceId": quoted}})
    assert settings_of(deployment(docs)).instance_id == quoted


def test_controller_values_become_flags(helm: str, tmp_path: Path) -> None:
    values = {
        "controller": {
            "workers": 3,
            "startWorkers": 2,
            "qps": 20,
            "burst": 40,
            "resyncSeconds": 600,
            "progressDeadlineSeconds": 900,
            "logLevel": "debug",
            "instanceId": "team-a",
        },
        "leaderElection": {"leaseName": "custom-lease"},
    }
    docs = render(helm, tmp_path, values)
    settings = settings_of(deployment(docs))
    assert (settings.workers, settings.qps, settings.burst) == (3, 20.0, 40)
    assert settings.start_workers == 2
    assert settings.resync_seconds == 600.0
    assert settings.progress_deadline_seconds == 900.0
    assert settings.log_level == "debug"
    assert settings.instance_id == "team-a"
    assert settings.lease_name == "custom-lease"
    assert rules_allow(find(docs, "Role")["rules"], "coordination.k8s.io", "leases", "get", "custom-lease")


def test_cloudevents_values_become_flags_and_the_ca_a_mount(helm: str, tmp_path: Path) -> None:
    default = deployment(render(helm, tmp_path, {}))["spec"]["template"]["spec"]
    assert not [a for a in default["containers"][0]["args"] if "cloudevents" in a]  # no sink, no flags
    assert "ZEN_FLOW_CLOUDEVENTS_SINK" not in {e["name"] for e in default["containers"][0]["env"]}
    sink = "https://hooks.example/ce?token=a&b=c"
    values = {"controller": {"cloudEvents": {"sink": sink, "timeoutSeconds": 2}}}
    settings = settings_of(deployment(render(helm, tmp_path, values)))
    assert (settings.cloudevents_sink, settings.cloudevents_timeout) == (sink, 2.0)
    assert settings.cloudevents_ca_file == ""
    values["controller"]["cloudEvents"]["caConfigMap"] = "hooks-ca"
    pod = deployment(render(helm, tmp_path, values))["spec"]["template"]["spec"]
    # Not through settings_of: the file it names exists only in the pod.
    assert "--cloudevents-ca-file=/etc/zen-flow/cloudevents-ca/ca.crt" in pod["containers"][0]["args"]
    assert {v["name"]: v for v in pod["volumes"]}["cloudevents-ca"]["configMap"] == {"name": "hooks-ca"}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["cloudevents-ca"]["mountPath"] == "/etc/zen-flow/cloudevents-ca"


def test_the_cloudevents_sink_from_a_secret_keeps_its_timeout_and_ca(helm: str, tmp_path: Path) -> None:
    ce = {"sinkSecret": {"name": "hook", "key": "endpoint"}, "timeoutSeconds": 2, "caConfigMap": "hooks-ca"}
    pod = deployment(render(helm, tmp_path, {"controller": {"cloudEvents": ce}}))["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["ZEN_FLOW_CLOUDEVENTS_SINK"]["valueFrom"] == {
        "secretKeyRef": {"name": "hook", "key": "endpoint"}
    }
    args = pod["containers"][0]["args"]
    assert not [a for a in args if a.startswith("--cloudevents-sink")]  # the flag would win over the Secret
    assert "--cloudevents-timeout=2" in args
    assert "--cloudevents-ca-file=/etc/zen-flow/cloudevents-ca/ca.crt" in args
    assert {v["name"]: v for v in pod["volumes"]}["cloudevents-ca"]["configMap"] == {"name": "hooks-ca"}
    assert "cloudevents-ca" in {m["name"] for m in pod["containers"][0]["volumeMounts"]}
    # As the controller starts with it (the Secret's value stands in for the environment variable).
    settings = settings_of(deployment(render(helm, tmp_path, {"controller": {"cloudEvents": {
        "sinkSecret": {"name": "hook"}, "timeoutSeconds": 2}}})))  # fmt: skip
    assert settings.cloudevents_timeout == 2.0
    with pytest.raises(RenderError, match="set sink or sinkSecret, not both"):
        render(
            helm,
            tmp_path,
            {"controller": {"cloudEvents": {"sink": "http://h/", "sinkSecret": {"name": "x"}}}},
        )


def test_cloudevents_step_events_become_the_flag_with_a_sink_only(helm: str, tmp_path: Path) -> None:
    def args(cloud_events: dict[str, Any]) -> list[str]:
        pod = deployment(render(helm, tmp_path, {"controller": {"cloudEvents": cloud_events}}))
        return list(pod["spec"]["template"]["spec"]["containers"][0]["args"])

    sink = "http://hooks.example/"
    off = deployment(
        render(helm, tmp_path, {"controller": {"cloudEvents": {"sink": sink, "stepEvents": False}}})
    )
    assert settings_of(off).cloudevents_step_events is False  # as the controller starts with it
    assert "--cloudevents-step-events=true" in args({"sink": sink})  # the default
    # A sink from a Secret takes it too; no sink, no flag (as the timeout).
    assert "--cloudevents-step-events=false" in args({"sinkSecret": {"name": "hook"}, "stepEvents": False})
    assert not [a for a in args({"sink": "", "stepEvents": False}) if "cloudevents" in a]
    # Quoted, "false" is a string, not a boolean: refused naming the value, not silently left out.
    with pytest.raises(RenderError, match=r"controller\.cloudEvents\.stepEvents must be true or false"):
        args({"sink": sink, "stepEvents": "false"})


def test_a_ca_without_a_sink_renders_nothing_the_controller_refuses(helm: str, tmp_path: Path) -> None:
    # An operator turns the sink off by clearing it, leaving caConfigMap and timeoutSeconds as they were:
    # the controller refuses a CA file without an https sink, so rendering it would crash-loop the pod.
    ce = {"sink": "", "timeoutSeconds": 2, "caConfigMap": "hooks-ca"}
    chart = deployment(render(helm, tmp_path, {"controller": {"cloudEvents": ce}}))
    pod = chart["spec"]["template"]["spec"]
    assert not [a for a in pod["containers"][0]["args"] if "cloudevents" in a]
    assert "cloudevents-ca" not in {v["name"] for v in pod["volumes"]}
    assert "cloudevents-ca" not in {m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert settings_of(chart).cloudevents_sink == ""  # starts: config.load raised before
    # A sink given another way (the environment, a flag of extraArgs) still gets its CA and timeout.
    for other in (
        {"extraEnv": [{"name": "ZEN_FLOW_CLOUDEVENTS_SINK", "value": "https://hooks.example/"}]},
        {"extraArgs": ["--cloudevents-sink=https://hooks.example/"]},
    ):
        values = {"controller": {"cloudEvents": ce, **other}}
        pod = deployment(render(helm, tmp_path, values))["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        assert "--cloudevents-ca-file=/etc/zen-flow/cloudevents-ca/ca.crt" in args, other
        assert "--cloudevents-timeout=2" in args, other
        assert "cloudevents-ca" in {v["name"] for v in pod["volumes"]}, other


def test_optional_monitoring_objects(helm: str, tmp_path: Path) -> None:
    values = {
        "metrics": {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True, "disabled": ["ZenFlowSlowSteps"]},
        },
        "grafana": {"dashboard": {"enabled": True}},
        "vpa": {"enabled": True},
    }
    docs = render(helm, tmp_path, values)
    dashboard = find(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["zen-flow.json"]) == load_dashboard(
        CONFIG / "grafana" / "dashboard.json"
    )
    rendered = {r["alert"]: r for r in alert_rules(find(docs, "PrometheusRule"))}
    source = {r["alert"]: r for r in alert_rules(find(objects("prometheus"), "PrometheusRule"))}
    assert set(rendered) == set(source) - {"ZenFlowSlowSteps"}
    assert rendered["ZenFlowNoLeader"] == source["ZenFlowNoLeader"]  # same names: nothing replaced
    vpa = find(docs, "VerticalPodAutoscaler")
    assert vpa["spec"]["updatePolicy"]["updateMode"] == "Off"
    assert vpa["spec"]["targetRef"]["name"] == deployment(docs)["metadata"]["name"]
    assert find(docs, "ServiceMonitor")["spec"]["endpoints"][0]["honorLabels"] is True


def test_archive_values_become_flags_and_the_keys_are_files_of_a_mounted_secret(
    helm: str, tmp_path: Path
) -> None:
    default = container(deployment(render(helm, tmp_path, {})))
    assert not [a for a in default["args"] if "archive" in a]  # off by default: no flags, no keys
    assert not [e for e in default["env"] if e["name"].startswith("ZEN_FLOW_ARCHIVE")]
    archive = {
        "endpoint": "https://s3.eu-west-1.amazonaws.com",
        "bucket": "team-flows",
        "credentialsSecret": {"name": "archive-keys", "sessionTokenKey": "sessionToken"},
        "maxDelaySeconds": 3600,
        "caConfigMap": "store-ca",
        "logs": True,  # a YAML boolean (`logs: on` unquoted): on
        "logLimitBytes": 65536,
    }
    pod = deployment(render(helm, tmp_path, {"archive": archive}))["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    # Files of the mounted Secret (read again: rotated keys), not values fixed at the pod's start.
    assert env["ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID_FILE"] == "/etc/zen-flow/archive-keys/accessKeyId"
    assert env["ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY_FILE"] == "/etc/zen-flow/archive-keys/secretAccessKey"
    assert env["ZEN_FLOW_ARCHIVE_SESSION_TOKEN_FILE"] == "/etc/zen-flow/archive-keys/sessionToken"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["archive-keys"]["secret"] == {"secretName": "archive-keys"}
    assert {"name": "archive-keys", "mountPath": "/etc/zen-flow/archive-keys", "readOnly": True} in c[
        "volumeMounts"
    ]
    assert "--archive-s3-ca-file=/etc/zen-flow/archive-ca/ca.crt" in c["args"]
    assert volumes["archive-ca"]["configMap"] == {"name": "store-ca"}
    # As the controller starts with it (files standing in for the Secret's; the CA file exists only in
    # the pod).
    args = [a for a in c["args"] if not a.startswith("--archive-s3-ca-file")]
    for name in ("accessKeyId", "secretAccessKey", "sessionToken"):
        (tmp_path / name).write_text(f"{name}-value\n")
    keys = {
        k: v.replace("/etc/zen-flow/archive-keys", str(tmp_path)) for k, v in env.items() if "ARCHIVE" in k
    }
    assert ArchiveKeys(keys).current().access_key == "accessKeyId-value"
    settings = config.load(build_parser().parse_args(args), env=keys)
    assert settings.archive_enabled
    assert (settings.archive_s3_bucket, settings.archive_s3_prefix) == ("team-flows", "jobflows/")
    assert settings.archive_max_delay_seconds == 3600.0
    assert (settings.archive_logs, settings.archive_log_limit_bytes) == ("on", 65536)
    with pytest.raises(RenderError, match=r"archive\.credentialsSecret\.name"):
        render(helm, tmp_path, {"archive": {"endpoint": "http://minio:9000", "bucket": "b"}})
    with pytest.raises(RenderError, match=r"both archive\.endpoint and archive\.bucket"):
        render(helm, tmp_path, {"archive": {"endpoint": "http://minio:9000"}})


def test_archive_logs_takes_the_controllers_modes_and_pods_log_is_granted_only_when_not_off(
    helm: str, tmp_path: Path
) -> None:
    store = {"endpoint": "http://minio:9000", "bucket": "b", "credentialsSecret": {"name": "keys"}}
    full = find(objects("rbac"), "ClusterRole")["rules"]
    for logs, flag in (
        ("off", None),
        ("opt-in", "--archive-logs=opt-in"),
        ("opt-out", "--archive-logs=opt-out"),
    ):
        docs = render(helm, tmp_path, {"archive": {**store, "logs": logs}})
        args = container(deployment(docs))["args"]
        assert [a for a in args if a.startswith("--archive-logs=")] == ([flag] if flag else [])
        rules = find(docs, "ClusterRole")["rules"]
        assert rules_allow(rules, "", "pods/log", "get") == (flag is not None), logs
        if flag:
            assert rules == full  # the same rules as config/rbac
    # Without an archive no log is read, whatever archive.logs says: no flag, no pods/log.
    docs = render(helm, tmp_path, {"archive": {"logs": "on"}})
    assert not rules_allow(find(docs, "ClusterRole")["rules"], "", "pods/log", "get")
    with pytest.raises(RenderError, match=r"archive\.logs must be off, on, opt-in or opt-out"):
        render(helm, tmp_path, {"archive": {**store, "logs": "sometimes"}})
    # archive.logs off but the controller told to read logs all the same (extraArgs, extraEnv): granted.
    for controller in (
        {"extraArgs": ["--archive-logs=on"]},
        {"extraEnv": [{"name": "ZEN_FLOW_ARCHIVE_LOGS", "value": "opt-in"}]},
    ):
        docs = render(helm, tmp_path, {"archive": {**store, "logs": "off"}, "controller": controller})
        assert rules_allow(find(docs, "ClusterRole")["rules"], "", "pods/log", "get"), controller
    docs = render(helm, tmp_path, {"archive": store, "controller": {"extraArgs": ["--archive-logs=off"]}})
    assert not rules_allow(find(docs, "ClusterRole")["rules"], "", "pods/log", "get")
