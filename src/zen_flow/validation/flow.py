"""`validate_jobflow`: every rule for a JobFlow's definition, all errors at once.

Works on the raw object (an AdmissionReview's `object`, a YAML document) and never raises: anything
malformed is a FieldError with the path where it was found. The webhook, `zen-flow validate` and the
controller use this same function. (Approval annotations are checked separately, by `approvals.py`:
they are requests made at admission time, and a typo in one must never fail a running flow.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from zen_flow.api.constants import FLOW_MATRIX, KIND
from zen_flow.core.matrix import expand_matrix, has_matrix
from zen_flow.core.matrix_items import stand_in
from zen_flow.validation.accepted import KnownSpec
from zen_flow.validation.approvals import validate_approvals
from zen_flow.validation.arguments import check_arguments
from zen_flow.validation.errors import (
    MAX_ERRORS,
    FieldError,
    Path,
    forbidden,
    invalid,
    listed,
    required,
)
from zen_flow.validation.expansion import BOTH, NEITHER, check_template_ref, needs_expansion
from zen_flow.validation.formats import subdomain_problem
from zen_flow.validation.index import build_index
from zen_flow.validation.io import check_inputs
from zen_flow.validation.limits import MAX_FLOW_NAME, MAX_GENERATE_NAME
from zen_flow.validation.matrix import matrix_items, said_once
from zen_flow.validation.memo import CheckMemo
from zen_flow.validation.memoize import check_matrix_memoize_key, check_memoize_key_inputs
from zen_flow.validation.outputs import check_output_references, check_outputs, check_transfer_names
from zen_flow.validation.placeholders import PlaceholderMemo, check_placeholders
from zen_flow.validation.policy import (
    PolicyNeeds,
    check_execution_policy,
    check_pod_failure_policy,
    check_policy_fits,
)
from zen_flow.validation.reader import Reader
from zen_flow.validation.repository import check_repository, has_repository
from zen_flow.validation.resources import check_resource_templates
from zen_flow.validation.size import check_size, spec_json, status_bound
from zen_flow.validation.step_defaults import check_step_defaults
from zen_flow.validation.steps import (
    check_cycle,
    check_step_count,
    check_step_fields,
    check_step_names,
    check_step_references,
    check_stored_step_keys,
    is_manual,
)
from zen_flow.validation.synchronization import OWN, check_flow_locks, check_synchronization
from zen_flow.validation.template import (
    TemplateInfo,
    check_metadata_maps,
    relocate_info,
    step_pod_spec,
    template_memo,
)

METADATA = "metadata"
SPEC = "spec"
_NAME_LABEL = (
    "the flow name is the value of the workflow.kube-zen.io/flow label on the flow's Jobs and pods, "
    f"and a label value has at most {MAX_FLOW_NAME} characters"
)


def validate_jobflow(
    obj: Mapping[str, Any],
    *,
    skip_spec: bool = False,
    spec_bytes: bytes | None = None,
    known: KnownSpec | None = None,
    bound: list[int] | None = None,
    every: bool = False,
    approvals: bool = False,
    stopped: list[bool] | None = None,
) -> list[FieldError]:
    """The problems with `obj` as a JobFlow, the first `MAX_ERRORS` of them and then how many more
    (errors.listed); `every`: all of them (ratcheting an update compares them one by one). An empty list
    means valid. Without `every` the walk stops past `MAX_ERRORS` errors (Reader.stop), the size still
    checked. `approvals`: with the approval annotations' errors (validate_approvals), listed together.
    `stopped`: the caller lists them with its own (a CronJobFlow's, a template's): they are returned
    unlisted, the walk still stops, and whether it did is appended (for errors.listed's `stopped`).

    `skip_spec`: the spec is known to pass, so it is not read at all (an update that keeps the spec as
    stored, whose problems are not reported: ratcheting, update.py): relabelling or approving a 500-step
    flow costs no step checks. `known`: the spec is one the webhook accepted before but for its argument
    values (accepted.py), so only `spec.arguments` is read (the spec needs no other member) and the size
    is checked from `known`. `spec_bytes`: the spec's JSON as the apiserver sent it, for the size check
    (else it is serialised here). `bound`: the spec's status bound (size.status_bound) is appended to it
    when the size check computed it for `obj`'s own spec, so the webhook, which remembers it with an
    accepted spec, does not walk a 500-step spec for it a second time."""
    r = Reader([], stop_after=None if every else MAX_ERRORS)
    _validate(r, obj, skip_spec, spec_bytes, known, bound)
    errors = r.errors + validate_approvals(obj) if approvals else r.errors
    if stopped is not None:
        stopped.append(r.stopped)
    return errors if every or stopped is not None else listed(errors, stopped=r.stopped)


def _validate(
    r: Reader,
    obj: Mapping[str, Any],
    skip_spec: bool,
    spec_bytes: bytes | None,
    known: KnownSpec | None,
    bound: list[int] | None,
) -> None:
    root = r.resource(obj, KIND)
    if root is None:
        return
    meta = r.mapping(root.get("metadata"), METADATA, require=True)
    flow_name = check_flow_metadata(r, meta) if meta is not None else ""
    if skip_spec:
        return
    spec = r.mapping(root.get("spec"), SPEC, require=True)
    if spec is None:
        return
    if known is not None:
        _check_arguments(r, spec)
        check_size(r, known.size, known.status_bound, spec)
        return
    if spec_bytes is None:
        # Not JSON at all (a YAML alias cycle): no size to check; the apiserver would never see it.
        with contextlib.suppress(ValueError, TypeError, RecursionError):
            spec_bytes = spec_json(spec)
    status = check_spec(r, spec, flow_name, spec_bytes)
    if bound is not None and status is not None:
        bound.append(status)


def check_flow_metadata(r: Reader, meta: Mapping[str, Any]) -> str:
    """Name rules; returns the flow name ('' when unknown)."""
    name_path = METADATA + ".name"
    name = r.string(meta.get("name"), name_path)
    generate = r.string(meta.get("generateName"), METADATA + ".generateName")
    if not name and not generate:
        r.add(required(name_path, "name or generateName is required"))
    if name:
        if len(name) > MAX_FLOW_NAME:
            r.add(invalid(name_path, name, f"must be no more than {MAX_FLOW_NAME} characters: {_NAME_LABEL}"))
        elif problem := subdomain_problem(name):
            r.add(invalid(name_path, name, problem))
    if generate and len(generate) > MAX_GENERATE_NAME:
        r.add(
            invalid(
                METADATA + ".generateName",
                generate,
                f"must be no more than {MAX_GENERATE_NAME} characters (the apiserver appends 5 more): "
                + _NAME_LABEL,
            )
        )
    r.string(meta.get("namespace"), METADATA + ".namespace")
    check_metadata_maps(r, meta, METADATA, own_keys=False)
    return name or ""


def check_spec(r: Reader, spec: Mapping[str, Any], flow_name: str, encoded: bytes | None) -> int | None:
    """`encoded`: the spec as compact JSON (its size must fit in etcd), None when it is not JSON. Returns
    the status bound of `spec` when the size check computed it (None: not computed, or computed for a
    spec with its Flow steps' matrices set aside, not `spec`)."""
    needs: PolicyNeeds | None = None
    policy = r.mapping(spec.get("executionPolicy"), SPEC + ".executionPolicy")
    if policy is not None:
        # A flow naming a template, not expanded yet: its policy goes over the template's, checked merged.
        partial = needs_expansion(spec)
        needs = check_execution_policy(r, policy, SPEC + ".executionPolicy", partial=partial)
    templates = r.mapping(spec.get("resourceTemplates"), SPEC + ".resourceTemplates")
    if templates is not None:  # the only rule that reads the flow's name: see accepted.NAME_READERS
        check_resource_templates(r, templates, SPEC + ".resourceTemplates", flow_name)
    r.boolean(spec.get("suspend"), SPEC + ".suspend")
    if spec.get("stepDefaults") is not None:
        check_step_defaults(r, spec["stepDefaults"])
    if spec.get("artifactRepository") is not None:  # also before a templateRef is expanded
        check_repository(r, spec["artifactRepository"])
    # Every output artifact is stored, those without `s3` of their own in the flow's repository.
    stores_all = has_repository(spec)
    if spec.get("synchronization") is not None:  # its own rules, also before a templateRef is expanded
        check_synchronization(r, spec["synchronization"], OWN, kind="JobFlow")
    arguments = _check_arguments(r, spec)
    steps_path = SPEC + ".steps"
    if spec.get("templateRef") is not None:
        check_template_ref(r, spec)
        if spec.get("steps") is None:
            return None  # not expanded yet: its steps are the template's (expansion.py), checked with them
        # Both: the steps are still checked below. Expansion removes templateRef, so a stored flow never
        # holds both: this is a create that wrote both, or an edit giving an expanded flow a templateRef.
        r.add(forbidden(SPEC + ".templateRef", BOTH))
    elif spec.get("steps") is None:
        r.add(required(steps_path, NEITHER))
        return None
    raw_steps = r.sequence(spec.get("steps"), steps_path, require=True)
    check_step_count(r, raw_steps, steps_path)
    check_flow_locks(r, spec, raw_steps or ())
    check_stored_step_keys(r, raw_steps or (), steps_path)
    fanned = {
        i
        for i, raw in enumerate(raw_steps or ())
        if isinstance(raw, dict) and raw.get("type") == "Flow" and raw.get("matrix") is not None
    }
    for i in sorted(fanned):
        r.add(forbidden(f"{steps_path}[{i}].matrix", FLOW_MATRIX))
    if fanned:  # not empty: raw_steps is a list
        # Refused: the rest is checked with the step's stand-in, so the Flow step is checked as one, not as
        # items (whose labels a Flow step refuses as its metadata), steps after it name it, not its items,
        # and its matrix parameters stay its (empty) inputs, as its arguments' placeholders may name them.
        raw_steps = [stand_in(s) if i in fanned else s for i, s in enumerate(raw_steps or ())]
        spec = {**spec, "steps": raw_steps}
    matrix = expand_matrix(spec) if raw_steps and has_matrix(spec) else None
    if matrix is None:
        items = r.mappings(raw_steps, steps_path)
        groups: dict[str, tuple[str, ...]] | None = None
    else:
        # The effective flow's steps are checked, each item as an ordinary step, its errors at the path
        # of the matrix step it comes from (the field a user edits).
        for path, raw in r.mappings(raw_steps, steps_path):  # reports the steps that are no objects
            if raw.get("memoize") is not None:
                check_matrix_memoize_key(r, raw, path)
        items = matrix_items(r, matrix)
        groups = dict(matrix.groups)
        # An item's errors are said once per matrix step at the end (said_once): a walk stopped at a
        # count of them could list fewer than it found, so it goes on.
        r.stop_after = None
    check_step_names(r, items)
    index = build_index(items, groups, stores_all=stores_all)
    alike = step_memo(stores_all=stores_all)
    placeholders = PlaceholderMemo()
    # Pods whose names leave room for the artifact transfer, by identity: the webhook decodes a template
    # that steps repeat as one object (decode_spec), and the spec keeps every one alive meanwhile.
    clean_pods: set[int] = set()
    for path, step in items:
        if r.stop():
            break
        info = alike.run(r, step, path)
        check_step_references(r, index, step, path, arguments)
        raw_name = step.get("name")
        name = raw_name if isinstance(raw_name, str) else ""
        raw_inputs = step.get("inputs")
        inputs = None if raw_inputs is None else r.mapping(raw_inputs, path + ".inputs")
        if inputs is not None:
            check_inputs(r, index, name, inputs, path + ".inputs", arguments)
        check_placeholders(r, placeholders, step, name, inputs, path)
        if step.get("memoize") is not None:
            check_memoize_key_inputs(r, step, inputs, path)
        outputs = found if isinstance(found := step.get("outputs"), dict) else None
        if outputs is not None:  # not an object: the step memo reported it
            check_output_references(r, name, outputs, path + ".outputs")
        pod = step_pod_spec(step)
        if pod is not None and id(pod) not in clean_pods and _moves_artifacts(inputs, outputs, stores_all):
            found = len(r.errors)
            check_transfer_names(r, pod, path + ".template.spec.template.spec")
            if len(r.errors) == found:
                clean_pods.add(id(pod))
        if info is not None:
            _check_step_policy(r, step, path, name, info, needs)
    if not r.stopped:  # stopped: its errors would not be listed
        check_cycle(r, index)
    status = None
    if encoded is not None:
        status = status_bound(spec)
        check_size(r, len(encoded), status, spec)
    if matrix is not None:
        # Items share their matrix step's path: one error of its template would be said per item.
        r.errors[:] = said_once(r.errors, matrix)
    return None if fanned else status


def _check_arguments(r: Reader, spec: Mapping[str, Any]) -> frozenset[str]:
    """The arguments' own rules (the only ones that read their values); the names declared."""
    raw = r.mapping(spec.get("arguments"), SPEC + ".arguments")
    return check_arguments(r, raw, SPEC + ".arguments") if raw is not None else frozenset()


# What a step's own rules never read: the memo keys a step by the rest (see memo.py), and the webhook
# decodes these members of each step in place, the rest shared between steps (webhook/envelope.py).
STEP_WIRING = frozenset({"name", "dependencies", "when", "inputs"})


def step_memo(*, stores_all: bool = False) -> CheckMemo[TemplateInfo | None]:
    """A flow's steps checked once per distinct step, wiring aside; a step that differs still shares
    the check of its Job template with the steps that have the same one. `stores_all`: the flow has an
    artifact repository, so every output artifact is stored (one memo is one flow's)."""
    templates = template_memo()

    def check(r: Reader, step: Mapping[str, Any], path: Path) -> TemplateInfo | None:
        info = check_step_fields(r, step, path, templates)
        outputs = r.mapping(step.get("outputs"), path + ".outputs")
        if outputs is not None:
            check_outputs(
                r,
                outputs,
                path + ".outputs",
                _container_names(step),
                _mount_paths(step),
                manual=is_manual(step),
                stores_all=stores_all,
            )
        return info

    return CheckMemo(check, relocate_info, STEP_WIRING)


def _check_step_policy(
    r: Reader,
    step: Mapping[str, Any],
    path: Path,
    name: str,
    info: TemplateInfo,
    flow_needs: PolicyNeeds | None,
) -> None:
    """The podFailurePolicy that will end up in this step's Job must suit its pod template."""
    if info.has_own_pod_failure_policy:
        job_spec = step["template"]["spec"]  # check_template returned info, so both are mappings
        pfp_path = path + ".template" + ".spec" + ".podFailurePolicy"
        pfp = r.mapping(job_spec.get("podFailurePolicy"), pfp_path)
        if pfp is not None:
            own = check_pod_failure_policy(
                r,
                pfp,
                pfp_path,
                allow_fail_index=job_spec.get("backoffLimitPerIndex") is not None,
                as_written=True,
            )
            check_policy_fits(r, own, name, info)
    elif flow_needs is not None:
        check_policy_fits(r, flow_needs, name, info)


def _containers(step: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    pod = step_pod_spec(step)
    containers = pod.get("containers") if pod is not None else None
    if not isinstance(containers, list):
        return None
    return [c for c in containers if isinstance(c, dict)]


def _container_names(step: Mapping[str, Any]) -> list[str] | None:
    containers = _containers(step)
    if containers is None:
        return None
    return [c["name"] for c in containers if isinstance(c.get("name"), str)]


def _mount_paths(step: Mapping[str, Any]) -> list[str]:
    paths: list[str] = []
    for container in _containers(step) or ():
        mounts = container.get("volumeMounts")
        for mount in mounts if isinstance(mounts, list) else ():
            if isinstance(mount, dict) and isinstance(mount.get("mountPath"), str):
                paths.append(mount["mountPath"])
    return paths


def _moves_artifacts(
    inputs: Mapping[str, Any] | None, outputs: Mapping[str, Any] | None, stores_all: bool
) -> bool:
    incoming = (inputs or {}).get("artifacts")
    outgoing = (outputs or {}).get("artifacts")
    stored = (
        [a for a in outgoing if isinstance(a, dict) and (stores_all or a.get("s3") is not None)]
        if isinstance(outgoing, list)
        else []
    )
    return bool(incoming) or bool(stored)
