"""`zen-flow cron backfill NAME --from T1 [--to T2]`: a CronJobFlow's runs for the run times of a past
range, as `argo cron backfill` makes a CronWorkflow's: the nights an outage or a suspension skipped.

The run times are the controller's own (core/cron.py `Schedule.between`, daylight saving nights included),
and each gets the run the controller would have made for it (planner.cron_runs.backfill_run): the same
name, `<cron>-<Unix minute>`, so a run time the controller ran, or an earlier backfill did (run twice,
interrupted, failed half-way), is never run again: a run of that name is "already exists, skipped". To
the controller such a run is that run time's run: ordered by its run time for Replace and the history
limits, and active for concurrencyPolicy like any run, so a run time that comes while one runs is
skipped under Forbid, and under Replace a newer run stops it. Hence the default of one run at a time
(`--parallel 1`, argo's default too): the next run is created when the one before has finished, polled
as `submit --wait` polls. Run times after now are the controller's to run, and left out."""

from __future__ import annotations

import argparse
import asyncio
import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from zen_flow.api.constants import DEFAULT_SUCCESSFUL_HISTORY_LIMIT, ConcurrencyPolicy, FlowPhase
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import format_time
from zen_flow.cli.cron import ENDED, midnight, runnable, runs_of, time_or_date
from zen_flow.cli.cron_render import local
from zen_flow.cli.session import EXIT_FAILED, EXIT_OK, Session, UsageError, described, now
from zen_flow.core.cron import parse_schedule, parse_time_zone
from zen_flow.kube.errors import AlreadyExists, ApiError, TransportError
from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow.planner.cron_runs import backfill_run, rank, rank_of, run_name

POLL_SECONDS = 2.0  # one LIST of the CronJobFlow's runs while `--parallel` runs are active
# How far a range over --max-runs is counted (or to --max-runs, if higher), to say how far over it is
# without walking years of a minutely schedule.
COUNT_LIMIT = 10_000
# A run is named by the Unix minute of its run time: no earlier run time has a name the controller reads.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PROG = "zen-flow cron backfill"


@dataclass(frozen=True)
class Slot:
    """One run time of the range, the name of its run, and that run if it exists already."""

    moment: datetime
    name: str
    existing: JobFlow | None


async def backfill(session: Session, args: argparse.Namespace) -> int:
    """Create the runs of the range's run times, oldest first, at most `--parallel` active at once; exit
    1 if a create failed (the others are still made), 2 for bad usage (nothing is created)."""
    start = time_or_date(args.start, "--from", "from its midnight in the CronJobFlow's time zone")
    end = None if args.end is None else time_or_date(args.end, "--to", "to its end, in that time zone")
    cron = await runnable(session, args.name)
    clock = now()
    first, last = _bounds(args, start, end, cron, clock)
    policy = cron.spec.concurrency_policy or ConcurrencyPolicy.FORBID
    if policy == ConcurrencyPolicy.REPLACE and args.parallel > 1:
        raise UsageError(
            f"--parallel {args.parallel}: concurrencyPolicy Replace keeps one run of cronjobflow "
            f"{args.name} active, the newest, and stops the others: backfill it with --parallel 1"
        )
    schedule = parse_schedule(cron.spec.schedule, cron.spec.time_zone)  # valid: runnable checked it
    counted = max(COUNT_LIMIT, args.max_runs)
    times = list(itertools.islice(schedule.between(first, min(last, clock)), counted + 1))
    if len(times) > args.max_runs:
        count = f"more than {counted}" if len(times) > counted else str(len(times))
        raise UsageError(
            f"the range holds {count} run times of {cron.spec.schedule!r}, more than --max-runs "
            f"{args.max_runs}: nothing was created (narrow the range, or raise --max-runs)"
        )
    if last > clock:
        after = f"the run times after now ({format_time(clock)}) are the controller's to run: left out"
        _say(session, f"note: {after}")
    if not times:
        _say(
            session,
            f"no run time of {cron.spec.schedule!r} ({cron.spec.time_zone or 'UTC'}) from "
            f"{format_time(first)} to {format_time(min(last, clock))}: nothing to do",
        )
        return EXIT_OK
    runs = {r.metadata.name: r for r in await runs_of(session, cron)}
    names = [run_name(cron.metadata.name, t) for t in times]
    slots = [Slot(t, n, runs.get(n)) for t, n in zip(times, names, strict=True)]
    for note in _notes(cron, slots, list(runs.values())):
        _say(session, f"note: {note}")
    zone = parse_time_zone(cron.spec.time_zone)
    if args.dry_run:
        return _dry_run(session, slots, zone)
    return await _create(session, cron, slots, zone, args.parallel)


