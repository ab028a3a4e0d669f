"""`spec.stepDefaults`: what every Job step's Job gets where the step does not say it itself: pure.

One rule, applied at two layers: the nearer one wins. A step's own Job template (and its `metadata`) is
nearer than the flow's `stepDefaults` (`apply_pod_defaults`, `default_map`; the Job builder,
planner/jobs.py, applies them), and a flow's `stepDefaults` is nearer than the JobFlowTemplate's it is
made from (`layer`, for validation/expansion.py). At either layer:
- the maps of strings (`metadata.labels`, `metadata.annotations`, `podSpec.nodeSelector`) merge key by
  key, the nearer one's value winning for a key both have: a step cannot remove a default key, only give
  it another value;
- any other field is taken whole from the nearer one that has it, whatever its value: a step's
  `tolerations` (even `[]`) replace the defaults' list rather than add to it, its `affinity` the
  defaults' whole object; `serviceAccount`, the deprecated name of `serviceAccountName`, counts as it.
zen-flow's own labels are set over all of it (planner/jobs.py), so a default can never forge them.
When the apiserver refuses a Job for a pod spec field the step took from the defaults,
`fields_from_defaults` says so, for the flow's failure message to name what the user wrote.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

# The pod spec fields `stepDefaults.podSpec` may set (the CRD lists the same): where and how a pod runs,
# never what it runs (containers, volumes, restartPolicy stay each step's).
POD_FIELDS = (
    "serviceAccountName",
    "nodeSelector",
    "tolerations",
    "affinity",
    "imagePullSecrets",
    "securityContext",
    "priorityClassName",
    "runtimeClassName",
    "schedulerName",
)
# The pod spec fields that merge key by key; the others are taken whole.
MAP_FIELDS = frozenset({"nodeSelector"})
# A pod spec field that sets another one when present: a step with the deprecated `serviceAccount` has
# chosen its service account.
ALIASES: Mapping[str, str] = {"serviceAccountName": "serviceAccount"}
METADATA_MAPS = ("labels", "annotations")
# A pod spec field as the apiserver's refusal of a Job names it: `spec.template.spec.affinity.node...`.
_REFUSED_POD_FIELD = re.compile(r"\bspec\.template\.spec\.([A-Za-z]+)")


def default_map(defaults: Mapping[str, str] | None, own: Mapping[str, str]) -> dict[str, str]:
    """A map of strings with the defaults' keys under the step's own."""
    return {**defaults, **own} if defaults else dict(own)


def sets(pod_spec: Mapping[str, Any], field: str) -> bool:
    """Does the step's pod spec set `field` itself (so the default's is not used)?"""
    alias = ALIASES.get(field)
    return pod_spec.get(field) is not None or (alias is not None and pod_spec.get(alias) is not None)


def apply_pod_defaults(pod_spec: dict[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """`pod_spec` (changed in place and returned) with each field of `defaults` (a raw
    `stepDefaults.podSpec`) it does not set itself; nodeSelector merged key by key. The values are
    copied: Jobs built from one flow never share an object."""
    for field in POD_FIELDS:
        value = defaults.get(field)
        if value is None:
            continue
        own = pod_spec.get(field)
        if field in MAP_FIELDS and isinstance(value, Mapping):
            pod_spec[field] = default_map(value, own if isinstance(own, Mapping) else {})
        elif not sets(pod_spec, field):
            pod_spec[field] = copy.deepcopy(value)
    return pod_spec


def fields_from_defaults(message: str, own: Any, defaults: Any) -> list[str]:
    """The pod spec fields a refusal's `message` names that the Job took from `defaults` (a raw
    `stepDefaults.podSpec`) because the step's own pod spec `own` does not set them: the ones to name as
    `spec.stepDefaults.podSpec.FIELD`. A map field the step sets too (nodeSelector) is not named: its
    bad key may be either's."""
    if not isinstance(defaults, Mapping):
        return []
    pod_spec = own if isinstance(own, Mapping) else {}
    named = dict.fromkeys(_REFUSED_POD_FIELD.findall(message))
    return [
        field
        for field in named
        if field in POD_FIELDS and defaults.get(field) is not None and not sets(pod_spec, field)
    ]


def layer(base: Any, over: Any) -> Any:
    """Raw `stepDefaults` `over` (a flow's) on top of `base` (its template's), by the same rule; None
    when neither has any. A value that is no object where one is expected is taken as it is, for the
    validator to name (never merged)."""
    if over is None:
        return base
    if not isinstance(base, Mapping) or not isinstance(over, Mapping):
        return over
    merged: dict[str, Any] = {**base, **over}
    for key, maps in (("metadata", METADATA_MAPS), ("podSpec", tuple(MAP_FIELDS))):
        if key in base and key in over:
            merged[key] = _merged_maps(base[key], over[key], maps)
    return merged


def _merged_maps(base: Any, over: Any, maps: tuple[str, ...]) -> Any:
    """Two objects field by field, `over`'s winning, the fields named in `maps` merged key by key."""
    if over is None:
        return base
    if not isinstance(base, Mapping) or not isinstance(over, Mapping):
        return over
    merged = {**base, **over}
    for key in maps:
        low, high = base.get(key), over.get(key)
        if isinstance(low, Mapping) and isinstance(high, Mapping):
            merged[key] = {**low, **high}
    return merged
