"""`plan_cron(cron, runs, now)`: what a CronJobFlow does now. Pure: frozen models in, a CronPlan out.

A CronJobFlow creates one JobFlow (a *run*) per run time of its schedule, named
`<cron name>-<Unix minute of the run time>`: the name is the run's identity, so a create repeated after a
lost write or a restart answers AlreadyExists and never makes a second run. Which run time is due is
computed from the CronJobFlow's own record (status.lastScheduleTime, status.lastSkippedTime, its creation)
and its runs, never from a memory of the controller's, so a reconcile late, twice or after a crash
decides the same.

The runs are part of that record: a run's name gives its run time, so a run whose status write was lost
(a 409, a lost lease, a kill) still has its run time recorded by the next reconcile (lastScheduleTime
raised to the latest run time among the runs, the Scheduled condition refreshed), and the history limits
delete a run only once the stored status records its run time: deleted before, with that write lost,
nothing would tell the run time was run, and it would come due and run again.

Kubernetes' CronJob is the model:
- After an outage at most one missed run time is started, the latest; with `startingDeadlineSeconds`,
  only if it is not later than that.
- `concurrencyPolicy` (default Forbid, as a JobFlow's own): Forbid skips a run time while a run is
  active; Replace stops the active runs (the stop annotation `true`: their running Jobs are deleted the
  documented way and their `finally` steps do not run, as CronJob deletes its Job and Argo's Replace
  terminates) and creates the new one; Allow creates it beside them, up to MAX_ACTIVE_RUNS.
  A skipped run time is recorded (status.lastSkippedTime) and never started later.
- Replace's stops are level-based: whenever more than one run is active, every one but the newest that
  carries no stop request is stopped, at every reconcile, not only when a run time comes due: a stop
  patch that failed is retried, and a run never keeps running beside its successor. "Newest" is one
  order (cron_runs.rank) at the create and at every reconcile after it, and a run already stopping is
  never the one kept, so a run created and the run it replaced are never both stopped.
- `suspend` creates nothing; resuming starts the latest run time missed meanwhile, unless the deadline
  excludes it (as CronJob does).
- Finished runs beyond `successfulJobsHistoryLimit` (default 3) and `failedJobsHistoryLimit` (default 1)
  are deleted, the oldest first; with a flow archive, once their record is written or a bounded wait for
  it is over (planner/cron_history.py). The history limits, not a TTL, decide how long a run is kept, as for a
  CronJob's Jobs: a run gets `executionPolicy.ttlSecondsAfterFinished` RUN_TTL_SECONDS unless its template
  sets one, so the JobFlow default (a day, written by the webhook and the CRD) never deletes the one run a
  `@weekly` schedule keeps after a day. A run made from a JobFlowTemplate is created without it: its
  expansion gives it the template's TTL when it is not the CRD default, else RUN_TTL_SECONDS
  (validation/expansion.py merge_policy).
- A manual run (`zen-flow cron trigger`: named `<cron>-manual-<token>`, its time its creationTimestamp)
  is a run like the others, owned and labelled alike: it is active for concurrencyPolicy and counted by
  the history limits, but it is no run time: it never hides one that is due. A run time due before an
  active manual run (suspended until after it, the controller behind) is skipped under Forbid (a run is
  active) and under Replace (the newest run is kept, and the manual run is newer: created, the run would
  be stopped at once), and created under Allow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zen_flow.api.constants import (
    ANNOTATION_STOP,
    ConcurrencyPolicy,
    CronConditionType,
    FlowPhase,
)
from zen_flow.api.cronjobflow import CronJobFlow, CronJobFlowStatus, RunRef
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import Condition, format_time
from zen_flow.core.cron import Schedule, ScheduleError, parse_schedule
from zen_flow.planner.actions import EventSpec
from zen_flow.planner.cron_history import DeleteRun, history
from zen_flow.planner.cron_runs import (
    build_run,
    manual_run,
    owner_reference,
    rank,
    rank_of,
    run_name,
    run_time_of,
    time_of,
)
from zen_flow.planner.status import next_condition, observed_at

__all__ = [  # the run builders and the history's delete, where the planner's users have always found them
    "DeleteRun",
    "build_run",
    "manual_run",
    "owner_reference",
    "run_name",
]

# Allow: the most runs of one CronJobFlow active at once. Runs that never finish would otherwise pile up
# without bound (a minutely schedule: 10,080 a week), and with them status.active (a megabyte) and the
# cost of every plan; a run time beyond it is skipped, as Forbid skips one.
MAX_ACTIVE_RUNS = 100
# The shortest requeue of a valid schedule: the next run time is always strictly later than now (core/
# cron.py), but a requeue of 0 would re-add the key while it is being processed; never let one run hot.
MIN_REQUEUE_SECONDS = 1.0
RUN_CREATED = "RunCreated"  # the reason of the Event and the Scheduled condition of a run created


@dataclass(frozen=True)
class CreateRun:
    name: str
    scheduled_time: datetime
    body: dict[str, object]  # the JobFlow to POST
    # status.lastScheduleTime should the run not be made (the apiserver refuses it for good): the run
    # time before it, as its runs record it, not the stored one a lost write left behind.
    previous_schedule_time: datetime | None = None


@dataclass(frozen=True)
class StopRun:
    """Set the stop annotation on an active run (concurrencyPolicy Replace)."""

    name: str
    uid: str


CronAction = CreateRun | StopRun | DeleteRun


@dataclass(frozen=True)
class CronPlan:
    actions: tuple[CronAction, ...]
    status: CronJobFlowStatus
    events: tuple[EventSpec, ...]
    # Seconds until the next run time (or a run's delete held for its archive record); None: nothing due.
    requeue_after: float | None
    # What became of the run time due now, for the metrics: "created", "skipped_forbid",
    # "skipped_replace", "skipped_deadline", "skipped_active_limit", or None when none was due.
    outcome: str | None = None


def _finished(run: JobFlow) -> bool:
    return run.status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)


def _stopping(run: JobFlow) -> bool:
    return bool((run.metadata.annotations.get(ANNOTATION_STOP) or "").strip())


def _ref(cron_name: str, run: JobFlow) -> RunRef:
    return RunRef(
        name=run.metadata.name, uid=run.metadata.uid or None, scheduled_time=time_of(cron_name, run)
    )


def _by_time(cron_name: str, runs: Iterable[JobFlow]) -> list[JobFlow]:
    """Newest first (cron_runs.rank)."""
    return sorted(runs, key=lambda r: rank_of(cron_name, r), reverse=True)


def _condition(
    old: Sequence[Condition],
    kind: CronConditionType,
    true: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> Condition:
    """Condition `kind` (status.next_condition); one that says the same is the old one, at `generation`."""
    before = next((c for c in old if c.type == kind.value), None)
    said = ("True" if true else "False", reason, message)
    if before is not None and (before.status, before.reason, before.message) == said:
        return observed_at(before, generation)
    return next_condition(kind.value, true, reason, message, generation, now, before)


def plan_cron(
    cron: CronJobFlow,
    runs: Sequence[JobFlow],
    now: datetime,
    invalid: str | None = None,
    *,
    archive_max_delay: float | None = None,
) -> CronPlan:
    """What to do now. `runs`: the JobFlows this CronJobFlow controls (from the cache); `invalid`: why
    its template cannot make a valid JobFlow (the validator's verdict), or None; `archive_max_delay`:
    with a flow archive, `--archive-max-delay-seconds` (a run's delete waits for its record)."""
    spec, old, name = cron.spec, cron.status, cron.metadata.name
    generation = cron.metadata.generation or None
    schedule: Schedule | None = None
    if invalid is None:
        try:
            schedule = parse_schedule(spec.schedule, spec.time_zone)
        except ScheduleError as err:
            invalid = f"spec.schedule or spec.timeZone: {err}"
    live = [r for r in runs if r.metadata.deletion_timestamp is None]
    active = [r for r in live if not _finished(r)]
    kept = history(
        name,
        live,
        spec.successful_jobs_history_limit,
        spec.failed_jobs_history_limit,
        now,
        archive_max_delay,
    )
    # A delete waits for the stored record of its run's run time: deleted first, with the write that
    # records it lost, nothing would tell that the run time was run, and it would come due again.
    actions: list[CronAction] = [d for d in kept.deletes if not _unrecorded(name, d.name, old)]
    succeeded = [r.status.completion_time for r in live if r.status.phase == FlowPhase.SUCCEEDED]
    last_success = max([t for t in (old.last_successful_time, *succeeded) if t is not None], default=None)
    served = _served(name, runs, now)
    recorded = _later(old.last_schedule_time, served)
    status = old.model_copy(
        update={
            "last_successful_time": last_success,
            "last_schedule_time": recorded,
            "active": tuple(_ref(name, r) for r in _by_time(name, active))[::-1],
            "observed_generation": generation,
        }
    )
    # Each at the generation planned, the Scheduled of a run time before an edit too (`kubectl wait`).
    conditions = {c.type: observed_at(c, generation) for c in old.conditions}
    told = _later(old.last_schedule_time, old.last_skipped_time)  # the latest run time the status tells of
    if served is not None and (told is None or served > told):
        # A run the stored status does not tell of (its write lost): the condition says it was created.
        conditions[CronConditionType.SCHEDULED] = _condition(
            old.conditions,
            CronConditionType.SCHEDULED,
            True,
            RUN_CREATED,
            _created(run_name(name, served), served),
            generation,
            now,
        )
    events: list[EventSpec] = []
    if invalid is not None or schedule is None:
        why = invalid or "no schedule"
        conditions[CronConditionType.VALID] = _condition(
            old.conditions, CronConditionType.VALID, False, "Invalid", why, generation, now
        )
        status = counted(status, {"conditions": tuple(conditions.values())})
        # Said once, when it becomes invalid (a status write follows); not at every reconcile.
        if not _was(old, CronConditionType.VALID, "False", why):
            events.append(EventSpec("Warning", "Invalid", why))
        return CronPlan(tuple(actions), status, tuple(events), _sooner(None, kept.wake))
    conditions[CronConditionType.VALID] = _condition(
        old.conditions, CronConditionType.VALID, True, "Valid", "", generation, now
    )
    outcome = None
    if not spec.suspend:
        known = [
            t
            for t in (
                cron.metadata.creation_timestamp,
                recorded,
                old.last_skipped_time,
                # Only a run named for a run time: a manual run's time is when it was created, which
                # must not hide a run time due before it (suspended, or the controller behind).
                *(run_time_of(name, r.metadata.name) for r in runs),
            )
            if t is not None
        ]
        since = max(known, default=now)
        due = schedule.latest_due(since, now)
        if due is not None:
            outcome, update, event, made = _decide(cron, due, now, active, recorded)
            actions.extend(made)
            events.append(event)
            status = status.model_copy(update=update)
            true = outcome == "created"
            conditions[CronConditionType.SCHEDULED] = _condition(
                old.conditions,
                CronConditionType.SCHEDULED,
                true,
                RUN_CREATED if true else "RunSkipped",
                event.message,
                generation,
                now,
            )
    if (spec.concurrency_policy or ConcurrencyPolicy.FORBID) == ConcurrencyPolicy.REPLACE:
        # The stops before the create, as CronJob deletes the old Job before it creates the new one.
        creates = [a for a in actions if isinstance(a, CreateRun)]
        others = [a for a in actions if not isinstance(a, CreateRun)]
        actions = [*others, *_replaced(name, active, creates), *creates]
    status = counted(status, {"conditions": tuple(conditions.values())})
    upcoming = None if spec.suspend else schedule.next_after(now)
    requeue = None if upcoming is None else max((upcoming - now).total_seconds(), MIN_REQUEUE_SECONDS)
    return CronPlan(tuple(actions), status, tuple(events), _sooner(requeue, kept.wake), outcome)


def _served(cron_name: str, runs: Sequence[JobFlow], now: datetime) -> datetime | None:
    """The latest run time come that a run of the CronJobFlow was made for: its runs are the record of
    what it scheduled when the status write that recorded one was lost (a 409, a lost lease, a kill).
    Only runs named for a run time (cron_runs.run_time_of): a manual run, whatever scheduled-time it
    carries, is no run time. None before now: a name no reconcile of ours gave yet (a replica whose
    clock is ahead, a hand-made name) must not hold the schedule back once its run is gone."""
    times = [t for r in runs if (t := run_time_of(cron_name, r.metadata.name)) is not None and t <= now]
    return max(times, default=None)


def _unrecorded(cron_name: str, run: str, stored: CronJobFlowStatus) -> bool:
    """Whether a run's run time is later than the stored status records (its write lost)."""
    moment = run_time_of(cron_name, run)
    recorded = stored.last_schedule_time
    return moment is not None and (recorded is None or moment > recorded)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((t for t in (a, b) if t is not None), default=None)


def _created(run: str, due: datetime) -> str:
    return f"created {run} for run time {format_time(due)}"


def _sooner(requeue: float | None, wake: float | None) -> float | None:
    """The next run time's requeue, or sooner a run's delete held for its archive record."""
    if wake is None:
        return requeue
    wake = max(wake, MIN_REQUEUE_SECONDS)
    return wake if requeue is None else min(requeue, wake)


def _replaced(cron_name: str, active: Sequence[JobFlow], created: Sequence[CreateRun]) -> list[StopRun]:
    """Replace: a stop for every active run without a stop request but the newest of them and the run
    created now (cron_runs.rank, the order of every reconcile). A run already stopping is never kept:
    keeping it would stop its replacement too. Planned at every reconcile: a stop that failed is retried."""
    going = [r for r in active if not _stopping(r)]
    ranks = [rank_of(cron_name, r) for r in going]
    ranks += [rank(cron_name, c.name, c.scheduled_time) for c in created]
    if not ranks:
        return []
    kept = max(ranks)[2]
    return [StopRun(r.metadata.name, r.metadata.uid) for r in going if r.metadata.name != kept]


def counted(status: CronJobFlowStatus, update: dict[str, Any]) -> CronJobFlowStatus:
    """`status` with `update`, its activeRuns counting the active list it then holds."""
    active = update.get("active", status.active)
    return status.model_copy(update={**update, "active_runs": len(active)})


def _was(status: CronJobFlowStatus, kind: CronConditionType, value: str, message: str) -> bool:
    return any(c.type == kind.value and c.status == value and c.message == message for c in status.conditions)


def _decide(
    cron: CronJobFlow, due: datetime, now: datetime, active: Sequence[JobFlow], recorded: datetime | None
) -> tuple[str, dict[str, object], EventSpec, list[CronAction]]:
    """The fate of run time `due`, later than every run's (`since`): no run by its name exists yet.
    Returns (outcome, status fields, event, actions); `recorded`: lastScheduleTime before it."""
    spec = cron.spec
    name = run_name(cron.metadata.name, due)
    when = format_time(due)
    deadline = spec.starting_deadline_seconds
    late = (now - due).total_seconds()
    if deadline is not None and late > deadline:
        message = f"run time {when} skipped: {late:.0f}s late, more than startingDeadlineSeconds ({deadline})"
        return (
            "skipped_deadline",
            {"last_skipped_time": due},
            EventSpec("Warning", "MissedSchedule", message),
            [],
        )
    policy = spec.concurrency_policy or ConcurrencyPolicy.FORBID
    others = [r for r in active if r.metadata.name != name]
    if others and policy == ConcurrencyPolicy.FORBID:
        names = ", ".join(r.metadata.name for r in others)
        message = f"run time {when} skipped: concurrencyPolicy Forbid and {names} not finished"
        return ("skipped_forbid", {"last_skipped_time": due}, EventSpec("Normal", "RunSkipped", message), [])
    mine = rank(cron.metadata.name, name, due)
    newer = [r for r in others if not _stopping(r) and rank_of(cron.metadata.name, r) > mine]
    if newer and policy == ConcurrencyPolicy.REPLACE:
        # A manual run created after the run time: Replace keeps the newest run, so the run would be
        # stopped as soon as created (_replaced, the same order): not created, as Forbid would not.
        names = ", ".join(r.metadata.name for r in newer)
        message = f"run time {when} skipped: concurrencyPolicy Replace keeps the newer {names}"
        return ("skipped_replace", {"last_skipped_time": due}, EventSpec("Normal", "RunSkipped", message), [])
    if policy == ConcurrencyPolicy.ALLOW and len(others) >= MAX_ACTIVE_RUNS:
        message = (
            f"run time {when} skipped: too many active runs ({len(others)}; "
            f"concurrencyPolicy Allow keeps at most {MAX_ACTIVE_RUNS})"
        )
        return (
            "skipped_active_limit",
            {"last_skipped_time": due},
            EventSpec("Warning", "RunSkipped", message),
            [],
        )
    made: list[CronAction] = [CreateRun(name, due, build_run(cron, due), recorded)]
    ref = RunRef(name=name, scheduled_time=due)
    active_refs = [_ref(cron.metadata.name, r) for r in _by_time(cron.metadata.name, active)]
    active_refs = [r for r in active_refs if r.name != name][::-1]
    replaced = (
        f" (stopping {', '.join(r.metadata.name for r in others)})"
        if others and policy == ConcurrencyPolicy.REPLACE
        else ""
    )
    message = f"{_created(name, due)}{replaced}"
    update: dict[str, object] = {"last_schedule_time": due, "active": (*active_refs, ref)}
    return "created", update, EventSpec("Normal", RUN_CREATED, message), made
