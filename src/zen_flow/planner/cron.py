"""`plan_cron(cron, runs, now)`: what a CronJobFlow does now. Pure: frozen models in, a CronPlan out.

A CronJobFlow creates one JobFlow (a *run*) per run time of its schedule, named
`<cron name>-<Unix minute of the run time>`: the name is the run's identity, so a create repeated after a
lost write or a restart answers AlreadyExists and never makes a second run. Which run time is due is
computed from the CronJobFlow's own record (status.lastScheduleTime, status.lastSkippedTime, its creation)
and its runs, never from a memory of the controller's, so a reconcile late, twice or after a crash
decides the same.

Kubernetes' CronJob is the model:
- After an outage at most one missed run time is started, the latest; with `startingDeadlineSeconds`,
  only if it is not later than that.
- `concurrencyPolicy` (default Forbid, as a JobFlow's own): Forbid skips a run time while a run is
  active; Replace stops the active runs (the stop annotation `true`: their running Jobs are deleted the
  documented way and their `finally` steps do not run, as CronJob deletes its Job and Argo's Replace
  terminates) and creates the new one; Allow creates it beside them, up to MAX_ACTIVE_RUNS.
  A skipped run time is recorded (status.lastSkippedTime) and never started later.
- Replace's stops are level-based: whenever more than one run is active, every one but the newest is
  stopped (unless it carries a stop request already), at every reconcile, not only when a run time
  comes due: a stop patch that failed is retried, and a run never keeps running beside its successor.
- `suspend` creates nothing; resuming starts the latest run time missed meanwhile, unless the deadline
  excludes it (as CronJob does).
- Finished runs beyond `successfulJobsHistoryLimit` (default 3) and `failedJobsHistoryLimit` (default 1)
  are deleted, the oldest first. The history limits, not a TTL, decide how long a run is kept, as for a
  CronJob's Jobs: a run gets `executionPolicy.ttlSecondsAfterFinished` RUN_TTL_SECONDS unless its template
  sets one, so the JobFlow default (a day, written by the webhook and the CRD) never deletes the one run a
  `@weekly` schedule keeps after a day. A run made from a JobFlowTemplate takes that template's TTL
  instead, when it has one (validation/expansion.py).
- A manual run (`zen-flow cron trigger`: annotated `instantiate: manual`, its scheduled-time the moment
  it was triggered) is a run like the others, owned and labelled alike: it is active for
  concurrencyPolicy (Replace stops the older runs for it, as for the newest run time) and counted by the
  history limits, but it is no run time: it never hides one that is due.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from zen_flow.api.constants import (
    ANNOTATION_INSTANTIATE,
    ANNOTATION_SCHEDULED_TIME,
    ANNOTATION_STOP,
    API_VERSION,
    CRON_KIND,
    DEFAULT_FAILED_HISTORY_LIMIT,
    DEFAULT_SUCCESSFUL_HISTORY_LIMIT,
    INSTANTIATE_MANUAL,
    KIND,
    LABEL_CRON,
    RUN_TTL_SECONDS,
    ConcurrencyPolicy,
    CronConditionType,
    FlowPhase,
)
from zen_flow.api.cronjobflow import CronJobFlow, CronJobFlowStatus, RunRef
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import Condition, format_time, parse_time
from zen_flow.core.cron import Schedule, ScheduleError, parse_schedule, scheduled_minute
from zen_flow.planner.actions import EventSpec

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


@dataclass(frozen=True)
class StopRun:
    """Set the stop annotation on an active run (concurrencyPolicy Replace)."""

    name: str
    uid: str


@dataclass(frozen=True)
class DeleteRun:
    """Delete a finished run beyond the history limits (with its uid as a precondition)."""

    name: str
    uid: str


CronAction = CreateRun | StopRun | DeleteRun


@dataclass(frozen=True)
class CronPlan:
    actions: tuple[CronAction, ...]
    status: CronJobFlowStatus
    events: tuple[EventSpec, ...]
    requeue_after: float | None  # seconds until the next run time; None: nothing scheduled
    # What became of the run time due now, for the metrics: "created", "skipped_forbid",
    # "skipped_deadline", "skipped_active_limit", or None when none was due.
    outcome: str | None = None


def owner_reference(cron: CronJobFlow) -> dict[str, object]:
    return {
        "apiVersion": API_VERSION,
        "kind": CRON_KIND,
        "name": cron.metadata.name,
        "uid": cron.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def run_name(cron_name: str, moment: datetime) -> str:
    return f"{cron_name}-{scheduled_minute(moment)}"


def scheduled_time_of(run: JobFlow) -> datetime | None:
    """The run time a run was created for: its annotation (its name's suffix when that is missing)."""
    stamp = run.metadata.annotations.get(ANNOTATION_SCHEDULED_TIME)
    if stamp:
        try:
            return parse_time(stamp)
        except ValueError:
            pass
    suffix = run.metadata.name.rpartition("-")[2]
    if suffix.isdigit():
        return datetime.fromtimestamp(int(suffix) * 60, tz=UTC)
    return run.metadata.creation_timestamp


def is_manual(run: JobFlow) -> bool:
    """A run made by hand (`zen-flow cron trigger`), not for a run time of the schedule."""
    return run.metadata.annotations.get(ANNOTATION_INSTANTIATE) == INSTANTIATE_MANUAL


def build_run(cron: CronJobFlow, moment: datetime) -> dict[str, object]:
    """The JobFlow of run time `moment`: the template's labels and annotations, plus the CronJobFlow's
    label and the run time; owned by the CronJobFlow (deleting it deletes its runs)."""
    template = cron.spec.job_flow_template
    meta = template.metadata
    labels = {**(meta.labels if meta else {}), LABEL_CRON: cron.metadata.name}
    annotations = {**(meta.annotations if meta else {}), ANNOTATION_SCHEDULED_TIME: format_time(moment)}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": run_name(cron.metadata.name, moment),
            "namespace": cron.metadata.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(cron)],
        },
        "spec": _with_run_ttl(template.spec),
    }


