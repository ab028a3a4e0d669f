"""What admission accepts but the user should hear about: forms the original took that zen-flow keeps
for compatibility but that do not do what the manifest suggests (docs/API.md, "Differences from the
original"), a container that asks to run as root under a `stepDefaults` pod securityContext that
forbids it (docs/API.md, "Defaults for every step"), and a finally grace in a flow with no finally step
(docs/API.md, "Finally steps"). Sent as admission warnings, which kubectl prints
(`Warning: ...`) and `zen-flow validate` prints too; never a refusal.

Checked on valid flows only, and cheaply: most specs hold no artifacts, `runAsNonRoot` or
`finallyGraceSeconds`, and a spec without those words is not decoded for this at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The apiserver keeps a warning to 4 KiB in all and cuts longer ones; kubectl prints one line each.
MAX_WARNINGS = 10


def spec_may_warn(spec_bytes: bytes | None) -> bool:
    """Could this spec (its JSON as the apiserver sent it) draw a warning? False skips the decode."""
    return spec_bytes is not None and any(word in spec_bytes for word in _WORDS)


_WORDS = (b'"artifacts"', b'"runAsNonRoot"', b'"finallyGraceSeconds"')


def flow_warnings(flow: Mapping[str, Any]) -> list[str]:
    """The warnings of a flow that passed validation (its shapes are known to be right)."""
    spec = flow.get("spec")
    steps = spec.get("steps") if isinstance(spec, Mapping) else None
    warnings: list[str] = []
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        outputs = step.get("outputs") if isinstance(step, Mapping) else None
        artifacts = outputs.get("artifacts") if isinstance(outputs, Mapping) else None
        for j, artifact in enumerate(artifacts if isinstance(artifacts, list) else []):
            if isinstance(artifact, Mapping) and "s3" not in artifact:
                warnings.append(
                    f"spec.steps[{i}].outputs.artifacts[{j}]: no s3, so {artifact.get('name')!s} is stored "
                    "nowhere and no later step can take it (the original meant to keep it in a ConfigMap)"
                )
    if len(warnings) > MAX_WARNINGS:
        warnings[MAX_WARNINGS - 1 :] = [f"and {len(warnings) - MAX_WARNINGS + 1} more artifacts without s3"]
    roots = _root_under_non_root_default(spec) if isinstance(spec, Mapping) else []
    if len(roots) > MAX_WARNINGS:
        roots[MAX_WARNINGS - 1 :] = [f"and {len(roots) - MAX_WARNINGS + 1} more containers running as root"]
    return warnings + roots + _idle_grace(spec)


# After the field's path: why it does nothing.
IDLE_GRACE = (
    ": the flow has no finally step, so no time of its deadline is kept for one: it changes nothing "
    "(the deadline stops the flow at activeDeadlineSeconds)"
)


def _idle_grace(spec: Any) -> list[str]:
    """executionPolicy.finallyGraceSeconds in a flow with steps, none of them finally."""
    policy = _at(spec, "executionPolicy")
    steps = spec.get("steps") if isinstance(spec, Mapping) else None
    if policy is None or policy.get("finallyGraceSeconds") is None or not isinstance(steps, list):
        return []
    if any(isinstance(step, Mapping) and step.get("finally") is True for step in steps):
        return []
    return [f"spec.executionPolicy.finallyGraceSeconds{IDLE_GRACE}"]


def _root_under_non_root_default(spec: Mapping[str, Any]) -> list[str]:
    """Containers with `runAsUser: 0` in steps whose pods get the defaults' `runAsNonRoot: true`: a step's
    pod spec without a securityContext takes the default's, and a container's own securityContext does
    not replace it but adds to it, so the kubelet refuses to start the container."""
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
                        f"spec.steps[{i}].template.spec.template.spec.{kind}[{j}]{ROOT_UNDER_DEFAULT}"
                    )
    return found


# After a container's path: why it will not start.
ROOT_UNDER_DEFAULT = (
    ".securityContext.runAsUser: 0 (root), but the step's pod spec has no securityContext of its own, so "
    "it gets spec.stepDefaults.podSpec.securityContext with runAsNonRoot: true, and the kubelet will refuse "
    "to start the container (CreateContainerConfigError); give the step's pod spec its own "
    "securityContext, or the container runAsNonRoot: false"
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
