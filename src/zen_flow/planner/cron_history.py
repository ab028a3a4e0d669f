"""A CronJobFlow's history limits: which finished runs are deleted, and, with a flow archive
(`--archive-s3-*`), when. Pure: the runs and `now` come in as arguments.

Finished runs beyond `successfulJobsHistoryLimit` (default 3) and `failedJobsHistoryLimit` (default 1)
are deleted, the oldest run times first, as a CronJob's Jobs are.

With a flow archive a run's delete waits for its record, as a TTL deletion does (planner/archiving.py):
a run beyond the limits that is not `Archived=True` is kept until it is (the flow reconciler writes the
record and the condition; the condition's change brings the CronJobFlow back). The wait is bounded: once
`--archive-max-delay-seconds` have passed since the run went beyond the limits (it ended, and as many
newer runs of its outcome as the limit had ended), and a write of its record has been tried and failed
(condition `Archived=False`), it is deleted anyway, `unarchived` saying why (the reconciler emits a
Warning event NotArchived on the CronJobFlow and counts `zen_flow_archive_writes_total{result="skipped"}`).
A run no write was tried for yet is kept: with `successfulJobsHistoryLimit: 0` and a max delay of 0 a run
is deleted as soon as its record is written, never before the first try.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from zen_flow.api.constants import (
    ARCHIVED,
    DEFAULT_FAILED_HISTORY_LIMIT,
    DEFAULT_SUCCESSFUL_HISTORY_LIMIT,
    FlowPhase,
)
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.archiving import archived
from zen_flow.planner.cron_runs import rank_of
from zen_flow.planner.timing import after, until


@dataclass(frozen=True)
class DeleteRun:
    """Delete a finished run beyond the history limits (with its uid as a precondition)."""

    name: str
    uid: str
    unarchived: str = ""  # deleted without an archive record: why (the NotArchived event's message)


@dataclass(frozen=True)
class History:
    deletes: tuple[DeleteRun, ...]
    wake: float | None = None  # seconds until a delete held for its record is due anyway


def history(
    cron_name: str,
    runs: Sequence[JobFlow],
    successful: int | None,
    failed: int | None,
    now: datetime,
    archive_max_delay: float | None = None,
) -> History:
    """The deletes of the finished runs beyond the history limits; `archive_max_delay`: None without a
    flow archive, else `--archive-max-delay-seconds`."""
    limits = {
        FlowPhase.SUCCEEDED: DEFAULT_SUCCESSFUL_HISTORY_LIMIT if successful is None else successful,
        FlowPhase.FAILED: DEFAULT_FAILED_HISTORY_LIMIT if failed is None else failed,
    }
    deletes: list[DeleteRun] = []
    wakes: list[float] = []
    for phase, limit in limits.items():
        done = sorted(  # newest first
            (r for r in runs if r.status.phase == phase), key=lambda r: rank_of(cron_name, r), reverse=True
        )
        keep = max(limit, 0)
        for index, run in enumerate(done[keep:], start=keep):
            name, uid = run.metadata.name, run.metadata.uid
            if archive_max_delay is None or archived(run.status):
                deletes.append(DeleteRun(name, uid))
                continue
            deadline = after(_beyond_since(run, done[:index], keep), archive_max_delay)
            if now < deadline:
                wakes.append(until(now, deadline))
            elif (why := _failed_write(run)) is not None:
                deletes.append(DeleteRun(name, uid, _unarchived(name, phase, archive_max_delay, why)))
            # else: no write tried yet; the condition it gets brings the CronJobFlow back
    return History(tuple(deletes), min(wakes) if wakes else None)


def _beyond_since(run: JobFlow, newer: Sequence[JobFlow], limit: int) -> datetime:
    """When `run` went beyond its limit: it had ended, and `limit` newer runs of its outcome had."""
    own = _ended_at(run)
    if limit == 0:
        return own
    ends = sorted(_ended_at(r) for r in newer)
    return max(own, ends[limit - 1])


def _ended_at(run: JobFlow) -> datetime:
    status, meta = run.status, run.metadata
    moment = status.completion_time or status.start_time or meta.creation_timestamp
    assert moment is not None, "a run from the cache has a creation timestamp"
    return moment


def _failed_write(run: JobFlow) -> str | None:
    """The cause of its last failed record write (condition Archived=False), None when none failed."""
    cond = next((c for c in run.status.conditions if c.type == ARCHIVED), None)
    return None if cond is None or cond.status != "False" else cond.message or "unknown cause"


def _unarchived(name: str, phase: FlowPhase, max_delay: float, why: str) -> str:
    limit = "successfulJobsHistoryLimit" if phase == FlowPhase.SUCCEEDED else "failedJobsHistoryLimit"
    return (
        f"deleted run {name} without an archive record: beyond {limit}, and its record could not be "
        f"written for --archive-max-delay-seconds={max_delay:g}s ({why})"
    )[:1024]