def _with_run_ttl(spec: dict[str, Any]) -> dict[str, Any]:
    """The template's spec with `executionPolicy.ttlSecondsAfterFinished` RUN_TTL_SECONDS if it has none
    (a `ttlStrategy` it sets still decides its outcomes first)."""
    policy = spec.get("executionPolicy")
    if policy is None:
        return {**spec, "executionPolicy": {"ttlSecondsAfterFinished": RUN_TTL_SECONDS}}
    if isinstance(policy, dict) and policy.get("ttlSecondsAfterFinished") is None:
        return {**spec, "executionPolicy": {**policy, "ttlSecondsAfterFinished": RUN_TTL_SECONDS}}
    return spec


# A run with no time at all (no annotation, a name without the minute, no creation time) sorts oldest.
_NEVER = datetime.min.replace(tzinfo=UTC)


def _finished(run: JobFlow) -> bool:
    return run.status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)


def _ref(run: JobFlow) -> RunRef:
    return RunRef(name=run.metadata.name, uid=run.metadata.uid or None, scheduled_time=scheduled_time_of(run))


def _by_time(runs: Iterable[JobFlow]) -> list[JobFlow]:
    """Newest run time first (the name breaks ties: it holds the run time)."""
    return sorted(runs, key=lambda r: (scheduled_time_of(r) or _NEVER, r.metadata.name), reverse=True)


