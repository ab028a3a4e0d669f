"""plan_cron (planner/cron.py): which runs a CronJobFlow creates, skips, stops and deletes, by the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from zen_flow.api.constants import ANNOTATION_SCHEDULED_TIME, ANNOTATION_STOP, LABEL_CRON, RUN_TTL_SECONDS
from zen_flow.api.cronjobflow import CronJobFlow, CronJobFlowStatus
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import ObjectMeta, OwnerReference, format_time
from zen_flow.core.cron import scheduled_minute
from zen_flow.planner.cron import (
    MAX_ACTIVE_RUNS,
    CreateRun,
    DeleteRun,
    StopRun,
    build_run,
    plan_cron,
    run_name,
)
from zen_flow.validation.expansion import expand, is_cron_run
from zen_flow.webhook.mutation import default_ops
from zen_flow.webhook.patch import apply_patch

CREATED = datetime(2026, 5, 1, 0, 0, 30, tzinfo=UTC)
TEMPLATE_SPEC = {"steps": [{"name": "a", "template": {"spec": {"template": {"spec": {"containers": []}}}}}]}


def cron(schedule: str = "*/10 * * * *", status: CronJobFlowStatus | None = None, **spec: Any) -> CronJobFlow:
    return CronJobFlow.model_validate(
        {
            "metadata": {
                "name": "nightly",
                "namespace": "team",
                "uid": "cron-uid",
                "generation": 2,
                "creationTimestamp": format_time(CREATED),
            },
            "spec": {
                "schedule": schedule,
                "jobFlowTemplate": {"metadata": {"labels": {"team": "data"}}, "spec": TEMPLATE_SPEC},
                **spec,
            },
            "status": (status or CronJobFlowStatus()).to_wire(),
        }
    )


def run(
    at: datetime, phase: str | None = "Running", completed: datetime | None = None, **annotations: str
) -> JobFlow:
    name = run_name("nightly", at)
    return JobFlow(
        metadata=ObjectMeta(
            name=name,
            namespace="team",
            uid=f"uid-{name}",
            annotations={ANNOTATION_SCHEDULED_TIME: format_time(at), **annotations},
            owner_references=(
                OwnerReference(
                    api_version="workflow.kube-zen.io/v1alpha1",
                    kind="CronJobFlow",
                    name="nightly",
                    uid="cron-uid",
                    controller=True,
                ),
            ),
        ),
        status=JobFlowStatus(phase=phase, completion_time=completed),
    )


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 5, 1, hour, minute, second, tzinfo=UTC)


def creates(plan: Any) -> list[CreateRun]:
    return [a for a in plan.actions if isinstance(a, CreateRun)]


def condition(plan: Any, kind: str) -> Any:
    return next(c for c in plan.status.conditions if c.type == kind)


def test_nothing_is_due_before_the_first_run_time_and_it_requeues_for_it() -> None:
    plan = plan_cron(cron(), [], at(0, 7, 30))
    assert plan.actions == ()
    assert plan.requeue_after == 150.0  # 00:10:00
    assert plan.outcome is None


def test_a_due_run_time_creates_a_flow_named_by_its_unix_minute() -> None:
    plan = plan_cron(cron(), [], at(0, 10, 3))
    [create] = creates(plan)
    assert create.name == f"nightly-{scheduled_minute(at(0, 10))}"
    meta = create.body["metadata"]
    assert isinstance(meta, dict)
    assert meta["labels"] == {"team": "data", LABEL_CRON: "nightly"}
    assert meta["annotations"] == {ANNOTATION_SCHEDULED_TIME: "2026-05-01T00:10:00Z"}
    assert meta["ownerReferences"][0]["uid"] == "cron-uid"
    assert meta["ownerReferences"][0]["controller"] is True
    assert create.body["spec"] == {
        **TEMPLATE_SPEC,
        "executionPolicy": {"ttlSecondsAfterFinished": RUN_TTL_SECONDS},
    }
    assert plan.status.last_schedule_time == at(0, 10)
    assert [r.name for r in plan.status.active] == [create.name]
    assert plan.status.active_runs == 1  # the ACTIVE column
    assert condition(plan, "Scheduled").status == "True"
    assert [e.reason for e in plan.events] == ["RunCreated"]
    assert plan.outcome == "created"
    assert plan.requeue_after == 597.0


def test_the_same_run_time_is_not_created_twice_once_recorded_or_seen() -> None:
    first = plan_cron(cron(), [], at(0, 10, 3))
    # The status write landed: the same moment again plans nothing.
    assert creates(plan_cron(cron(status=first.status), [], at(0, 10, 20))) == []
    # The status write was lost but the cache shows the run: nothing either.
    assert creates(plan_cron(cron(), [run(at(0, 10))], at(0, 10, 20))) == []


def test_a_run_time_before_the_cronjobflow_existed_is_never_started() -> None:
    assert creates(plan_cron(cron("0 0 * * *"), [], at(0, 0, 50))) == []


def test_after_an_outage_only_the_latest_missed_run_time_starts() -> None:
    status = CronJobFlowStatus(last_schedule_time=at(1, 0))
    plan = plan_cron(cron(status=status), [run(at(1, 0), "Succeeded", at(1, 5))], at(9, 47))
    assert [c.scheduled_time for c in creates(plan)] == [at(9, 40)]


def test_with_a_starting_deadline_a_late_run_time_is_skipped_and_recorded() -> None:
    status = CronJobFlowStatus(last_schedule_time=at(1, 0))
    late = plan_cron(cron(status=status, startingDeadlineSeconds=300), [], at(9, 47))
    assert creates(late) == []
    assert late.status.last_skipped_time == at(9, 40)
    assert late.status.last_schedule_time == at(1, 0)
    assert late.outcome == "skipped_deadline"
    assert [(e.type, e.reason) for e in late.events] == [("Warning", "MissedSchedule")]
    assert condition(late, "Scheduled").status == "False"
    # Recorded: the next reconcile does not skip (or start) it again.
    again = plan_cron(cron(status=late.status, startingDeadlineSeconds=300), [], at(9, 48))
    assert again.actions == ()
    assert again.events == ()
    # Within the deadline it starts.
    on_time = plan_cron(cron(status=status, startingDeadlineSeconds=600), [], at(9, 47))
    assert [c.scheduled_time for c in creates(on_time)] == [at(9, 40)]


def test_forbid_is_the_default_and_skips_while_a_run_is_active() -> None:
    status = CronJobFlowStatus(last_schedule_time=at(0, 10))
    active = run(at(0, 10))
    plan = plan_cron(cron(status=status), [active], at(0, 20, 1))
    assert creates(plan) == []
    assert plan.outcome == "skipped_forbid"
    assert plan.status.last_skipped_time == at(0, 20)
    assert [r.name for r in plan.status.active] == [active.metadata.name]
    assert "not finished" in plan.events[0].message
    # The skipped run time is not started late once the active run has finished.
    done = run(at(0, 10), "Succeeded", at(0, 21))
    after = plan_cron(cron(status=plan.status), [done], at(0, 22))
    assert creates(after) == []
    assert after.status.active == ()
    assert after.status.last_successful_time == at(0, 21)


def test_allow_creates_beside_the_active_run() -> None:
    status = CronJobFlowStatus(last_schedule_time=at(0, 10))
    active = run(at(0, 10))
    plan = plan_cron(cron(status=status, concurrencyPolicy="Allow"), [active], at(0, 20, 1))
    assert [c.scheduled_time for c in creates(plan)] == [at(0, 20)]
    assert [r.name for r in plan.status.active] == [active.metadata.name, run_name("nightly", at(0, 20))]
    assert plan.status.active_runs == 2


def test_replace_stops_the_active_runs_with_the_stop_annotation_and_creates() -> None:
    status = CronJobFlowStatus(last_schedule_time=at(0, 10))
    active = run(at(0, 10))
    plan = plan_cron(cron(status=status, concurrencyPolicy="Replace"), [active], at(0, 20, 1))
    assert [a for a in plan.actions if isinstance(a, StopRun)] == [
        StopRun(active.metadata.name, active.metadata.uid)
    ]
    assert [c.scheduled_time for c in creates(plan)] == [at(0, 20)]
    assert not any(isinstance(a, DeleteRun) for a in plan.actions)  # stopped, not deleted
    # A run already asked to stop is not asked again.
    stopping = run(at(0, 10), **{ANNOTATION_STOP: "true"})
    again = plan_cron(cron(status=status, concurrencyPolicy="Replace"), [stopping], at(0, 20, 1))
    assert not any(isinstance(a, StopRun) for a in again.actions)


def test_replace_stops_an_older_active_run_even_when_no_run_time_is_due() -> None:
    # The stop patch of 00:10's run failed when 00:20's was created: lastScheduleTime has moved on, and
    # the next reconcile must still ask the old run to stop, or Replace would behave like Allow.
    status = CronJobFlowStatus(last_schedule_time=at(0, 20))
    old, new = run(at(0, 10)), run(at(0, 20))
    plan = plan_cron(cron(status=status, concurrencyPolicy="Replace"), [new, old], at(0, 20, 5))
    assert creates(plan) == []
    assert [a for a in plan.actions if isinstance(a, StopRun)] == [
        StopRun(old.metadata.name, old.metadata.uid)
    ]
    # Once the request is on it, it is not sent again; one active run is never stopped.
    asked = run(at(0, 10), **{ANNOTATION_STOP: "true"})
    for runs in ([new, asked], [new]):
        again = plan_cron(cron(status=status, concurrencyPolicy="Replace"), runs, at(0, 20, 5))
        assert not any(isinstance(a, StopRun) for a in again.actions)


def test_allow_keeps_at_most_a_hundred_runs_active() -> None:
    start = datetime(2026, 5, 1, 1, 0, tzinfo=UTC)
    stuck = [run(start + timedelta(minutes=i)) for i in range(MAX_ACTIVE_RUNS)]
    now = start + timedelta(minutes=MAX_ACTIVE_RUNS, seconds=5)
    status = CronJobFlowStatus(last_schedule_time=start + timedelta(minutes=MAX_ACTIVE_RUNS - 1))
    plan = plan_cron(cron("* * * * *", status, concurrencyPolicy="Allow"), stuck, now)
    assert creates(plan) == []
    assert plan.outcome == "skipped_active_limit"
    assert plan.status.last_skipped_time == start + timedelta(minutes=MAX_ACTIVE_RUNS)
    assert "too many active runs" in condition(plan, "Scheduled").message
    assert plan.status.active_runs == MAX_ACTIVE_RUNS
    # One fewer: the run time is created.
    fewer = plan_cron(cron("* * * * *", status, concurrencyPolicy="Allow"), stuck[1:], now)
    assert len(creates(fewer)) == 1


def test_the_requeue_is_never_shorter_than_a_second() -> None:
    # Half a second before 00:10: come back in one (a run half a second late), never spin at 0.
    plan = plan_cron(cron(), [], datetime(2026, 5, 1, 0, 9, 59, 500000, tzinfo=UTC))
    assert plan.requeue_after == 1.0


def test_in_the_repeated_autumn_hour_nothing_is_due_and_the_requeue_is_tomorrow() -> None:
    # New York, 2026-11-01: the 01:30 EDT run (05:30Z) was made; now is the second 01:10 (EST, 06:10Z).
    status = CronJobFlowStatus(last_schedule_time=datetime(2026, 11, 1, 5, 30, tzinfo=UTC))
    nightly = cron("30 1 * * *", status, timeZone="America/New_York")
    made = run(datetime(2026, 11, 1, 5, 30, tzinfo=UTC), phase="Succeeded")
    plan = plan_cron(nightly, [made], datetime(2026, 11, 1, 6, 10, tzinfo=UTC))
    assert creates(plan) == []
    assert (
        plan.requeue_after
        == (
            datetime(2026, 11, 2, 6, 30, tzinfo=UTC) - datetime(2026, 11, 1, 6, 10, tzinfo=UTC)
        ).total_seconds()
    )


def test_suspend_creates_nothing_and_does_not_requeue() -> None:
    plan = plan_cron(cron(suspend=True), [], at(0, 10, 3))
    assert plan.actions == ()
    assert plan.requeue_after is None


def test_resuming_starts_the_latest_missed_run_time_unless_the_deadline_excludes_it() -> None:
    status = CronJobFlowStatus(last_schedule_time=at(0, 10))
    assert [c.scheduled_time for c in creates(plan_cron(cron(status=status), [], at(5, 3)))] == [at(5, 0)]
    late = plan_cron(cron(status=status, startingDeadlineSeconds=60), [], at(5, 3))
    assert creates(late) == []


def test_history_limits_delete_the_oldest_finished_runs() -> None:
    succeeded = [run(at(0, m), "Succeeded", at(0, m + 1)) for m in (10, 20, 30, 40, 50)]
    failed = [run(at(1, m), "Failed", at(1, m + 1)) for m in (10, 20)]
    runs = [*succeeded, *failed, run(at(2, 0))]
    status = CronJobFlowStatus(last_schedule_time=at(2, 0))
    plan = plan_cron(cron(status=status), runs, at(2, 5))
    deleted = {a.name for a in plan.actions if isinstance(a, DeleteRun)}
    # Defaults: 3 successful, 1 failed kept; the running one is never history.
    assert deleted == {succeeded[0].metadata.name, succeeded[1].metadata.name, failed[0].metadata.name}
    custom = plan_cron(
        cron(status=status, successfulJobsHistoryLimit=0, failedJobsHistoryLimit=5), runs, at(2, 5)
    )
    assert {a.name for a in custom.actions if isinstance(a, DeleteRun)} == {
        r.metadata.name for r in succeeded
    }


def test_last_successful_time_survives_its_run_being_deleted() -> None:
    status = CronJobFlowStatus(last_schedule_time=at(0, 10), last_successful_time=at(0, 12))
    assert plan_cron(cron(status=status), [], at(0, 15)).status.last_successful_time == at(0, 12)


def test_an_invalid_schedule_ends_with_a_condition_and_one_event_never_a_crash() -> None:
    plan = plan_cron(cron("every day"), [], at(0, 10))
    assert plan.actions == ()
    valid = condition(plan, "Valid")
    assert (valid.status, valid.reason) == ("False", "Invalid")
    assert "spec.schedule" in valid.message
    assert [e.reason for e in plan.events] == ["Invalid"]
    assert plan.requeue_after is None
    # Said once: the next reconcile of the same problem emits nothing.
    assert plan_cron(cron("every day", status=plan.status), [], at(0, 11)).events == ()


def test_an_invalid_template_creates_nothing() -> None:
    plan = plan_cron(cron(), [], at(0, 10, 3), invalid="spec.jobFlowTemplate.spec.steps: Required value")
    assert creates(plan) == []
    assert "jobFlowTemplate" in condition(plan, "Valid").message


def test_a_time_zone_moves_the_run_times() -> None:
    nine = cron("0 9 * * *", timeZone="Asia/Tokyo")  # 09:00 JST is 00:00 UTC
    plan = plan_cron(nine, [], datetime(2026, 5, 2, 0, 0, 20, tzinfo=UTC))
    assert [c.scheduled_time for c in creates(plan)] == [datetime(2026, 5, 2, tzinfo=UTC)]


def test_runs_being_deleted_are_not_active() -> None:
    going = run(at(0, 10)).model_copy(
        update={"metadata": run(at(0, 10)).metadata.model_copy(update={"deletion_timestamp": at(0, 15)})}
    )
    plan = plan_cron(cron(status=CronJobFlowStatus(last_schedule_time=at(0, 10))), [going], at(0, 20, 1))
    assert len(creates(plan)) == 1


def test_a_run_with_no_time_at_all_sorts_oldest_instead_of_failing() -> None:
    odd = JobFlow(
        metadata=ObjectMeta(
            name="renamed",
            namespace="team",
            uid="uid-odd",
            owner_references=run(at(0, 0)).metadata.owner_references,
        ),
        status=JobFlowStatus(phase="Succeeded"),
    )
    runs = [odd, *(run(at(0, m), "Succeeded", at(0, m + 1)) for m in (10, 20, 30))]
    plan = plan_cron(cron(status=CronJobFlowStatus(last_schedule_time=at(0, 30))), runs, at(0, 35))
    assert [a.name for a in plan.actions if isinstance(a, DeleteRun)] == ["renamed"]


def test_a_run_carries_the_templates_finally_grace() -> None:
    policy = {"activeDeadlineSeconds": 3600, "finallyGraceSeconds": 300}
    own = cron(jobFlowTemplate={"spec": {**TEMPLATE_SPEC, "executionPolicy": policy}})
    spec: Any = build_run(own, at(0, 0))["spec"]
    assert spec["executionPolicy"] == {**policy, "ttlSecondsAfterFinished": RUN_TTL_SECONDS}


def test_a_run_is_kept_by_the_history_limits_not_the_jobflow_default_ttl() -> None:
    # The JobFlow default TTL (a day, written by the webhook or the CRD) would delete the one run a
    # @weekly schedule keeps six days before the next; a run gets "never" unless its template says.
    body = build_run(cron("@weekly"), at(0, 0))
    spec: Any = body["spec"]
    assert spec["executionPolicy"]["ttlSecondsAfterFinished"] == RUN_TTL_SECONDS
    assert default_ops(body) == [
        {"op": "add", "path": "/spec/executionPolicy/concurrencyPolicy", "value": "Forbid"},
        {"op": "add", "path": "/spec/executionPolicy/backoffLimit", "value": 6},
    ]
    own = cron(
        "@weekly",
        jobFlowTemplate={"spec": {**TEMPLATE_SPEC, "executionPolicy": {"ttlSecondsAfterFinished": 60}}},
    )
    assert build_run(own, at(0, 0))["spec"]["executionPolicy"] == {"ttlSecondsAfterFinished": 60}  # type: ignore[index]
    other = cron(
        "@weekly", jobFlowTemplate={"spec": {**TEMPLATE_SPEC, "executionPolicy": {"backoffLimit": 2}}}
    )
    assert build_run(other, at(0, 0))["spec"]["executionPolicy"] == {  # type: ignore[index]
        "backoffLimit": 2,
        "ttlSecondsAfterFinished": RUN_TTL_SECONDS,
    }


def test_a_run_carries_the_priority_its_template_sets() -> None:
    prioritized = cron(
        "@hourly", jobFlowTemplate={"spec": {**TEMPLATE_SPEC, "executionPolicy": {"priority": 200}}}
    )
    assert build_run(prioritized, at(0, 0))["spec"]["executionPolicy"]["priority"] == 200  # type: ignore[index]


def test_replace_never_keeps_a_run_already_stopping() -> None:
    # 00:20's run was stopped by its user; 00:10's, older, is not stopping: it is the one kept, or
    # both would stop and the CronJobFlow would have no run at all.
    status = CronJobFlowStatus(last_schedule_time=at(0, 20))
    runs = [run(at(0, 10)), run(at(0, 20), **{ANNOTATION_STOP: "true"})]
    plan = plan_cron(cron(status=status, concurrencyPolicy="Replace"), runs, at(0, 20, 5))
    assert not any(isinstance(a, StopRun) for a in plan.actions)


def test_a_run_made_from_a_jobflowtemplate_gets_its_cronjobflows_ttl_the_templates_or_none() -> None:
    # The run is created naming the template, with no TTL of the CronJobFlow's making (it could not be
    # told from one the CronJobFlow set); the CRD defaults then fill what it leaves out (default_ops
    # writes the same), and the webhook (or the controller) expands it from the template, stored with the
    # CRD defaults too (ttlSecondsAfterFinished 86400 when its author set none).
    spec = {"templateRef": {"name": "build"}, "arguments": {"parameters": [{"name": "env", "value": "prod"}]}}
    made = cron("@weekly", jobFlowTemplate={"spec": spec})
    assert build_run(made, at(0, 0))["spec"] == spec

    def expanded(template_policy: dict[str, Any] | None, run_of: CronJobFlow = made) -> dict[str, Any]:
        body = build_run(run_of, at(0, 0))
        stored = apply_patch(body, default_ops(body))
        written: dict[str, Any] = {
            "spec": {
                **TEMPLATE_SPEC,
                "arguments": {"parameters": [{"name": "env", "value": "dev"}]},
                **({"executionPolicy": template_policy} if template_policy is not None else {}),
            }
        }
        template = apply_patch(written, default_ops(written))
        expansion = expand(stored["spec"], template, "default", run=is_cron_run(stored["metadata"]))
        assert expansion.spec is not None, expansion.errors
        assert expansion.spec["steps"] == TEMPLATE_SPEC["steps"]
        assert expansion.spec["arguments"]["parameters"] == [{"name": "env", "value": "prod"}]
        return dict(expansion.spec["executionPolicy"])

    # The template's own TTL decides.
    assert expanded({"ttlSecondsAfterFinished": 3600, "backoffLimit": 2}) == {
        "ttlSecondsAfterFinished": 3600,
        "backoffLimit": 2,
        "concurrencyPolicy": "Forbid",
    }
    # A template without one (stored with the CRD's day): none, the CronJobFlow's history limits decide,
    # as for its other runs.
    assert expanded(None)["ttlSecondsAfterFinished"] == RUN_TTL_SECONDS
    assert expanded({"backoffLimit": 2})["ttlSecondsAfterFinished"] == RUN_TTL_SECONDS
    # The CronJobFlow's own TTL for its runs replaces the template's, as any field a flow sets; "never"
    # too.
    for ttl in (60, RUN_TTL_SECONDS):
        policy = {"ttlSecondsAfterFinished": ttl}
        own = cron("@weekly", jobFlowTemplate={"spec": {**spec, "executionPolicy": policy}})
        assert expanded({"ttlSecondsAfterFinished": 3600}, own)["ttlSecondsAfterFinished"] == ttl
