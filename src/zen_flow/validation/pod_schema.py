"""The shapes of the core/v1 objects `spec.stepDefaults.podSpec` takes whole: a PodSecurityContext and
an Affinity, checked field by field as the apiserver types them.

The CRD keeps both free-form (`x-kubernetes-preserve-unknown-fields`, as it keeps a step's own Job
template), so without this a typo (`runAsUsr`), a container-only field (`allowPrivilegeEscalation`) or a
wrong type would be admitted, then dropped or refused only when a step's Job is created, long after the
flow started. Here each is named at admission, at its path under `spec.stepDefaults.podSpec`. Checked:
the field names, their types (integers, booleans, strings, lists, objects), the enumerations, required
fields and the few ranges the apiserver holds them to; not what the cluster decides (whether a node,
profile or user exists).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from zen_flow.validation.errors import Path, forbidden, invalid, not_supported, required
from zen_flow.validation.reader import INT32_MAX, Reader

BOOLEAN = "boolean"
STRING = "string"
STRING_MAP = "map of strings"


@dataclass(frozen=True)
class Ints:
    """An integer from `low` to `high`, inclusive."""

    low: int
    high: int


@dataclass(frozen=True)
class OneOf:
    """A string, one of `values`."""

    values: tuple[str, ...]


@dataclass(frozen=True)
class ListOf:
    item: Kind
    nonempty: bool = False


@dataclass(frozen=True)
class Fields:
    """An object with only these fields; `needed` must be set (and not empty)."""

    fields: Mapping[str, Kind]
    needed: tuple[str, ...] = ()
    what: str = ""  # the type's name, for the message of an unknown field


Kind: TypeAlias = str | Ints | OneOf | ListOf | Fields

# A user or group ID (apimachinery's IsValidUserID/IsValidGroupID).
_ID = Ints(0, INT32_MAX)
_WEIGHT = Ints(1, 100)
_PROFILE = Fields(
    {"type": OneOf(("RuntimeDefault", "Unconfined", "Localhost")), "localhostProfile": STRING}, ("type",)
)

POD_SECURITY_CONTEXT = Fields(
    {
        "runAsUser": _ID,
        "runAsGroup": _ID,
        "runAsNonRoot": BOOLEAN,
        "fsGroup": _ID,
        "fsGroupChangePolicy": OneOf(("OnRootMismatch", "Always")),
        "supplementalGroups": ListOf(_ID),
        "supplementalGroupsPolicy": OneOf(("Merge", "Strict")),
        "seccompProfile": _PROFILE,
        "appArmorProfile": _PROFILE,
        "seLinuxOptions": Fields({"user": STRING, "role": STRING, "type": STRING, "level": STRING}),
        "seLinuxChangePolicy": OneOf(("MountOption", "Recursive")),
        "sysctls": ListOf(Fields({"name": STRING, "value": STRING}, ("name",))),
        "windowsOptions": Fields(
            {
                "gmsaCredentialSpecName": STRING,
                "gmsaCredentialSpec": STRING,
                "runAsUserName": STRING,
                "hostProcess": BOOLEAN,
            }
        ),
    },
    what="a PodSecurityContext",
)
# Fields of a container's SecurityContext that a pod's has not: the apiserver drops them from a pod's.
CONTAINER_ONLY = (
    "allowPrivilegeEscalation",
    "capabilities",
    "privileged",
    "readOnlyRootFilesystem",
    "procMount",
)

_LABEL_SELECTOR = Fields(
    {
        "matchLabels": STRING_MAP,
        "matchExpressions": ListOf(
            Fields(
                {
                    "key": STRING,
                    "operator": OneOf(("In", "NotIn", "Exists", "DoesNotExist")),
                    "values": ListOf(STRING),
                },
                ("key", "operator"),
            )
        ),
    }
)
_NODE_REQUIREMENT = Fields(
    {
        "key": STRING,
        "operator": OneOf(("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")),
        "values": ListOf(STRING),
    },
    ("key", "operator"),
)
_NODE_TERM = Fields({"matchExpressions": ListOf(_NODE_REQUIREMENT), "matchFields": ListOf(_NODE_REQUIREMENT)})
_POD_TERM = Fields(
    {
        "labelSelector": _LABEL_SELECTOR,
        "namespaceSelector": _LABEL_SELECTOR,
        "namespaces": ListOf(STRING),
        "topologyKey": STRING,
        "matchLabelKeys": ListOf(STRING),
        "mismatchLabelKeys": ListOf(STRING),
    },
    ("topologyKey",),
)
_POD_AFFINITY = Fields(
    {
        "requiredDuringSchedulingIgnoredDuringExecution": ListOf(_POD_TERM),
        "preferredDuringSchedulingIgnoredDuringExecution": ListOf(
            Fields({"weight": _WEIGHT, "podAffinityTerm": _POD_TERM}, ("weight", "podAffinityTerm"))
        ),
    }
)
AFFINITY = Fields(
    {
        "nodeAffinity": Fields(
            {
                "requiredDuringSchedulingIgnoredDuringExecution": Fields(
                    {"nodeSelectorTerms": ListOf(_NODE_TERM, nonempty=True)}, ("nodeSelectorTerms",)
                ),
                "preferredDuringSchedulingIgnoredDuringExecution": ListOf(
                    Fields({"weight": _WEIGHT, "preference": _NODE_TERM}, ("weight", "preference"))
                ),
            }
        ),
        "podAffinity": _POD_AFFINITY,
        "podAntiAffinity": _POD_AFFINITY,
    },
    what="an Affinity",
)


def check_security_context(r: Reader, value: Any, path: Path) -> None:
    """A pod's securityContext; a container-only field is named as one."""
    context = r.mapping(value, path)
    if context is None:
        return
    for key in CONTAINER_ONLY:
        if key in context:
            r.add(
                forbidden(
                    f"{path}.{key}",
                    f"{key} is a field of a container's securityContext, not of the pod's: set it in the "
                    "container's securityContext in the step's template",
                )
            )
    check(r, {k: v for k, v in context.items() if k not in CONTAINER_ONLY}, POD_SECURITY_CONTEXT, path)
    for name in ("seccompProfile", "appArmorProfile"):
        profile = context.get(name)
        if isinstance(profile, dict):
            _check_profile(r, profile, f"{path}.{name}")


