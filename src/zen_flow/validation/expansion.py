"""A JobFlow made from a JobFlowTemplate (`spec.templateRef`), expanded into an ordinary flow: pure.

Such a flow names its template and has no steps of its own; it may set `arguments` (values for the
template's declared arguments), `executionPolicy` (its fields replace the template's, field by field),
`stepDefaults` (over the template's, as a step's own over the defaults: core/step_defaults.py),
`synchronization` (the flow's own locks: its own replace the template's whole), `artifactRepository`
(likewise) and `suspend`. `expand` returns the spec the flow is stored with: the template's steps,
resourceTemplates, synchronization and artifactRepository (the last two unless the flow has its own),
the template's arguments with the flow's values, the two policies merged, the two stepDefaults merged,
and no `templateRef`: a stored flow holds steps or templateRef, never both
(the CRD, every validator and the webhook say so), so a flow expanded already cannot be given a
templateRef again by an edit or a re-applied manifest; where it came from is the
`workflow.kube-zen.io/template` label, informational (with `workflow.kube-zen.io/cluster-template: "true"`
beside it when the template is a ClusterJobFlowTemplate: `templateRef.clusterScope: true`, expanded by
this same function).
The mutating webhook expands a flow when it is created and the controller expands one stored without the
webhook (controller/templates.py), both with this function on the flow as the apiserver holds it, so
both store the same spec, and a flow is one snapshot of its template: editing or deleting the template
later never changes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zen_flow.api.constants import (
    CLUSTER_TEMPLATE_KIND,
    CLUSTER_TEMPLATE_PLURAL,
    CRON_KIND,
    DEFAULT_BACKOFF_LIMIT,
    DEFAULT_CONCURRENCY_POLICY,
    DEFAULT_TTL_SECONDS_AFTER_FINISHED,
    GROUP,
    KIND,
    LABEL_CLUSTER_TEMPLATE,
    LABEL_TEMPLATE,
    RUN_TTL_SECONDS,
    TEMPLATE_KIND,
    TEMPLATE_PLURAL,
)
from zen_flow.core.step_defaults import layer
from zen_flow.validation.errors import (
    FieldError,
    forbidden,
    invalid,
    not_found,
    not_supported,
    quote,
    required,
)
from zen_flow.validation.formats import subdomain_problem
from zen_flow.validation.limits import MAX_FLOW_NAME
from zen_flow.validation.reader import Reader
from zen_flow.validation.size import (
    MAX_OBJECT_BYTES,
    MAX_SPEC_BYTES,
    failed_nodes_bound,
    object_bound,
    spec_json,
    status_bound,
)

TEMPLATE_REF = "spec.templateRef"
ARGUMENTS = "spec.arguments.parameters"
# The members a template gives the flow.
TEMPLATE_MEMBERS = ("steps", "arguments", "executionPolicy", "resourceTemplates", "stepDefaults")
# The executionPolicy fields the CRD defaults: the apiserver writes them into every flow before any webhook
# sees it, so a flow's value equal to the default cannot be told from one it never set, and leaves the
# template's value in place (else every template's backoffLimit would be overridden by 6).
SCHEMA_DEFAULTS: Mapping[str, Any] = {
    "concurrencyPolicy": str(DEFAULT_CONCURRENCY_POLICY),
    "ttlSecondsAfterFinished": DEFAULT_TTL_SECONDS_AFTER_FINISHED,
    "backoffLimit": DEFAULT_BACKOFF_LIMIT,
}
TTL = "ttlSecondsAfterFinished"
NEITHER = "a JobFlow needs spec.steps, or spec.templateRef naming a JobFlowTemplate to take them from"
BOTH = (
    "a flow with spec.templateRef takes its steps from the JobFlowTemplate: set steps or templateRef, "
    "not both (a flow made from a template is stored with its steps and without templateRef)"
)


@dataclass(frozen=True)
class Expansion:
    """The flow's spec as it is stored (None when `errors`), or why it cannot be made."""

    spec: dict[str, Any] | None
    errors: tuple[FieldError, ...] = ()


