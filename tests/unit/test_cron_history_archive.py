"""A CronJobFlow's history limits with a flow archive (planner/cron_history.py): a run beyond the limits
waits for its record as a TTL deletion does, and is deleted without one only after the bounded wait and
a write that failed, which the reconciler says with a Warning event NotArchived and a `skipped` count."""

from __future__ import annotations

from datetime import datetime, timedelta

from test_planner_cron import at, cron, run

from zen_flow.api.cronjobflow import CronJobFlowStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import Condition
from zen_flow.planner.cron import DeleteRun, plan_cron

HOUR = 3600.0


def with_archived(flow: JobFlow, status: str, message: str = "") -> JobFlow:
    cond = Condition(type="Archived", status=status, reason="x", message=message)
    return flow.model_copy(update={"status": flow.status.model_copy(update={"conditions": (cond,)})})


def deletes(plan: object) -> list[DeleteRun]:
    return [a for a in plan.actions if isinstance(a, DeleteRun)]  # type: ignore[attr-defined]


def plan_at(runs: list[JobFlow], now: datetime, **spec: object) -> object:
    status = CronJobFlowStatus(last_schedule_time=at(0, 10))
    return plan_cron(cron(status=status, **spec), runs, now, archive_max_delay=HOUR)


def test_a_run_beyond_the_limit_waits_for_its_record_then_goes() -> None:
    ended = run(at(0, 10), "Succeeded", at(0, 11))
    held = plan_at([ended], at(0, 11), successfulJobsHistoryLimit=0)
    assert deletes(held) == []
    assert held.requeue_after is not None  # type: ignore[attr-defined]
    # Without an archive it goes at once, as before.
    plain = plan_cron(
        cron(status=CronJobFlowStatus(last_schedule_time=at(0, 10)), successfulJobsHistoryLimit=0),
        [ended],
        at(0, 11),
    )
    assert [d.name for d in deletes(plain)] == [ended.metadata.name]
    written = with_archived(ended, "True", "s3://b/k")
    assert [
        (d.name, d.unarchived) for d in deletes(plan_at([written], at(0, 12), successfulJobsHistoryLimit=0))
    ] == [(ended.metadata.name, "")]


def test_the_wait_counts_from_when_the_run_went_beyond_the_limit_and_wakes_then() -> None:
    old = with_archived(run(at(0, 10), "Failed", at(0, 11)), "False", "cannot connect")
    newer = run(at(0, 20), "Failed", at(0, 21))
    # failedJobsHistoryLimit 1: the old run went beyond it when the newer one ended (0:21), not at 0:11.
    now = at(0, 11) + timedelta(seconds=HOUR + 60)
    held = plan_at([old, newer], now, suspend=True)  # suspended: no run time to come back for
    assert deletes(held) == []
    assert held.requeue_after == 540  # type: ignore[attr-defined]  # at 1:21, 0:21 + 1 h


def test_past_the_wait_a_run_whose_write_failed_is_deleted_and_says_why() -> None:
    failed = with_archived(run(at(0, 10), "Succeeded", at(0, 11)), "False", "HTTP 403 AccessDenied")
    overdue = at(0, 11) + timedelta(seconds=HOUR)
    (gone,) = deletes(plan_at([failed], overdue, successfulJobsHistoryLimit=0))
    assert "without an archive record" in gone.unarchived
    assert "successfulJobsHistoryLimit" in gone.unarchived
    assert "HTTP 403 AccessDenied" in gone.unarchived


def test_past_the_wait_a_run_no_write_was_tried_for_is_kept() -> None:
    untried = run(at(0, 10), "Succeeded", at(0, 11))  # the controller was down, or archiving just began
    assert (
        deletes(plan_at([untried], at(0, 11) + timedelta(seconds=10 * HOUR), successfulJobsHistoryLimit=0))
        == []
    )
