"""The deployment manifests in config/ agree with the code they deploy.

Each test guards against a way the original zen-flow's manifests were broken (upstream.md §3, §7): flags
the binary does not have, a cert Secret mounted that nothing creates, a webhook Service that selects no
pod, alerts on a job label that never matches, rates without sum, metrics that do not exist,
cluster-wide secrets access and missing verbs.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Histogram

from deploy_manifests import (
    CONFIG,
    PROMETHEUS_SERIES,
    ROOT,
    TARGET_LABELS,
    config_yaml_files,
    container,
    dashboard_variable_metrics,
    documents,
    find,
    find_all,
    load_dashboard,
    metric_catalog,
    objects,
    parse_promql,
    selectors,
    settings_of,
    unaggregated_rates,
)
from zen_flow.addresses import split_addr
from zen_flow.controller.app import CLOUDEVENTS_FLUSH_SECONDS
from zen_flow.controller.metrics import Metrics
from zen_flow_dev.testing.prometheus import alert_rules, dashboard_queries
from zen_flow_dev.testing.rbac import Permission, granted, required_permissions, rules_allow

CONTROLLER = objects("manager")
RBAC = objects("rbac")
WEBHOOK = objects("webhook")
PROMETHEUS = objects("prometheus")
DEPLOYMENT = find(CONTROLLER, "Deployment", "zen-flow-controller")
POD = DEPLOYMENT["spec"]["template"]
SETTINGS = settings_of(DEPLOYMENT)
CLUSTER_ROLE = find(RBAC, "ClusterRole")
LEASE_ROLE = find(RBAC, "Role")
SERVICE_MONITOR = find(PROMETHEUS, "ServiceMonitor")
RULES = find(PROMETHEUS, "PrometheusRule")
DASHBOARD = load_dashboard(CONFIG / "grafana" / "dashboard.json")
FORBIDDEN_RESOURCES = ("secrets", "serviceaccounts")
# spec.resourceTemplates: create one object and read one by name (its owner), never more.
TEMPLATE_RESOURCES = ("configmaps", "persistentvolumeclaims")
# Granted beyond what the code sends, each for a stated reason (docs/RBAC.md):
GRANTED_EXTRAS = {
    ("workflow.kube-zen.io", "jobflows/status", "get"): "read the status subresource (kubectl, debugging)",
    ("batch", "jobs", "get"): "a single-Job read (adoption after AlreadyExists)",
    ("coordination.k8s.io", "leases", "update"): "client-go-style lease renewal with PUT",
}


# --- every file parses ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", config_yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_yaml_parses_into_objects_with_kind_and_name(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path} is empty"
    for doc in docs:
        assert doc.get("apiVersion"), doc
        assert doc.get("kind"), doc
        if doc["kind"] not in ("Kustomization", "Component"):
            assert doc["metadata"]["name"]


@pytest.mark.parametrize(
    "directory", ["crd", "rbac", "user-roles", "manager", "webhook", "prometheus", "default"]
)
def test_kustomization_lists_exactly_the_manifests_of_its_directory(directory: str) -> None:
    base = CONFIG / directory
    kustomization = next(base / n for n in ("kustomization.yaml", "Kustomization") if (base / n).exists())
    listed = set(documents(kustomization)[0]["resources"])
    if directory == "default":
        assert listed == {"../crd", "../rbac", "../user-roles", "../manager", "../webhook"}
        return
    present = {p.name for p in base.glob("*.yaml") if p.name != "kustomization.yaml"}
    # vpa.yaml needs the VPA CRDs and is applied on its own (its comment says so).
    assert listed == present - {"vpa.yaml"}


# --- the Deployment runs the real CLI ---------------------------------------------------------------


def test_deployment_args_are_flags_the_controller_accepts_with_valid_values() -> None:
    # settings_of parsed them with zen_flow.cli.build_parser() and converted them with config.load().
    assert SETTINGS.leader_elect is True
    assert SETTINGS.webhook_addr
    assert SETTINGS.metrics_addr
    assert SETTINGS.log_format == "json"


def test_unknown_or_malformed_args_would_be_caught() -> None:
    broken = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    args = container(broken)["args"]
    args.append("--enable-leader-election=true")  # the original's nonexistent flag
    with pytest.raises(SystemExit):
        settings_of(broken)
    args[-1] = "--leader-elect=maybe"
    with pytest.raises(ValueError, match="leader-elect"):
        settings_of(broken)


def test_environment_variables_are_real_settings_or_the_downward_api() -> None:
    env = {e["name"]: e for e in container(DEPLOYMENT).get("env", [])}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    fields = set(SETTINGS.__dataclass_fields__)
    for name in env:
        if name.startswith("ZEN_FLOW_"):
            assert name.removeprefix("ZEN_FLOW_").lower() in fields, name
    # Steps' artifact containers run the controller's own image, so both are always one version.
    assert (
        env["ZEN_FLOW_ARTIFACT_IMAGE"]["value"] == container(DEPLOYMENT)["image"] == SETTINGS.artifact_image
    )


def test_two_replicas_elect_a_leader_on_the_lease_the_role_allows() -> None:
    assert DEPLOYMENT["spec"]["replicas"] == 2
    assert SETTINGS.leader_elect
    # The Lease lives in the pod's namespace (POD_NAMESPACE) unless overridden.
    assert SETTINGS.leader_election_namespace in ("", DEPLOYMENT["metadata"]["namespace"])
    assert LEASE_ROLE["metadata"]["namespace"] == DEPLOYMENT["metadata"]["namespace"]
    lease = SETTINGS.lease_name
    for verb in ("get", "patch"):
        assert rules_allow(LEASE_ROLE["rules"], "coordination.k8s.io", "leases", verb, name=lease)
        assert not rules_allow(LEASE_ROLE["rules"], "coordination.k8s.io", "leases", verb, name="other")
    assert rules_allow(LEASE_ROLE["rules"], "coordination.k8s.io", "leases", "create")


def test_the_grace_period_outlasts_the_leaders_shutdown() -> None:
    # SIGTERM: the reconciles in hand (at most the renew deadline), the CloudEvents flush, then the Lease
    # is released. Killed before, the leader would leave its Lease for the standby to wait out. The
    # chart's defaults are these (tests/tools/test_helm_render.py).
    grace = DEPLOYMENT["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > SETTINGS.renew_deadline + CLOUDEVENTS_FLUSH_SECONDS


def test_a_copy_of_the_deployment_given_an_instance_id_elects_its_leader_on_a_lease_of_its_own() -> None:
    # Sharing the first one's Lease, it would never lead while that one does: its flows would not run.
    other = copy.deepcopy(DEPLOYMENT)
    container(other)["args"].append("--instance-id=team-a")
    assert settings_of(other).lease_name == "zen-flow-controller-team-a" != SETTINGS.lease_name


def test_ports_probes_and_services_line_up() -> None:
    c = container(DEPLOYMENT)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == split_addr(SETTINGS.metrics_addr)[1]
    assert ports["webhook"] == split_addr(SETTINGS.webhook_addr)[1]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"]["port"] == "metrics"
    metrics_service = find(CONTROLLER, "Service", "zen-flow-controller-metrics")
    assert metrics_service["spec"]["ports"][0]["targetPort"] in ("metrics", ports["metrics"])
    webhook_service = find(WEBHOOK, "Service", "zen-flow-webhook")
    assert webhook_service["spec"]["ports"][0]["targetPort"] in ("webhook", ports["webhook"])


def test_services_and_pdb_select_the_controller_pods() -> None:
    pod_labels = POD["metadata"]["labels"]
    selected = [
        find(WEBHOOK, "Service", "zen-flow-webhook")["spec"]["selector"],
        find(CONTROLLER, "Service", "zen-flow-controller-metrics")["spec"]["selector"],
        find(CONTROLLER, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        DEPLOYMENT["spec"]["selector"]["matchLabels"],
    ]
    for selector in selected:
        assert selector.items() <= pod_labels.items(), selector
    assert pod_labels["app.kubernetes.io/name"] == "zen-flow"
    assert pod_labels["app.kubernetes.io/component"] == "controller"


def test_webhook_certificate_secret_is_mounted_as_a_directory_at_the_cert_dir() -> None:
    certificate = find(WEBHOOK, "Certificate", "zen-flow-webhook-cert")
    volumes = {v["name"]: v for v in POD["spec"]["volumes"]}
    cert_volumes = [n for n, v in volumes.items() if v.get("secret", {}).get("secretName")]
    assert len(cert_volumes) == 1
    volume = volumes[cert_volumes[0]]
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"] == "zen-flow-webhook-cert"
    # A replica started before the Secret exists runs unready and loads the pair once it appears, instead
    # of waiting in ContainerCreating (test_webhook_bootstrap.py).
    assert volume["secret"].get("optional") is True
    mount = next(m for m in container(DEPLOYMENT)["volumeMounts"] if m["name"] == cert_volumes[0])
    assert mount["mountPath"] == SETTINGS.webhook_cert_dir
    assert "subPath" not in mount  # subPath mounts never see cert-manager's renewals
    assert mount.get("readOnly") is True
    service = find(WEBHOOK, "Service")
    ns = service["metadata"]["namespace"]
    assert f"{service['metadata']['name']}.{ns}.svc" in certificate["spec"]["dnsNames"]


def test_the_ca_bundle_outlives_a_renewal_of_the_serving_certificate() -> None:
    # cainjector fills the caBundle from the serving certificate's ca.crt. Self-signed, that is the serving
    # certificate itself, new at every renewal (rotationPolicy Always) while the pods still serve the old
    # pair for up to ~90 s: the apiserver then refuses the webhook, and every JobFlow write with it. Signed
    # by a CA of its own whose key survives its own renewals, the caBundle stays valid throughout.
    serving = find(WEBHOOK, "Certificate", "zen-flow-webhook-cert")
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        injected = find(WEBHOOK, kind)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        assert injected == f"zen-flow-system/{serving['metadata']['name']}"
    issuer = find(WEBHOOK, serving["spec"]["issuerRef"]["kind"], serving["spec"]["issuerRef"]["name"])
    ca = next(
        c
        for c in find_all(WEBHOOK, "Certificate")
        if c["spec"]["secretName"] == issuer["spec"]["ca"]["secretName"]
    )
    assert ca["spec"]["isCA"] is True
    assert ca["spec"]["privateKey"]["rotationPolicy"] == "Never"
    assert "selfSigned" in find(WEBHOOK, "Issuer", ca["spec"]["issuerRef"]["name"])["spec"]
    hours = {c["metadata"]["name"]: int(c["spec"]["duration"].removesuffix("h")) for c in (ca, serving)}
    assert hours[ca["metadata"]["name"]] >= 10 * hours[serving["metadata"]["name"]]


def test_pod_meets_the_restricted_pod_security_profile() -> None:
    pod_sc = POD["spec"]["securityContext"]
    c = container(DEPLOYMENT)
    sc = c["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == pod_sc["runAsUser"] == 65532  # numeric: runAsNonRoot can verify it
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"]["type"] == pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert c["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},  # measured ~58 MB idle, 121-135 MB at 20,000 Jobs
        "limits": {"cpu": "500m", "memory": "384Mi"},  # and two expression workers, 96 MiB each at most
    }
    namespace = find(CONTROLLER, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_vpa_only_recommends_within_bounds() -> None:
    vpa = documents(CONFIG / "manager" / "vpa.yaml")[0]
    assert vpa["spec"]["targetRef"]["name"] == DEPLOYMENT["metadata"]["name"]
    assert vpa["spec"]["updatePolicy"]["updateMode"] in ("Off", "Initial")
    policy = vpa["spec"]["resourcePolicy"]["containerPolicies"][0]
    assert policy["containerName"] == container(DEPLOYMENT)["name"]
    assert policy["minAllowed"] == container(DEPLOYMENT)["resources"]["requests"]


def test_containerfile_matches_the_deployment() -> None:
    text = (ROOT / "Containerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) >= 2
    assert all(s.startswith("${BASE_IMAGE}") for s in stages)  # one base, overridable
    assert re.search(r"^ARG BASE_IMAGE=python:3.11-slim$", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users[-1] == "65532:65532"
    exposed = {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", text, re.M) for p in line.split()}
    assert exposed == {p["containerPort"] for p in container(DEPLOYMENT)["ports"]}
    assert re.search(r'^ENTRYPOINT \["zen-flow"\]$', text, re.M)
    assert re.search(r'^CMD \["run"\]$', text, re.M)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "zen-flow" in scripts
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    assert "PYTHONUNBUFFERED=1" in text


# --- RBAC: what the code sends, nothing more --------------------------------------------------------


def _cluster_permissions() -> list[Permission]:
    return sorted(p for p in required_permissions() if not p.leader_election)


@pytest.mark.parametrize("perm", _cluster_permissions(), ids=str)
def test_cluster_role_grants_every_request_the_code_sends(perm: Permission) -> None:
    assert rules_allow(CLUSTER_ROLE["rules"], perm.group, perm.resource, perm.verb), (
        f"{perm} is used at {perm.why} but not granted"
    )


@pytest.mark.parametrize("perm", sorted(p for p in required_permissions() if p.leader_election), ids=str)
def test_leader_election_role_grants_the_lease_requests(perm: Permission) -> None:
    name = "" if perm.verb == "create" else SETTINGS.lease_name
    assert rules_allow(LEASE_ROLE["rules"], perm.group, perm.resource, perm.verb, name=name)


def test_nothing_is_granted_beyond_the_code_and_the_documented_extras() -> None:
    needed = {p.key for p in required_permissions()}
    extra = (granted(CLUSTER_ROLE["rules"]) | granted(LEASE_ROLE["rules"])) - needed
    assert extra <= set(GRANTED_EXTRAS), sorted(extra - set(GRANTED_EXTRAS))
    for role in (CLUSTER_ROLE, LEASE_ROLE):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], rule


def test_no_access_to_secrets_pods_or_leases_cluster_wide() -> None:
    for resource in FORBIDDEN_RESOURCES:
        for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
            assert not rules_allow(CLUSTER_ROLE["rules"], "", resource, verb)
            assert not rules_allow(LEASE_ROLE["rules"], "", resource, verb)
    assert not any(g == "coordination.k8s.io" for g, _, _ in granted(CLUSTER_ROLE["rules"]))


def test_pods_are_only_listed_and_their_logs_read() -> None:
    """Termination messages are read by listing one Job's pods, and the archive's step logs with a get
    of pods/log; nothing else is allowed on pods."""
    assert rules_allow(CLUSTER_ROLE["rules"], "", "pods", "list")
    assert rules_allow(CLUSTER_ROLE["rules"], "", "pods/log", "get")
    for verb in ("get", "watch", "create", "update", "patch", "delete", "deletecollection"):
        assert not rules_allow(CLUSTER_ROLE["rules"], "", "pods", verb), verb
        if verb != "get":
            assert not rules_allow(CLUSTER_ROLE["rules"], "", "pods/log", verb), verb
    for sub in ("pods/exec", "pods/status", "pods/attach", "pods/portforward"):
        assert not rules_allow(CLUSTER_ROLE["rules"], "", sub, "get"), sub
        assert not rules_allow(CLUSTER_ROLE["rules"], "", sub, "create"), sub


def test_template_objects_are_only_created_and_read_by_name() -> None:
    for resource in TEMPLATE_RESOURCES:
        assert rules_allow(CLUSTER_ROLE["rules"], "", resource, "create")
        assert rules_allow(CLUSTER_ROLE["rules"], "", resource, "get")
        # ConfigMaps are patched too: a memoized step's result is stored in its cache (one data key).
        patched = ("patch",) if resource == "configmaps" else ()
        for verb in ("list", "watch", "update", "patch", "delete", "deletecollection"):
            if verb in patched:
                continue
            assert not rules_allow(CLUSTER_ROLE["rules"], "", resource, verb), (verb, resource)
            assert not rules_allow(LEASE_ROLE["rules"], "", resource, verb), (verb, resource)


def test_bindings_give_the_roles_to_the_deployments_service_account() -> None:
    sa = find(RBAC, "ServiceAccount")
    assert sa["metadata"]["name"] == POD["spec"]["serviceAccountName"]
    assert sa["metadata"]["namespace"] == DEPLOYMENT["metadata"]["namespace"]
    subject = {
        "kind": "ServiceAccount",
        "name": sa["metadata"]["name"],
        "namespace": sa["metadata"]["namespace"],
    }
    for binding_kind, role in (("ClusterRoleBinding", CLUSTER_ROLE), ("RoleBinding", LEASE_ROLE)):
        binding = find(RBAC, binding_kind)
        assert binding["roleRef"]["kind"] == role["kind"]
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert subject in binding["subjects"]
        if binding_kind == "RoleBinding":
            assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]


# --- metrics, alerts and dashboard use real series --------------------------------------------------


def _rule_ids() -> list[str]:
    return [r["alert"] for r in alert_rules(RULES)]


def _check_selectors(where: str, expr: str, *, need_job: str | None) -> None:
    catalog = metric_catalog()
    for sel in selectors(expr):
        if sel.metric in PROMETHEUS_SERIES:
            labels: frozenset[str] = frozenset()
        else:
            assert sel.metric in catalog, f"{where}: {sel.metric} is not a metric zen-flow exports"
            labels = catalog[sel.metric]
        unknown = set(sel.matchers) - labels - TARGET_LABELS
        assert not unknown, f"{where}: {sel.metric} has no label {sorted(unknown)}"
        if need_job is not None:
            assert sel.matchers.get("job") == need_job, f"{where}: {sel.metric} must select job={need_job!r}"


def test_alert_job_label_is_the_one_the_service_monitor_produces() -> None:
    # The Prometheus Operator names the job after the Service unless spec.jobLabel says otherwise.
    assert "jobLabel" not in SERVICE_MONITOR["spec"]
    selected = SERVICE_MONITOR["spec"]["selector"]["matchLabels"]
    services = [
        s
        for s in find_all(CONTROLLER + WEBHOOK, "Service")
        if selected.items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in services] == ["zen-flow-controller-metrics"]
    endpoint = SERVICE_MONITOR["spec"]["endpoints"][0]
    assert endpoint["port"] in {p["name"] for p in services[0]["spec"]["ports"]}
    assert endpoint["honorLabels"] is True  # keeps zen-flow's own namespace label


@pytest.mark.parametrize("rule", alert_rules(RULES), ids=_rule_ids())
def test_alert_uses_real_metrics_and_labels_and_selects_the_job(rule: dict[str, Any]) -> None:
    _check_selectors(rule["alert"], rule["expr"], need_job="zen-flow-controller-metrics")


@pytest.mark.parametrize("rule", alert_rules(RULES), ids=_rule_ids())
def test_alert_aggregates_its_rates(rule: dict[str, Any]) -> None:
    assert unaggregated_rates(rule["expr"]) == [], "rates over two replicas must be aggregated (sum/max)"


@pytest.mark.parametrize("rule", alert_rules(RULES), ids=_rule_ids())
def test_alert_is_complete(rule: dict[str, Any]) -> None:
    assert rule["alert"].startswith("ZenFlow")
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]


# `histogram_quantile(..., rate(X_bucket...)) > threshold`, the threshold at the end of the expression.
_QUANTILE_ALERT = re.compile(r"histogram_quantile\(.*?\b([a-z_]+)_bucket\b.*>\s*([0-9.]+)\s*$", re.DOTALL)


def _finite_buckets(family: str) -> list[float]:
    """The upper bounds of a histogram's finite buckets, as /metrics exports them."""
    metrics = Metrics()
    for wrapper in vars(metrics).values():
        if isinstance(wrapper, Histogram) and wrapper.describe()[0].name == family:
            labels = sorted(metric_catalog()[f"{family}_bucket"] - {"le"})
            if labels:
                wrapper.labels(**dict.fromkeys(labels, "x"))  # a labelled histogram has no series before
            return sorted(
                float(s.labels["le"])
                for s in wrapper.collect()[0].samples
                if s.name.endswith("_bucket") and s.labels["le"] != "+Inf"
            )
    raise AssertionError(f"{family} is not a histogram zen-flow exports")