def _condition(
    old: Sequence[Condition],
    kind: CronConditionType,
    true: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> Condition:
    status = "True" if true else "False"
    before = next((c for c in old if c.type == kind.value), None)
    if before is not None and (before.status, before.reason, before.message) == (status, reason, message):
        return before.model_copy(update={"observed_generation": generation})
    since = before.last_transition_time if before is not None and before.status == status else now
    return Condition(
        type=kind.value,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def plan_cron(
    cron: CronJobFlow, runs: Sequence[JobFlow], now: datetime, invalid: str | None = None
) -> CronPlan:
    """What to do now. `runs`: the JobFlows this CronJobFlow controls (from the cache); `invalid`: why
    its template cannot make a valid JobFlow (the validator's verdict), or None."""
    spec, old = cron.spec, cron.status
    generation = cron.metadata.generation or None
    schedule: Schedule | None = None
    if invalid is None:
        try:
            schedule = parse_schedule(spec.schedule, spec.time_zone)
        except ScheduleError as err:
            invalid = f"spec.schedule or spec.timeZone: {err}"
    live = [r for r in runs if r.metadata.deletion_timestamp is None]
    active = [r for r in live if not _finished(r)]
    actions: list[CronAction] = list(
        _history(live, spec.successful_jobs_history_limit, spec.failed_jobs_history_limit)
    )
    succeeded = [r.status.completion_time for r in live if r.status.phase == FlowPhase.SUCCEEDED]
    last_success = max([t for t in (old.last_successful_time, *succeeded) if t is not None], default=None)
    status = old.model_copy(
        update={
            "last_successful_time": last_success,
            "active": tuple(_ref(r) for r in _by_time(active))[::-1],
            "observed_generation": generation,
        }
    )
    conditions = {c.type: c for c in old.conditions}
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
        return CronPlan(tuple(actions), status, tuple(events), None)
    conditions[CronConditionType.VALID] = _condition(
        old.conditions, CronConditionType.VALID, True, "Valid", "", generation, now
    )
    outcome = None
    if not spec.suspend:
        known = [
            t
            for t in (
                cron.metadata.creation_timestamp,
                old.last_schedule_time,
                old.last_skipped_time,
                # A manual run's time is when someone triggered it, not a run time: a run time due
                # before it (suspended, or the controller behind) is still started.
                *(scheduled_time_of(r) for r in runs if not is_manual(r)),
            )
            if t is not None
        ]
        since = max(known, default=now)
        due = schedule.latest_due(since, now)
        if due is not None:
            outcome, update, event, made = _decide(cron, due, now, active, runs)
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
        actions = [*others, *_replaced(active, creates), *creates]
    status = counted(status, {"conditions": tuple(conditions.values())})
    upcoming = None if spec.suspend else schedule.next_after(now)
    requeue = None if upcoming is None else max((upcoming - now).total_seconds(), MIN_REQUEUE_SECONDS)
    return CronPlan(tuple(actions), status, tuple(events), requeue, outcome)


def _replaced(active: Sequence[JobFlow], created: Sequence[CreateRun]) -> list[StopRun]:
    """Replace: a stop for every active run but the newest (the one created now, if any), unless it
    carries a stop request already. Planned at every reconcile, so a stop that failed is tried again."""
    newest = created[-1].name if created else (_by_time(active)[0].metadata.name if active else None)
    return [
        StopRun(r.metadata.name, r.metadata.uid)
        for r in active
        if r.metadata.name != newest and not (r.metadata.annotations.get(ANNOTATION_STOP) or "").strip()
    ]


def counted(status: CronJobFlowStatus, update: dict[str, Any]) -> CronJobFlowStatus:
    """`status` with `update`, its activeRuns counting the active list it then holds."""
    active = update.get("active", status.active)
    return status.model_copy(update={**update, "active_runs": len(active)})


def _was(status: CronJobFlowStatus, kind: CronConditionType, value: str, message: str) -> bool:
    return any(c.type == kind.value and c.status == value and c.message == message for c in status.conditions)


def _decide(
    cron: CronJobFlow, due: datetime, now: datetime, active: Sequence[JobFlow], runs: Sequence[JobFlow]
) -> tuple[str, dict[str, object], EventSpec, list[CronAction]]:
    """The fate of run time `due`: (outcome, status fields, event, actions)."""
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
    made: list[CronAction] = []  # the create, when the run does not exist yet
    ref = RunRef(name=name, scheduled_time=due)
    active_refs = [_ref(r) for r in _by_time(active) if r.metadata.name != name][::-1]
    existing = next((r for r in runs if r.metadata.name == name), None)
    if existing is None:
        made.append(CreateRun(name, due, build_run(cron, due)))
    else:
        ref = _ref(existing)
    replaced = (
        f" (stopping {', '.join(r.metadata.name for r in others)})"
        if others and policy == ConcurrencyPolicy.REPLACE
        else ""
    )
    message = f"created {name} for run time {when}{replaced}"
    update: dict[str, object] = {"last_schedule_time": due, "active": (*active_refs, ref)}
    return "created", update, EventSpec("Normal", RUN_CREATED, message), made


def _history(runs: Sequence[JobFlow], successful: int | None, failed: int | None) -> Iterable[DeleteRun]:
    """Finished runs beyond the history limits, the oldest run times first to go."""
    limits = {
        FlowPhase.SUCCEEDED: DEFAULT_SUCCESSFUL_HISTORY_LIMIT if successful is None else successful,
        FlowPhase.FAILED: DEFAULT_FAILED_HISTORY_LIMIT if failed is None else failed,
    }
    for phase, limit in limits.items():
        done = _by_time(r for r in runs if r.status.phase == phase)
        for run in done[max(limit, 0) :]:
            yield DeleteRun(run.metadata.name, run.metadata.uid)
