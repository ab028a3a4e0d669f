"""When an ended flow is archived, and what its TTL does meanwhile (`--archive-s3-*`; the I/O is
controller/archiver.py). Pure: everything comes in as arguments, `now` included.

- A flow whose stored status has ended (Succeeded or Failed: stopped and invalid flows included) is
  archived once: the controller writes its record, then condition `Archived` True says where. The
  condition is what a restarted controller reads, so it does not write every ended flow again; a rerun
  rebuilds the conditions without it (planner/status.py), so the rerun's end is archived again.
- Its TTL deletion waits for the record: a plan that would delete the flow is held back while the
  record is being written, or after a failed write until the retry (backoff 5 s doubling to 5 min).
  A failed write sets `Archived` False, reason ArchiveFailed, with the cause.
- The wait is bounded: `--archive-max-delay-seconds` after the TTL expired the flow is deleted anyway,
  with a Warning event NotArchived (the cluster's etcd is not a queue for a store that is down for
  days), but only once a write of its record has been tried and failed: a flow no write was tried for
  (the controller was down past the deadline, the archive just turned on, a max delay of 0 with a TTL
  of 0) is written first. 0: the TTL waits for one try only.
- A rerun (`zen-flow retry`) of an ended flow whose record is not written yet waits for it alike: the
  plan is held (nothing created, the request left unhonoured) while the record is written, and goes on
  without it, with a Warning event NotArchived, only `--archive-max-delay-seconds` after a write of it
  first failed.
- A child flow (a step `type: Flow`) is a flow with its own record: a parent's delete of an ended child
  (a superseded attempt, `jobRetention: LastAttempt`) waits until the child is `Archived` True, and so
  does the parent's TTL deletion (the garbage collector would take its children with it); bounded alike,
  the child's `Archived` False condition saying since when its writes fail (`children_hold`).
- A CronJobFlow's history limits wait alike (planner/cron_history.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from zen_flow.api.constants import ARCHIVED, FlowPhase
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import format_time
from zen_flow.planner.actions import Action, DeleteFlow, DeleteJob, EventSpec, Plan
from zen_flow.planner.events import WARNING
from zen_flow.planner.lifecycle import ttl_rule
from zen_flow.planner.status import MAX_CONDITION_MESSAGE, cut, next_condition
from zen_flow.planner.timing import after, normalize, until

REASON_ARCHIVED = "Archived"
REASON_ARCHIVE_FAILED = "ArchiveFailed"  # the condition's reason and the Warning event's
REASON_NOT_ARCHIVED = "NotArchived"  # the Warning event of a flow deleted without a record
DEFAULT_MAX_DELAY_SECONDS = 86400.0
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0
# While a write is queued or in flight the archiver wakes the flow when it ends; this is only the safety
# net, long enough that a backlog of B queued records costs B/600 reconciles a second, not B/60.
PENDING_RECHECK_SECONDS = 600.0


@dataclass(frozen=True)
class ArchiveState:
    """What the controller knows of the record of the flow's current run."""

    written: str = ""  # where it was written ("s3://bucket/key"), by this process; "" not yet
    pending: bool = False  # a write is queued or in flight
    failures: int = 0  # failed writes in a row
    cause: str = ""  # the last failure's cause
    retry_at: datetime | None = None  # not before: the backoff of the last failure
    failed_since: datetime | None = None  # the first of the failed writes in a row


@dataclass(frozen=True)
class ChildRecord:
    """An ended child flow whose record is not written (its `Archived` condition is not True)."""

    failed_since: datetime | None = None  # its Archived False condition's lastTransitionTime
    cause: str = ""  # that condition's message


@dataclass(frozen=True)
class ArchiveVerdict:
    plan: Plan
    write: bool = False  # ask for the record to be written now
    unarchived_delete: bool = False  # the plan goes on (deletes, reruns) without a record (overdue)
    unarchived_children: tuple[str, ...] = ()  # the child flows it deletes without their records


def retry_delay(failures: int) -> float:
    """Seconds before the next write after `failures` failed ones: 5 s, 10 s, ... at most 5 minutes."""
    return min(FIRST_RETRY_SECONDS * 2.0 ** max(failures - 1, 0), MAX_RETRY_SECONDS)