@dataclass(frozen=True)
class TemplateName:
    """The template a flow names: the JobFlowTemplate `name` of the flow's namespace, or, `cluster`
    (`templateRef.clusterScope: true`), the ClusterJobFlowTemplate `name`."""

    name: str
    cluster: bool = False

    @property
    def kind(self) -> str:
        return CLUSTER_TEMPLATE_KIND if self.cluster else TEMPLATE_KIND

    @property
    def plural(self) -> str:
        return CLUSTER_TEMPLATE_PLURAL if self.cluster else TEMPLATE_PLURAL

    @property
    def subject(self) -> str:
        """`JobFlowTemplate "build"`, as errors name it."""
        return f"{self.kind} {quote(self.name)}"

    def where(self, namespace: str) -> str:
        """The template and where it is looked for: `JobFlowTemplate "build" in namespace "team-a"`."""
        return self.subject if self.cluster else f"{self.subject} in namespace {quote(namespace)}"

    @property
    def labels(self) -> dict[str, str]:
        """The labels of a flow expanded from it (informational: nothing reads them back)."""
        return {LABEL_TEMPLATE: self.name, **({LABEL_CLUSTER_TEMPLATE: "true"} if self.cluster else {})}

    def stale_labels(self, labels: Any) -> tuple[str, ...]:
        """The labels of `labels` (the flow's own, as written) that the expansion removes: a
        `cluster-template` label a user set on a flow expanded from the namespace's template would say
        the flow came from a cluster template."""
        if self.cluster or not isinstance(labels, Mapping):
            return ()
        return (LABEL_CLUSTER_TEMPLATE,) if LABEL_CLUSTER_TEMPLATE in labels else ()


def template_ref(spec: Any) -> TemplateName | None:
    """The template a raw flow spec names, None when it names none (or its name is not a string); a
    `clusterScope` other than true names the namespace's template (the validator refuses a non-boolean)."""
    ref = spec.get("templateRef") if isinstance(spec, Mapping) else None
    if not isinstance(ref, Mapping):
        return None
    name = ref.get("name")
    return (
        TemplateName(name, cluster=ref.get("clusterScope") is True)
        if isinstance(name, str) and name
        else None
    )


def needs_expansion(spec: Any) -> bool:
    """A raw flow spec that names a template and has no steps yet."""
    return isinstance(spec, Mapping) and spec.get("templateRef") is not None and spec.get("steps") is None


def template_name_problem(name: str) -> FieldError | None:
    """Why `name` cannot be a template's (a label value on its flows: at most 63 characters; an object
    name), or None. Checked before a template is read by it: the name goes into the read's URL path, where
    `..` would read the API group's listing."""
    if len(name) > MAX_FLOW_NAME:
        return invalid(TEMPLATE_REF + ".name", name, f"must be no more than {MAX_FLOW_NAME} characters")
    if problem := subdomain_problem(name):
        return invalid(TEMPLATE_REF + ".name", name, problem)
    return None


def check_template_ref(r: Reader, spec: Mapping[str, Any]) -> None:
    """The rules of a flow's `templateRef` that need no template: a name that can be one (a template's
    name is a label value on its flows: at most 63 characters), and, while the flow is not expanded,
    no member the template gives (`resourceTemplates`: the template's own are used)."""
    ref = r.mapping(spec.get("templateRef"), TEMPLATE_REF)
    if ref is None:
        return
    name = r.string(ref.get("name"), TEMPLATE_REF + ".name", require=True)
    r.boolean(ref.get("clusterScope"), TEMPLATE_REF + ".clusterScope")
    if name and (problem := template_name_problem(name)) is not None:
        r.add(problem)
    if spec.get("steps") is None and spec.get("resourceTemplates") is not None:
        r.add(
            forbidden(
                "spec.resourceTemplates",
                "a flow with spec.templateRef uses its JobFlowTemplate's resourceTemplates; set them there",
            )
        )


