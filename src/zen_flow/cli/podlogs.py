"""`zen-flow logs NAME [STEP] [--attempt N] [--follow]`: the step pods' logs through the API (pods/log),
each line prefixed with `[step]` (or `[step/container]`) when more than one container is shown;
zen-flow's own transfer containers are left out. A step's latest attempt unless `--attempt N`; a matrix
step's name shows each of its items (`[build-3] ...`); a Flow step its child flow's steps
(`[step/child-step] ...`). With no pod left, the flow archive's copy (cli/archived_logs.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from zen_flow.api import JobFlow
from zen_flow.api.constants import MAX_FLOW_DEPTH, JobRetention, StepPhase
from zen_flow.api.transfer import TRANSFER_NAMES
from zen_flow.cli.archive import store_config
from zen_flow.cli.archive_list import listed, newness
from zen_flow.cli.archived_flows import (
    MAX_RUNS,
    Recorded,
    gather,
    no_such_attempt,
    read_recorded,
    step_items,
)
from zen_flow.cli.archived_logs import labels, print_logs
from zen_flow.cli.render import dependency_order, few
from zen_flow.cli.session import EXIT_FAILED, EXIT_OK, Session, UsageError
from zen_flow.config import ENV_PREFIX
from zen_flow.core.matrix import effective_flow
from zen_flow.core.naming import job_name
from zen_flow.kube.errors import NotFound
from zen_flow.kube.pods import JOB_NAME_LABEL
from zen_flow.planner.archive_records import DEFAULT_PREFIX
from zen_flow.planner.events import MEMOIZED_MARK
from zen_flow.s3 import S3Store, StoreError


@dataclass(frozen=True)
class Bound:
    """At most this much of the logs is asked of the apiserver (the web UI's page; `zen-flow logs`
    prints all): each container's last `lines`, and `size` bytes over all containers (a few very long
    lines are cut at the end then). What is left out is said in the text."""

    lines: int
    size: int


class NothingArchived(Exception):
    """The archive has none of the logs asked for, and says why: exit 1, as `zen-flow archive logs`
    exits for the same answer (and `logs` of a deleted flow the archive has nothing of: not found)."""


async def logs(session: Session, args: argparse.Namespace) -> int:
    """The step pods' logs through the API (pods/log), each line prefixed with `[step]` (or
    `[step/container]`) when more than one container is shown; zen-flow's own transfer containers are
    left out. A step's latest attempt unless `--attempt N` (1 = the first). A Flow step shows its child
    flow's steps (`[step/child-step]`), theirs in turn. No pod left (deleted with its Job, or the flow
    deleted by its TTL): the logs the flow archive kept (`--archive-logs`), when the archive is named
    (`ZEN_FLOW_ARCHIVE_S3_*`, as `zen-flow archive` reads it)."""
    try:
        await show(session, args)
    except NothingArchived as err:
        print(f"zen-flow logs: {err}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def show(session: Session, args: argparse.Namespace, *, bound: Bound | None = None) -> bool:
    """`logs`, at most `bound` of them: whether some were left out. Bounded (the web UI's page), the
    archive is not read: its note on where the logs come from goes to stderr, which a page does not show."""
    archive = bound is None
    try:
        flow = await session.get(args.name)
    except NotFound:
        if archive and await _from_archive(session, args, None, [args.step] if args.step else None):
            return False
        raise
    names = [name for name, _ in dependency_order(flow)]
    # A matrix step has no pod of its own: it stands for its items (`retry --step` takes it so too).
    items = flow.spec.matrix_groups.get(args.step or "")
    if args.step is not None and args.step not in names and items is None:
        raise UsageError(f"jobflow {args.name} has no step {args.step!r} (steps: {few(names)})")
    steps = items or ([args.step] if args.step is not None else names)
    shown = await _shown(session, flow, steps, args.attempt, "", 1)
    if not shown:
        if archive and await _from_archive(
            session, args, flow, list(items or [args.step]) if args.step else None
        ):
            return False
        single = args.step is not None and items is None
        why = await _why_no_pod(session, flow, args.step, args.attempt) if single else None
        said = f"no pod of jobflow {args.name}{' step ' + args.step if args.step else ''} to show"
        raise UsageError(why or said + _retention_note(flow, steps))
    several_steps = len({step for step, _, _ in shown}) > 1 or any("/" in step for step, _, _ in shown)
    several_containers = len(shown) > len({step for step, _, _ in shown})

    def prefix(step: str, container: str) -> str:
        return f"[{step}/{container}] " if several_containers else f"[{step}] " if several_steps else ""

    if args.follow:  # every container at once, lines as they come, until each one's log ends
        await asyncio.gather(*(_follow(session, pod, c, prefix(step, c)) for step, pod, c in shown))
        return False
    cut = False
    for step, pod, container in shown:
        path = f"/api/v1/namespaces/{session.namespace}/pods/{pod}/log"
        query: list[tuple[str, str]] = [("container", container)]
        size = max(bound.size // len(shown), 1) if bound is not None else 0
        if bound is not None:
            # One line more than shown tells whether earlier ones exist; the apiserver's limitBytes
            # counts from the first line it sends (the tail's), so the size cuts the tail's end.
            query += [("tailLines", str(bound.lines + 1)), ("limitBytes", str(size))]
        raw = await session.client.request_raw("GET", path, query=tuple(query))
        lines = raw.decode(errors="replace").splitlines()
        head = prefix(step, container)
        if bound is not None and len(lines) > bound.lines:
            lines, cut = lines[-bound.lines :], True
            session.out.write(f"{head}[earlier lines left out: the last {bound.lines} are shown]\n")
        session.out.writelines(f"{head}{line}\n" for line in lines)
        if bound is not None and len(raw) >= size:
            cut = True
            session.out.write(f"{head}[cut at {size} bytes: later lines left out]\n")
    return cut


async def _shown(
    session: Session, flow: JobFlow, steps: Sequence[str], attempt: int | None, head: str, depth: int
) -> list[tuple[str, str, str]]:
    """(step as shown, pod, container) of `steps` of `flow`; a Flow step's child flow's steps (every one,
    their latest attempts) shown as `step/child-step`, down to the flows' nesting limit."""
    shown: list[tuple[str, str, str]] = []
    flow_steps = {s.name for s in flow.spec.steps if s.is_flow}
    for step in steps:
        status = flow.status.step(step)
        ref = status.job_ref.name if status is not None and status.job_ref is not None else ""
        if step in flow_steps:
            if attempt is not None:  # that attempt's child, named as its Job would be
                ref = job_name(flow.metadata.name, step, attempt - 1) if ref else ""
            # `depth`: how deep this flow's children nest (the planner makes them at most MAX_FLOW_DEPTH).
            if not ref or depth > MAX_FLOW_DEPTH:
                continue  # no child flow yet (`_why_no_pod` says so)
            try:
                child = await session.get(ref)
            except NotFound:
                continue  # deleted with the step's end: `_why_no_pod` names it
            order = [name for name, _ in dependency_order(child)]
            shown.extend(await _shown(session, child, order, None, f"{head}{step}/", depth + 1))
            continue
        if attempt is not None:
            job = job_name(flow.metadata.name, step, attempt - 1)
        elif ref:
            job = ref
        else:
            continue  # not started (or a Manual step): no pod
        pods = await session.client.request(
            "GET",
            f"/api/v1/namespaces/{session.namespace}/pods",
            query=(("labelSelector", f"{JOB_NAME_LABEL}={job}"),),
        )
        if not pods["items"]:
            continue
        pod = max(pods["items"], key=lambda p: p["metadata"].get("creationTimestamp", ""))
        for container in pod["spec"].get("containers", []):
            if container["name"] not in TRANSFER_NAMES:
                shown.append((f"{head}{step}", pod["metadata"]["name"], container["name"]))
    return shown


async def _from_archive(
    session: Session, args: argparse.Namespace, flow: JobFlow | None, steps: list[str] | None = None
) -> bool:
    """Print the flow's archived logs (of the flow `flow`; None: the newest archived flow of that name),
    a Flow step's its child flow's (cli/archived_flows.py), with a line on stderr saying where they come
    from; False when no archive is named or it has none. With none to print but something to say (a
    log its record says could not be read, a child flow not in the archive): NothingArchived saying it;
    of a live flow, only when the archive holds what it says (a child it runs that is not archived yet
    is the cluster's to explain: False)."""
    try:
        config_ = store_config(args)
    except ValueError:
        return False  # no archive named for this command: the cluster's answer stands
    prefix = os.environ.get(ENV_PREFIX + "ARCHIVE_S3_PREFIX", DEFAULT_PREFIX)
    namespace, name = session.namespace, args.name
    try:
        async with S3Store(config_) as store:
            recorded: Recorded | None
            if flow is not None:
                uid = flow.metadata.uid
                runs, _ = await listed(store, prefix, namespace, name, uid, MAX_RUNS)
                # The flow as it is: its steps' order, each step's latest attempt and the child a Flow
                # step runs. Its record, if a run of it ended and was archived (an earlier run's while
                # it is rerun), adds what was archived: its logs list, the children attempts ran.
                record = await read_recorded(store, runs)
                children, entries = (record.children, record.logs) if record is not None else ((), None)
                recorded = Recorded(effective_flow(flow), children, entries, live=True)
            else:
                runs, _ = await listed(store, prefix, namespace, name, None, MAX_RUNS)
                if not runs:
                    return False
                uid = max(runs, key=newness).uid
                # The flow is deleted: its steps' order is its newest record's (name order without one),
                # and a matrix step stands for the items its record has.
                recorded = await read_recorded(store, [r for r in runs if r.uid == uid])
                if steps is not None and len(steps) == 1:
                    steps = step_items(recorded.flow if recorded is not None else None, steps[0])
            found = await gather(store, prefix, namespace, name, uid, recorded, steps, args.attempt)
            # Of a live flow, what the archive lacks (a child it runs, not archived yet) is the
            # cluster's to explain (`_why_no_pod`); what it holds (a log it could not keep) is said.
            if not found.logs and not any(n.archived or flow is None for n in found.notes):
                return False
            gone = "its pods are gone" if flow is not None else "the flow is deleted"
            if not found.logs:
                said = "; ".join(n.text for n in found.notes)
                raise NothingArchived(
                    f"jobflow {name}: {gone}, and the archive {config_.where} has no log to show: {said}"
                )
            print(f"jobflow {name}: {gone}; these logs come from the archive {config_.where} (uid {uid})",
                  file=sys.stderr)  # fmt: skip
            for note in found.notes:
                print(f"jobflow {name}: {note.text}", file=sys.stderr)
            await print_logs(store, labels(found.logs), session.out)
    except StoreError as err:
        print(f"jobflow {name}: the archive {config_.where} could not be read: {err.cause}", file=sys.stderr)
        return False
    return True


async def _why_no_pod(session: Session, flow: JobFlow, step: str, attempt: int | None) -> str | None:
    """Why one step shows no pod: a Manual step, one served from its memoize cache, one that ended
    before any Job (skipped, or failed as a matrix over an output that cannot be used), an attempt that
    does not exist, its Job deleted."""
    name = flow.metadata.name
    spec = next((s for s in flow.spec.steps if s.name == step), None)
    if spec is not None and spec.is_manual:
        return f"step {step} of jobflow {name} is a Manual step: it runs no pod"
    status = flow.status.step(step)
    if spec is not None and spec.is_flow:  # its pods are its child flow's steps'
        child = status.job_ref.name if status is not None and status.job_ref is not None else None
        if child and attempt is not None and status is not None:
            if (out_of := no_such_attempt(step, status, attempt)) is not None:
                return out_of  # a child that attempt never made: not named as if it had been
            child = job_name(name, step, attempt - 1)
        if child:
            return f"step {step} of jobflow {name} runs child flow {child}: see zen-flow logs {child}"
        return f"step {step} of jobflow {name} is a Flow step and has made no child flow yet: no pod"
    started = status is not None and status.job_ref is not None and bool(status.job_ref.name)
    served = status is not None and not started and (status.message or "").startswith(MEMOIZED_MARK)
    attempts = status.retry_count + 1 if status is not None else 0
    if served and attempt in (None, attempts):
        # Served from its memoize cache: the result came from another run, named in the message. A retry
        # served so had earlier attempts, which ran pods (`--attempt`).
        return f"step {step} of jobflow {name} ran no pod: {status.message}"  # type: ignore[union-attr]
    if (
        status is not None
        and not (started or served)
        and status.phase in (StepPhase.SKIPPED, StepPhase.FAILED)
    ):
        # Ended before any Job (a dependency failed, a matrix's output was unusable): its message says why.
        why = status.message or "no message"
        return f"step {step} of jobflow {name} ran no pod: it is {status.phase}: {why}"
    if status is None or not (started or served):
        return f"step {step} of jobflow {name} has not started: no pod yet"
    if attempt is not None and (out_of := no_such_attempt(step, status, attempt)) is not None:
        return out_of
    job = job_name(name, step, attempt - 1) if attempt is not None else status.job_ref.name  # type: ignore[union-attr]
    try:
        await session.client.request("GET", f"/apis/batch/v1/namespaces/{session.namespace}/jobs/{job}")
    except NotFound:
        why = f"the Job {job} of step {step} was deleted, and its pods with it"
        policy = flow.spec.execution_policy
        retention = policy.job_retention if policy is not None else None
        if attempt is not None and attempt < attempts and retention in _LAST_ATTEMPT_ONLY:
            why += f" (executionPolicy.jobRetention: {retention} keeps only the last attempt's Job)"
        elif (
            retention == JobRetention.FAILED_ONLY
            and status is not None
            and status.phase == StepPhase.SUCCEEDED
        ):
            why += f" ({_FAILED_ONLY_NOTE})"
        return why
    return None


_LAST_ATTEMPT_ONLY = (JobRetention.LAST_ATTEMPT, JobRetention.FAILED_ONLY)
# Why a Succeeded step's Job is gone under FailedOnly (planner.retention), and where its logs are.
_FAILED_ONLY_NOTE = (
    "executionPolicy.jobRetention: FailedOnly deletes a Succeeded step's Job once nothing needs it; "
    "the flow archive has its logs when the controller archives them (--archive-logs), read with "
    "ZEN_FLOW_ARCHIVE_S3_* set"
)


def _retention_note(flow: JobFlow, steps: Sequence[str]) -> str:
    """Why `steps` of `flow` show no pod at all when FailedOnly deleted the Jobs of those that
    Succeeded ("" otherwise)."""
    policy = flow.spec.execution_policy
    if policy is None or policy.job_retention != JobRetention.FAILED_ONLY:
        return ""
    for step in steps:
        status = flow.status.step(step)
        if status is not None and status.phase == StepPhase.SUCCEEDED and status.job_ref is not None:
            return f" ({_FAILED_ONLY_NOTE})"
    return ""


async def _follow(session: Session, pod: str, container: str, prefix: str) -> None:
    path = f"/api/v1/namespaces/{session.namespace}/pods/{pod}/log"
    async with session.client.stream_lines(path, (("container", container), ("follow", "true"))) as lines:
        async for line in lines:
            session.out.write(f"{prefix}{line}\n")
            session.out.flush()