def check_affinity(r: Reader, value: Any, path: Path) -> None:
    check(r, value, AFFINITY, path)


def check(r: Reader, value: Any, kind: Kind, path: Path, *, item: bool = False) -> None:
    """`value` as `kind` says; null is "not set", but a wrong value as a list's item."""
    if value is None:
        if item:
            r.add(invalid(path, None, f"must be {_describe(kind)}, not null"))
        return
    if isinstance(kind, Fields):
        _check_fields(r, value, kind, path)
    elif isinstance(kind, ListOf):
        items = r.sequence(value, path)
        if items is None:
            return
        if kind.nonempty and not items:
            r.add(required(path, "must have at least one item"))
        for i, each in enumerate(items):
            check(r, each, kind.item, f"{path}[{i}]", item=True)
    elif isinstance(kind, Ints):
        number = r.integer(value, path)
        if number is not None and not kind.low <= number <= kind.high:
            r.add(invalid(path, number, f"must be between {kind.low} and {kind.high}, inclusive"))
    elif isinstance(kind, OneOf):
        text = r.string(value, path)
        if text is not None and text not in kind.values:
            r.add(not_supported(path, text, kind.values))
    elif kind == BOOLEAN:
        r.boolean(value, path)
    elif kind == STRING_MAP:
        r.string_map(value, path)
    else:
        r.string(value, path)


def _check_fields(r: Reader, value: Any, kind: Fields, path: Path) -> None:
    obj = r.mapping(value, path)
    if obj is None:
        return
    for key, each in obj.items():
        sub = kind.fields.get(key)
        if sub is None:
            why = f"{kind.what} has only these fields" if kind.what else ""
            r.add(not_supported(f"{path}.{key}", key, tuple(kind.fields), why))
        else:
            check(r, each, sub, f"{path}.{key}")
    for key in kind.needed:
        if obj.get(key) in (None, ""):
            r.add(required(f"{path}.{key}"))


def _check_profile(r: Reader, profile: Mapping[str, Any], path: Path) -> None:
    """A seccomp or AppArmor profile: a localhostProfile with type Localhost, and only with it."""
    localhost = profile.get("type") == "Localhost"
    named = profile.get("localhostProfile") not in (None, "")
    if localhost and not named:
        r.add(required(path + ".localhostProfile", "must be set when type is Localhost"))
    elif named and not localhost:
        r.add(forbidden(path + ".localhostProfile", "can only be set when type is Localhost"))


def _describe(kind: Kind) -> str:
    if isinstance(kind, Fields):
        return "an object"
    if isinstance(kind, ListOf):
        return "an array"
    if isinstance(kind, Ints):
        return "an integer"
    if isinstance(kind, OneOf):
        return "a string"
    return {BOOLEAN: "a boolean", STRING_MAP: "an object"}.get(kind, "a string")
