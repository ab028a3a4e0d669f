"""`zen-flow list|get|submit|approve|reject|stop|retry|resubmit|suspend|resume|delete|graph`: JobFlows driven
from a terminal with the user's own kubeconfig and RBAC (never the controller's), through the same API and
annotations as kubectl (cli.session: connection, errors, exit status)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from zen_flow.api import JobFlow, Step
from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_CREATED_BY,
    ANNOTATION_DECISION_MESSAGE_PREFIX,
    ANNOTATION_INSTANTIATE,
    ANNOTATION_REJECTED_BY_PREFIX,
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_SCHEDULED_TIME,
    ANNOTATION_STOP,
    ANNOTATION_VALUES_BY_PREFIX,
    API_VERSION,
    APPROVE_PREFIX,
    KIND,
    LABEL_CRON,
    REJECT_PREFIX,
    RUN_TTL_SECONDS,
    STOP_RUN_FINALLY,
    VALUES_PREFIX,
)
from zen_flow.cli.cron import rerun_notes
from zen_flow.cli.graph import dot, mermaid
from zen_flow.cli.overrides import gate_values_patch, override_arguments, parse_overrides, template_arguments
from zen_flow.cli.render import flow_detail, flow_list, printable
from zen_flow.cli.session import EXIT_FAILED, EXIT_OK, Session, UsageError, now
from zen_flow.cli.validate import UNCHECKED, is_jobflow
from zen_flow.documents import DocumentError, load_all, read_bounded
from zen_flow.kube.errors import Conflict, NotFound
from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow.planner.approvals import decision
from zen_flow.planner.interventions import rerun_refusal, rerunnable_steps, unrun_steps
from zen_flow.validation.approvals import awaits_expansion, validate_approvals
from zen_flow.validation.expansion import is_cron_run
from zen_flow.validation.flow import validate_jobflow
from zen_flow.validation.limits import MAX_GENERATE_NAME
from zen_flow.validation.warnings import flow_warnings

WAIT_POLL_SECONDS = 1.0


async def list_flows(session: Session, args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else session.namespace
    selector = (("labelSelector", args.selector),) if args.selector else ()
    listed = await session.client.list_all(JOBFLOWS.path(namespace), selector, page_size=100)
    flows = [JobFlow.model_validate(item) for item in listed.items]
    if args.phase:
        flows = [f for f in flows if (f.status.phase or "Pending") == args.phase]
    if not flows:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No JobFlows found in {where}.", file=sys.stderr)
        return EXIT_OK
    if args.output == "name":  # for scripts: `zen-flow list -o name --phase Failed | xargs ...`
        session.out.write("".join(f"{_kind_name(f.metadata.name)}\n" for f in flows))
        return EXIT_OK
    session.show(flow_list(flows, now(), all_namespaces=namespace is None))
    return EXIT_OK


def _kind_name(name: str) -> str:
    """kubectl's `-o name`: resource.group/name."""
    return f"{JOBFLOWS.plural.removesuffix('s')}.{JOBFLOWS.group}/{name}"


async def get_flow(session: Session, args: argparse.Namespace) -> int:
    raw = await session.flows.get(session.namespace, args.name)
    if args.output == "json":
        session.out.write(json.dumps(raw, indent=2) + "\n")
    elif args.output == "yaml":
        session.out.write(yaml.safe_dump(raw, sort_keys=False))
    elif args.output == "name":
        session.out.write(_kind_name(raw["metadata"]["name"]) + "\n")
    else:
        session.show(flow_detail(JobFlow.model_validate(raw), now(), wide=args.output == "wide"))
    return EXIT_OK


# How often `decide` reads the flow again when a write came between its read and its conditional patch.
DECIDE_ATTEMPTS = 5


async def decide(session: Session, args: argparse.Namespace) -> int:
    """`approve` / `reject`: the annotation the API defines; the mutating webhook records who did it."""
    for attempt in range(DECIDE_ATTEMPTS):
        flow = await session.get(args.name)
        step, patch = _decision_patch(flow, args)
        try:
            await session.merge_patch(args.name, patch)
            break
        except Conflict:
            # Values merged over those read: another write came first (another approver's values, perhaps):
            # read, merge and check again, never overwrite them with what was read before.
            if attempt == DECIDE_ATTEMPTS - 1:
                raise
    approving = args.command == "approve"
    verb = "approved" if approving else "rejected"
    needed = step.approval.needed if step.approval is not None else 1
    counted = f" (it needs {needed} distinct approvals)" if approving and needed > 1 else ""
    session.out.write(f"jobflow {session.namespace}/{args.name}: step {args.step} {verb}{counted}\n")
    return EXIT_OK


