"""The batch/v1 Job manifest for one attempt of a step (JOBFLOW_API.md decisions 5, 10, 13)."""

from __future__ import annotations

import copy
from typing import Any

from zen_flow.api.constants import (
    ANNOTATION_CREATED_BY,
    DEFAULT_RESTART_POLICY,
    GROUP,
    KIND,
    LABEL_ATTEMPT,
    LABEL_FLOW,
    LABEL_MANAGED_BY,
    LABEL_STEP,
    MANAGED_BY,
)
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow, PodFailurePolicy, Step, StepDefaults
from zen_flow.api.meta import OwnerReference, controller_reference
from zen_flow.core.instances import instance_labels, without_instance
from zen_flow.core.naming import label_value
from zen_flow.core.step_defaults import apply_pod_defaults, default_map, fields_from_defaults

# Server-populated fields a template copied from `kubectl get -o yaml` may carry; sending them back
# would be rejected or meaningless on a new object.
_SERVER_FIELDS = ("generateName", "resourceVersion", "uid", "creationTimestamp", "managedFields", "selfLink")


class JobBuildError(ValueError):
    """The step's template cannot become a Job (the validator should have said so at admission)."""


def object_at(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """`parent[key]`, made an empty object when absent; JobBuildError naming `where.key` when it is
    not an object."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    if not isinstance(value, dict):
        raise JobBuildError(f"{where}.{key} must be an object")
    return value


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise JobBuildError(f"{where} must be a map of strings")
    return {str(k): str(v) for k, v in value.items()}


def job_labels(flow: JobFlow, step: Step, attempt: int) -> dict[str, str]:
    """Our labels: every Job and pod of a flow is selectable by flow, step and attempt, and by the
    controller instance that runs the flow (its label when it has one, as it was when the Job was made)."""
    return {
        LABEL_FLOW: label_value(flow.metadata.name),
        LABEL_STEP: label_value(step.name),
        LABEL_ATTEMPT: str(attempt),
        LABEL_MANAGED_BY: MANAGED_BY,
        **instance_labels(flow.metadata.labels),
    }


def owner_reference(flow: JobFlow) -> dict[str, Any]:
    return controller_reference(KIND, flow.metadata)


def is_jobflow(owner: OwnerReference) -> bool:
    """Is the owner one of our JobFlows? By kind *and* API group: another project's `JobFlow` kind (another
    group) is someone else's object, whatever its name."""
    return owner.kind == KIND and owner.group == GROUP


def describe_owner(owner: OwnerReference | None) -> str:
    """The owner as a message names it, apiVersion included: "JobFlow etl" alone could be another
    project's JobFlow kind."""
    return "no controller" if owner is None else f"{owner.kind} {owner.name} ({owner.api_version})"


def adoptable(job: Job) -> bool:
    """May the flow take over a Job of its own that its status does not record (a lost status write)?
    Not one being deleted: it would vanish under its step, which then failed as "deleted outside
    zen-flow"; the flow waits for it to go and creates the step's Job afresh. A finished one may go,
    though: its outcome is final (the TTL-after-finished controller deletes a Job in the foreground, so
    it lingers a while marked deleted), and its step ends as it did."""
    return not job.deleting or job.finished


def on_its_way_out(owner: OwnerReference | None, deleting: bool, flow: JobFlow) -> bool:
    """Will the object holding a name the flow wants (a Job's, a resourceTemplates object's) go by
    itself? Yes when it is being deleted, or when its controller is a JobFlow (ours: `is_jobflow`) of the
    flow's name with another UID: a deleted flow's (`kubectl delete jf etl && kubectl apply -f etl.yaml`,
    or a restore), which the garbage collector has yet to remove. The flow waits for those instead of
    failing: the names come from the flow's name, so a flow re-created at once always meets its
    predecessor's objects."""
    return deleting or (
        owner is not None
        and is_jobflow(owner)
        and owner.name == flow.metadata.name
        and owner.uid != flow.metadata.uid
    )