def expand(
    spec: Mapping[str, Any], template: Mapping[str, Any], namespace: str, *, run: bool = False
) -> Expansion:
    """The flow spec `spec` (with `templateRef`, no steps) expanded from `template`, the raw
    JobFlowTemplate, or ClusterJobFlowTemplate (`clusterScope`), it names: both expand alike;
    `run`: the flow is a CronJobFlow's run (`is_cron_run` of its metadata: see `merge_policy`)."""
    errors: list[FieldError] = []
    r = Reader(errors)
    ref = template_ref(spec) or TemplateName("")
    subject = ref.subject
    check_template_ref(r, spec)
    source = template.get("spec") if isinstance(template, Mapping) else None
    if not isinstance(source, Mapping) or not isinstance(source.get("steps"), list):
        r.add(invalid(TEMPLATE_REF + ".name", ref.name, f"{ref.where(namespace)} has no steps"))
        return Expansion(None, tuple(errors))
    arguments = _arguments(r, spec, source, subject)
    expanded: dict[str, Any] = {
        k: v for k, v in spec.items() if k not in TEMPLATE_MEMBERS and k != "templateRef"
    }
    expanded["steps"] = source["steps"]
    if arguments:
        expanded["arguments"] = {**_mapping(source.get("arguments")), "parameters": arguments}
    policy = merge_policy(
        _mapping(source.get("executionPolicy")), _mapping(spec.get("executionPolicy")), run=run
    )
    if policy or spec.get("executionPolicy") is not None:
        expanded["executionPolicy"] = policy
    if source.get("resourceTemplates") is not None:
        expanded["resourceTemplates"] = source["resourceTemplates"]
    # The flow's keys and fields win, as a step's own over the defaults (core/step_defaults.py).
    defaults = layer(source.get("stepDefaults"), spec.get("stepDefaults"))
    if defaults is not None:
        expanded["stepDefaults"] = defaults
    for member in ("synchronization", "artifactRepository"):
        if spec.get(member) is None and source.get(member) is not None:
            # The template's own locks and repository are the flow's (a child flow's too), unless the flow
            # names its own, which replaces the template's whole.
            expanded[member] = source[member]
    if errors:
        return Expansion(None, tuple(errors))
    _check_size(r, expanded, subject)
    return Expansion(None if errors else expanded, tuple(errors))


def missing_template(ref: TemplateName, namespace: str) -> FieldError:
    """The error of a flow whose template does not exist (webhook and controller say it alike)."""
    place = "" if ref.cluster else f" in namespace {quote(namespace)}"
    return not_found(TEMPLATE_REF + ".name", ref.name, f"{ref.subject} not found{place}")


def unreadable_template(ref: TemplateName, namespace: str, why: str) -> FieldError:
    """The error of a flow whose template the apiserver does not let zen-flow read (403): RBAC, e.g. a
    controller bound by RoleBindings only, which grant nothing on a cluster-scoped ClusterJobFlowTemplate."""
    return forbidden(
        TEMPLATE_REF + ".name",
        f"zen-flow may not read {ref.where(namespace)} (grant its controller `get` on "
        f"{ref.plural}: docs/RBAC.md): {why}",
    )


def merge_policy(
    template: Mapping[str, Any], flow: Mapping[str, Any], *, run: bool = False
) -> dict[str, Any]:
    """The template's executionPolicy with the flow's fields over it, field by field (a field's whole
    value: a flow's podFailurePolicy replaces the template's, rules and all). A flow's field holding its
    schema default leaves the template's (`SCHEMA_DEFAULTS`).

    A CronJobFlow's `run` keeps the TTL its CronJobFlow sets (the run's own, any value but the default);
    else the template's, unless that is the default too: every stored template holds the CRD's 86400,
    which cannot be told from a TTL never set, and a day would delete the one run a @weekly schedule
    keeps. Then it gets RUN_TTL_SECONDS, as the CronJobFlow's runs without a template: its history limits
    decide (planner/cron_runs.py leaves the TTL of a run naming a template to this)."""
    merged = dict(template)
    for key, value in flow.items():
        if key in template and key in SCHEMA_DEFAULTS and value == SCHEMA_DEFAULTS[key]:
            continue
        merged[key] = value
    if run and merged.get(TTL) in (None, SCHEMA_DEFAULTS[TTL]):
        merged[TTL] = RUN_TTL_SECONDS
    return merged


def is_cron_run(metadata: Any) -> bool:
    """Raw flow metadata whose controller owner reference is a CronJobFlow: one of its runs, as the cron
    controller counts them (by the owner reference, not the label a user may copy)."""
    owner = zen_flow_owner(metadata)
    return owner is not None and owner.get("kind") == CRON_KIND


