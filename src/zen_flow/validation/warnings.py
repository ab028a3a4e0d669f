"""What admission accepts but the user should hear about: forms the original took that zen-flow keeps
for compatibility but that do not do what the manifest suggests (docs/API.md, "Differences from the
original"), a container that asks to run as root under a `stepDefaults` pod securityContext that
forbids it (docs/API.md, "Defaults for every step"), and a finally grace in a flow with no finally step
(docs/API.md, "Finally steps"). Sent as admission warnings, which kubectl prints (`Warning: ...`) and
`zen-flow validate` prints too; never a refusal. Said of a JobFlow, and of what holds a flow's spec: a
JobFlowTemplate's (and a ClusterJobFlowTemplate's) spec, a CronJobFlow's `spec.jobFlowTemplate.spec`,
each at its own path, since the flows made from them (a CronJobFlow's runs are created by the
controller) would draw the warning where nobody sees it.

Checked on valid flows only, and cheaply: most specs hold no artifacts, `runAsNonRoot` or
`finallyGraceSeconds`, and a spec without those words is not decoded for this at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.api.constants import CLUSTER_TEMPLATE_KIND, CRON_KIND, TEMPLATE_KIND
from zen_flow.validation.repository import has_repository

# The apiserver keeps a warning to 4 KiB in all and cuts longer ones; kubectl prints one line each.
MAX_WARNINGS = 10


def spec_may_warn(spec_bytes: bytes | None) -> bool:
    """Could this spec (its JSON as the apiserver sent it) draw a warning? False skips the decode."""
    return spec_bytes is not None and any(word in spec_bytes for word in _WORDS)


_WORDS = (b'"artifacts"', b'"runAsNonRoot"', b'"finallyGraceSeconds"')


def flow_warnings(obj: Mapping[str, Any]) -> list[str]:
    """The warnings of a JobFlow, a JobFlowTemplate, a ClusterJobFlowTemplate or a CronJobFlow that passed
    validation (its shapes are known to be right): those of the flow spec it holds, at its path."""
    kind = obj.get("kind")
    if kind == CRON_KIND:
        return _spec_warnings(_at(obj, "spec", "jobFlowTemplate", "spec"), "spec.jobFlowTemplate.spec")
    return _spec_warnings(_at(obj, "spec"), "spec", template=kind in (TEMPLATE_KIND, CLUSTER_TEMPLATE_KIND))


def _spec_warnings(spec: Mapping[str, Any] | None, at: str, *, template: bool = False) -> list[str]:
    if spec is None:
        return []
    steps = spec.get("steps")
    warnings: list[str] = []
    # With an artifact repository every output is stored: those without s3 there.
    stored_anyway = has_repository(spec)
    # isinstance of dict, not of Mapping (an ABC check: a Python call each, three per step of a 500-step
    # spec): a validated spec's steps, outputs and artifacts are dicts (Reader.mapping refuses the rest).
    for i, step in enumerate(steps if isinstance(steps, list) and not stored_anyway else []):
        outputs = step.get("outputs") if isinstance(step, dict) else None
        artifacts = outputs.get("artifacts") if isinstance(outputs, dict) else None
        for j, artifact in enumerate(artifacts if isinstance(artifacts, list) else []):
            if isinstance(artifact, dict) and "s3" not in artifact:
                warnings.append(
                    f"{at}.steps[{i}].outputs.artifacts[{j}]: no s3, so {artifact.get('name')!s} is stored "
                    f"nowhere{STORED_UNLESS if template else ''} (the {'template' if template else 'flow'} "
                    f"sets no {at}.artifactRepository) and no later step can take it (the original meant to "
                    "keep it in a ConfigMap)"
                )
    if len(warnings) > MAX_WARNINGS:
        warnings[MAX_WARNINGS - 1 :] = [f"and {len(warnings) - MAX_WARNINGS + 1} more artifacts without s3"]
    roots = _root_under_non_root_default(spec, at, template)
    if len(roots) > MAX_WARNINGS:
        roots[MAX_WARNINGS - 1 :] = [f"and {len(roots) - MAX_WARNINGS + 1} more containers running as root"]
    return warnings + roots + _idle_grace(spec, at)


# After the field's path: why it does nothing.
IDLE_GRACE = (
    ": the flow has no finally step, so no time of its deadline is kept for one: it changes nothing "
    "(the deadline stops the flow at activeDeadlineSeconds)"
)


def _idle_grace(spec: Mapping[str, Any], at: str) -> list[str]:
    """executionPolicy.finallyGraceSeconds in a flow with steps, none of them finally."""
    policy = _at(spec, "executionPolicy")
    steps = spec.get("steps")
    if policy is None or policy.get("finallyGraceSeconds") is None or not isinstance(steps, list):
        return []
    if any(isinstance(step, Mapping) and step.get("finally") is True for step in steps):
        return []
    return [f"{at}.executionPolicy.finallyGraceSeconds{IDLE_GRACE}"]


def _root_under_non_root_default(spec: Mapping[str, Any], at: str, template: bool) -> list[str]:
    """Containers with `runAsUser: 0` in steps whose pods get the defaults' `runAsNonRoot: true`: a step's
    pod spec without a securityContext takes the default's, and a container's own securityContext does
    not replace it but adds to it, so the kubelet refuses to start the container. A JobFlowTemplate's
    (`template`) may be spared: a flow made from it that sets its own `stepDefaults.podSpec.securityContext`
    replaces the template's whole (core/step_defaults.py's `layer`)."""
    context = _at(spec, "stepDefaults", "podSpec", "securityContext")
    if context is None or context.get("runAsNonRoot") is not True:
        return []
    steps = spec.get("steps")
    found: list[str] = []
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        pod = _at(step, "template", "spec", "template", "spec")
        if pod is None or pod.get("securityContext") is not None or step.get("type") in ("Manual", "Flow"):
            continue
        for kind in ("initContainers", "containers"):
            containers = pod.get(kind)
            for j, container in enumerate(containers if isinstance(containers, list) else []):
                if _as_root(_at(container, "securityContext")):
                    found.append(
                        f"{at}.steps[{i}].template.spec.template.spec.{kind}[{j}]"
                        + ROOT_UNDER_DEFAULT.format(at=at, unless=UNLESS_FLOW_SETS if template else "")
                    )
    return found


# After a container's path: why it will not start (`at`: the path of the flow spec).
ROOT_UNDER_DEFAULT = (
    ".securityContext.runAsUser: 0 (root), but the step's pod spec has no securityContext of its own, so "
    "it gets {at}.stepDefaults.podSpec.securityContext with runAsNonRoot: true, and the kubelet will refuse "
    "to start the container (CreateContainerConfigError){unless}; give the step's pod spec its own "
    "securityContext, or the container runAsNonRoot: false"
)
# A flow made from a template may set its own repository (it wins over the template's, or the lack of one).
STORED_UNLESS = " unless the flow made from this template sets its own artifactRepository"
UNLESS_FLOW_SETS = (
    " unless the flow made from this template sets its own stepDefaults.podSpec.securityContext"
)


def _as_root(context: Mapping[str, Any] | None) -> bool:
    """Does a container's own securityContext run it as root, not saying runAsNonRoot: false?"""
    if context is None:
        return False
    user = context.get("runAsUser")
    return type(user) is int and user == 0 and context.get("runAsNonRoot") is not False


def _at(value: Any, *keys: str) -> Mapping[str, Any] | None:
    """The object at `keys` under `value`, None where there is none."""
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value if isinstance(value, Mapping) else None