def name_taken(kind: str, name: str) -> str:
    """Why the flow waits, for the Warning event of `on_its_way_out` (Jobs and resources alike)."""
    return (
        f"{kind} {name} already exists and is on its way out (being deleted, or a deleted flow's of the "
        "same name awaiting the garbage collector); waiting for it to go"
    )


def native_pod_failure_policy(policy: PodFailurePolicy) -> dict[str, Any] | None:
    """The Job API's own `spec.podFailurePolicy`; rules without a matcher are left out (the API needs one)."""
    rules: list[dict[str, Any]] = []
    for rule in policy.rules:
        out: dict[str, Any] = {"action": rule.action}
        if rule.on_exit_codes is not None:
            codes: dict[str, Any] = {
                "operator": rule.on_exit_codes.operator,
                "values": sorted(rule.on_exit_codes.values),  # the Job API refuses them unordered
            }
            # No containerName means every container (the Job API's meaning); the original's implicit
            # "main" would be rejected by the apiserver for pods without such a container.
            if rule.on_exit_codes.container_name:
                codes["containerName"] = rule.on_exit_codes.container_name
            out["onExitCodes"] = codes
        elif rule.on_pod_conditions:
            out["onPodConditions"] = [{"type": c.type, "status": c.status} for c in rule.on_pod_conditions]
        else:
            continue
        rules.append(out)
    return {"rules": rules} if rules else None