def _decision_patch(flow: JobFlow, args: argparse.Namespace) -> tuple[Step, dict[str, Any]]:
    """The step and the merge patch that decides it, checked against `flow` as read."""
    step = next((s for s in flow.spec.steps if s.name == args.step), None)
    if step is None:
        raise UsageError(f"jobflow {args.name} has no step {args.step!r} (steps: {_names(flow)})")
    if not step.is_manual:
        raise UsageError(f"step {args.step!r} of jobflow {args.name} is not a Manual step")
    _decidable(flow, step, "Approved" if args.command == "approve" else "Rejected")
    approving = args.command == "approve"
    prefix = APPROVE_PREFIX if approving else REJECT_PREFIX
    value = "true"
    if approving and step.approval is not None:
        # A tallied gate counts each user whose write sets its approve annotation: a fresh value makes a
        # second approver's write a change the webhook sees (the same "true" again would be none).
        value = f"true-{now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    annotations = {f"{prefix}{args.step}": value}
    values = gate_values_patch(flow, step, getattr(args, "parameters", [])) if approving else {}
    # The values and the approval in one patch: the webhook checks them together, and the gate can never
    # be seen approved with values it was not given.
    annotations.update(values)
    if args.message:
        annotations[ANNOTATION_DECISION_MESSAGE_PREFIX + args.step] = args.message
    meta: dict[str, Any] = {"annotations": annotations}
    if values and flow.metadata.resource_version:
        # Merged over the values read: written only over those (409 otherwise), so that another
        # approver's values written meanwhile are never silently undone.
        meta["resourceVersion"] = flow.metadata.resource_version
    return step, {"metadata": meta}


def _decidable(flow: JobFlow, spec: Step, wanted: str) -> None:
    """A decision the controller would still act on: the flow has not ended, the step has not finished
    (a gate not reached yet may be decided in advance), nobody decided it the other way (a tallied gate
    still counting its approvals is undecided: one rejection rejects it)."""
    name, step = flow.metadata.name, spec.name
    if flow.status.phase in ("Succeeded", "Failed"):
        raise UsageError(
            f"jobflow {name} has ended ({flow.status.phase}): step {step} can no longer be decided"
        )
    status = flow.status.step(step)
    if status is not None and status.phase in ("Succeeded", "Failed", "Skipped"):
        raise UsageError(f"step {step} of jobflow {name} is {status.phase}: it can no longer be decided")
    taken = decision(flow.metadata.annotations, step, spec.approval)
    if taken is not None and taken[0] != wanted:
        who = f" by {taken[1]}" if taken[1] else ""
        raise UsageError(f"step {step} of jobflow {name} is already {taken[0].lower()}{who}")


async def retry(session: Session, args: argparse.Namespace) -> int:
    """Ask the controller to rerun a Failed flow from its failed steps (or only `--step` ones; one that
    failed creating its resources creates them again): the request annotation with a fresh id, honoured
    once (docs/API.md, "Rerunning a failed flow")."""
    flow = await session.get(args.name)
    if flow.status.phase != "Failed":
        raise UsageError(
            f"jobflow {args.name} is {flow.status.phase or 'Pending'}: only a Failed flow reruns"
        )
    # With no failed step, the steps a stop (the deadline, a Replace flow) left unrun are its scope.
    rerunnable = rerunnable_steps(flow) or unrun_steps(flow)
    can = f" (rerunnable: {', '.join(rerunnable)})" if rerunnable else ""
    why = rerun_refusal(flow, args.steps)  # the controller's rule: it would ignore the request
    if why is not None:
        raise UsageError(f"jobflow {args.name} cannot rerun: {why}{can if args.steps else ''}")
    # Named steps that would not rerun (a typo, a rejected gate) are said too, not silently left out.
    if unknown := [s for s in args.steps if s not in rerunnable]:
        raise UsageError(
            f"not failed Job steps or timed-out gates of jobflow {args.name}: {', '.join(unknown)}{can}"
        )
    rid = f"{now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    scope = ",".join(args.steps) or None  # null removes an earlier request's scope
    # A stop request left on the flow would stop the rerun at once: the rerun replaces it.
    requested = {ANNOTATION_RETRY: rid, ANNOTATION_RETRY_STEPS: scope, ANNOTATION_STOP: None}
    await session.merge_patch(args.name, {"metadata": {"annotations": requested}})
    for note in await rerun_notes(session, flow):  # an older run of a CronJobFlow
        sys.stderr.write(f"zen-flow retry: note: {note}\n")
    session.out.write(f"jobflow {session.namespace}/{args.name}: rerun requested ({rid})\n")
    return EXIT_OK


