"""The Helm chart's values that shape the release, rendered by the real helm (helm_rig): another release
name, watched namespaces, RBAC, the network policy, webhooks, replicas and shards, certificates,
monitoring objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helm_rig import RenderError, deployment, render

from deploy_manifests import (
    CONFIG,
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
from zen_flow_dev.testing.prometheus import alert_rules
from zen_flow_dev.testing.rbac import granted, rules_allow, webhook_permissions

CLUSTER_TEMPLATES_GET = ("workflow.kube-zen.io", "clusterjobflowtemplates", "get")


def cluster_wide(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """What the rendered ClusterRoleBindings grant: (group, resource, verb) in every namespace."""
    return {
        key
        for binding in find_all(docs, "ClusterRoleBinding")
        for key in granted(find(docs, "ClusterRole", binding["roleRef"]["name"])["rules"])
    }


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
    assert volume["secret"].get("optional") is True  # as config/manager's: ready once it appears
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
    docs = render(helm, tmp_path, {"watchNamespaces": ["team-a", "team-b"], "webhook": {"enabled": False}})
    assert settings_of(deployment(docs)).namespaces == ("team-a", "team-b")
    # Without the webhooks, one cluster-wide grant: reading ClusterJobFlowTemplates (no RoleBinding can).
    assert cluster_wide(docs) == {CLUSTER_TEMPLATES_GET}
    bindings = [b for b in find_all(docs, "RoleBinding") if b["roleRef"]["kind"] == "ClusterRole"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]


def test_the_release_serving_the_webhooks_reads_what_a_review_reads_in_every_namespace(
    helm: str, tmp_path: Path
) -> None:
    # The webhooks review flows in every namespace, the other releases' teams' too: a release watching
    # team-a only was refused every template read and approval check elsewhere, so every flow with a
    # templateRef and every approval outside team-a was refused. It gets exactly the requests its
    # reviews send (read from the code), cluster-wide, and nothing else.
    needed = {p.key for p in webhook_permissions()}
    assert ("authorization.k8s.io", "localsubjectaccessreviews", "create") in needed
    docs = render(helm, tmp_path, {"watchNamespaces": ["team-a"]})
    assert cluster_wide(docs) == needed | {CLUSTER_TEMPLATES_GET}
    bound = {b["roleRef"]["name"] for b in find_all(docs, "RoleBinding")}
    assert "zen-flow-controller-webhook" not in bound
    without_cluster_templates = render(
        helm, tmp_path, {"watchNamespaces": ["team-a"], "rbac": {"clusterTemplates": False}}
    )
    assert cluster_wide(without_cluster_templates) == needed - {CLUSTER_TEMPLATES_GET}
    # Watching every namespace, the controller's ClusterRoleBinding holds them already: no other grant.
    (binding,) = find_all(render(helm, tmp_path), "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "zen-flow-controller"


def test_users_built_in_roles_get_the_flows_unless_turned_off(helm: str, tmp_path: Path) -> None:
    # Whoever holds view, edit or admin in a namespace reads (view) or also writes the flows there, as
    # Jobs; `zen-flow stop/suspend/retry` patch the flow; only admin decides a gate (verb approve).
    docs = render(helm, tmp_path, release="flows")
    workflow = "workflow.kube-zen.io"
    for role in ("view", "edit", "admin"):
        found = find(docs, "ClusterRole", f"flows-zen-flow-aggregate-to-{role}")
        assert found["metadata"]["labels"][f"rbac.authorization.k8s.io/aggregate-to-{role}"] == "true"
        rules = found["rules"]
        for kind in ("jobflows", "cronjobflows", "jobflowtemplates"):
            assert rules_allow(rules, workflow, kind, "list")
            for verb in ("create", "patch", "delete"):
                assert rules_allow(rules, workflow, kind, verb) == (role != "view"), (role, kind, verb)
        assert rules_allow(rules, workflow, "jobflows", "approve") == (role == "admin"), role
        assert rules_allow(rules, workflow, "clusterjobflowtemplates", "get") == (role == "view"), role
        assert not rules_allow(rules, workflow, "jobflows/status", "patch"), role  # the controller's
    for values in ({"rbac": {"aggregateToDefaultRoles": False}}, {"rbac": {"create": False}}):
        names = [r["metadata"]["name"] for r in find_all(render(helm, tmp_path, values), "ClusterRole")]
        assert not [n for n in names if "aggregate-to" in n], values


def test_rbac_cluster_templates_false_leaves_out_every_grant_on_cluster_templates(
    helm: str, tmp_path: Path
) -> None:
    # The one cluster-wide binding of a watchNamespaces install, and the rule in the ClusterRole, go.
    values = {
        "watchNamespaces": ["team-a"],
        "rbac": {"clusterTemplates": False},
        "webhook": {"enabled": False},
    }
    scoped = render(helm, tmp_path, values)
    assert not find_all(scoped, "ClusterRoleBinding")
    assert {r["metadata"]["name"] for r in find_all(scoped, "ClusterRole")} == {
        "zen-flow-controller",
        *(f"zen-flow-aggregate-to-{role}" for role in ("view", "edit", "admin")),
    }
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


def test_the_webhook_port_is_open_to_the_peers_of_webhook_from_only(helm: str, tmp_path: Path) -> None:
    # The port is unauthenticated without webhook.clientAuth: an operator limits it to the apiserver.
    peers = [{"ipBlock": {"cidr": "10.0.0.0/28"}}, {"namespaceSelector": {"matchLabels": {"a": "b"}}}]
    values = {"networkPolicy": {"enabled": True, "webhookFrom": peers}}
    ingress = find(render(helm, tmp_path, values), "NetworkPolicy")["spec"]["ingress"]
    (webhook,) = [rule for rule in ingress if rule["ports"] == [{"protocol": "TCP", "port": 9443}]]
    assert webhook["from"] == peers
    (metrics,) = [rule for rule in ingress if rule is not webhook]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"zen-flow.kube-zen.io/metrics": "allow"}}}
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
