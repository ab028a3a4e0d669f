"""`validate_update`: the rules for changing an existing JobFlow (admission UPDATE).

`spec.steps` is immutable once the flow has started (JOBFLOW_API.md decision 12): the controller has
created Jobs from those steps and recorded their status by name, so an edited step list would describe a
different flow than the one running. So are `spec.arguments`, `spec.templateRef` and the flow's own locks
(`spec.synchronization`: taken when it started, held until it ends), and its annotation
`workflow.kube-zen.io/scheduled-time` (`{{.JobFlow.ScheduledTime}}`, in its Jobs already). Suspending,
the execution policy, labels and other annotations (which carry approvals) stay changeable.

Ratcheting, as the apiserver does for CRD schemas: problems in a part the update leaves untouched
(`spec`, the name, labels, annotations) are not reported, and when the spec changes, neither is a problem
the stored flow already had (same field, same message): so a flow stored before a rule existed can still
be approved, suspended, resumed, relabelled, have its execution policy changed or its finalizers removed.
When the stored flow has no problem there is nothing to forgive, so the new one is checked with the early
stop of a CREATE (errors.listed, Reader.stop). The update's own rules (a started flow's steps, its
scheduled time) are listed before the new object's errors, never cut by their limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.api.constants import ANNOTATION_SCHEDULED_TIME, StepPhase
from zen_flow.validation.accepted import KnownSpec
from zen_flow.validation.approvals import validate_approvals
from zen_flow.validation.errors import MAX_ERRORS, FieldError, forbidden, listed
from zen_flow.validation.flow import SPEC, validate_jobflow
from zen_flow.validation.gate_values import frozen_values
from zen_flow.validation.gates import approval_edits


def has_started(flow: Mapping[str, Any]) -> bool:
    """A phase other than Pending, or any step that left Pending."""
    status = _get(flow, "status")
    if not isinstance(status, dict):
        return False
    phase = status.get("phase")
    if phase and phase != "Pending":
        return True
    steps = status.get("steps")
    for step in steps if isinstance(steps, list | tuple) else ():
        if isinstance(step, dict) and step.get("phase", StepPhase.PENDING) != StepPhase.PENDING:
            return True
    return False


TEMPLATE_REF_ADDED = (
    "templateRef can be set only when the flow is created (a flow made from a template is stored with its "
    "steps and without templateRef); create a new JobFlow instead"
)


def _adds_template_ref(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return (
        isinstance(_get(old, "spec"), dict)
        and _get(old, "spec", "templateRef") is None
        and _get(new, "spec", "templateRef") is not None
        and _get(new, "spec", "steps") is None
    )


def _get(obj: Mapping[str, Any], *keys: str) -> Any:
    cur: Any = obj
    for key in keys:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def _ratcheted(old: Mapping[str, Any], new: Mapping[str, Any], spec_kept: bool = False) -> list[str]:
    """Paths whose problems are not reported because the update does not touch what they depend on."""
    same = {
        key: _get(old, *key.split(".")) is not None
        and _get(old, *key.split(".")) == _get(new, *key.split("."))
        for key in (
            "spec",
            "metadata.name",
            "metadata.generateName",
            "metadata.labels",
            "metadata.annotations",
        )
    }
    same["spec"] = same["spec"] or spec_kept
    # approval annotations are checked against the steps, so they ratchet only with an unchanged spec
    same["metadata.annotations"] = same["metadata.annotations"] and same["spec"]
    return [key for key, unchanged in same.items() if unchanged]


def validate_update(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    known: KnownSpec | None = None,
    spec_kept: bool = False,
    spec_bytes: bytes | None = None,
    bound: list[int] | None = None,
) -> list[FieldError]:
    """The new object's own errors (approvals included) plus the transition rules; [] means fine.
    `known`: the new spec is one the webhook accepted before, argument values aside (validate_jobflow).
    `spec_kept`: the caller knows the spec did not change (the webhook compared its bytes), and may leave
    it out of both objects unless approval annotations need it. `spec_bytes`, `bound`: as for
    `validate_jobflow`, of the new object; `bound` is left empty when ratcheting dropped any problem, so
    the webhook does not remember as accepted a spec that only passed because the stored one had the same
    problems (a CREATE of it would then skip them)."""
    ratcheted = _ratcheted(old, new, spec_kept)
    errors = _own_errors(old, new, ratcheted, known=known, spec_bytes=spec_bytes, bound=bound)
    # The update's own rules, listed before the new object's errors and never cut by their limit: they
    # are what the user has to fix first (a started flow's steps, its scheduled time).
    transition = frozen_values(old, new)  # a decided gate's values are its recorded outputs
    if not spec_kept and _adds_template_ref(old, new):
        # A flow expanded already (or written with steps) given a templateRef and no steps: a re-applied
        # manifest that names the template, as server-side apply sends it. Refused rather than expanded
        # again from the template as it is now; with steps too, validate_jobflow said "not both".
        transition.append(forbidden(f"{SPEC}.templateRef", TEMPLATE_REF_ADDED))
    started = has_started(old)
    if not spec_kept and not started and _get(old, "spec", "steps") != _get(new, "spec", "steps"):
        # Before the start: a decision taken under a step's old `approval` would count under the new one.
        transition += approval_edits(old, new)
    if started and not spec_kept:
        # The arguments were substituted into Jobs already created: a changed value would make the
        # flow's steps disagree about it.
        # The step defaults are in every Job created already, as the steps are; the flow's own locks
        # too: it took them (or not) when it started, and holds what it took.
        # The artifact repository is where the outputs stored already are, which later steps fetch.
        for field in (
            "steps",
            "arguments",
            "stepDefaults",
            "templateRef",
            "synchronization",
            "artifactRepository",
        ):
            if _get(old, "spec", field) != _get(new, "spec", field):
                transition.append(
                    forbidden(f"{SPEC}.{field}", f"{field} cannot change after the flow started")
                )
    if started and _scheduled_time(old) != _scheduled_time(new):
        # `{{.JobFlow.ScheduledTime}}` is in the Jobs created already: a later attempt would process
        # another night than the first (an added one too: the Jobs rendered the creation time).
        transition.append(
            forbidden(
                f"metadata.annotations[{ANNOTATION_SCHEDULED_TIME}]",
                "the scheduled time cannot change after the flow started",
            )
        )
    return [*listed(transition), *errors]


def _own_errors(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    ratcheted: list[str],
    *,
    known: KnownSpec | None,
    spec_bytes: bytes | None,
    bound: list[int] | None,
) -> list[FieldError]:
    """The new object's errors that are the update's doing, listed (errors.listed)."""

    def check(every: bool) -> list[FieldError]:
        skip = "spec" in ratcheted
        found = validate_jobflow(
            new, skip_spec=skip, spec_bytes=spec_bytes, known=known, bound=bound, every=every, approvals=True
        )
        if bound is not None and any(_under(e.path, p) for e in found for p in ratcheted):
            bound.clear()  # the new object has problems, forgiven here only: see validate_update's docstring
        return found

    # First with the early stop of a CREATE: a valid new object (most updates) is walked once.
    found = check(every=False)
    errors = [e for e in found if not any(_under(e.path, p) for p in ratcheted)]
    if not errors:
        return []
    # The stored flow's every problem, found once: none (most stored flows) leaves nothing to forgive,
    # and the walk of a valid flow is the same with or without the early stop.
    before: set[FieldError] = set()
    if "spec" not in ratcheted and _get(old, "spec") is not None:
        before = set(validate_jobflow(old, every=True) + validate_approvals(old))
    forgiving = bool(before)
    if not forgiving and (len(errors) == len(found) or len(found) <= MAX_ERRORS):
        return errors  # every problem is the update's doing, or every problem was found
    # Every error of both objects, listed only at the end: the first errors of the new object may all be
    # the old one's (or ratcheted), and a new problem past them must not pass as forgiven.
    found = check(every=True)
    errors = [e for e in found if not any(_under(e.path, p) for p in ratcheted)]
    if errors and forgiving:
        # Error by error: `suspend: true` on a flow whose untouched steps break a later rule is not the
        # update's doing.
        errors = [e for e in errors if e not in before]
    if bound is not None and len(errors) < len(found):
        bound.clear()
    return listed(errors)


def _scheduled_time(flow: Mapping[str, Any]) -> Any:
    annotations = _get(flow, "metadata", "annotations")
    return annotations.get(ANNOTATION_SCHEDULED_TIME) if isinstance(annotations, dict) else None