QUANTILE_RULES = [r for r in alert_rules(RULES) if "histogram_quantile" in r["expr"]]


@pytest.mark.parametrize("rule", QUANTILE_RULES, ids=[r["alert"] for r in QUANTILE_RULES])
def test_a_quantile_alert_can_exceed_its_threshold(rule: dict[str, Any]) -> None:
    # histogram_quantile answers at most the largest finite bucket: below the threshold, the alert can
    # never fire (ZenFlowWorkqueueLatency's 60 s over buckets that ended at 10 s did not).
    found = _QUANTILE_ALERT.search(rule["expr"])
    assert found is not None, rule["expr"]
    family, threshold = found.group(1), float(found.group(2))
    assert max(_finite_buckets(family)) > threshold


def test_alerts_cover_the_roadmap() -> None:
    names = set(_rule_ids())
    for expected in (
        "ZenFlowControllerDown",
        "ZenFlowReconcileErrors",
        "ZenFlowJobFlowsFailing",
        "ZenFlowStepsFailing",
        "ZenFlowJobFlowsNotProgressing",
        "ZenFlowApprovalsPendingLong",
        "ZenFlowWebhookCertificateExpiringSoon",
        "ZenFlowNoLeader",
        "ZenFlowWorkqueueBacklog",
        "ZenFlowJobCreateErrors",
        "ZenFlowStatusHeld",
        "ZenFlowSlowSteps",
        "ZenFlowCloudEventsDropped",
        "ZenFlowCloudEventsFailing",
        "ZenFlowArchiveFailing",
        "ZenFlowFlowsDeletedUnarchived",
        "ZenFlowStepLogsFailing",
        "ZenFlowStepLogsDeletedUnarchived",
    ):
        assert expected in names


