"""Child flows: a `type: Flow` step runs a JobFlowTemplate as a JobFlow of its own (Argo's
workflow-of-workflows, Tekton's pipelines in pipelines).

The planner treats the child as the step's Job: same deterministic name per attempt (core/naming), same
create-if-absent, expectations, retries, timeout, stop, deadline and retention, because the controller
shows it each child as a `ChildFlowJob`, a Job record whose terminal conditions mirror the child's phase
(`as_job`). What differs is said here: the child's manifest (`build_child`), its outputs (read from its
status, its steps in its spec order: `document`), the depth limit that stops recursion, and the
suspension the parent passes on (`suspensions`).

The child names its template (`spec.templateRef`) and is expanded as any flow naming one: by the mutating
webhook at its creation, or else by the controller (controller/templates.py), with the same function
(validation/expansion.py). A template that is missing, or an argument it does not declare, fails the
child (or its create, refused by the webhook) and so the step, naming why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from zen_flow.api.constants import (
    ANNOTATION_ARCHIVE_LOGS,
    ANNOTATION_SCHEDULED_TIME,
    ANNOTATION_STOP,
    ANNOTATION_SUSPENDED_BY_PARENT,
    API_VERSION,
    GROUP,
    KIND,
    LABEL_ATTEMPT,
    LABEL_DEPTH,
    LABEL_MANAGED_BY,
    LABEL_PARENT,
    LABEL_PARENT_STEP,
    MANAGED_BY,
    MAX_FLOW_DEPTH,
    FlowPhase,
    StepPhase,
)
from zen_flow.api.job import JOB_COMPLETE, JOB_FAILED, JOB_SUSPENDED, Job, JobMeta, JobStatus
from zen_flow.api.jobflow import JobFlow, Step
from zen_flow.api.meta import Condition, OwnerReference, controller_reference
from zen_flow.core.instances import instance_labels
from zen_flow.core.naming import label_value
from zen_flow.planner.actions import SuspendChild
from zen_flow.planner.child_job import ChildFlowJob
from zen_flow.planner.child_outputs import child_document
from zen_flow.planner.interventions import stop_request
from zen_flow.planner.jobs import JobBuildError
from zen_flow.planner.parameters import Meter, Resolved, flow_fields, substitute_text
from zen_flow.planner.steps import StepWork

# The reason of a child proxy's Failed condition.
CHILD_FAILED_REASON = "ChildFlowFailed"
# ... when a user stopped the child itself (its stop annotation): the step fails, never retried.
CHILD_STOPPED_REASON = "ChildFlowStopped"


def parent_of(flow: JobFlow) -> OwnerReference | None:
    """The JobFlow controlling `flow` (its parent), None for a top-level flow."""
    ref = flow.metadata.controller_ref()
    return ref if ref is not None and ref.kind == KIND and ref.group == GROUP else None


def as_job(child: JobFlow) -> ChildFlowJob:
    """The child flow as its step's Job: Complete when it Succeeded, Failed (with its message) when it
    Failed, Suspended while it is, active otherwise."""
    meta = child.metadata
    phase = child.status.phase
    conditions: tuple[Condition, ...] = ()
    if phase == FlowPhase.SUCCEEDED:
        conditions = (Condition(type=JOB_COMPLETE, status="True", reason="FlowSucceeded"),)
    elif phase == FlowPhase.FAILED:
        why = child.status.message or "failed"
        stopped = stop_request(child)
        conditions = (
            Condition(
                type=JOB_FAILED,
                status="True",
                reason=CHILD_STOPPED_REASON if stopped else CHILD_FAILED_REASON,
                message=(
                    f"child flow {meta.name} was {stopped} (its {ANNOTATION_STOP} annotation): {why}"
                    if stopped
                    else f"child flow {meta.name} failed: {why}"
                ),
            ),
        )
    elif child.spec.suspend:
        conditions = (Condition(type=JOB_SUSPENDED, status="True", reason="SuspendedBySpec"),)
    running = not conditions or conditions[0].type == JOB_SUSPENDED
    return ChildFlowJob(
        metadata=JobMeta.of(meta),
        status=JobStatus(
            conditions=conditions,
            start_time=child.status.start_time,
            completion_time=child.status.completion_time,
            active=1 if running else 0,
        ),
        flow=child,
    )


def refused_job(namespace: str, name: str, why: str) -> ChildFlowJob:
    """A child the apiserver (its admission webhook) refused to create, for good: a Failed record, so the
    step fails (or is retried) saying why, as for a child that failed."""
    failed = Condition(type=JOB_FAILED, status="True", reason=CHILD_FAILED_REASON, message=why)
    return ChildFlowJob(
        metadata=JobMeta(name=name, namespace=namespace), status=JobStatus(conditions=(failed,))
    )


def document(job: Job) -> dict[str, Any] | None:
    """What a Flow step's output paths read: the child's status as JSON, its steps in the child's spec
    order (planner.child_outputs); None for a Job."""
    if not isinstance(job, ChildFlowJob) or job.flow is None:
        return None
    return child_document(job.child)


def build_child(
    flow: JobFlow,
    step: Step,
    name: str,
    attempt: int,
    resolved: tuple[Resolved, ...],
    depth: int = 0,
    meter: Meter | None = None,
) -> dict[str, Any]:
    """The child JobFlow of one attempt of the Flow step `step`: named `name`, owned by `flow`, labelled
    with its parent, step, attempt and depth, annotated with `flow`'s scheduled time, naming the step's
    template with its arguments (their placeholders substituted from the step's inputs). `depth`: `flow`'s
    own, from its chain of verified parents (planner.lineage; the depth label is only informational).
    JobBuildError when it cannot be made: nested deeper than MAX_FLOW_DEPTH (a template that runs
    itself), no template named, or arguments past `meter`'s bound (parameters.MAX_SUBSTITUTED_BYTES, all
    of them together)."""
    spec = step.flow
    ref = spec.template_ref if spec is not None else None
    if ref is None or not ref.name:
        raise JobBuildError("flow.templateRef.name is required on a step of type Flow")
    depth += 1
    if depth > MAX_FLOW_DEPTH:
        raise JobBuildError(
            f"child flows nest at most {MAX_FLOW_DEPTH} deep and this one would be {depth} deep "
            f"(does template {ref.name} run itself?)"
        )
    fields = flow_fields(flow)
    meter = meter or Meter()
    arguments = [
        {
            "name": a.name,
            "value": substitute_text(a.value, step.name, resolved, fields, ("flow", "arguments"), meter),
        }
        for a in (spec.arguments.parameters if spec is not None and spec.arguments is not None else ())
    ]
    template_ref: dict[str, Any] = {"name": ref.name}
    if ref.cluster_scope:
        template_ref["clusterScope"] = True
    child_spec: dict[str, Any] = {"templateRef": template_ref}
    if arguments:
        child_spec["arguments"] = {"parameters": arguments}
    annotations = {}
    if fields.scheduled_time:
        # The child's steps process the parent's night (`{{.JobFlow.ScheduledTime}}`), not the moment the
        # child was made: the parent's value, its annotation or else its creation.
        annotations[ANNOTATION_SCHEDULED_TIME] = fields.scheduled_time
    if (archive_logs := flow.metadata.annotations.get(ANNOTATION_ARCHIVE_LOGS)) is not None:
        # A child's logs are archived as its own flow's: it asks as its parent does (--archive-logs).
        annotations[ANNOTATION_ARCHIVE_LOGS] = archive_logs
    if flow.spec.suspend:
        child_spec["suspend"] = True
        annotations[ANNOTATION_SUSPENDED_BY_PARENT] = "true"
    labels = {
        LABEL_PARENT: label_value(flow.metadata.name),
        LABEL_PARENT_STEP: label_value(step.name),
        LABEL_ATTEMPT: str(attempt),
        LABEL_DEPTH: str(depth),
        LABEL_MANAGED_BY: MANAGED_BY,
        **instance_labels(flow.metadata.labels),
    }
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": flow.metadata.namespace,
            "labels": labels,
            **({"annotations": annotations} if annotations else {}),
            "ownerReferences": [controller_reference(KIND, flow.metadata)],
        },
        "spec": child_spec,
    }


def is_child_body(body: Mapping[str, Any]) -> bool:
    """Is a create's manifest a child JobFlow (not a Job)?"""
    return body.get("kind") == KIND


def suspensions(flow: JobFlow, works: Iterable[StepWork], jobs: Mapping[str, Job]) -> list[SuspendChild]:
    """The running children whose suspension differs from their parent's: a suspended parent suspends
    them (no new step of theirs starts either; `SuspendChild` marks them ANNOTATION_SUSPENDED_BY_PARENT),
    a resumed one resumes those it suspended. A child a user suspended (no mark) is left as it is: the
    parent's resume does not undo it, nor does a parent that is not suspended."""
    want = bool(flow.spec.suspend)
    out: list[SuspendChild] = []
    for w in works:
        if not w.spec.is_flow or w.phase != StepPhase.RUNNING or w.job_ref is None:
            continue
        job = jobs.get(w.job_ref.name)
        if not isinstance(job, ChildFlowJob) or job.flow is None or job.finished or job.deleting:
            continue
        suspended = bool(job.child.spec.suspend)
        ours = job.child.metadata.annotations.get(ANNOTATION_SUSPENDED_BY_PARENT) == "true"
        if (want and not suspended) or (not want and suspended and ours):
            out.append(SuspendChild(job.metadata.name, w.name, want, job.metadata.uid))
    return out
