"""What `zen-flow cron list` and `zen-flow cron get` print: kubectl-like tables, as pure functions of the
CronJobFlows, their runs and the current time (cli.render's tables, durations and escaping).

Run times come from the project's own evaluator (core/cron.py), the one the controller schedules with,
and are shown in the CronJobFlow's time zone (`2026-05-02 02:30 CEST`) with how far away they are, so
what is printed is when the controller will create the run, daylight saving nights included."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from zen_flow.api.constants import (
    ANNOTATION_INSTANTIATE,
    DEFAULT_FAILED_HISTORY_LIMIT,
    DEFAULT_SUCCESSFUL_HISTORY_LIMIT,
    INSTANTIATE_BACKFILL,
    ConcurrencyPolicy,
    CronConditionType,
)
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import format_time
from zen_flow.cli.render import printable, span, table
from zen_flow.core.cron import Schedule, ScheduleError, parse_schedule
from zen_flow.planner.cron_runs import is_manual, rank_of, time_of

NEXT_RUNS = 3  # `cron get`: the run times shown ahead


def schedule_of(cron: CronJobFlow) -> Schedule | None:
    """The CronJobFlow's schedule, or None when it does not parse (its Valid condition says why)."""
    try:
        return parse_schedule(cron.spec.schedule, cron.spec.time_zone)
    except ScheduleError:
        return None


def idle_reason(cron: CronJobFlow) -> str | None:
    """Why the controller creates no run at any run time, or None: what `get` says instead of times it
    will never keep (the Valid condition's message says what is wrong)."""
    if cron.metadata.deletion_timestamp is not None:
        return "none: the cronjobflow is being deleted"
    if any(c.type == CronConditionType.VALID and c.status == "False" for c in cron.status.conditions):
        return "none: the cronjobflow is invalid (condition Valid)"
    if cron.spec.suspend:
        return "suspended"
    if schedule_of(cron) is None:
        return "none: the schedule cannot be used"
    return None


def next_runs(cron: CronJobFlow, now: datetime, count: int) -> list[datetime]:
    """The next `count` run times after `now` (fewer if the schedule ends within 50 years); none while
    the controller would create no run (idle_reason)."""
    schedule = schedule_of(cron)
    if schedule is None or idle_reason(cron) is not None:
        return []
    found: list[datetime] = []
    moment: datetime | None = now
    while len(found) < count and moment is not None:
        moment = schedule.next_after(moment)
        if moment is not None:
            found.append(moment)
    return found