_NOT_COPIED = (
    APPROVE_PREFIX,
    REJECT_PREFIX,
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_REJECTED_BY_PREFIX,
    ANNOTATION_RETRY,
    ANNOTATION_CREATED_BY,
    ANNOTATION_STOP,
    ANNOTATION_DECISION_MESSAGE_PREFIX,
    VALUES_PREFIX,  # a gate's values go with its decision: given on the new flow by who may decide it
    ANNOTATION_VALUES_BY_PREFIX,
    ANNOTATION_RETRIED_BY,
    # A CronJobFlow run's marks: the copy is no run (no owner reference), and would be listed as one.
    ANNOTATION_SCHEDULED_TIME,
    ANNOTATION_INSTANTIATE,
)


def _resubmitted_spec(old: dict[str, Any]) -> Any:
    """The spec of a resubmitted flow: a CronJobFlow run's spec without the TTL its CronJobFlow gave it
    ("never": its history limits delete the run, but nothing deletes the copy), so the copy gets the
    JobFlow default. Any other flow's TTL is its own, "never" included."""
    spec = old.get("spec")
    if not isinstance(spec, dict):
        return spec
    policy = spec.get("executionPolicy")
    labels = old.get("metadata", {}).get("labels") or {}
    if not isinstance(policy, dict) or policy.get("ttlSecondsAfterFinished") != RUN_TTL_SECONDS:
        return spec
    if LABEL_CRON not in labels and not is_cron_run(old.get("metadata")):
        return spec
    kept = {k: v for k, v in policy.items() if k != "ttlSecondsAfterFinished"}
    return {**spec, "executionPolicy": kept}


async def resubmit(session: Session, args: argparse.Namespace) -> int:
    """A new flow from an old one's spec, labels and annotations (not its decisions, requests or audit,
    nor a CronJobFlow run's marks: the copy is no run)."""
    old = await session.flows.get(session.namespace, args.name)
    meta = old.get("metadata", {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(_NOT_COPIED)}
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != LABEL_CRON}
    body = {
        "apiVersion": old["apiVersion"],
        "kind": old["kind"],
        "metadata": {"generateName": f"{args.name}-", "labels": labels, "annotations": annotations},
        "spec": _resubmitted_spec(old),
    }
    made = await session.client.request("POST", JOBFLOWS.path(session.namespace), body=body)
    session.out.write(f"jobflow {session.namespace}/{made['metadata']['name']} created\n")
    return EXIT_OK


async def stop(session: Session, args: argparse.Namespace) -> int:
    """Fail the flow now: running Jobs are deleted, nothing else starts; `--run-finally`: its finally steps
    run first (docs/API.md, "Stopping a flow")."""
    flow = await session.get(args.name)
    if flow.status.phase in ("Succeeded", "Failed"):
        raise UsageError(f"jobflow {args.name} has ended ({flow.status.phase}): nothing to stop")
    value = STOP_RUN_FINALLY if args.run_finally else "true"
    await session.merge_patch(args.name, {"metadata": {"annotations": {ANNOTATION_STOP: value}}})
    said = "stop requested"
    if args.run_finally:
        final = any(s.is_finally for s in flow.spec.steps)
        said += ": its finally steps run first" if final else " (it has no finally step: it stops now)"
    session.out.write(f"jobflow {session.namespace}/{args.name}: {said}\n")
    return EXIT_OK


