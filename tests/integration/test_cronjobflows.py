"""CronJobFlows against a real kube-apiserver: the CRD (installed with the JobFlow CRD, by the
`jobflow_crd` fixture, as `kubectl apply -k config/crd` does) serves CronJob's printer columns, a
`* * * * *` CronJobFlow creates its run at the next minute (one real minute at most: the controller runs
as a process on the real clock), and a CronJobFlow the controller cannot use ends with a condition
instead of stopping anything."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from zen_flow.api.constants import LABEL_CRON
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "scheduled" / "nightly-report.yaml"
# The next minute boundary is at most 60 s away; the controller then creates the run at once.
RUN_DEADLINE = 70.0


def cron(name: str, namespace: str, schedule: str) -> str:
    container = {"name": "main", "image": "busybox:1.36", "command": ["true"]}
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
                "jobFlowTemplate": {
                    "metadata": {"labels": {"team": "tests"}},
                    "spec": {"steps": [{"name": "a", "template": job}]},
                },
            },
        }
    )


async def test_a_minutely_cronjobflow_creates_its_run_and_shows_cronjobs_columns(
    namespace: str, kubectl: Any, start_controller: StartController, jobflow_crd: Any
) -> None:
    # The schema takes the shipped example as it is (server-side dry run: nothing is stored).
    kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(EXAMPLE))
    start_controller()
    kubectl("create", "-f", "-", input=cron("every-minute", namespace, "* * * * *"))
    # No webhook in this tier: the controller is the one that finds this schedule unusable.
    kubectl("create", "-f", "-", input=cron("typo", namespace, "every minute"))

    header = kubectl("get", "cronjobflows", "-n", namespace).stdout.splitlines()[0]
    assert header.split() == ["NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]

    async def run_created() -> list[dict[str, Any]] | None:
        listed = kubectl("get", "jf", "-n", namespace, "-l", f"{LABEL_CRON}=every-minute", "-o", "json")
        return json.loads(listed.stdout)["items"] or None

    [run] = await wait_until(run_created, RUN_DEADLINE, interval=0.5, what="the first run of every-minute")
    meta = run["metadata"]
    assert re.fullmatch(r"every-minute-\d{8}", meta["name"])
    [owner] = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("CronJobFlow", "every-minute", True)
    assert meta["labels"]["team"] == "tests"
    scheduled = meta["annotations"]["workflow.kube-zen.io/scheduled-time"]
    assert int(meta["name"].rsplit("-", 1)[1]) * 60 == _unix(scheduled)

    async def status_written() -> dict[str, Any] | None:
        got = json.loads(kubectl("get", "cjf", "every-minute", "-n", namespace, "-o", "json").stdout)
        status = got.get("status") or {}
        return status if status.get("lastScheduleTime") == scheduled and status.get("active") else None

    status = await wait_until(status_written, 20, interval=0.2, what="every-minute's status")
    assert [a["name"] for a in status["active"]] == [meta["name"]]
    row = kubectl("get", "cjf", "every-minute", "-n", namespace, "--no-headers").stdout.split()
    assert row[:5] == ["every-minute", "*", "*", "*", "*"]
    assert row[6:8] == ["false", "1"]  # SUSPEND, ACTIVE

    typo = json.loads(kubectl("get", "cjf", "typo", "-n", namespace, "-o", "json").stdout)
    valid = next(c for c in typo["status"]["conditions"] if c["type"] == "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "Invalid")
    assert "spec.schedule" in valid["message"]
    assert kubectl("get", "jf", "-n", namespace, "-l", f"{LABEL_CRON}=typo", "-o", "name").stdout == ""


def _unix(stamp: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
