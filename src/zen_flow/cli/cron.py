"""`zen-flow cron list|get|trigger|suspend|resume`: CronJobFlows driven from a terminal, as `argo cron` and
`kubectl create job --from=cronjob/NAME` drive theirs, with the user's own kubeconfig and RBAC
(cli.session: connection, errors, exit status; cli.cron_render: what is printed; cli.cron_backfill:
`backfill`).

`trigger` builds its run with the controller's own builder (planner.cron_runs.manual_run: the template,
the CronJobFlow's label, its controller owner reference, the TTL), so the controller takes it for one of
its runs; only the name `<cron>-manual-<random token>` and the annotations differ. Nothing is taken from
this machine's clock: the controller places a manual run at its creationTimestamp. `--scheduled-time`
only sets what its steps render as `{{.JobFlow.ScheduledTime}}` (the night it processes)."""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from datetime import UTC, date, datetime, time
from typing import Any

from zen_flow.api.constants import (
    ANNOTATION_STOP,
    CRON_KIND,
    CRON_SINGULAR,
    DEFAULT_SUCCESSFUL_HISTORY_LIMIT,
    GROUP,
    LABEL_CRON,
    MANUAL_RUN_TOKEN_ALPHABET,
    MANUAL_RUN_TOKEN_LENGTH,
    ConcurrencyPolicy,
    FlowPhase,
)
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.jobflow import JobFlow
from zen_flow.cli.cron_render import cron_detail, cron_list
from zen_flow.cli.session import EXIT_OK, STRICT, Session, UsageError, now
from zen_flow.core.cron import parse_time_zone
from zen_flow.kube.cronjobflows import CRONJOBFLOWS
from zen_flow.kube.errors import KubeError
from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow.kube.transport import MERGE_PATCH
from zen_flow.planner.cron_runs import manual_run, rank, rank_of
from zen_flow.planner.scheduled_time import parse_rfc3339
from zen_flow.validation import render, validate_cronjobflow

ENDED = (FlowPhase.SUCCEEDED, FlowPhase.FAILED)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def token() -> str:
    """A manual run's random suffix: two triggers at once get two names (a 409 otherwise)."""
    return "".join(secrets.choice(MANUAL_RUN_TOKEN_ALPHABET) for _ in range(MANUAL_RUN_TOKEN_LENGTH))


def _kind_name(name: str) -> str:
    """kubectl's `-o name`: resource.group/name."""
    return f"{CRON_SINGULAR}.{GROUP}/{name}"


async def _get(session: Session, name: str) -> dict[str, Any]:
    return await session.client.request("GET", CRONJOBFLOWS.path(session.namespace, name))


async def runs_of(session: Session, cron: CronJobFlow) -> list[JobFlow]:
    """The CronJobFlow's runs as the controller counts them: flows it controls (owner reference by uid),
    found by its label."""
    selector = (("labelSelector", f"{LABEL_CRON}={cron.metadata.name}"),)
    listed = await session.client.list_all(JOBFLOWS.path(cron.metadata.namespace), selector, page_size=100)
    flows = [JobFlow.model_validate(item) for item in listed.items]
    return [f for f in flows if (ref := f.metadata.controller_ref()) and ref.uid == cron.metadata.uid]