async def delete(session: Session, args: argparse.Namespace) -> int:
    """Delete flows; their Jobs and pods go with them (owner references, background deletion). As kubectl,
    a name not found is said and the others are deleted all the same; the exit code is then 1."""
    outcome = EXIT_OK
    for name in args.names:
        try:
            await session.client.request(
                "DELETE", JOBFLOWS.path(session.namespace, name), body={"propagationPolicy": "Background"}
            )
        except NotFound:
            sys.stderr.write(f"zen-flow delete: jobflow {session.namespace}/{name} not found\n")
            outcome = EXIT_FAILED
            continue
        session.out.write(f"jobflow {session.namespace}/{name} deleted\n")
    return outcome


async def suspend(session: Session, args: argparse.Namespace) -> int:
    """`suspend` / `resume`: spec.suspend (running steps finish; no new step starts while suspended)."""
    await session.get(args.name)  # a clear "not found" before any write
    suspended = args.command == "suspend"
    await session.merge_patch(args.name, {"spec": {"suspend": suspended}})
    session.out.write(f"jobflow {session.namespace}/{args.name} {'suspended' if suspended else 'resumed'}\n")
    return EXIT_OK


async def submit(session: Session, args: argparse.Namespace) -> int:
    """Validate every flow of the files offline (as the webhook would), then create them; `--wait`
    follows them to the end and exits with their outcome; `--watch` shows one as `zen-flow watch` does."""
    created: list[str] = []
    for doc in args.flows:
        metadata = doc.setdefault("metadata", {})
        if args.generate_name and metadata.get("name"):
            metadata["generateName"] = f"{metadata.pop('name')}-"
        metadata["namespace"] = metadata.get("namespace") or session.namespace
        made = await session.client.request("POST", JOBFLOWS.path(metadata["namespace"]), body=doc)
        name = made["metadata"]["name"]
        created.append(f"{metadata['namespace']}/{name}")
        session.out.write(f"jobflow {metadata['namespace']}/{name} created\n")
    if args.watch:
        from zen_flow.cli.watcher import watch

        namespace, name = created[0].split("/", 1)
        return await watch(Session(session.client, namespace, session.out), argparse.Namespace(name=name))
    if not args.wait:
        return EXIT_OK
    outcome = EXIT_OK
    for key in created:
        namespace, name = key.split("/", 1)
        flow, finished = await _until_finished(session, namespace, name, args.timeout)
        if not finished:
            gates = _awaiting_approval(flow)
            what = f"waiting for approval of {', '.join(gates)}" if gates else "still running"
            session.out.write(f"jobflow {key}: {what} after {args.timeout:g}s\n")
            outcome = EXIT_FAILED
            continue
        session.out.write(f"jobflow {key} {flow.status.phase}: {printable(flow.status.message or '')}\n")
        if flow.status.phase != "Succeeded":
            outcome = EXIT_FAILED
    return outcome


def prepare_submit(args: argparse.Namespace) -> None:
    """Offline, before any cluster is contacted: every file read and validated (`args.flows`), or the flow
    made from `--from-template`."""
    if bool(args.files) == bool(args.from_template):
        raise UsageError("give FILE arguments or --from-template TEMPLATE (one of them)")
    if args.from_template:
        args.flows = [_from_template(args.from_template, _overrides(args.parameters), args.namespace)]
    else:
        args.flows = _read_flows(args.files, _overrides(args.parameters))
    # As kubectl: `-n` fills in a missing namespace, and one that says otherwise is a mistake, not a
    # choice between the two (a flow meant for staging was created in prod).
    for doc in args.flows:
        named = doc.get("metadata", {}).get("namespace")
        if args.namespace and named and named != args.namespace:
            flow = doc["metadata"].get("name") or doc["metadata"].get("generateName") or "a flow"
            raise UsageError(
                f"the namespace of {flow} in the file ({named}) does not match -n {args.namespace}; "
                "nothing was created"
            )
    if args.watch and len(args.flows) != 1:
        raise UsageError(f"--watch follows one flow; these files hold {len(args.flows)} (use --wait)")


def graph_of_file(args: argparse.Namespace) -> int | None:
    """`graph FILE` needs no cluster: drawn here; None for a flow's name."""
    if not Path(args.name).is_file():
        return None
    sys.stdout.write(_drawn(JobFlow.model_validate(_read_flows([args.name], {})[0]), args.format))
    return EXIT_OK


