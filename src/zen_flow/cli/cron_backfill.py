"""`zen-flow cron backfill NAME --from T1 [--to T2]`: a CronJobFlow's runs for the run times of a past
range, as `argo cron backfill` makes a CronWorkflow's: the nights an outage or a suspension skipped.

The run times are the controller's own (core/cron.py `Schedule.between`, daylight saving nights included),
and each gets the run the controller would have made for it (planner.cron_runs.backfill_run): the same
name, `<cron>-<Unix minute>`, so a run time whose run still exists (the controller's, or an earlier
backfill's) is "already exists, skipped". The name is all there is to go by: a run the history limits
deleted is run again by a second backfill, hence the warning before, and the commands that make only
the rest after a backfill stopped half-way. To the controller such a run is that run time's run:
ordered by its run time for Replace and the history limits, and active for concurrencyPolicy like any
run. Under Forbid and Replace it is created once no run of the CronJobFlow is active (so it never runs
beside one, and no newer run stops it at once); under Allow `--parallel` of the range's may run. Polled
as `submit --wait` polls. Run times after now are the controller's to run, and left out."""

from __future__ import annotations

import argparse
import asyncio
import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from zen_flow.api.constants import (
    DEFAULT_FAILED_HISTORY_LIMIT,
    DEFAULT_SUCCESSFUL_HISTORY_LIMIT,
    ConcurrencyPolicy,
    FlowPhase,
)
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import format_time
from zen_flow.cli.cron import ENDED, midnight, runnable, runs_of, time_or_date
from zen_flow.cli.cron_render import local
from zen_flow.cli.flows import awaiting_approval
from zen_flow.cli.session import EXIT_FAILED, EXIT_OK, STRICT, Session, UsageError, described, now
from zen_flow.core.cron import parse_schedule, parse_time_zone
from zen_flow.kube.errors import AlreadyExists, ApiError, TransportError
from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow.planner.cron_runs import Rank, backfill_run, rank, rank_of, run_name