async def list_crons(session: Session, args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else session.namespace
    listed = await session.client.list_all(CRONJOBFLOWS.path(namespace), (), page_size=100)
    crons = [CronJobFlow.model_validate(item) for item in listed.items]
    if not crons:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No CronJobFlows found in {where}.", file=sys.stderr)
        return EXIT_OK
    if args.output == "name":
        session.out.write("".join(f"{_kind_name(c.metadata.name)}\n" for c in crons))
        return EXIT_OK
    session.show(cron_list(crons, now(), all_namespaces=namespace is None))
    return EXIT_OK


async def get_cron(session: Session, args: argparse.Namespace) -> int:
    raw = await _get(session, args.name)
    if not session.print_object(raw, args.output, _kind_name):
        cron = CronJobFlow.model_validate(raw)
        session.show(cron_detail(cron, await runs_of(session, cron), now()))
    return EXIT_OK


async def runnable(session: Session, name: str) -> CronJobFlow:
    """The CronJobFlow `name`, if the controller would run it; refused (exit 2) when it would create no
    run either: it is invalid (the errors are printed) or being deleted."""
    raw = await _get(session, name)
    cron = CronJobFlow.model_validate(raw)
    if cron.metadata.deletion_timestamp is not None:
        raise UsageError(f"cronjobflow {name} is being deleted: a run of it would be deleted with it")
    if errors := validate_cronjobflow(raw):
        raise UsageError(f"cronjobflow {name} is invalid, no run was created:\n{render(errors)}")
    return cron


async def trigger(session: Session, args: argparse.Namespace) -> int:
    """Create a run now, as `kubectl create job --from=cronjob/NAME` does; refused (exit 2) when the
    controller would not create one either: the CronJobFlow is invalid or being deleted."""
    asked = scheduled_time_asked(args.scheduled_time)  # refused before anything is sent
    cron = await runnable(session, args.name)
    scheduled = asked if asked is None or isinstance(asked, datetime) else midnight(asked, cron)
    made = await session.client.request(
        "POST", JOBFLOWS.path(session.namespace), query=STRICT, body=manual_run(cron, token(), scheduled)
    )
    name = made["metadata"]["name"]
    for note in _notes(cron, JobFlow.model_validate(made)):
        sys.stderr.write(f"zen-flow cron trigger: note: {note}\n")
    session.out.write(f"jobflow {session.namespace}/{name} created\n")
    return EXIT_OK


def scheduled_time_asked(text: str | None) -> datetime | date | None:
    """`--scheduled-time`: an RFC 3339 time (its instant), or a date (its midnight, in the CronJobFlow's
    time zone: known once it is read); UsageError (exit 2) for anything else."""
    if text is None:
        return None
    return time_or_date(text, "--scheduled-time", "midnight in the CronJobFlow's time zone")


def time_or_date(text: str, option: str, day_means: str) -> datetime | date:
    """An RFC 3339 time (its instant) or a date YYYY-MM-DD (`day_means` says what of it: known once the
    CronJobFlow is read); UsageError naming `option` for anything else."""
    if (moment := parse_rfc3339(text)) is not None:
        return moment
    if _DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise UsageError(
        f"{option} {text!r} is neither an RFC 3339 time (2026-12-07T02:30:00Z, "
        f"2026-12-07T03:30:00+01:00) nor a date YYYY-MM-DD ({day_means})"
    )


def midnight(day: date, cron: CronJobFlow, option: str = "--scheduled-time") -> datetime:
    """The start of `day` in the CronJobFlow's time zone (validated already), in UTC. A midnight a clock
    change skips is the instant of the change, as the schedule's skipped times are (fold 0: the offset
    before)."""
    try:
        return datetime.combine(day, time(), tzinfo=parse_time_zone(cron.spec.time_zone)).astimezone(UTC)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        raise UsageError(
            f"{option} {day.isoformat()}: midnight in {cron.spec.time_zone} is out of range in UTC"
        ) from None


def _notes(cron: CronJobFlow, made: JobFlow) -> list[str]:
    """What the controller does about the new run that the user may not expect (docs/API.md, "Manual
    runs"): it counts for concurrencyPolicy like a scheduled run. Replace's choice is the controller's
    own order (cron_runs.rank) of the active runs it recorded and the run made, at the apiserver's
    creationTimestamp (this machine's clock when an apiserver leaves it out)."""
    notes = []
    run = made.metadata.name
    if cron.spec.suspend:
        notes.append(f"cronjobflow {cron.metadata.name} is suspended: this run starts all the same")
    active = [r for r in cron.status.active if r.name != run]
    if not active:
        return notes
    names = ", ".join(r.name for r in active)
    policy = cron.spec.concurrency_policy or ConcurrencyPolicy.FORBID
    if policy == ConcurrencyPolicy.REPLACE:
        mine = rank(cron.metadata.name, run, made.metadata.creation_timestamp or now())
        newer = [r.name for r in active if rank(cron.metadata.name, r.name, r.scheduled_time) > mine]
        if newer:
            notes.append(
                f"concurrencyPolicy Replace: {', '.join(newer)} is newer: the controller stops {run}"
            )
        else:
            notes.append(f"concurrencyPolicy Replace: the controller stops {names}, replaced by {run}")
    elif policy == ConcurrencyPolicy.FORBID:
        notes.append(
            f"{names} still active: {run} runs beside it; concurrencyPolicy Forbid skips the run times "
            "that come before both finish"
        )
    return notes


async def rerun_notes(session: Session, flow: JobFlow) -> list[str]:
    """What the controller does with a rerun (`zen-flow retry`) of an older run of a CronJobFlow, which
    the user may not expect: a rerun keeps its place in time (cron_runs.rank), so under Replace a newer
    active run stops it at once, and the history limit, already filled by newer successes, deletes it
    as soon as it succeeds (planner/cron.py `_replaced`, planner/cron_history.py). None when the flow is
    no run, or its CronJobFlow or runs cannot be read (the notes are a courtesy)."""
    ref = flow.metadata.controller_ref()
    if ref is None or ref.kind != CRON_KIND:
        return []
    try:
        cron = CronJobFlow.model_validate(await _get(session, ref.name))
        if cron.metadata.uid != ref.uid:
            return []
        runs = await runs_of(session, cron)
    except KubeError:  # not allowed to read them, gone, unreachable: the rerun is requested all the same
        return []
    name, run = cron.metadata.name, flow.metadata.name
    mine = rank_of(name, flow)
    newer = [r for r in runs if r.metadata.deletion_timestamp is None and rank_of(name, r) > mine]
    notes = []
    going = [r.metadata.name for r in newer if r.status.phase not in ENDED and not _stopping(r)]
    if going and cron.spec.concurrency_policy == ConcurrencyPolicy.REPLACE:
        notes.append(
            f"concurrencyPolicy Replace keeps the newest run: {', '.join(going)} is newer and active: "
            f"the controller stops {run} at once"
        )
    kept = cron.spec.successful_jobs_history_limit
    kept = DEFAULT_SUCCESSFUL_HISTORY_LIMIT if kept is None else kept
    succeeded = [r for r in newer if r.status.phase == FlowPhase.SUCCEEDED]
    if len(succeeded) >= kept:
        notes.append(
            f"successfulJobsHistoryLimit {kept} keeps {len(succeeded)} newer successful run(s) of "
            f"cronjobflow {name}: the controller deletes {run} as soon as it succeeds"
        )
    return notes


def _stopping(run: JobFlow) -> bool:
    return bool((run.metadata.annotations.get(ANNOTATION_STOP) or "").strip())


async def suspend(session: Session, args: argparse.Namespace) -> int:
    """`suspend` / `resume`: spec.suspend (no new run; active runs go on; resuming starts the latest run
    time missed meanwhile, unless startingDeadlineSeconds excludes it)."""
    await _get(session, args.name)  # a clear "not found" before any write
    suspended = args.cron_command == "suspend"
    await session.client.request(
        "PATCH",
        CRONJOBFLOWS.path(session.namespace, args.name),
        body={"spec": {"suspend": suspended}},
        content_type=MERGE_PATCH,
    )
    said = "suspended" if suspended else "resumed"
    session.out.write(f"cronjobflow {session.namespace}/{args.name} {said}\n")
    return EXIT_OK