def ended(flow: JobFlow, plan: Plan) -> bool:
    """Has the run ended, as stored and as planned (a rerun's plan is no longer terminal)?"""
    stored, planned = flow.status, plan.status
    return (
        flow.metadata.deletion_timestamp is None
        and stored.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)
        and planned.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)
        and planned.completion_time is not None
    )


def archived(status: JobFlowStatus) -> bool:
    return any(c.type == ARCHIVED and c.status == "True" for c in status.conditions)


def delete_deadline(flow: JobFlow, status: JobFlowStatus, max_delay: float) -> datetime:
    """When the TTL deletes the flow even without a record: the TTL's expiry plus `max_delay`."""
    finished = status.completion_time or status.start_time or flow.metadata.creation_timestamp
    assert finished is not None, "an ended flow has a completion time"
    outcome = FlowPhase.SUCCEEDED if status.phase == FlowPhase.SUCCEEDED else FlowPhase.FAILED
    return after(finished, ttl_rule(flow, outcome)[1] + max_delay)


def with_condition(
    status: JobFlowStatus, true: bool, reason: str, message: str, generation: int | None, now: datetime
) -> JobFlowStatus:
    """`status` with condition Archived as given (after the planner's, which never name it); the old
    object itself when it already says so. `lastTransitionTime` moves only when its status flips."""
    before = next((c for c in status.conditions if c.type == ARCHIVED), None)
    said = cut(message, MAX_CONDITION_MESSAGE)
    cond = next_condition(ARCHIVED, true, reason, said, generation, normalize(now), before)
    if cond is before:
        return status
    others = tuple(c for c in status.conditions if c.type != ARCHIVED)
    return status.model_copy(update={"conditions": (*others, cond)})


def archive_plan(
    flow: JobFlow, plan: Plan, state: ArchiveState, now: datetime, *, max_delay: float
) -> ArchiveVerdict:
    """`plan` with the archive's part: the condition, the TTL deletion held back (or done anyway when
    overdue), when to look again, and whether to write the record now."""
    if reruns_unarchived(flow, plan):
        return _rerun(flow, plan, state, normalize(now), max_delay)
    if not ended(flow, plan) or archived(plan.status):
        return ArchiveVerdict(plan)
    now = normalize(now)
    deletes = any(isinstance(a, DeleteFlow) for a in plan.actions)
    generation = flow.metadata.generation
    if state.written:
        if deletes:  # the record is there: the flow may go (a status write would only find it gone)
            return ArchiveVerdict(plan)
        status = with_condition(plan.status, True, REASON_ARCHIVED, state.written, generation, now)
        return ArchiveVerdict(replace(plan, status=status))
    deadline = delete_deadline(flow, plan.status, max_delay)
    # Overdue, and a write was tried and failed (none in flight): never deleted unwritten untried.
    if deletes and now >= deadline and state.failures and not state.pending:
        said = (
            f"deleted without an archive record: its TTL expired and the record could not be written "
            f"for --archive-max-delay-seconds={max_delay:g}s"
            + (f" (last error: {state.cause})" if state.cause else "")
        )
        told = EventSpec(WARNING, REASON_NOT_ARCHIVED, cut(said, 1024), acted=True)
        return ArchiveVerdict(replace(plan, events=(*plan.events, told)), unarchived_delete=True)
    kept = tuple(a for a in plan.actions if not isinstance(a, DeleteFlow))
    status = plan.status
    wake = [plan.requeue_after] if plan.requeue_after is not None and not deletes else []
    if deletes and now < deadline:
        wake.append(until(now, deadline))
    write = False
    if state.pending:
        wake.append(PENDING_RECHECK_SECONDS)
    elif state.failures and state.retry_at is not None and now < state.retry_at:
        waits = f"; the TTL deletion waits for it until {format_time(deadline)}" if max_delay > 0 else ""
        said = f"the record could not be written: {state.cause}; retrying{waits}"
        status = with_condition(status, False, REASON_ARCHIVE_FAILED, said, generation, now)
        wake.append(until(now, state.retry_at))
    else:
        write = True
        wake.append(PENDING_RECHECK_SECONDS)
    requeue = max(0.0, min(wake)) if wake else None
    return ArchiveVerdict(replace(plan, actions=kept, status=status, requeue_after=requeue), write=write)


