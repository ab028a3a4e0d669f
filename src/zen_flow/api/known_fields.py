"""What this release knows of a JobFlow's or CronJobFlow's spec: the keys its spec models declare and the
values of its enumerated fields (its CRD's enums: tests/unit/test_known_fields.py holds both to
config/crd). A spec holding a key or a value outside them was written for a newer zen-flow.

The apiserver prunes the keys a CRD does not declare, and refuses the values its enums leave out, so under
our own CRD no such key or value can be stored: one that is there means a newer CRD is installed (a rolling
upgrade whose old replica still leads, or a controller rolled back under a newer CRD). Parsed by this
release's models, the flow would lose what it does not know (a step's `allowFailure` read as absent, its
failure then failing the flow) or fail on a value it cannot plan, so the controller plans none of it and
says why (controller/validity.py, planner/newer_schema.py) until a controller that knows the flow leads.

The spec models keep the keys they do not declare (`SpecModel`, extra allowed) for this walk to find them;
the parts whose schema accepts any key (x-kubernetes-preserve-unknown-fields: a step's Job template,
resourceTemplates, stepDefaults' affinity and securityContext, retryPolicy's nodeAntiAffinity, a
CronJobFlow's jobFlowTemplate.spec) are plain dicts here, never walked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel

# Enumerated spec fields by (model class name, field name): the values this release knows (the models
# hold them as plain strings, so that the validator reports a wrong one with its path: api/jobflow.py).
ENUMS: Mapping[tuple[str, str], frozenset[str]] = {
    ("ExecutionPolicy", "concurrency_policy"): frozenset({"Allow", "Forbid", "Replace"}),
    ("ExecutionPolicy", "job_retention"): frozenset({"All", "LastAttempt", "FailedOnly"}),
    ("PodFailurePolicyRule", "action"): frozenset({"FailJob", "Ignore", "Count"}),
    ("ExitCodesRule", "operator"): frozenset({"In", "NotIn"}),
    ("PodConditionRule", "status"): frozenset({"True", "False", "Unknown"}),
    ("Step", "type"): frozenset({"Job", "Manual", "Flow"}),
    ("Approver", "kind"): frozenset({"User", "Group"}),
    ("Backoff", "type"): frozenset({"Exponential", "Linear", "Fixed"}),
    ("Step", "dependency_policy"): frozenset({"AllSucceeded", "SucceededOrSkipped", "AnySucceeded"}),
    ("ArchiveSpec", "format"): frozenset({"tar", "zip"}),
    ("ArchiveSpec", "compression"): frozenset({"gzip", "none"}),
    ("CronJobFlowSpec", "concurrency_policy"): frozenset({"Allow", "Forbid", "Replace"}),
}

# Per model class: its fields as (attribute, wire name, the enum's values or None).
_FIELDS: dict[type[BaseModel], tuple[tuple[str, str, frozenset[str] | None], ...]] = {}


def newer_field(spec: BaseModel, root: str = "spec") -> str | None:
    """The first key or enumerated value of `spec` this release does not know, as its path and what is
    there (`spec.steps[2].allowRetry: a field this release does not know`); None when it knows them all."""
    found = _first(spec)
    if found is None:
        return None
    path, what = found
    return f"{root}{''.join(reversed(path))}: {what}"


def _first(model: BaseModel) -> tuple[list[str], str] | None:
    """The path (innermost first, as its segments) and description of the first unknown key or value."""
    extra = model.__pydantic_extra__
    if extra:
        return [f".{next(iter(extra))}"], "a field this release does not know"
    for attr, wire, allowed in _fields(type(model)):
        value = model.__dict__.get(attr)
        if value is None:
            continue
        if allowed is not None:
            if isinstance(value, str) and value not in allowed:
                known = ", ".join(sorted(allowed))
                return [f".{wire}"], f'"{value}" is not a value this release knows ({known})'
            continue
        found = _inner(value, wire)
        if found is not None:
            return found
    return None


def _inner(value: Any, wire: str) -> tuple[list[str], str] | None:
    if isinstance(value, BaseModel):
        found = _first(value)
        if found is not None:
            found[0].append(f".{wire}")
        return found
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            if isinstance(item, BaseModel) and (found := _first(item)) is not None:
                found[0].extend((f"[{i}]", f".{wire}"))
                return found
    return None


def _fields(cls: type[BaseModel]) -> tuple[tuple[str, str, frozenset[str] | None], ...]:
    """The fields of `cls` worth a look: enumerated ones, and those that may hold a model (11 of a
    step's 22; a 500-step spec was walked in 15 ms with all of them, 6 ms so, on a loaded machine)."""
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = tuple(
            (name, info.alias or name, ENUMS.get((cls.__name__, name)))
            for name, info in cls.model_fields.items()
            # Not the effective spec's own fields (matrix groups), never on the wire.
            if not info.exclude and ((cls.__name__, name) in ENUMS or _holds_models(info.annotation))
        )
    return fields


def _holds_models(annotation: Any) -> bool:
    """May a value of this type hold a model (`X | None`, `tuple[X, ...]`)?"""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_models(arg) for arg in get_args(annotation))
