"""A CronJobFlow's runs are its record of what it scheduled (planner/cron.py): a run created whose status
write was lost (a 409, a lost lease, a kill) still has its run time recorded by the next reconcile, and a
run time whose run existed is never run again, even once the run is gone (a history limit of 0, a short
TTL, a user's delete). Manual runs (`zen-flow cron trigger`, with `--scheduled-time` or not) are no run
time and record none."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_planner_cron import CREATED, at, condition, creates, cron, run

from zen_flow.api.constants import ANNOTATION_SCHEDULED_TIME, ANNOTATION_STOP, FlowPhase
from zen_flow.api.cronjobflow import CronJobFlow, CronJobFlowStatus
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import Condition, format_time
from zen_flow.planner.cron import CreateRun, DeleteRun, StopRun, manual_run, plan_cron, run_name
from zen_flow.planner.cron_runs import run_time_of

LIMIT_0 = {"successfulJobsHistoryLimit": 0}


def deletes(plan: Any) -> list[str]:
    return [a.name for a in plan.actions if isinstance(a, DeleteRun)]


def test_a_run_whose_status_write_was_lost_has_its_run_time_recorded_by_the_next_reconcile() -> None:
    before = CronJobFlowStatus(last_schedule_time=at(0, 0))
    first = plan_cron(cron(status=before), [], at(0, 10, 1))
    assert [c.name for c in creates(first)] == [run_name("nightly", at(0, 10))]
    # Its status write is lost; the retry (or a restarted controller) sees the run in its cache.
    retry = plan_cron(cron(status=before), [run(at(0, 10))], at(0, 10, 2))
    assert creates(retry) == []
    assert retry.events == ()  # the create was reported by the reconcile that made it
    assert retry.status.last_schedule_time == at(0, 10)
    assert [r.name for r in retry.status.active] == [run_name("nightly", at(0, 10))]
    scheduled = condition(retry, "Scheduled")
    assert (scheduled.status, scheduled.reason) == ("True", "RunCreated")
    assert run_name("nightly", at(0, 10)) in scheduled.message
    assert scheduled.message == condition(first, "Scheduled").message


def test_a_run_time_whose_run_is_gone_before_the_next_one_is_not_run_again() -> None:
    before = CronJobFlowStatus(last_schedule_time=at(0, 0))
    retry = plan_cron(cron(status=before, **LIMIT_0), [run(at(0, 10))], at(0, 10, 2))
    # 00:13: the run succeeded; successfulJobsHistoryLimit 0 deletes it.
    done = run(at(0, 10), "Succeeded", at(0, 13))
    cleanup = plan_cron(cron(status=retry.status, **LIMIT_0), [done], at(0, 13, 1))
    assert deletes(cleanup) == [done.metadata.name]
    after = plan_cron(cron(status=cleanup.status, **LIMIT_0), [], at(0, 13, 5))
    assert creates(after) == []
    assert after.events == ()


def test_a_run_is_deleted_by_the_history_limits_only_once_its_run_time_is_recorded() -> None:
    # Every write since the run's create was lost, and it has already succeeded.
    before = CronJobFlowStatus(last_schedule_time=at(0, 0))
    done = run(at(0, 10), "Succeeded", at(0, 13))
    held = plan_cron(cron(status=before, **LIMIT_0), [done], at(0, 13, 1))
    # A delete now, with the write after it lost, would leave nothing that tells 00:10 was run.
    assert deletes(held) == []
    assert held.status.last_schedule_time == at(0, 10)
    # The write landed: the next reconcile (its watch event brings one) deletes it.
    recorded = plan_cron(cron(status=held.status, **LIMIT_0), [done], at(0, 13, 2))
    assert deletes(recorded) == [done.metadata.name]


def test_a_run_time_recorded_from_its_run_hides_the_older_missed_ones_and_the_deadline() -> None:
    # 00:10 and 00:20 were missed (the controller down); 00:30's run was made, its write lost.
    before = CronJobFlowStatus(last_schedule_time=at(0, 0))
    spec = {"startingDeadlineSeconds": 60, **LIMIT_0}
    retry = plan_cron(cron(status=before, **spec), [run(at(0, 30))], at(0, 30, 5))
    assert retry.status.last_schedule_time == at(0, 30)
    assert retry.status.last_skipped_time is None
    # The run is gone at 00:35: neither it nor a missed run time comes due, and none is "missed".
    gone = plan_cron(cron(status=retry.status, **spec), [], at(0, 35))
    assert creates(gone) == []
    assert gone.events == ()
    assert gone.status.last_skipped_time is None


def test_a_later_run_time_due_now_is_still_created_beside_the_record() -> None:
    before = CronJobFlowStatus(last_schedule_time=at(0, 0))
    done = run(at(0, 10), "Succeeded", at(0, 13))
    plan = plan_cron(cron(status=before), [done], at(0, 20, 1))
    assert [c.scheduled_time for c in creates(plan)] == [at(0, 20)]
    assert plan.status.last_schedule_time == at(0, 20)


def test_the_record_never_overwrites_what_a_later_run_time_was_said_to_have_become() -> None:
    # 00:10's run was made and its write lost; 00:20 was skipped (Forbid), that write landed.
    skipped = Condition(
        type="Scheduled",
        status="False",
        reason="RunSkipped",
        message="run time 2026-05-01T00:20:00Z skipped: concurrencyPolicy Forbid and nightly-29626570 "
        "not finished",
        last_transition_time=at(0, 20),
    )
    before = CronJobFlowStatus(
        last_schedule_time=at(0, 0), last_skipped_time=at(0, 20), conditions=(skipped,)
    )
    plan = plan_cron(cron(status=before), [run(at(0, 10))], at(0, 21))
    assert plan.status.last_schedule_time == at(0, 10)
    assert condition(plan, "Scheduled").message == skipped.message


def manual(token: str, created: datetime, scheduled: datetime | None = None) -> JobFlow:
    body = manual_run(cron(), token, scheduled)
    meta = {**body["metadata"], "uid": f"uid-{token}", "creationTimestamp": format_time(created)}  # type: ignore[dict-item]
    return JobFlow.model_validate({**body, "metadata": meta, "status": {"phase": "Succeeded"}})


def test_manual_runs_record_no_run_time_with_or_without_a_scheduled_time() -> None:
    before = CronJobFlowStatus(last_schedule_time=at(0, 10))
    runs = [manual("a1b2c", at(0, 13)), manual("d3e4f", at(0, 14), scheduled=at(0, 50))]
    assert runs[1].metadata.annotations[ANNOTATION_SCHEDULED_TIME] == "2026-05-01T00:50:00Z"
    plan = plan_cron(cron(status=before, **LIMIT_0), runs, at(0, 15))
    assert plan.status.last_schedule_time == at(0, 10)
    # Nor do they hold the history limits back: they were never a run time to record.
    assert sorted(deletes(plan)) == sorted(r.metadata.name for r in runs)
    # And 00:20 still comes due after them.
    later = plan_cron(cron(status=plan.status, **LIMIT_0), [], at(0, 20, 1))
    assert [c.scheduled_time for c in creates(later)] == [at(0, 20)]


# --- the property: status writes lost at any point never run a run time twice ------------------------


@dataclass
class World:
    """The apiserver as the planner's reconciles leave it: the CronJobFlow's stored status and its runs."""

    spec: dict[str, Any]
    status: CronJobFlowStatus = field(default_factory=CronJobFlowStatus)
    runs: dict[str, JobFlow] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)  # every run created, in order
    now: datetime = CREATED

    def cron(self) -> CronJobFlow:
        return cron(status=self.status, **self.spec)

    def reconcile(self, applied: int, written: bool) -> None:
        """One reconcile, cut off after its first `applied` actions (a kill, a lost lease); its status
        write lost unless `written` (a 409, a kill)."""
        plan = plan_cron(self.cron(), list(self.runs.values()), self.now)
        before = self.status.last_schedule_time
        for action in plan.actions[:applied]:
            if isinstance(action, CreateRun) and action.name not in self.runs:
                assert action.name not in self.made, f"{action.name} created again: {self.made}"
                self.made.append(action.name)
                body: Any = action.body
                meta = {
                    **body["metadata"],
                    "uid": f"uid-{action.name}",
                    "creationTimestamp": format_time(self.now),
                }
                self.runs[action.name] = JobFlow.model_validate({**body, "metadata": meta})
            elif isinstance(action, DeleteRun):
                self.runs.pop(action.name, None)
            elif isinstance(action, StopRun) and action.name in self.runs:
                stopped = self.runs[action.name]
                annotations = {**stopped.metadata.annotations, ANNOTATION_STOP: "true"}
                meta_update = stopped.metadata.model_copy(update={"annotations": annotations})
                self.runs[action.name] = stopped.model_copy(update={"metadata": meta_update})
        if written and applied >= len(plan.actions):
            self.status = plan.status
            after = self.status.last_schedule_time
            assert before is None or (after is not None and after >= before), "lastScheduleTime went back"
            # Only a run time a run was made for: never a manual run's, whatever it carries.
            assert after is None or after == before or run_name("nightly", after) in self.made

    def trigger(self, token: int, scheduled: bool) -> None:
        """`zen-flow cron trigger`, `--scheduled-time` an hour ahead or not."""
        body = manual(f"m{token:04d}", self.now, self.now + timedelta(hours=1) if scheduled else None)
        if body.metadata.name not in self.runs:
            self.runs[body.metadata.name] = body.model_copy(update={"status": JobFlowStatus(phase="Running")})

    def finish(self, index: int, phase: FlowPhase) -> None:
        active = sorted(n for n, r in self.runs.items() if r.status.phase not in ("Succeeded", "Failed"))
        if active:
            name = active[index % len(active)]
            self.runs[name] = self.runs[name].model_copy(
                update={"status": JobFlowStatus(phase=phase, completion_time=self.now)}
            )

    def delete_recorded(self, index: int) -> None:
        """A user's delete, or a TTL: of a finished run whose run time a write has recorded."""
        recorded = self.status.last_schedule_time
        gone = sorted(
            n
            for n, r in self.runs.items()
            if r.status.phase in ("Succeeded", "Failed")
            and recorded is not None
            and (run_time_of("nightly", n) or recorded) <= recorded
        )
        if gone:
            self.runs.pop(gone[index % len(gone)])