def zen_flow_owner(metadata: Any) -> Mapping[str, Any] | None:
    """The controller owner reference of raw flow metadata when it is one of zen-flow's kinds (a
    CronJobFlow: the flow is one of its runs; a JobFlow: a Flow step's child), else None."""
    refs = metadata.get("ownerReferences") if isinstance(metadata, Mapping) else None
    for ref in refs if isinstance(refs, list) else ():
        if (
            isinstance(ref, Mapping)
            and ref.get("controller") is True
            and ref.get("kind") in (KIND, CRON_KIND)
            and isinstance(ref.get("apiVersion"), str)
            and ref["apiVersion"].split("/")[0] == GROUP
        ):
            return ref
    return None


def _arguments(
    r: Reader, spec: Mapping[str, Any], source: Mapping[str, Any], subject: str
) -> list[dict[str, Any]]:
    """The template's argument declarations with the flow's values; an undeclared name, a value outside
    the declaration's enum and a declaration the flow tries to change are errors."""
    declared = {
        p["name"]: p
        for p in _items(_mapping(source.get("arguments")).get("parameters"))
        if isinstance(p.get("name"), str)
    }
    values: dict[str, Any] = {}
    given = r.sequence(_mapping(spec.get("arguments")).get("parameters"), ARGUMENTS) or ()
    for i, param in enumerate(given):
        path = f"{ARGUMENTS}[{i}]"
        if not isinstance(param, Mapping):
            continue  # the validator reports it
        arg = param.get("name")
        if not isinstance(arg, str) or not arg:
            continue
        if arg not in declared:
            names = ", ".join(sorted(declared)) or "none"
            r.add(
                not_found(path + ".name", arg, f"{subject} declares no such argument (it declares: {names})")
            )
            continue
        for field in ("enum", "description"):
            if param.get(field):  # the model of a cached flow gives an empty enum
                r.add(
                    forbidden(
                        f"{path}.{field}", f"the argument is declared by {subject}; a flow sets its value"
                    )
                )
        value = param.get("value")
        choices = declared[arg].get("enum")
        if isinstance(choices, list) and choices and value not in choices:
            r.add(not_supported(path + ".value", value, [str(c) for c in choices], f"the enum of {subject}"))
        values[arg] = value
    return [{**p, "value": values[n]} if n in values else dict(p) for n, p in declared.items()]


def _check_size(r: Reader, expanded: Mapping[str, Any], subject: str) -> None:
    """The flow must fit in etcd for its whole life, as the validator requires of any flow: the flow's
    argument values can grow a template that fits past what does."""
    with contextlib.suppress(ValueError, TypeError, RecursionError):
        size = len(spec_json(expanded))
        status = status_bound(expanded)
        bound = object_bound(size, status)
        if size > MAX_SPEC_BYTES or bound > MAX_OBJECT_BYTES:
            nodes = failed_nodes_bound(expanded)
            mostly = (
                f" ({nodes:,} bytes of its status for status.steps[].failedNodes: lower the "
                "retryPolicy.limit of its steps with retryPolicy.affinity.nodeAntiAffinity)"
                if 2 * nodes > status
                else ""
            )
            r.add(
                forbidden(
                    TEMPLATE_REF,
                    f"the flow expanded from {subject} is too large: its spec would be {size:,} bytes "
                    f"(at most {MAX_SPEC_BYTES:,}) and the stored flow could reach {bound:,} bytes with its "
                    f"status (at most {MAX_OBJECT_BYTES:,}){mostly}; use shorter argument values or a "
                    "smaller template",
                )
            )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns `old` into `new` (neither holding a null): what the controller
    sends to store an expansion, so that the flow it stores is `expand`'s spec, exactly as the webhook
    stores it (its `templateRef` removed with a null)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            if inner := merge_patch(before, value):
                patch[key] = inner
        elif value != before:
            patch[key] = value
    return patch


def flow_shape(spec: Any) -> FieldError | None:
    """What every flow must be: steps or templateRef, exactly one (the CRD asks it too)."""
    if not isinstance(spec, Mapping):
        return None
    has_steps, has_ref = spec.get("steps") is not None, spec.get("templateRef") is not None
    if has_steps and has_ref:
        return forbidden("spec.templateRef", BOTH)
    if not has_steps and not has_ref:
        return required("spec.steps", NEITHER)
    return None