def template_deadline(step: Step) -> int | None:
    """The template's own `spec.activeDeadlineSeconds`, when it is a positive integer."""
    spec = step.template.get("spec") if isinstance(step.template, dict) else None
    value = spec.get("activeDeadlineSeconds") if isinstance(spec, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def default_deadline(step: Step, defaults: StepDefaults | None) -> int | None:
    """The flow's `stepDefaults.activeDeadlineSeconds`, for a step that bounds its run time in neither
    way of its own: no `timeoutSeconds`, no `activeDeadlineSeconds` in its template. The step wins: a
    step that asks for an hour is never cut to the default's ten minutes."""
    default = defaults.active_deadline_seconds if defaults is not None else None
    if default is None or default <= 0 or step.timeout_seconds is not None:
        return None
    spec = step.template.get("spec") if isinstance(step.template, dict) else None
    if isinstance(spec, dict) and spec.get("activeDeadlineSeconds") is not None:
        return None
    return default


def deadline_origin(step: Step, defaults: StepDefaults | None) -> str | None:
    """Where a Job deadline that is not the step's timeout comes from, as a failed attempt's message
    says it: `the Job template's activeDeadlineSeconds: 30s`, `stepDefaults.activeDeadlineSeconds: 30s`."""
    own = template_deadline(step)
    if own is not None:
        return f"the Job template's activeDeadlineSeconds: {own}s"
    default = default_deadline(step, defaults)
    return None if default is None else f"stepDefaults.activeDeadlineSeconds: {default}s"


def job_deadline(step: Step) -> int | None:
    """The Job's `activeDeadlineSeconds` where the step's timeout sets it: the smaller of `timeoutSeconds`
    and the template's own value (None: the template's, or the flow's default, as written)."""
    timeout = step.timeout_seconds
    if timeout is None or timeout <= 0:
        return None
    own = template_deadline(step)
    return timeout if own is None else min(own, timeout)


def refusal_origin(flow: JobFlow, step_name: str, message: str) -> str:
    """What to add to the apiserver's refusal of a step's Job when the field it names came from the
    flow's `stepDefaults` (the step does not set it): ` (from spec.stepDefaults.podSpec.affinity)`;
    else nothing. The refusal names the Job's field, which the user did not write in the step."""
    defaults = flow.spec.step_defaults
    step = next((s for s in flow.spec.steps if s.name == step_name), None)
    if defaults is None or defaults.pod_spec is None or step is None or not isinstance(step.template, dict):
        return ""
    own = step.template.get("spec")
    own = own.get("template") if isinstance(own, dict) else None
    own = own.get("spec") if isinstance(own, dict) else None
    fields = fields_from_defaults(message, own, defaults.pod_spec.to_wire())
    return "".join(f" (from spec.stepDefaults.podSpec.{field})" for field in fields)


def with_creator(flow: JobFlow, annotations: dict[str, str]) -> dict[str, str]:
    """`annotations` (a Job's or its pod template's) naming the user who created the flow, as the flow's
    `workflow.kube-zen.io/created-by` does (the mutating webhook writes it from the request's user), or
    without the key when the flow records no one: the Job's own requester is the controller, so admission
    policies on Jobs and pods tell tenants apart by this, and a step's own value must not pass for it."""
    creator = flow.metadata.annotations.get(ANNOTATION_CREATED_BY)
    ours = {ANNOTATION_CREATED_BY: creator} if creator else {}
    return {**{k: v for k, v in annotations.items() if k != ANNOTATION_CREATED_BY}, **ours}


def build_job(flow: JobFlow, step: Step, name: str, attempt: int) -> dict[str, Any]:
    """Deep copy of the template with the flow's `stepDefaults` where it sets none (core/step_defaults.py),
    our name, namespace, labels, annotations (`with_creator`), ownerReference and deadlines, and the pod's
    restartPolicy Never where the template sets none."""
    if not isinstance(step.template, dict) or not step.template:
        raise JobBuildError("step has no Job template")
    body = copy.deepcopy(step.template)
    body["apiVersion"] = "batch/v1"
    body["kind"] = "Job"
    body.pop("status", None)
    ours = job_labels(flow, step, attempt)
    extra_labels = without_instance(step.metadata.labels) if step.metadata else {}
    extra_annotations = step.metadata.annotations if step.metadata else {}
    defaults = flow.spec.step_defaults
    default_meta = defaults.metadata if defaults is not None else None
    # Under the template's and the step's own; the controller instance label is never a default's, as
    # never a step's: the flow's decides (core/instances.py).
    default_labels = without_instance(default_meta.labels) if default_meta is not None else None
    default_annotations = default_meta.annotations if default_meta is not None else None

    meta = object_at(body, "metadata", "template")
    for field in _SERVER_FIELDS:
        meta.pop(field, None)
    meta["name"] = name
    meta["namespace"] = flow.metadata.namespace
    template_labels = without_instance(_str_map(meta.get("labels"), "template.metadata.labels"))
    meta["labels"] = {**default_map(default_labels, template_labels), **extra_labels, **ours}
    annotations = with_creator(
        flow,
        {
            **default_map(
                default_annotations, _str_map(meta.get("annotations"), "template.metadata.annotations")
            ),
            **extra_annotations,
        },
    )
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    meta["ownerReferences"] = [owner_reference(flow)]

    spec = object_at(body, "spec", "template")
    pod = object_at(spec, "template", "template.spec")
    pod_meta = object_at(pod, "metadata", "template.spec.template")
    pod_labels = without_instance(_str_map(pod_meta.get("labels"), "template.spec.template.metadata.labels"))
    pod_meta["labels"] = {**default_map(default_labels, pod_labels), **extra_labels, **ours}
    pod_annotations = with_creator(
        flow,
        {
            **default_map(
                default_annotations,
                _str_map(pod_meta.get("annotations"), "template.spec.template.metadata.annotations"),
            ),
            **extra_annotations,
        },
    )
    if pod_annotations:
        pod_meta["annotations"] = pod_annotations
    else:
        pod_meta.pop("annotations", None)
    pod_spec = object_at(pod, "spec", "template.spec.template")
    if defaults is not None and defaults.pod_spec is not None:
        apply_pod_defaults(pod_spec, defaults.pod_spec.to_wire())
    if not pod_spec.get("restartPolicy"):
        # Admission counts an unset one as Never (validation/template.py); the Job API has no default
        # for it and refuses the Job without one, and the flow's podFailurePolicy below needs Never.
        pod_spec["restartPolicy"] = DEFAULT_RESTART_POLICY

    deadline = job_deadline(step)
    if deadline is None:
        deadline = default_deadline(step, defaults)
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline

    policy = flow.spec.execution_policy.pod_failure_policy if flow.spec.execution_policy else None
    if policy is not None and "podFailurePolicy" not in spec and pod_spec["restartPolicy"] == "Never":
        native = native_pod_failure_policy(policy)
        if native is not None:
            spec["podFailurePolicy"] = native
    return body
