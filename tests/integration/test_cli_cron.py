"""`zen-flow cron trigger|get|list|suspend|resume` as a user runs them: the installed command, a kubeconfig,
the real apiserver and the controller (the test plays the Job controller). A triggered run is taken by the
controller for one of its CronJobFlow's runs: run, counted active, then its success recorded."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from controller_steps import WAIT, finish, job_of, wait_steps
from test_cli_flows import cli, tab

from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, wait_until

pytestmark = pytest.mark.integration

# A run time a year away at most: nothing the test sees is a scheduled run.
YEARLY = "0 0 1 1 *"


def cron_manifest(
    name: str, namespace: str, args: list[str] | None = None, schedule: str = YEARLY, policy: str = "Forbid"
) -> str:
    container: dict[str, Any] = {"name": "main", "image": "busybox:1.36", "command": ["true"]}
    if args is not None:
        container["args"] = args
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
    }
    return json.dumps(
        {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "kind": "CronJobFlow",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "schedule": schedule,
                "timeZone": "Europe/Berlin",
                "concurrencyPolicy": policy,
                "jobFlowTemplate": {"spec": {"steps": [{"name": "a", "template": job}]}},
            },
        }
    )


async def test_a_triggered_run_is_run_and_counted_by_the_controller_and_suspend_resume_round_trip(
    namespace: str,
    kubeconfig: Path,
    kubectl: Any,
    driver: FlowDriver,
    start_controller: StartController,
) -> None:
    start_controller()
    kubectl("create", "-f", "-", input=cron_manifest("yearly", namespace))

    def cron_status() -> dict[str, Any]:
        got = json.loads(kubectl("get", "cjf", "yearly", "-n", namespace, "-o", "json").stdout)
        return dict(got.get("status") or {})

    triggered = cli(kubeconfig, "cron", "trigger", "yearly", "-n", namespace)
    assert triggered.returncode == 0, triggered.stderr
    found = re.fullmatch(
        rf"jobflow {namespace}/(yearly-manual-[bcdfghjklmnpqrstvwxz2456789]{{5}}) created\n", triggered.stdout
    )
    assert found is not None, triggered.stdout
    run = found[1]

    # The controller runs it as any flow, and counts it among the CronJobFlow's active runs.
    await wait_steps(driver, namespace, run, {"a": "Running"})

    async def active() -> list[str] | None:
        names = [a["name"] for a in cron_status().get("active", [])]
        return names or None

    assert await wait_until(active, WAIT, interval=0.2, what="the run in status.active") == [run]
    listed = cli(kubeconfig, "cron", "list", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:6] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST"]
    # yearly, the five schedule fields, zone, suspend, one active run, never scheduled, no success yet
    assert row.split()[:11] == ["yearly", *YEARLY.split(), "Europe/Berlin", "False", "1", "-", "-"]
    assert re.search(r"\d{4}-01-01 00:00 CET \(in \d+d", row), row

    await finish(driver, namespace, "a")
    await driver.wait_phase(namespace, run, phases=("Succeeded",), timeout=WAIT)

    async def recorded() -> dict[str, Any] | None:
        status = cron_status()
        return status if status.get("lastSuccessfulTime") and not status.get("active") else None

    status = await wait_until(recorded, WAIT, interval=0.2, what="the run's success on the CronJobFlow")
    assert "lastScheduleTime" not in status  # a manual run is no run time
    shown = cli(kubeconfig, "cron", "get", "yearly", "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    runs = shown.stdout.split("\n\n")[1].splitlines()
    assert runs[0].split()[:3] == ["RUN", "PHASE", "RUN"]
    assert runs[1].split()[:3] == [run, "Succeeded", "manual"]
    assert "Next runs:" in shown.stdout

    # suspend / resume: spec.suspend, as kubectl shows it.
    for verb, flag in (("suspend", True), ("resume", False)):
        done = cli(kubeconfig, "cron", verb, "yearly", "-n", namespace)
        said = "suspended" if flag else "resumed"
        assert (done.returncode, done.stdout) == (0, f"cronjobflow {namespace}/yearly {said}\n"), done.stderr
        got = json.loads(kubectl("get", "cjf", "yearly", "-n", namespace, "-o", "json").stdout)
        assert got["spec"]["suspend"] is flag
        shown = cli(kubeconfig, "cron", "get", "yearly", "-n", namespace)
        assert ("Next runs:      suspended" in shown.stdout) is flag

    missing = cli(kubeconfig, "cron", "trigger", "ghost", "-n", namespace)
    assert missing.returncode == 1
    assert (
        'zen-flow cron trigger: not found: cronjobflows.workflow.kube-zen.io "ghost" not found'
        in missing.stderr
    )

    # TAB after `zen-flow cron get` offers the namespace's CronJobFlows.
    kubectl("create", "-f", "-", input=cron_manifest("yearly-eu", namespace))
    assert tab(kubeconfig, "cron get", f"-n {namespace} year") == ["yearly", "yearly-eu"]


async def test_a_run_triggered_for_a_past_night_renders_that_night_in_its_job(
    namespace: str,
    kubeconfig: Path,
    kubectl: Any,
    driver: FlowDriver,
    start_controller: StartController,
) -> None:
    # `--scheduled-time 2026-12-07`: Berlin's midnight of that day, in UTC, in the Job's args.
    start_controller()
    manifest = cron_manifest("nightly", namespace, ["--night={{.JobFlow.ScheduledTime}}"])
    kubectl("create", "-f", "-", input=manifest)
    triggered = cli(
        kubeconfig, "cron", "trigger", "nightly", "-n", namespace, "--scheduled-time", "2026-12-07"
    )
    assert triggered.returncode == 0, triggered.stderr
    found = re.fullmatch(rf"jobflow {namespace}/(nightly-manual-[a-z0-9]{{5}}) created\n", triggered.stdout)
    assert found is not None, triggered.stdout
    run = json.loads(kubectl("get", "jf", found[1], "-n", namespace, "-o", "json").stdout)
    assert run["metadata"]["annotations"]["workflow.kube-zen.io/scheduled-time"] == "2026-12-06T23:00:00Z"
    job = await job_of(driver, namespace, "a", flow=found[1])
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--night=2026-12-06T23:00:00Z"]

    refused = cli(kubeconfig, "cron", "trigger", "nightly", "-n", namespace, "--scheduled-time", "tonight")
    assert refused.returncode == 2
    assert "--scheduled-time 'tonight' is neither an RFC 3339 time" in refused.stderr


async def test_a_backfill_makes_the_runs_of_past_nights_once_and_the_controller_counts_them_as_its_own(
    namespace: str,
    kubeconfig: Path,
    kubectl: Any,
    driver: FlowDriver,
    start_controller: StartController,
) -> None:
    # 04:30 in Berlin: a time no clock change skips or repeats, whatever day the test runs.
    start_controller()
    kubectl(
        "create", "-f", "-", input=cron_manifest("nightly", namespace, schedule="30 4 * * *", policy="Allow")
    )
    berlin = ZoneInfo("Europe/Berlin")
    today = datetime.now(berlin).date()
    days = [today - timedelta(days=n) for n in (3, 2, 1)]
    nights = [datetime.combine(d, time(4, 30), tzinfo=berlin).astimezone(UTC) for d in days]
    names = [f"nightly-{int(n.timestamp()) // 60}" for n in nights]
    argv = ["cron", "backfill", "nightly", "-n", namespace, "--from", days[0].isoformat(), "--to",
            days[-1].isoformat(), "--parallel", "3"]  # fmt: skip
    done = cli(kubeconfig, *argv)
    assert done.returncode == 0, done.stderr
    assert [line.split()[:3] for line in done.stdout.splitlines()] == [
        ["jobflow", f"{namespace}/{name}", "created"] for name in names
    ]
    for name, night in zip(names, nights, strict=True):
        run = json.loads(kubectl("get", "jf", name, "-n", namespace, "-o", "json").stdout)
        meta = run["metadata"]
        assert meta["annotations"]["workflow.kube-zen.io/instantiate"] == "backfill"
        assert meta["annotations"]["workflow.kube-zen.io/scheduled-time"] == f"{night:%Y-%m-%dT%H:%M:%SZ}"
        assert meta["labels"]["workflow.kube-zen.io/cronjobflow"] == "nightly"
        [owner] = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("CronJobFlow", "nightly", True)

    # The controller runs them as its runs of those nights: active, each at its run time.
    async def active() -> list[tuple[str, str]] | None:
        got = json.loads(kubectl("get", "cjf", "nightly", "-n", namespace, "-o", "json").stdout)
        listed = [(a["name"], a.get("scheduledTime")) for a in (got.get("status") or {}).get("active", [])]
        return listed if len(listed) == len(names) else None

    expected = [(n, f"{t:%Y-%m-%dT%H:%M:%SZ}") for n, t in zip(names, nights, strict=True)]
    assert await wait_until(active, WAIT, interval=0.2, what="the runs in status.active") == expected
    await wait_steps(driver, namespace, names[0], {"a": "Running"})

    # Again: nothing is created twice.
    again = cli(kubeconfig, *argv)
    assert again.returncode == 0, again.stderr
    said = [line.split()[2:5] for line in again.stdout.splitlines()]
    assert said == [["already", "exists,", "skipped"]] * 3
    assert again.stderr.splitlines()[-1].endswith("3 run times, 0 created, 3 already existed, 0 not created")
    shown = cli(kubeconfig, "cron", "get", "nightly", "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    assert f"{names[-1]}" in shown.stdout
    assert " backfill " in shown.stdout
    assert tab(kubeconfig, "cron backfill", f"-n {namespace} nigh") == ["nightly"]
