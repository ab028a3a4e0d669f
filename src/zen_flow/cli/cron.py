"""`zen-flow cron list|get|trigger|suspend|resume`: CronJobFlows driven from a terminal, as `argo cron` and
`kubectl create job --from=cronjob/NAME` drive theirs, with the user's own kubeconfig and RBAC
(cli.session: connection, errors, exit status; cli.cron_render: what is printed).

`trigger` builds its run with the controller's own builder (planner.cron.build_run: the template, the
CronJobFlow's label, its controller owner reference, the TTL), so the controller takes it for one of its
runs; only the name and the `instantiate: manual` annotation differ (`manual_run`)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

import yaml

from zen_flow.api.constants import (
    ANNOTATION_INSTANTIATE,
    CRON_SINGULAR,
    GROUP,
    INSTANTIATE_MANUAL,
    LABEL_CRON,
    ConcurrencyPolicy,
)
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.jobflow import JobFlow
from zen_flow.cli.cron_render import cron_detail, cron_list
from zen_flow.cli.session import EXIT_OK, Session, UsageError, now
from zen_flow.kube.cronjobflows import CRONJOBFLOWS
from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow.kube.transport import MERGE_PATCH
from zen_flow.planner.cron import build_run
from zen_flow.validation import render, validate_cronjobflow
from zen_flow.validation.limits import MAX_FLOW_NAME

MANUAL_INFIX = "-manual-"


def manual_run_name(cron_name: str, moment: datetime) -> str:
    """`<cron>-manual-<Unix second>`: never a scheduled run's name (`<cron>-<8-digit Unix minute>`: a
    cron named `x-manual` makes 8 digits where this has 10), and within a flow's name limit: a long
    CronJobFlow name is cut, without the `-` or `.` a name may not end a part with."""
    suffix = f"{MANUAL_INFIX}{int(moment.timestamp())}"
    return cron_name[: MAX_FLOW_NAME - len(suffix)].rstrip("-.") + suffix


def manual_run(cron: CronJobFlow, moment: datetime) -> dict[str, Any]:
    """The run `trigger` creates at `moment`: the controller's run of that time, named apart and marked
    manual (its scheduled-time annotation is `moment`, when it was triggered)."""
    body: dict[str, Any] = build_run(cron, moment)
    meta = body["metadata"]
    meta["name"] = manual_run_name(cron.metadata.name, moment)
    meta["annotations"] = {**meta["annotations"], ANNOTATION_INSTANTIATE: INSTANTIATE_MANUAL}
    return body


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
    if args.output == "json":
        session.out.write(json.dumps(raw, indent=2) + "\n")
    elif args.output == "yaml":
        session.out.write(yaml.safe_dump(raw, sort_keys=False))
    elif args.output == "name":
        session.out.write(_kind_name(raw["metadata"]["name"]) + "\n")
    else:
        cron = CronJobFlow.model_validate(raw)
        session.show(cron_detail(cron, await runs_of(session, cron), now()))
    return EXIT_OK


async def trigger(session: Session, args: argparse.Namespace) -> int:
    """Create a run now, as `kubectl create job --from=cronjob/NAME` does; refused (exit 2) when the
    controller would not create one either: the CronJobFlow is invalid or being deleted."""
    raw = await _get(session, args.name)
    cron = CronJobFlow.model_validate(raw)
    if cron.metadata.deletion_timestamp is not None:
        raise UsageError(f"cronjobflow {args.name} is being deleted: a run of it would be deleted with it")
    if errors := validate_cronjobflow(raw):
        raise UsageError(f"cronjobflow {args.name} is invalid, no run was created:\n{render(errors)}")
    body = manual_run(cron, now())
    made = await session.client.request("POST", JOBFLOWS.path(session.namespace), body=body)
    name = made["metadata"]["name"]
    for note in _notes(cron, name):
        sys.stderr.write(f"zen-flow cron trigger: note: {note}\n")
    session.out.write(f"jobflow {session.namespace}/{name} created\n")
    return EXIT_OK


def _notes(cron: CronJobFlow, run: str) -> list[str]:
    """What the controller does about the new run that the user may not expect (docs/API.md, "Manual
    runs"): it counts for concurrencyPolicy like a scheduled run."""
    notes = []
    if cron.spec.suspend:
        notes.append(f"cronjobflow {cron.metadata.name} is suspended: this run starts all the same")
    active = [r.name for r in cron.status.active]
    if not active:
        return notes
    names = ", ".join(active)
    policy = cron.spec.concurrency_policy or ConcurrencyPolicy.FORBID
    if policy == ConcurrencyPolicy.REPLACE:
        notes.append(f"concurrencyPolicy Replace: the controller stops {names}, replaced by {run}")
    elif policy == ConcurrencyPolicy.FORBID:
        notes.append(
            f"{names} still active: {run} runs beside it; concurrencyPolicy Forbid skips the run times "
            "that come before both finish"
        )
    return notes


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