def local(moment: datetime, zone: tzinfo) -> str:
    """`2026-05-02 02:30 CEST`: wall-clock time in `zone`, with the zone's abbreviation of that instant."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _ahead(moment: datetime, now: datetime, zone: tzinfo) -> str:
    return f"{local(moment, zone)} (in {span((moment - now).total_seconds())})"


def _ago(moment: datetime | None, now: datetime) -> str:
    return span((now - moment).total_seconds()) if moment is not None else "-"


def _zone(cron: CronJobFlow) -> tzinfo | None:
    schedule = schedule_of(cron)
    return schedule.zone if schedule is not None else None


def cron_list(crons: Sequence[CronJobFlow], now: datetime, *, all_namespaces: bool) -> str:
    """`zen-flow cron list`: kubectl's CronJob columns (ages, as `kubectl get cronjobs`), the time zone,
    the last success, and the next run time."""
    header = ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "LAST SUCCESS"]
    header += ["NEXT RUN", "AGE"]
    rows = []
    for cron in sorted(crons, key=lambda c: (c.metadata.namespace, c.metadata.name)):
        spec, status = cron.spec, cron.status
        upcoming = next_runs(cron, now, 1)
        zone = _zone(cron)
        rows.append(
            [
                *([cron.metadata.namespace] if all_namespaces else []),
                cron.metadata.name,
                spec.schedule,
                spec.time_zone or "UTC",
                str(bool(spec.suspend)),
                str(len(status.active)),
                _ago(status.last_schedule_time, now),
                _ago(status.last_successful_time, now),
                _ahead(upcoming[0], now, zone) if upcoming and zone is not None else "-",
                _ago(cron.metadata.creation_timestamp, now),
            ]
        )
    return table(["NAMESPACE", *header] if all_namespaces else header, rows)


def _when(moment: datetime | None, now: datetime) -> str:
    return f"{format_time(moment)} ({_ago(moment, now)} ago)" if moment is not None else "-"


def _made_by(run: JobFlow) -> str:
    """`backfill ` before the run time of a run `zen-flow cron backfill` made (the controller's own show
    the time alone)."""
    backfilled = run.metadata.annotations.get(ANNOTATION_INSTANTIATE) == INSTANTIATE_BACKFILL
    return "backfill " if backfilled else ""


def cron_detail(cron: CronJobFlow, runs: Sequence[JobFlow], now: datetime) -> str:
    """`zen-flow cron get NAME`: the spec in short, the status, the next run times, then its runs (the
    flows it controls), newest first."""
    spec, status = cron.spec, cron.status
    zone = _zone(cron)
    successful = spec.successful_jobs_history_limit
    failed = spec.failed_jobs_history_limit
    deadline = spec.starting_deadline_seconds
    scheduled = next(
        (c for c in status.conditions if c.type == CronConditionType.SCHEDULED and c.status == "False"),
        None,
    )
    skipped = _when(status.last_skipped_time, now)
    if scheduled is not None and status.last_skipped_time is not None:
        skipped += f": {scheduled.message}"  # the latest run time's fate, recorded until a run is created
    lines = [
        f"Name:           {cron.metadata.namespace}/{cron.metadata.name}",
        f"Schedule:       {spec.schedule} ({spec.time_zone or 'UTC'})",
        f"Concurrency:    {spec.concurrency_policy or ConcurrencyPolicy.FORBID}",
        f"Deadline:       {f'{deadline}s (startingDeadlineSeconds)' if deadline is not None else '-'}",
        f"Suspend:        {bool(spec.suspend)}",
        "History:        keeps "
        f"{DEFAULT_SUCCESSFUL_HISTORY_LIMIT if successful is None else successful} succeeded, "
        f"{DEFAULT_FAILED_HISTORY_LIMIT if failed is None else failed} failed",
        f"Active:         {', '.join(r.name for r in status.active) or '-'}",
        f"Last schedule:  {_when(status.last_schedule_time, now)}",
        f"Last success:   {_when(status.last_successful_time, now)}",
        f"Last skipped:   {skipped}",
    ]
    upcoming = next_runs(cron, now, NEXT_RUNS)
    if upcoming and zone is not None:
        lines += [
            f"{'Next runs:' if i == 0 else ''}".ljust(16) + _ahead(m, now, zone)
            for i, m in enumerate(upcoming)
        ]
    else:
        lines.append(f"Next runs:      {idle_reason(cron) or 'none'}")
    for cond in status.conditions:
        said = f"{cond.type}={cond.status} {cond.reason}"
        lines.append(f"Condition:      {said}: {cond.message}" if cond.message else f"Condition:      {said}")
    rows = []
    name = cron.metadata.name
    for run in sorted(runs, key=lambda r: rank_of(name, r), reverse=True):  # the controller's order
        moment = time_of(name, run)
        when = local(moment, zone) if moment is not None and zone is not None else "-"
        started, ended = run.status.start_time, run.status.completion_time
        rows.append(
            [
                run.metadata.name,
                run.status.phase or "Pending",
                f"manual {when}" if is_manual(name, run) else f"{_made_by(run)}{when}",
                f"{_ago(started, now)} ago" if started is not None else "-",
                span(((ended or now) - started).total_seconds()) if started is not None else "-",
                run.status.message or "",
            ]
        )
    text = "\n".join(map(printable, lines)) + "\n\n"
    if not rows:
        return text + "No runs.\n"
    return text + table(["RUN", "PHASE", "RUN TIME", "STARTED", "DURATION", "MESSAGE"], rows)