POLL_SECONDS = 2.0  # one LIST of the CronJobFlow's runs while `--parallel` runs are active
RETRY_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0)  # a failed LIST tried again after these pauses, then given up
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
    if policy != ConcurrencyPolicy.ALLOW and args.parallel > 1:
        raise UsageError(
            f"--parallel {args.parallel}: concurrencyPolicy {policy} runs one run of cronjobflow "
            f"{args.name} at a time: backfill it with --parallel 1"
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
        _say(session, note)
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
        notes.append(f"note: cronjobflow {name} is suspended: the backfill's runs start all the same")
    oldest = rank(name, new[0].name, new[0].moment)
    policy = cron.spec.concurrency_policy or ConcurrencyPolicy.FORBID
    if policy == ConcurrencyPolicy.FORBID:
        notes.append(
            "note: concurrencyPolicy Forbid: a run time that comes while a backfill run is active is skipped"
        )
    elif policy == ConcurrencyPolicy.REPLACE:
        newer = [r.metadata.name for r in runs if _active(r) and rank_of(name, r) > oldest]
        now_active = f" ({', '.join(newer)} is active now: waited for)" if newer else ""
        notes.append(
            "note: concurrencyPolicy Replace keeps the newest active run: each backfill run waits until no "
            f"run is active{now_active}, and a run time that comes while it runs stops it"
        )
    for phase, limit, default in (
        (FlowPhase.SUCCEEDED, cron.spec.successful_jobs_history_limit, DEFAULT_SUCCESSFUL_HISTORY_LIMIT),
        (FlowPhase.FAILED, cron.spec.failed_jobs_history_limit, DEFAULT_FAILED_HISTORY_LIMIT),
    ):
        kept = default if limit is None else limit
        notes.extend(_history_warning(name, phase, kept, runs, oldest, len(new)))
    return notes


def _history_warning(
    name: str, phase: FlowPhase, kept: int, runs: list[JobFlow], oldest: Rank, made: int
) -> list[str]:
    """The warning that the history limit of `phase` deletes the backfill's runs that end so: a name that
    is gone is no proof of a night run, and running the backfill again would run those nights again.
    The limit keeps the `kept` newest (planner/cron_history.py): the oldest of the `made` runs goes
    once `kept` newer ones ended so, the runs that exist newer than it and its `made - 1` own."""
    field = "successfulJobsHistoryLimit" if phase == FlowPhase.SUCCEEDED else "failedJobsHistoryLimit"
    ended = "succeeds" if phase == FlowPhase.SUCCEEDED else "fails"
    past = f"{'one' if kept == 1 else 'ones'} {'succeeded' if phase == FlowPhase.SUCCEEDED else 'failed'}"
    again = "running this backfill again would run those nights again"
    if kept == 0:
        return [f"warning: {field} 0: the controller deletes each run as soon as it {ended}: {again}"]
    newer = [r for r in runs if r.status.phase == phase and rank_of(name, r) > oldest]
    if len(newer) + made <= kept:
        return []
    return [
        f"warning: {field} {kept} keeps the {kept} newest such runs; {len(newer)} newer than the backfill's "
        f"exist and it makes {made}: the controller deletes a backfill run once {kept} newer "
        f"{past}: {again}"
    ]


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


class _GaveUp(Exception):
    """The runs could not be listed, after every retry: the backfill stops, saying what it made."""


async def _create(session: Session, cron: CronJobFlow, slots: list[Slot], zone: tzinfo, parallel: int) -> int:
    """Each slot's run, oldest first, once fewer than `parallel` runs are active. On a failed create, a
    status check that kept failing, or Ctrl-C: the summary and the commands that make what was not made
    (a re-run of the whole range could run again the nights whose runs the history limits deleted)."""
    done: dict[str, str] = {}  # slot name: created, skipped or failed
    stopped = ""
    try:
        for slot in slots:
            if slot.existing is not None:
                session.out.write(_line(session, slot, zone, "already exists, skipped"))
                done[slot.name] = "skipped"
                continue
            await _room(session, cron, {s.name for s in slots}, parallel)
            done[slot.name] = await _make(session, cron, slot, zone)
    except _GaveUp as err:
        stopped = str(err)
    except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl-C: asyncio.run cancels the command
        _summary(session, cron, slots, done, "interrupted")
        raise
    _summary(session, cron, slots, done, stopped)
    return EXIT_FAILED if stopped or "failed" in done.values() else EXIT_OK


def _summary(
    session: Session, cron: CronJobFlow, slots: list[Slot], done: dict[str, str], stopped: str
) -> None:
    counts = {what: sum(v == what for v in done.values()) for what in ("created", "skipped", "failed")}
    left = len(slots) - len(done)
    rest = f", {left} not tried ({stopped})" if stopped else ""
    _say(
        session,
        f"cronjobflow {session.namespace}/{cron.metadata.name}: {len(slots)} run times, "
        f"{counts['created']} created, {counts['skipped']} already existed, {counts['failed']} not created"
        f"{rest}",
    )
    for first, last in _not_made(slots, done):
        _say(
            session,
            f"to make the rest: {PROG} {cron.metadata.name} -n {session.namespace} "
            f"--from {format_time(first)} --to {format_time(last)}",
        )


def _not_made(slots: list[Slot], done: dict[str, str]) -> list[tuple[datetime, datetime]]:
    """The runs of consecutive run times that were not made (failed, or not tried), as (first, last):
    each range holds those run times and no other, so a run made is never made again."""
    ranges: list[tuple[datetime, datetime]] = []
    for missing, group in itertools.groupby(slots, key=lambda s: done.get(s.name, "failed") == "failed"):
        if missing:
            run = list(group)
            ranges.append((run[0].moment, run[-1].moment))
    return ranges


async def _make(session: Session, cron: CronJobFlow, slot: Slot, zone: tzinfo) -> str:
    """Create the slot's run: what became of it (created, skipped or failed)."""
    run, when = _named(session, slot, zone)
    body = backfill_run(cron, slot.moment)
    try:
        await session.client.request("POST", JOBFLOWS.path(session.namespace), query=STRICT, body=body)
    except AlreadyExists:  # made meanwhile: by the controller (the run time was due), or another backfill
        theirs = await _existing(session, cron, slot.name)
        if isinstance(theirs, str):
            _say(session, f"{run} {when}: {theirs}")
            return "failed"
        session.out.write(_line(session, slot, zone, "already exists, skipped"))
        return "skipped"
    except TransportError as err:  # no answer: the apiserver may have made it all the same
        theirs = await _existing(session, cron, slot.name)
        if isinstance(theirs, str):
            _say(session, f"{run} {when} not created: {described(err)}")
            return "failed"
        session.out.write(_line(session, slot, zone, "created"))
        return "created"
    except ApiError as err:
        _say(session, f"{run} {when} not created: {described(err)}")
        return "failed"
    session.out.write(_line(session, slot, zone, "created"))
    return "created"


def _counted(cron: CronJobFlow, runs: list[JobFlow], range_names: set[str]) -> list[JobFlow]:
    """The active runs a backfill run waits for: under Allow the range's; under Forbid and Replace every
    run of the CronJobFlow (scheduled, manual), which the controller never runs beside another."""
    policy = cron.spec.concurrency_policy or ConcurrencyPolicy.FORBID
    mine = policy == ConcurrencyPolicy.ALLOW
    return [r for r in runs if _active(r) and (not mine or r.metadata.name in range_names)]


async def _room(session: Session, cron: CronJobFlow, range_names: set[str], parallel: int) -> None:
    """Return once fewer than `parallel` of the runs counted (_counted) are active (gone counts as
    finished: the history limits may delete a run as soon as it succeeds); says what they wait for."""
    told = ""
    while True:
        active = _counted(cron, await _runs(session, cron), range_names)
        if len(active) < parallel:
            return
        why = ", ".join(_why(session, r) for r in sorted(active, key=lambda r: r.metadata.name))
        if why != told:
            _say(session, f"waiting for {why} to finish (--parallel {parallel})")
            told = why
        await asyncio.sleep(POLL_SECONDS)  # polling one LIST; a watch is the `watch` command's job


def _why(session: Session, run: JobFlow) -> str:
    """A run waited for, and what keeps it from finishing when it is not just running (as `submit
    --wait` says it): a backfill must not sit silent behind a run that waits for a person."""
    name = run.metadata.name
    if gates := awaiting_approval(run):
        how = f"zen-flow approve {name} {gates[0]} -n {session.namespace}"
        return f"{name} (waiting for approval of {', '.join(gates)}: {how})"
    if run.status.phase in (FlowPhase.SUSPENDED, FlowPhase.PAUSED):
        return f"{name} ({run.status.phase.lower()})"
    return name


async def _runs(session: Session, cron: CronJobFlow) -> list[JobFlow]:
    """The CronJobFlow's runs; a failed LIST is tried again (RETRY_SECONDS apart), so one lost answer
    does not end a backfill of hours; _GaveUp once every retry failed."""
    for pause in (*RETRY_SECONDS, None):
        try:
            return await runs_of(session, cron)
        except (ApiError, TransportError) as err:
            if pause is None:
                raise _GaveUp(f"the runs could not be listed: {described(err)}") from err
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")  # the last pause is None


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