def reruns_unarchived(flow: JobFlow, plan: Plan) -> bool:
    """Does `plan` rerun (`zen-flow retry`) a stored ended run that is not archived yet?"""
    stored = flow.status
    return (
        flow.metadata.deletion_timestamp is None
        and stored.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)
        and stored.completion_time is not None
        and not archived(stored)
        and plan.status.phase not in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)
    )


def _rerun(flow: JobFlow, plan: Plan, state: ArchiveState, now: datetime, max_delay: float) -> ArchiveVerdict:
    """The rerun held while the ended run's record is written: the write reads the stored flow, which
    the rerun would reset (its record lost). Overdue (failing for `max_delay`, none in flight): it goes."""
    if state.written:
        return ArchiveVerdict(plan)
    since = state.failed_since
    if since is not None and not state.pending and now >= after(since, max_delay):
        said = (
            f"rerun without an archive record of the run that ended: it could not be written for "
            f"--archive-max-delay-seconds={max_delay:g}s"
            + (f" (last error: {state.cause})" if state.cause else "")
        )
        told = EventSpec(WARNING, REASON_NOT_ARCHIVED, cut(said, 1024), acted=True)
        return ArchiveVerdict(replace(plan, events=(*plan.events, told)), unarchived_delete=True)
    status, generation = flow.status, flow.metadata.generation
    write = False
    if state.pending:
        wake = PENDING_RECHECK_SECONDS
    elif state.failures and state.retry_at is not None and now < state.retry_at:
        said = f"the record could not be written: {state.cause}; retrying; the rerun waits for it"
        status = with_condition(status, False, REASON_ARCHIVE_FAILED, said, generation, now)
        wake = until(now, state.retry_at)
        if since is not None and max_delay > 0:
            wake = min(wake, max(until(now, after(since, max_delay)), 0.0))
    else:
        write, wake = True, PENDING_RECHECK_SECONDS
    return ArchiveVerdict(Plan(actions=(), status=status, events=(), requeue_after=wake), write=write)


def children_hold(
    flow: JobFlow, plan: Plan, unarchived: Mapping[str, ChildRecord], now: datetime, *, max_delay: float
) -> ArchiveVerdict:
    """`plan` with its deletes of ended child flows whose records are not written held back: a delete
    of such a child (DeleteJob by its name), and the flow's own deletion (its children go with it).
    Overdue, each child's writes failing for `max_delay` (the flow's deletion: past its TTL's expiry
    plus `max_delay`), the delete goes with a Warning event NotArchived naming the children."""
    if not unarchived:
        return ArchiveVerdict(plan)
    now = normalize(now)

    def hold(record: ChildRecord, since: datetime) -> float | None:
        """Seconds to hold a delete for `record` (None: overdue); its writes failing since `since`."""
        if record.failed_since is None:  # untried, or being written: the child's Archived True wakes us
            return PENDING_RECHECK_SECONDS
        due = after(max(since, record.failed_since), max_delay)
        return None if now >= due else min(until(now, due), PENDING_RECHECK_SECONDS)

    kept: list[Action] = []
    gone: list[str] = []
    wake: list[float] = []
    for action in plan.actions:
        if isinstance(action, DeleteFlow):
            expired = delete_deadline(flow, plan.status, 0.0)  # the TTL's expiry
            holds = [w for r in unarchived.values() if (w := hold(r, expired)) is not None]
            if holds:
                wake.extend(holds)
                continue
            gone.extend(unarchived)
        elif isinstance(action, DeleteJob) and (record := unarchived.get(action.name)) is not None:
            if (held := hold(record, record.failed_since or now)) is not None:
                wake.append(held)
                continue
            gone.append(action.name)
        kept.append(action)
    if len(kept) == len(plan.actions) and not gone:
        return ArchiveVerdict(plan)
    events = plan.events
    if gone:
        names = ", ".join(sorted(set(gone)))  # each child once: its delete and its parent's may both go
        said = (
            f"child flow(s) {names} deleted without an archive record: it could not be written for "
            f"--archive-max-delay-seconds={max_delay:g}s"
        )
        events = (*events, EventSpec(WARNING, REASON_NOT_ARCHIVED, cut(said, 1024), acted=True))
    requeue = min([*wake, *([plan.requeue_after] if plan.requeue_after is not None else [])], default=None)
    out = replace(plan, actions=tuple(kept), events=events, requeue_after=requeue)
    return ArchiveVerdict(out, unarchived_children=tuple(sorted(set(gone))))