def _bounds(
    args: argparse.Namespace,
    start: datetime | date,
    end: datetime | date | None,
    cron: CronJobFlow,
    clock: datetime,
) -> tuple[datetime, datetime]:
    """The range's first and last instants (a date: from its midnight, to its last second, in the
    CronJobFlow's time zone; no --to: now); UsageError for a range that is none, or after now."""
    first = start if isinstance(start, datetime) else midnight(start, cron, "--from")
    last = clock if end is None else end if isinstance(end, datetime) else _end_of(end, cron)
    if first > last and args.end is not None:
        raise UsageError(
            f"--from {args.start} ({format_time(first)}) is after --to {args.end} ({format_time(last)})"
        )
    if first > clock:
        raise UsageError(
            f"--from {args.start} ({format_time(first)}) is after now ({format_time(clock)}): the run "
            "times to come are the controller's to run"
        )
    if first < EPOCH:
        raise UsageError(f"--from {args.start}: a run is named by the Unix minute of its run time, 1970 on")
    return first, last


def _end_of(day: date, cron: CronJobFlow) -> datetime:
    """The last second of `day` in the CronJobFlow's time zone: `--to 2026-12-03` takes in that night."""
    try:
        following = day + timedelta(days=1)
    except OverflowError:
        raise UsageError(f"--to {day.isoformat()}: the end of that day is out of range") from None
    return midnight(following, cron, "--to") - timedelta(seconds=1)


def _say(session: Session, text: str) -> None:
    session.err.write(f"{PROG}: {text}\n")


def _active(run: JobFlow) -> bool:
    return run.metadata.deletion_timestamp is None and run.status.phase not in ENDED


def _notes(cron: CronJobFlow, slots: list[Slot], runs: list[JobFlow]) -> list[str]:
    """What the controller does with the runs made that the user may not expect (docs/API.md,
    "Backfill"): they are its runs of those run times, older than the runs it made since."""
    new = [s for s in slots if s.existing is None]
    if not new:
        return []
    notes = []
    name = cron.metadata.name
    if cron.spec.suspend:
        notes.append(f"cronjobflow {name} is suspended: the backfill's runs start all the same")
    oldest = rank(name, new[0].name, new[0].moment)
    policy = cron.spec.concurrency_policy or ConcurrencyPolicy.FORBID
    if policy == ConcurrencyPolicy.FORBID:
        notes.append(
            "concurrencyPolicy Forbid: a run time that comes while a backfill run is active is skipped"
        )
    elif policy == ConcurrencyPolicy.REPLACE:
        newer = [r.metadata.name for r in runs if _active(r) and rank_of(name, r) > oldest]
        now_active = f" ({', '.join(newer)} is active now)" if newer else ""
        notes.append(
            "concurrencyPolicy Replace keeps the newest active run: the controller stops a backfill run "
            f"while a newer one is active{now_active}"
        )
    kept = cron.spec.successful_jobs_history_limit
    kept = DEFAULT_SUCCESSFUL_HISTORY_LIMIT if kept is None else kept
    succeeded = [r for r in runs if r.status.phase == FlowPhase.SUCCEEDED and rank_of(name, r) > oldest]
    if kept == 0:
        notes.append("successfulJobsHistoryLimit 0: the controller deletes each run as soon as it succeeds")
    elif len(succeeded) >= kept:
        notes.append(
            f"successfulJobsHistoryLimit {kept} keeps the {kept} newest successful runs, and "
            f"{len(succeeded)} newer than the backfill's exist: the controller deletes its runs older than "
            "those as soon as they succeed"
        )
    return notes


