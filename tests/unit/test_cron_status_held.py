"""A CronJobFlow whose every status write the apiserver refuses for good (a CRD rolled back past a value
the stored object holds: 422 whatever the write changes) is held, as a flow is (status_holds.py): no
run created, stopped or deleted, one Warning StatusRejected per cause, its write tried again slowly (and
at once when it changes), counted by zen_flow_jobflows_status_held. It once failed every reconcile
(a warning logged each time, nothing said on the object) and made a run at each run time that it never
recorded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from test_cron_controller import Cluster, running  # noqa: F401  (the fixture)

from zen_flow.controller.metrics import Metrics
from zen_flow.controller.status_holds import RETRY_CAP_SECONDS
from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.clock import FakeClock, settle

ROLLED_BACK = (
    'CronJobFlow.workflow.kube-zen.io "nightly" is invalid: spec.jobFlowTemplate.spec.steps[0].when: '
    'Unsupported value: "Later": supported values: "Always"'
)


def refuse_status_writes(cluster: Cluster, name: str) -> tuple[list[str], list[int]]:
    """Every status write of CronJobFlow `name` gets 422 while the returned switch holds "on"; returns
    the switch and the writes tried (one entry each)."""
    switch, tried, real = ["on"], [], cluster.patch_status

    async def patch(namespace: str, cron: str, status: dict[str, Any], rv: str) -> None:
        if cron == name:
            tried.append(1)
            if switch:
                body = {"kind": "Status", "code": 422, "reason": "Invalid", "message": ROLLED_BACK}
                raise from_status(422, body)
        await real(namespace, cron, status, rv)

    cluster.patch_status = patch  # type: ignore[method-assign]
    return switch, tried


def held(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("zen_flow_jobflows_status_held", {"namespace": "ns"}) or 0.0


def told(cluster: Cluster) -> list[str]:
    return [m for name, reason, m in cluster.events if (name, reason) == ("nightly", "StatusRejected")]


async def test_a_run_whose_status_write_is_refused_is_adopted_by_the_next_reconcile_not_made_again(
    running: tuple[Cluster, FakeClock, Metrics],  # noqa: F811
) -> None:
    # The runs are the record of the run times served (planner/cron.py): a lost lastScheduleTime and
    # active list cannot make the same run twice, even before the cache shows the run (its create
    # answers AlreadyExists, and it is reported created once).
    cluster, clock, _ = running
    cluster.add_cron("nightly", concurrencyPolicy="Allow")
    await settle()  # its first status written (Valid)
    refuse_status_writes(cluster, "nightly")  # the CRD rolled back
    await clock.advance(30)  # 00:01: the run time
    assert cluster.runs("nightly") == ["nightly-31557601"]
    cluster.unseen.add("ns/nightly-31557601")
    cluster.add_cron("nightly", concurrencyPolicy="Allow")  # an edit: looked at again at once
    await settle()
    cluster.unseen.clear()
    cluster.add_cron("nightly", concurrencyPolicy="Allow")
    for _ in range(5):
        await clock.advance(5)
    assert cluster.runs("nightly") == ["nightly-31557601"]
    assert [r for _, r, _ in cluster.events].count("RunCreated") == 1


async def test_a_cronjobflow_whose_every_status_write_is_refused_is_held_and_told_once(
    running: tuple[Cluster, FakeClock, Metrics],  # noqa: F811
) -> None:
    cluster, clock, metrics = running
    metrics.watch_status_held(cluster.controller.status_held)  # type: ignore[union-attr]
    with structlog.testing.capture_logs() as logs:
        cluster.add_cron("nightly", concurrencyPolicy="Allow")
        cluster.add_cron("other", concurrencyPolicy="Allow")
        await settle()  # its first status written (Valid)
        switch, tried = refuse_status_writes(cluster, "nightly")  # the CRD rolled back
        await clock.advance(30)  # 00:01: its run is made, and its record refused
        assert cluster.runs("nightly") == ["nightly-31557601"]
        for _ in range(20):  # ten minutes: ten run times
            await clock.advance(30)
    assert cluster.runs("nightly") == ["nightly-31557601"]  # held: no run made that it cannot record
    assert len(cluster.runs("other")) >= 10  # another CronJobFlow runs on
    assert len(tried) <= 7  # retried slowly: 10 s, doubled each refusal up to 5 min
    assert len(told(cluster)) == 1  # once per cause
    assert "422" in told(cluster)[0]
    assert "spec.jobFlowTemplate.spec.steps[0].when" in told(cluster)[0]  # the apiserver names the field
    assert not [e for e in logs if "reconcile failed" in e["event"]]  # not a failing reconcile
    assert held(metrics) == 1

    # Edited, and still refused: looked at again at once (its run time's run is made), not told again.
    cluster.add_cron("nightly", concurrencyPolicy="Allow", suspend=False)
    await settle()
    assert len(cluster.runs("nightly")) == 2  # the latest run time missed, as after an outage
    assert len(told(cluster)) == 1
    assert held(metrics) == 1

    # The CRD rolled forward: the next retry is accepted, the hold ends and the schedule goes on.
    switch.clear()
    await clock.advance(RETRY_CAP_SECONDS + 1)
    assert held(metrics) == 0
    status = cluster.crons["ns/nightly"].status
    assert status.last_schedule_time is not None
    assert status.last_schedule_time >= datetime(2030, 1, 1, 0, 11, tzinfo=UTC)
    runs = len(cluster.runs("nightly"))
    await clock.advance(60)
    assert len(cluster.runs("nightly")) == runs + 1


async def test_a_held_cronjobflow_deleted_leaves_the_count(
    running: tuple[Cluster, FakeClock, Metrics],  # noqa: F811
) -> None:
    cluster, _, metrics = running
    metrics.watch_status_held(cluster.controller.status_held)  # type: ignore[union-attr]
    refuse_status_writes(cluster, "nightly")
    cluster.add_cron("nightly", concurrencyPolicy="Allow")
    await settle()
    assert held(metrics) == 1  # its first write refused: held before any run
    cron = cluster.crons.pop("ns/nightly")
    cluster.controller.on_cron_deleted(cron)  # type: ignore[union-attr]
    assert held(metrics) == 0