# Each step: seconds waited (run times are 10 minutes apart), then a reconcile (cut after some of its
# actions or not, its write lost or not), a run ending, a recorded run deleted, or a manual run.
reconciles = st.tuples(st.just("reconcile"), st.integers(0, 4), st.booleans())
steps = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 10, 60, 600]),
        st.one_of(
            reconciles,
            reconciles,  # the most frequent
            st.tuples(
                st.just("finish"), st.integers(0, 9), st.sampled_from([FlowPhase.SUCCEEDED, FlowPhase.FAILED])
            ),
            st.tuples(st.just("delete"), st.integers(0, 9)),
            st.tuples(st.just("trigger"), st.integers(0, 9999), st.booleans()),
        ),
    ),
    min_size=6,
    max_size=40,
)
specs = st.fixed_dictionaries(
    {
        "concurrencyPolicy": st.sampled_from(["Forbid", "Allow", "Replace"]),
        "successfulJobsHistoryLimit": st.integers(0, 1),
        "failedJobsHistoryLimit": st.integers(0, 1),
    },
    optional={"startingDeadlineSeconds": st.sampled_from([30, 300, 3600])},
)


RED_TEAM = [  # 00:10's run made, its write lost; the retry's write lands; it succeeds and is deleted
    (600, ("reconcile", 1, False)),
    (1, ("reconcile", 4, True)),
    (60, ("finish", 0, FlowPhase.SUCCEEDED)),
    (1, ("reconcile", 4, True)),
    (1, ("reconcile", 4, True)),
]
DELETED_UNRECORDED = [  # every write lost until the history limit deletes the run
    (600, ("reconcile", 1, False)),
    (60, ("finish", 0, FlowPhase.SUCCEEDED)),
    (1, ("reconcile", 4, False)),
    (1, ("reconcile", 4, True)),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs, steps)
@example(
    {"concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": 1}, RED_TEAM
)
@example(
    {"concurrencyPolicy": "Allow", "successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": 0},
    DELETED_UNRECORDED,
)
def test_lost_status_writes_and_cut_reconciles_never_run_a_run_time_twice(
    spec: dict[str, Any], plan: list[tuple[int, tuple[Any, ...]]]
) -> None:
    world = World(spec)
    for wait, step in plan:
        world.now += timedelta(seconds=wait)
        if step[0] == "reconcile":
            world.reconcile(applied=step[1], written=step[2])
        elif step[0] == "finish":
            world.finish(step[1], step[2])
        elif step[0] == "trigger":
            world.trigger(step[1], step[2])
        else:
            world.delete_recorded(step[1])
    # Once a reconcile's write lands, every run time a run was made for is recorded.
    world.reconcile(applied=99, written=True)
    made = [t for n in world.made if (t := run_time_of("nightly", n)) is not None]
    if made:
        assert world.status.last_schedule_time is not None
        assert world.status.last_schedule_time >= max(made)
