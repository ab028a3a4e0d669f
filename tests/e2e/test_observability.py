"""The alerts and the dashboard evaluated by a real Prometheus on the metrics a running controller (and its
webhook) really exported, while flows succeed, fail, retry, time out, wait for approval, stall, and cannot
create their Jobs; then the controller goes down.

Prometheus (Debian's package, tools/fetch-prometheus.sh) runs on loopback and scrapes the controller every
second with the ServiceMonitor's job name and `honor_labels`. It loads config/prometheus/prometheusrule.yaml
itself, with one test-only change: every group is evaluated each second and every `for:` is 2 s, so an
alert fires in seconds; the expressions are the shipped ones. Every failure names the panel or the alert.
The controller runs with --namespace-max-running-flows, so that one namespace's last flow waits for a slot
behind a flow paused for approval and one that stalls, as a user would see it on the dashboard; in
another namespace a flow's step, and a whole flow, wait for a lock another flow's stalled step holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow_dev.cluster.adminclient import wait_until as wait_until_sync
from zen_flow_dev.testing.controller import StartController, free_port
from zen_flow_dev.testing.driver import FlowDriver, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template, manual_step
from zen_flow_dev.testing.prometheus import (
    FETCH_HINT,
    PrometheusServer,
    alert_rules,
    dashboard_queries,
    metric_names_in,
    prometheus_tool,
    rule_groups_for_tests,
    substitute,
)
from zen_flow_dev.webhooks import prepare

REPO = Path(__file__).resolve().parents[2]
JOB = "zen-flow-controller-metrics"  # the job the ServiceMonitor produces, which every rule selects
RULES = yaml.safe_load((REPO / "config" / "prometheus" / "prometheusrule.yaml").read_text())
DASHBOARD = json.loads((REPO / "config" / "grafana" / "dashboard.json").read_text())
PROGRESS_DEADLINE = 4  # seconds: the "slow" flow stalls; every other flow changes phase faster
# Flows running at once per namespace: the first namespace's "gate" (paused) and "slow" (stalled) end up
# holding both slots, so its last flow waits for one for good; the other namespaces never reach it.
NAMESPACE_MAX_RUNNING = 2
# Panels that may rightly be empty in this scenario, and why.
EMPTY_PANELS = {"Certificate reloads": "no certificate was renewed during the test"}
# Series a replica exports only under a flag this scenario (one leader) does not set, and where they are
# checked against a real apiserver instead.
FLAG_ONLY_METRICS = {
    "zen_flow_shard_reconciles_total": "one series per shard held, only with --shards > 1 "
    "(tests/integration/test_shards.py reads it from two replicas)",
}
# Series with no sample unless something this scenario does not provoke happens, and where they are
# checked instead: their panels' queries and alerts must still evaluate.
UNPROVOKED_METRICS = {
    "zen_flow_jobflows_status_held": "only while a flow's every status write is refused (a CRD rolled "
    "back past a value it uses): tests/unit/test_controller_status_held.py, and the promtool scenario "
    "'status writes refused for good' for ZenFlowStatusHeld",
}
# Never firing while the controller runs and leads with a valid certificate.
QUIET_WHILE_UP = {
    "ZenFlowControllerDown",
    "ZenFlowReplicaDown",
    "ZenFlowNoLeader",
    "ZenFlowMultipleLeaders",
    "ZenFlowAPIForbidden",  # the quota's 403s on Job creates are not an RBAC problem
    "ZenFlowWebhookCertificateMissing",
    "ZenFlowWebhookCertificateExpiringSoon",
    "ZenFlowWebhookCertificateExpiring",
    "ZenFlowWebhookCertificateReloadFailing",
    "ZenFlowCloudEventsDropped",  # no --cloudevents-sink: the counters stay at 0
    "ZenFlowCloudEventsFailing",
    "ZenFlowArchiveFailing",  # no --archive-s3-*: the counters stay at 0
    "ZenFlowFlowsDeletedUnarchived",
    "ZenFlowStepLogsFailing",  # no --archive-s3-* nor --archive-logs: the counters stay at 0
    "ZenFlowStepLogsDeletedUnarchived",
}

pytestmark = pytest.mark.timeout(600)


def _namespace(kubectl: Any, label: dict[str, str]) -> str:
    name = f"zf-obs-{secrets.token_hex(3)}"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": label}}
    kubectl("create", "-f", "-", input=json.dumps(body))
    return name


def _refuse_jobs(kubectl: Any, namespace: str) -> None:
    """A ResourceQuota of zero Jobs: every Job create in `namespace` answers 403 "exceeded quota". The
    local cluster runs no resourcequota-controller, so the test writes the quota's status as that
    controller would (admission enforces only a quota whose status is known)."""
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-jobs", "namespace": namespace},
    }
    kubectl("create", "-f", "-", input=json.dumps({**quota, "spec": {"hard": {"count/jobs.batch": "0"}}}))
    status = {"status": {"hard": {"count/jobs.batch": "0"}, "used": {"count/jobs.batch": "0"}}}
    kubectl("-n", namespace, "patch", "resourcequota", "no-jobs", "--subresource=status", "--type=merge",
            "-p", json.dumps(status))  # fmt: skip
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "probe", "namespace": namespace},
           **job_template()}  # fmt: skip

    def refused() -> bool:
        done = kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(job), check=False)
        return done.returncode != 0 and "exceeded quota" in done.stderr

    # The quota admission plugin reads quotas from an informer: eventually consistent.
    wait_until_sync(refused, 30, "the ResourceQuota to refuse Jobs", interval=0.2)


def _firing(prometheus: PrometheusServer) -> dict[str, set[str]]:
    """alert name -> the namespaces it fires for ("" for an alert without a namespace label)."""
    out: dict[str, set[str]] = {}
    for alert in prometheus.alerts():
        if alert["state"] == "firing":
            out.setdefault(alert["labels"]["alertname"], set()).add(alert["labels"].get("namespace", ""))
    return out


async def test_dashboard_and_alerts_on_live_metrics(
    kubectl: Any,
    kubeconfig: Path,
    driver: FlowDriver,
    start_controller: StartController,
    tmp_path: Path,
) -> None:
    if prometheus_tool("prometheus") is None:
        pytest.skip(f"no prometheus binary: {FETCH_HINT}")
    label = {"zenflow.test/observability": secrets.token_hex(4)}
    ok, fail, quota = (_namespace(kubectl, label) for _ in range(3))
    _refuse_jobs(kubectl, quota)

    webhook_port = free_port()
    cert_dir = tmp_path / "webhook-certs"
    configurations = prepare(f"https://127.0.0.1:{webhook_port}", cert_dir)
    for config in configurations:
        for hook in config["webhooks"]:
            hook["namespaceSelector"] = {"matchLabels": label}  # only this test's namespaces
    controller = start_controller(
        namespaces=[ok, fail, quota],
        leader_elect=True,
        lease_namespace=ok,
        extra_args=[
            "--webhook-addr", f"127.0.0.1:{webhook_port}",
            "--webhook-cert-dir", str(cert_dir),
            "--progress-deadline-seconds", str(PROGRESS_DEADLINE),
            "--namespace-max-running-flows", str(NAMESPACE_MAX_RUNNING),
        ],
    )  # fmt: skip
    prometheus = PrometheusServer(
        tmp_path / "prometheus",
        {JOB: [f"127.0.0.1:{controller.metrics_port}"]},
        rule_groups=rule_groups_for_tests(RULES, interval="1s", hold="2s"),
    )
    try:
        for config in configurations:
            kubectl("apply", "-f", "-", input=json.dumps(config))
        prometheus.start()
        await _run_scenario(driver, controller, prometheus, ok, fail, quota)
        problems = _check_dashboard(prometheus, [ok, fail, quota])
        problems += _check_alert_expressions(prometheus)
        problems += await _check_alerts_fire_while_up(prometheus, ok, fail, quota)
        reconcile_errors = controller.metric("zen_flow_reconcile_total", result="error")
        controller.stop()
        problems += _check_log(controller.log_lines(), f"{quota}/blocked", reconcile_errors)
        problems += await _check_alerts_fire_when_down(prometheus)
        assert not problems, "\n".join(problems)
    finally:
        prometheus.stop()
        for config in configurations:
            kind = config["kind"].lower()
            kubectl("delete", kind, config["metadata"]["name"], "--ignore-not-found", check=False)
        for ns in (ok, fail, quota):
            kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


async def _scraped(prometheus: PrometheusServer, selector: str) -> None:
    async def present() -> bool:
        return bool(await asyncio.to_thread(prometheus.query, selector))

    await wait_until(present, 60, interval=0.5, what=f"Prometheus to have scraped {selector}")


async def _run_scenario(
    driver: FlowDriver, controller: Any, prometheus: PrometheusServer, ok: str, fail: str, quota: str
) -> None:
    # Admission first: the webhook must be registered before the flows, so its metrics count them.
    async def webhook_answers() -> bool:
        probe = flow_manifest("probe", ok, [job_step("a")])
        await driver.kube.request("POST", JOBFLOWS.path(ok), body=probe, query=(("dryRun", "All"),))
        return controller.metric("zen_flow_webhook_requests_total") > 0

    await wait_until(
        webhook_answers, 60, interval=0.5, what="the apiserver to call the controller's webhooks"
    )

    retry = {"limit": 2, "backoff": {"type": "Fixed", "duration": "1s"}}
    flaky = job_template(exit_code=2, fail_attempts=1)
    hung = job_template(run_seconds=300)
    flows = [
        flow_manifest("hello", ok, [job_step("a"), job_step("b", "a")]),
        flow_manifest("flaky", ok, [job_step("a", template=flaky, retryPolicy=retry)]),
        flow_manifest("deadline", ok, [job_step("a", template=hung, timeoutSeconds=2)]),
        flow_manifest("gate", ok, [job_step("build"), manual_step("approve", "build")]),
        flow_manifest("slow", ok, [job_step("train", template=job_template(run_seconds=600))]),
        flow_manifest("blocked", quota, [job_step(f"s{i}") for i in range(5)]),
        # Last in its namespace's line: it starts only once one of the flows above finishes, and the two
        # that never do (gate, slow) leave it waiting.
        flow_manifest("waiting", ok, [job_step("a")]),
    ]  # fmt: skip
    for manifest in flows:
        await driver.create(manifest)
    # A counter's first sample is not an increase: the failure counters must exist in Prometheus before
    # the failures that the alerts count.
    bad = job_template(exit_code=1)
    broken = [flow_manifest(f"broken-{n}", fail, [job_step("a", template=bad)]) for n in range(8)]
    await driver.create(broken[0])
    await driver.wait_phase(fail, "broken-0", timeout=60)
    await _scraped(prometheus, f'zen_flow_step_transitions_total{{namespace="{fail}", phase="Failed"}}')
    await _scraped(prometheus, f'zen_flow_jobflow_completions_total{{namespace="{fail}", phase="Failed"}}')
    for manifest in broken[1:]:
        await driver.create(manifest)
        await driver.wait_phase(fail, manifest["metadata"]["name"], timeout=60)
    for name in ("hello", "flaky", "deadline"):
        await driver.wait_phase(ok, name, timeout=90)
    await driver.wait_phase(ok, "gate", phases=("Paused",), timeout=60)

    async def slow_stalled() -> bool:
        flow = await driver.get(ok, "slow") or {}
        conditions = (flow.get("status") or {}).get("conditions", [])
        return any(
            c["type"] == "Progressing" and c["reason"] == "ProgressDeadlineExceeded" for c in conditions
        )

    await wait_until(slow_stalled, 60, interval=0.5, what="flow slow to be marked not progressing")
    waiting = await driver.get(ok, "waiting") or {}
    assert (waiting.get("status") or {}).get("phase", "Pending") == "Pending", waiting.get("status")
    await _scraped(prometheus, f'zen_flow_jobflows_waiting_for_slot{{namespace="{ok}"}} == 1')
    # A step lock held by a step that stalls (so this namespace has a flow not progressing too), and a
    # step of another flow waiting for it: the failing namespace's flows have all ended, so both get a slot.
    mutex = {"mutexes": [{"name": "db"}]}
    held = job_template(run_seconds=600)
    await driver.create(flow_manifest("holder", fail, [job_step("a", template=held, synchronization=mutex)]))
    await driver.wait_phase(fail, "holder", phases=("Running",), timeout=60)
    # A whole flow waiting for it (its own `spec.synchronization`) holds no running-flow slot, so it
    # comes first, while a slot is free: a flow waits for a slot before it may wait for a lock.
    await driver.create(flow_manifest("flow-lock-waiter", fail, [job_step("a")], synchronization=mutex))
    await _scraped(prometheus, f'zen_flow_jobflows_waiting_for_lock{{namespace="{fail}"}} == 1')
    await driver.create(flow_manifest("lock-waiter", fail, [job_step("a", synchronization=mutex)]))
    await _scraped(prometheus, f'zen_flow_lock_waiting_steps{{namespace="{fail}"}} == 1')


def _check_dashboard(prometheus: PrometheusServer, namespaces: list[str]) -> list[str]:
    variables = {"$__rate_interval": "1m", "$job": JOB, "$namespace": "|".join(namespaces)}
    known = prometheus.metric_names()
    problems: list[str] = []
    for title, raw in dashboard_queries(DASHBOARD):
        expr = substitute(raw, variables)
        unexported = metric_names_in(expr) - known
        missing = unexported - FLAG_ONLY_METRICS.keys() - UNPROVOKED_METRICS.keys()
        if missing:
            problems.append(f"panel {title!r}: selects metrics nothing exported: {sorted(missing)} in {expr}")
            continue
        if unexported:
            continue  # series this scenario does not produce (FLAG_ONLY_METRICS, UNPROVOKED_METRICS)
        try:
            result = prometheus.query(expr)
        except Exception as err:  # reported with the panel's name
            problems.append(f"panel {title!r}: {err}")
            continue
        if not result and title not in EMPTY_PANELS:
            problems.append(f"panel {title!r} shows no data: {expr}")
    return problems


def _check_alert_expressions(prometheus: PrometheusServer) -> list[str]:
    known = prometheus.metric_names()
    problems: list[str] = []
    for rule in alert_rules(RULES):
        missing = metric_names_in(rule["expr"]) - known - UNPROVOKED_METRICS.keys()
        if missing:
            problems.append(f"alert {rule['alert']}: selects metrics nothing exported: {sorted(missing)}")
        try:
            prometheus.query(rule["expr"])
        except Exception as err:  # reported with the alert's name
            problems.append(f"alert {rule['alert']}: {err}")
    return problems


async def _wait_for_alerts(
    prometheus: PrometheusServer, expected: dict[str, set[str]], timeout: float
) -> dict[str, set[str]]:
    """Until every expected alert fires for (at least) its namespaces; what fires then (or at timeout)."""
    seen: dict[str, set[str]] = {}

    async def all_fire() -> bool:
        seen.clear()
        seen.update(await asyncio.to_thread(_firing, prometheus))
        return all(want <= seen.get(name, set()) for name, want in expected.items())

    with contextlib.suppress(TimeoutError):  # what does not fire is reported by the caller
        await wait_until(all_fire, timeout, interval=0.5, what="the provoked alerts to fire")
    return seen


async def _check_alerts_fire_while_up(
    prometheus: PrometheusServer, ok: str, fail: str, quota: str
) -> list[str]:
    expected = {
        "ZenFlowJobFlowsFailing": {fail},
        "ZenFlowStepsFailing": {fail},
        "ZenFlowJobFlowsNotProgressing": {ok, fail},  # fail: the step holding a lock stalls
        "ZenFlowApprovalsPendingLong": {ok},
        "ZenFlowJobCreateErrors": {quota},
    }
    firing = await _wait_for_alerts(prometheus, expected, timeout=90)
    problems = [
        f"alert {name} does not fire for {sorted(want)} (fires for {sorted(firing.get(name, set()))})"
        for name, want in expected.items()
        if firing.get(name) != want
    ]
    problems += [
        f"alert {name} fires while the controller is up and leads" for name in QUIET_WHILE_UP & set(firing)
    ]
    return problems


async def _check_alerts_fire_when_down(prometheus: PrometheusServer) -> list[str]:
    expected = {"ZenFlowControllerDown": {""}, "ZenFlowReplicaDown": {""}}
    firing = await _wait_for_alerts(prometheus, expected, timeout=60)
    return [
        f"alert {name} does not fire once the controller is down" for name in expected if name not in firing
    ]


def _check_log(lines: list[str], failing_flow: str, reconcile_errors: float) -> list[str]:
    """The controller's stderr (--log-format json, as the manifests run it): every line is one JSON object
    with the common keys; every reconcile line names its flow and reconcile; a flow that fails again and
    again is logged once and only counted after that."""
    problems: list[str] = []
    entries = []
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError:
            problems.append(f"log line {n} is not JSON: {line[:200]}")
            continue
        entries.append(entry)
        missing = {"timestamp", "level", "logger", "event"} - set(entry)
        if missing:
            problems.append(f"log line {n} lacks {sorted(missing)}: {line[:200]}")
        if entry.get("event") in ("created job", "deleted job") and not {"flow", "reconcile_id"} <= set(
            entry
        ):
            problems.append(f"log line {n} is part of a reconcile but does not say which: {line[:200]}")
        if entry.get("event") == "created job" and not all(
            isinstance(entry.get(k), float) and entry[k] >= 0 for k in ("queued_ms", "create_ms")
        ):
            problems.append(f"log line {n} does not say how long the step's start took: {line[:200]}")
    failed = [e for e in entries if e.get("event") == "reconcile failed; retrying with backoff"]
    blocked = [e for e in failed if e.get("flow") == failing_flow]
    if reconcile_errors < 3 or len(blocked) != 1:
        problems.append(
            f"{failing_flow} failed {reconcile_errors:g} reconciles and was logged {len(blocked)} times "
            "(expected: many failures, logged once)"
        )
    elif "exceeded quota" not in blocked[0].get("error", "") or "reconcile_id" not in blocked[0]:
        problems.append(f"the failure line does not give the cause and the reconcile: {blocked[0]}")
    return problems