async def graph(session: Session, args: argparse.Namespace) -> int:
    """The DAG of a flow on the cluster."""
    flow = await session.get(args.name)
    session.out.write(await asyncio.to_thread(_drawn, flow, args.format))
    return EXIT_OK


def _drawn(flow: JobFlow, fmt: str) -> str:
    text = mermaid(flow) if fmt == "mermaid" else dot(flow)
    if fmt != "svg":
        return text
    graphviz = shutil.which("dot")
    if graphviz is None:
        raise UsageError("--format svg needs Graphviz's `dot` on PATH; --format dot prints its input")
    done = subprocess.run([graphviz, "-Tsvg"], input=text, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise UsageError(f"dot failed: {done.stderr.strip()}")
    return done.stdout


async def _until_finished(
    session: Session, namespace: str, name: str, timeout: float
) -> tuple[JobFlow, bool]:
    """The flow once it finished (True), or as it was at `timeout` (False). Says once when it starts
    waiting for a person: a `--wait` of an hour must not sit silent while a gate waits for an approval."""
    deadline = time.monotonic() + timeout
    told: tuple[str, ...] = ()
    while True:
        flow = JobFlow.model_validate(await session.flows.get(namespace, name))
        if flow.status.phase in ("Succeeded", "Failed"):
            return flow, True
        if (gates := _awaiting_approval(flow)) and gates != told:
            told = gates
            how = f"zen-flow approve {name} {gates[0]} -n {namespace}"
            session.out.write(
                f"jobflow {namespace}/{name}: waiting for approval of {', '.join(gates)} ({how})\n"
            )
        if time.monotonic() >= deadline:
            return flow, False
        await asyncio.sleep(WAIT_POLL_SECONDS)  # polling one object; a watch is the `watch` command's job


def _awaiting_approval(flow: JobFlow) -> tuple[str, ...]:
    return tuple(step.name for step in flow.status.steps if step.phase == "PendingApproval")


def _read_flows(paths: list[str], overrides: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    problems: list[str] = []
    for raw in paths:
        try:
            found = load_all(read_bounded(Path(raw)))
        except (DocumentError, OSError) as err:
            raise UsageError(f"{raw}: {err}") from None
        for number, doc in enumerate(found, start=1):
            label = f"{raw}#{number}" if len(found) > 1 else raw
            if not is_jobflow(doc):
                kind = doc.get("kind") if isinstance(doc, dict) else None
                if doc is not None:  # an empty document (a trailing ---) is nothing to mention
                    sys.stderr.write(
                        f"zen-flow: skipped {label}: {kind or 'not a JobFlow'} (only JobFlows are read)\n"
                    )
                continue
            doc, errors = override_arguments(doc, overrides)
            errors += validate_jobflow(doc)
            if awaits_expansion(doc):  # the template is the cluster's: the webhook checks them then
                sys.stderr.write(f"{label}: note: {UNCHECKED}\n")
            else:
                errors += validate_approvals(doc)
            problems += [f"{label}: {error}" for error in errors]
            for warning in [] if errors else flow_warnings(doc):  # what the webhook would say too
                sys.stderr.write(f"{label}: Warning: {warning}\n")
            docs.append(doc)
    if problems:
        raise UsageError("invalid, nothing was created:\n" + "\n".join(problems))
    if not docs:
        raise UsageError(f"no JobFlow in {', '.join(paths)}")
    return docs


def _from_template(template: str, values: dict[str, str], namespace: str | None) -> dict[str, Any]:
    """A flow naming `template` (expanded by the webhook, or the controller), named after it; the values
    of its arguments are checked against the template's declarations when it is created."""
    prefix = template[: MAX_GENERATE_NAME - 1].rstrip("-.") + "-"
    metadata: dict[str, Any] = {"generateName": prefix, **({"namespace": namespace} if namespace else {})}
    spec: dict[str, Any] = {"templateRef": {"name": template}}
    if values:
        spec["arguments"] = template_arguments(values)
    doc = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
    if errors := validate_jobflow(doc):
        raise UsageError(
            "invalid, nothing was created:\n" + "\n".join(f"--from-template: {e}" for e in errors)
        )
    return doc


def _overrides(items: list[str]) -> dict[str, str]:
    try:
        return parse_overrides(items)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _names(flow: JobFlow) -> str:
    return ", ".join(s.name for s in flow.spec.steps)