def _named(session: Session, slot: Slot, zone: tzinfo) -> tuple[str, str]:
    """`jobflow NS/NAME` and `(run time 2026-12-01 02:30 CET)`, in the CronJobFlow's time zone."""
    return f"jobflow {session.namespace}/{slot.name}", f"(run time {local(slot.moment, zone)})"


def _line(session: Session, slot: Slot, zone: tzinfo, what: str) -> str:
    run, when = _named(session, slot, zone)
    return f"{run} {what} {when}\n"


def _dry_run(session: Session, slots: list[Slot], zone: tzinfo) -> int:
    for slot in slots:
        what = "would be created" if slot.existing is None else "already exists, would be skipped"
        session.out.write(_line(session, slot, zone, what))
    made = sum(s.existing is None for s in slots)
    kept = len(slots) - made
    _say(session, f"dry run: {len(slots)} run times, {made} would be created, {kept} exist already")
    return EXIT_OK


async def _create(session: Session, cron: CronJobFlow, slots: list[Slot], zone: tzinfo, parallel: int) -> int:
    """Each slot's run, oldest first, once fewer than `parallel` of the range's runs are active (the runs
    of the range that exist already count: an interrupted backfill run again goes on as it was)."""
    active = {s.name for s in slots if s.existing is not None and _active(s.existing)}
    counts = dict.fromkeys(("created", "skipped", "failed"), 0)
    for slot in slots:
        if slot.existing is not None:
            session.out.write(_line(session, slot, zone, "already exists, skipped"))
            counts["skipped"] += 1
            continue
        active = await _room(session, cron, active, parallel)
        outcome, running = await _make(session, cron, slot, zone)
        counts[outcome] += 1
        if running:
            active.add(slot.name)
    _say(
        session,
        f"cronjobflow {session.namespace}/{cron.metadata.name}: {len(slots)} run times, "
        f"{counts['created']} created, {counts['skipped']} already existed, {counts['failed']} not created",
    )
    return EXIT_FAILED if counts["failed"] else EXIT_OK


async def _make(session: Session, cron: CronJobFlow, slot: Slot, zone: tzinfo) -> tuple[str, bool]:
    """Create the slot's run: what became of it (created, skipped or failed), and whether it is active."""
    run, when = _named(session, slot, zone)
    body = backfill_run(cron, slot.moment)
    try:
        await session.client.request("POST", JOBFLOWS.path(session.namespace), body=body)
    except AlreadyExists:  # made meanwhile: by the controller (the run time was due), or another backfill
        theirs = await _existing(session, cron, slot.name)
        if isinstance(theirs, str):
            _say(session, f"{run} {when}: {theirs}")
            return "failed", False
        session.out.write(_line(session, slot, zone, "already exists, skipped"))
        return "skipped", _active(theirs)
    except (ApiError, TransportError) as err:
        _say(session, f"{run} {when} not created: {described(err)}")
        return "failed", False
    session.out.write(_line(session, slot, zone, "created"))
    return "created", True


async def _room(session: Session, cron: CronJobFlow, active: set[str], parallel: int) -> set[str]:
    """Once fewer than `parallel` of `active` are still active (finished, or gone: the history limits
    may delete a run as soon as it succeeds), those still active."""
    told = False
    while len(active) >= parallel:
        runs = await runs_of(session, cron)
        active = {r.metadata.name for r in runs if r.metadata.name in active and _active(r)}
        if len(active) < parallel:
            break
        if not told:
            _say(session, f"waiting for {', '.join(sorted(active))} to finish (--parallel {parallel})")
            told = True
        await asyncio.sleep(POLL_SECONDS)  # polling one LIST; a watch is the `watch` command's job
    return active


async def _existing(session: Session, cron: CronJobFlow, name: str) -> JobFlow | str:
    """The flow `name` that a create found, if it is a run of `cron`; else why the run time is not run."""
    try:
        flow = JobFlow.model_validate(await session.flows.get(session.namespace, name))
    except (ApiError, TransportError) as err:
        return f"exists, but cannot be read: {described(err)}"
    ref = flow.metadata.controller_ref()
    if ref is None or ref.uid != cron.metadata.uid:
        return f"not created: a flow of that name exists, and is no run of cronjobflow {cron.metadata.name}"
    return flow