def test_controller_down_fires_on_no_target_at_all() -> None:
    # `up{job=...} == 0` returns nothing when Prometheus discovers no target; absent() does not.
    expr = next(r["expr"] for r in alert_rules(RULES) if r["alert"] == "ZenFlowControllerDown")
    assert expr.startswith("absent(")


@pytest.mark.parametrize(("title", "expr"), list(dashboard_queries(DASHBOARD)), ids=lambda v: str(v)[:40])
def test_dashboard_query_uses_real_metrics_and_labels(title: str, expr: str) -> None:
    _check_selectors(f"panel {title!r}", expr, need_job="zen-flow-controller-metrics")
    assert unaggregated_rates(expr) == [], f"panel {title!r}"


def test_dashboard_variables_and_panels() -> None:
    names = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert names["datasource"]["type"] == "datasource"
    assert names["namespace"]["includeAll"]
    assert names["namespace"]["multi"]
    for metric in dashboard_variable_metrics(DASHBOARD):
        assert metric in metric_catalog()
    titles = {title for title, _ in dashboard_queries(DASHBOARD)}
    for expected in (
        "JobFlows by phase",
        "Steps by phase",
        "Step completions and failures",
        "Step duration",
        "Reconciles by result",
        "Reconcile duration",
        "Queue depth",
        "Queue latency and work time",
        "API requests by verb and code",
        "Leader by replica",
        "Webhook requests",
        "Webhook latency",
        "Certificate expiry",
        "Flows retrying Job creates, and held",
        "API request bytes sent",
        "Watches closed early",
        "CronJobFlow runs by result",
        "Memoize cache lookups and saves",
        "CloudEvents sent, failed and dropped",
        "CloudEvents queue depth",
    ):
        assert expected in titles
    for panel in DASHBOARD["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_queries_parse_after_grafana_substitutes_variables() -> None:
    for title, expr in dashboard_queries(DASHBOARD):
        parse_promql(expr)  # raises on a syntax error
        assert "$namespace" not in expr or 'namespace=~"$namespace"' in expr, title


# Exported metric families the dashboard leaves out on purpose, and why. Every other family must have a
# panel: a new metric fails `test_every_metric_family_has_a_panel_or_a_reason` until someone decides.
NOT_ON_DASHBOARD = {
    "zen_flow_controller_info": "a label to join on (instance_id); the dashboard is one instance per job",
    "zen_flow_job_updates_ignored": "an internal saving (Job updates that woke no reconcile): no action",
    "zen_flow_informer_events_recognised": "an internal saving (own writes' events not decoded): no action",
}


def _family(series: str) -> str:
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if series.endswith(suffix):
            return series.removesuffix(suffix)
    return series


def test_every_metric_family_has_a_panel_or_a_reason() -> None:
    exported = {_family(name) for name in metric_catalog()}
    shown = {_family(s.metric) for _, expr in dashboard_queries(DASHBOARD) for s in selectors(expr)}
    missing = exported - shown - NOT_ON_DASHBOARD.keys()
    assert not missing, (
        f"metrics with no dashboard panel (add one, or a reason in NOT_ON_DASHBOARD): {missing}"
    )
    stale = NOT_ON_DASHBOARD.keys() & shown | NOT_ON_DASHBOARD.keys() - exported
    assert not stale, f"NOT_ON_DASHBOARD names metrics that have a panel or are not exported: {stale}"


def _all_panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for panel in items for p in (panel, *_all_panels(panel.get("panels", [])))]


def test_dashboard_panels_have_unique_ids_and_do_not_overlap() -> None:
    ids = [p["id"] for p in _all_panels(DASHBOARD["panels"])]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    # Top-level panels only: a collapsed row's panels are laid out when it opens.
    cells: dict[tuple[int, int], dict[str, Any]] = {}
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert 0 < grid["w"] <= 24 - grid["x"], panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = cells.setdefault((x, y), panel)
                assert other is panel, f"panels {other['title']!r} and {panel['title']!r} overlap"
