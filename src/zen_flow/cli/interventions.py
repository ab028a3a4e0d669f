"""`zen-flow approve|reject|stop|retry|resubmit`: what a user asks of a flow on the cluster, through the
annotations the API defines (docs/API.md), checked first against the flow as read so that a request the
controller would ignore is refused here, saying why (cli.flows: the other flow commands)."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from zen_flow.api import JobFlow, Step
from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_CREATED_BY,
    ANNOTATION_DECISION_MESSAGE_PREFIX,
    ANNOTATION_INSTANTIATE,
    ANNOTATION_REJECTED_BY_PREFIX,
    ANNOTATION_RESUME_REQUESTED_BY,
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_SCHEDULED_TIME,
    ANNOTATION_STOP,
    ANNOTATION_SUSPEND_REQUESTED_BY,
    ANNOTATION_VALUES_BY_PREFIX,
    APPROVE_PREFIX,
    LABEL_CRON,
    REJECT_PREFIX,
    RUN_TTL_SECONDS,
    STOP_RUN_FINALLY,
    VALUES_PREFIX,
)
from zen_flow.cli.cron import rerun_notes
from zen_flow.cli.overrides import gate_values_patch
from zen_flow.cli.render import few
from zen_flow.cli.session import EXIT_OK, Session, UsageError, now
from zen_flow.kube.errors import Conflict
from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow.planner.approvals import decision
from zen_flow.planner.interventions import rerun_refusal, rerun_scope, rerunnable_steps, unrun_steps
from zen_flow.validation.expansion import is_cron_run

# How often `decide` reads the flow again when a write came between its read and its conditional patch.
DECIDE_ATTEMPTS = 5


async def decide(session: Session, args: argparse.Namespace) -> int:
    """`approve` / `reject`: the annotation the API defines; the mutating webhook records who did it."""
    step: Step | None = None
    sent: dict[str, str] = {}
    for attempt in range(DECIDE_ATTEMPTS):
        flow = await session.get(args.name)
        if step is not None and _landed(flow, sent):
            # The 409 answered the client's resend of a patch whose first send was stored (its answer
            # lost): the decision is in, though the controller may have acted on it since (the step ended).
            break
        step, patch = _decision_patch(flow, args)
        sent = patch["metadata"]["annotations"]
        try:
            await session.merge_patch(args.name, patch)
            break
        except Conflict:
            # Values merged over those read: another write came first (another approver's values, perhaps):
            # read, merge and check again, never overwrite them with what was read before.
            if attempt == DECIDE_ATTEMPTS - 1:
                raise
    assert step is not None  # the loop ran, and either wrote or raised
    approving = args.command == "approve"
    verb = "approved" if approving else "rejected"
    needed = step.approval.needed if step.approval is not None else 1
    counted = f" (it needs {needed} distinct approvals)" if approving and needed > 1 else ""
    session.out.write(f"jobflow {session.namespace}/{args.name}: step {args.step} {verb}{counted}\n")
    return EXIT_OK


def _landed(flow: JobFlow, sent: dict[str, str]) -> bool:
    """Does the flow hold every annotation of the decision patch sent (a tallied approval's value is
    unique to that patch: nobody else's)?"""
    held = flow.metadata.annotations
    return all(held.get(key) == value for key, value in sent.items())


def _decision_patch(flow: JobFlow, args: argparse.Namespace) -> tuple[Step, dict[str, Any]]:
    """The step and the merge patch that decides it, checked against `flow` as read."""
    step = next((s for s in flow.spec.steps if s.name == args.step), None)
    if step is None and args.step in flow.spec.matrix_groups:
        raise UsageError(
            f"step {args.step!r} of jobflow {args.name} is a matrix step (its items run Jobs), not a "
            "Manual step"
        )
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
    can = f" (rerunnable: {few(rerunnable)})" if rerunnable else ""
    steps = rerun_scope(flow, args.steps)  # a matrix step: its failed items
    why = rerun_refusal(flow, steps)  # the controller's rule: it would ignore the request
    if why is not None:
        raise UsageError(f"jobflow {args.name} cannot rerun: {why}{can if steps else ''}")
    # Named steps that would not rerun (a typo, a rejected gate) are said too, not silently left out.
    if unknown := [s for s in steps if s not in rerunnable]:
        raise UsageError(
            f"not failed Job steps or timed-out gates of jobflow {args.name}: {few(unknown)}{can}"
        )
    rid = f"{now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    scope = ",".join(steps) or None  # null removes an earlier request's scope
    # A stop request left on the flow would stop the rerun at once: the rerun replaces it.
    requested = {ANNOTATION_RETRY: rid, ANNOTATION_RETRY_STEPS: scope, ANNOTATION_STOP: None}
    await session.merge_patch(args.name, {"metadata": {"annotations": requested}})
    for note in await rerun_notes(session, flow):  # an older run of a CronJobFlow
        session.err.write(f"zen-flow retry: note: {note}\n")
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
    ANNOTATION_SUSPEND_REQUESTED_BY,
    ANNOTATION_RESUME_REQUESTED_BY,
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


def _names(flow: JobFlow) -> str:
    return few([s.name for s in flow.spec.steps])
