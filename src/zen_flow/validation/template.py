"""A step's `template` must be a batch/v1 Job the Job API will accept.

The CRD keeps the template schemaless (it is a whole Job), so nothing but this module stops a template
whose `containers` is a string or whose restartPolicy is Always from reaching the Job API at run time,
where the step would fail long after `kubectl apply` said "created". The original accepted any template
that did not parse as a Job; we check what a Job needs, and the types of the fields we look at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from zen_flow.api.constants import DEFAULT_RESTART_POLICY
from zen_flow.core.own_keys import OWN_KEY_REFUSAL, is_own_key
from zen_flow.validation.errors import (
    Path,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
)
from zen_flow.validation.formats import (
    label_problem,
    label_value_problem,
    parse_quantity,
    qualified_name_problem,
    quantity_problem,
)
from zen_flow.validation.job_spec import check_job_spec_fields, pod_replacement_policy
from zen_flow.validation.memo import CheckMemo
from zen_flow.validation.reader import Reader

RESTART_POLICIES = ("OnFailure", "Never")


class TemplateInfo(NamedTuple):
    """What cross-step rules (the flow's podFailurePolicy) need to know about a Job step's template. A
    tuple: one is made per step of a flow (relocate_info), and a frozen dataclass took twice as long."""

    restart_policy: str  # as the Job will have it (DEFAULT_RESTART_POLICY when unset)
    restart_policy_path: Path
    container_names: frozenset[str]  # containers and initContainers
    has_own_pod_failure_policy: bool
    pod_replacement_policy: str | None  # when it is one the Job API knows
    pod_replacement_policy_path: Path


def check_metadata_maps(r: Reader, meta: Mapping[str, Any], path: Path, *, own_keys: bool) -> None:
    """labels / annotations as the apiserver will check them when the Job (or pod) is created; with
    `own_keys` (what reaches the step's Job and pods), none of zen-flow's own keys (`refuse_own_keys`).
    The flow's own metadata, a template's or a CronJobFlow's run's carry them by design."""
    labels = r.string_map(meta.get("labels"), path + ".labels")
    for key, value in (labels or {}).items():
        if problem := qualified_name_problem(key):
            r.add(invalid(path + ".labels", key, problem))
        if problem := label_value_problem(value):
            r.add(invalid(path + ".labels" + f"[{key}]", value, problem))
    annotations = r.string_map(meta.get("annotations"), path + ".annotations")
    for key in annotations or {}:
        if problem := qualified_name_problem(key):
            r.add(invalid(path + ".annotations", key, problem))
    if own_keys:
        refuse_own_keys(r, labels or (), path + ".labels")
        refuse_own_keys(r, annotations or (), path + ".annotations")


def refuse_own_keys(r: Reader, keys: Iterable[object], path: Path) -> None:
    """Each of zen-flow's own keys (core/own_keys.py) among `keys`, as `path[KEY]: Forbidden`: only
    zen-flow writes them on what it creates (a Job's `workflow.kube-zen.io/flow`, `created-by`, a matrix
    item's `matrix`), and a key it trusts must not be one a flow author chose."""
    for key in keys:
        if isinstance(key, str) and is_own_key(key):
            r.add(forbidden(path + f"[{key}]", OWN_KEY_REFUSAL))


def check_template(r: Reader, template: Mapping[str, Any], path: Path) -> TemplateInfo | None:
    """Check a Job template; returns what the podFailurePolicy rules need, or None if unusable."""
    if not r.shallow(template, path):
        return None
    api_version = r.string(template.get("apiVersion"), path + ".apiVersion")
    if api_version and api_version != "batch/v1":
        r.add(not_supported(path + ".apiVersion", api_version, ["batch/v1"]))
    kind = r.string(template.get("kind"), path + ".kind")
    if kind and kind != "Job":
        r.add(not_supported(path + ".kind", kind, ["Job"]))
    meta = r.mapping(template.get("metadata"), path + ".metadata")
    if meta is not None:
        check_metadata_maps(r, meta, path + ".metadata", own_keys=True)
    spec_path = path + ".spec"
    spec = r.mapping(template.get("spec"), spec_path, require=True)
    if spec is None:
        return None
    check_job_spec_fields(r, spec, spec_path)
    pod_template_path = spec_path + ".template"
    pod_template = r.mapping(spec.get("template"), pod_template_path, require=True)
    if pod_template is None:
        return None
    pod_meta = r.mapping(pod_template.get("metadata"), pod_template_path + ".metadata")
    if pod_meta is not None:
        check_metadata_maps(r, pod_meta, pod_template_path + ".metadata", own_keys=True)
    pod_spec_path = pod_template_path + ".spec"
    pod_spec = r.mapping(pod_template.get("spec"), pod_spec_path, require=True)
    if pod_spec is None:
        return None
    names = _check_pod_spec(r, pod_spec, pod_spec_path)
    restart_path = pod_spec_path + ".restartPolicy"
    restart = r.string(pod_spec.get("restartPolicy"), restart_path)
    if restart and restart not in RESTART_POLICIES:
        r.add(not_supported(restart_path, restart, RESTART_POLICIES, "a Job's pods must not restart Always"))
    return TemplateInfo(
        restart_policy=restart or DEFAULT_RESTART_POLICY,
        restart_policy_path=restart_path,
        container_names=frozenset(names),
        has_own_pod_failure_policy=spec.get("podFailurePolicy") is not None,
        pod_replacement_policy=pod_replacement_policy(spec),
        pod_replacement_policy_path=spec_path + ".podReplacementPolicy",
    )


def relocate_info(info: TemplateInfo | None, path: Path) -> TemplateInfo | None:
    """`info` of a template checked at ROOT, for the template at `path` (for `CheckMemo`)."""
    if info is None:
        return None
    return TemplateInfo(
        info.restart_policy,
        path + info.restart_policy_path,
        info.container_names,
        info.has_own_pod_failure_policy,
        info.pod_replacement_policy,
        path + info.pod_replacement_policy_path,
    )


def step_pod_spec(step: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec of a step's Job template (`template.spec.template.spec`), or None when it is not
    shaped like one (check_template reports that): what the cross-field rules read (containers, mounts,
    nodeName), one walk for all of them."""
    try:
        pod = step["template"]["spec"]["template"]["spec"]
    except (KeyError, TypeError):
        return None
    return pod if isinstance(pod, dict) else None


def template_memo() -> CheckMemo[TemplateInfo | None]:
    """`check_template` once per distinct template of a flow: a step whose other fields differ from
    every earlier step's (so the step memo missed) still mostly shares its Job template."""
    return CheckMemo(check_template, relocate_info)


def _check_pod_spec(r: Reader, pod_spec: Mapping[str, Any], path: Path) -> list[str]:
    """Containers and init containers; returns every container name seen."""
    names: list[str] = []
    seen: set[str] = set()
    containers_path = path + ".containers"
    containers = r.sequence(pod_spec.get("containers"), containers_path, require=True)
    if containers is not None and not containers:
        r.add(required(containers_path, "a Job needs at least one container"))
    for list_field, items in (("containers", containers), ("initContainers", pod_spec.get("initContainers"))):
        for item_path, container in r.mappings(items, path + "." + list_field):
            name = _check_container(r, container, item_path)
            if name is None:
                continue
            if name in seen:
                r.add(duplicate(item_path + ".name", name))
            seen.add(name)
            names.append(name)
    for item_path, volume in r.mappings(pod_spec.get("volumes"), path + ".volumes"):
        r.string(volume.get("name"), item_path + ".name", require=True)
    return names


def _check_container(r: Reader, container: Mapping[str, Any], path: Path) -> str | None:
    name = r.string(container.get("name"), path + ".name", require=True)
    if name is not None and (problem := label_problem(name)):
        r.add(invalid(path + ".name", name, problem))
    r.string(container.get("image"), path + ".image", require=True)
    for field in ("command", "args"):
        args = r.sequence(container.get(field), path + "." + field)
        if args and not all(isinstance(arg, str) for arg in args):  # look closer only when wrong
            for i, arg in enumerate(args):
                r.string(arg, path + "." + field + f"[{i}]", item=True)
    for item_path, env in r.mappings(container.get("env"), path + ".env"):
        r.string(env.get("name"), item_path + ".name", require=True)
        r.string(env.get("value"), item_path + ".value")
    r.sequence(container.get("ports"), path + ".ports")
    r.sequence(container.get("volumeMounts"), path + ".volumeMounts")
    resources = r.mapping(container.get("resources"), path + ".resources")
    if resources is not None:
        _check_resources(r, resources, path + ".resources")
    return name


def _check_resources(r: Reader, resources: Mapping[str, Any], path: Path) -> None:
    """Requests and limits must be positive quantities (as in the original) and limit >= request."""
    parsed: dict[str, dict[str, tuple[Any, Any]]] = {}
    for kind in ("requests", "limits"):
        amounts = r.mapping(resources.get(kind), path + "." + kind)
        parsed[kind] = {}
        for resource, raw in (amounts or {}).items():
            item_path = path + "." + kind + f"[{resource!s}]"
            amount = parse_quantity(raw)
            if amount is None:
                r.add(invalid(item_path, raw, quantity_problem(raw)))
            elif amount <= 0:
                r.add(invalid(item_path, raw, "must be greater than 0"))
            else:
                parsed[kind][str(resource)] = (amount, raw)
    for resource, (request, raw_request) in parsed["requests"].items():
        limit = parsed["limits"].get(resource)
        if limit is not None and limit[0] < request:
            r.add(
                invalid(
                    path + ".requests" + f"[{resource}]",
                    raw_request,
                    f"must be less than or equal to {resource} limit of {limit[1]}",
                )
            )
