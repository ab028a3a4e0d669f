"""The keys of a user's spec that its schema does not have, each with the key it most likely meant.

A key the CRD does not declare is pruned by the apiserver (refused under kubectl's strict field
validation), so the flow runs without it: a misspelt `dependencies` lets its step start at once. Two
places cannot count on the apiserver for that: `zen-flow validate` and `submit`, which check files before
anything is sent, and a CronJobFlow's `jobFlowTemplate.spec`, which its CRD keeps whole
(x-kubernetes-preserve-unknown-fields) and every run then loses (its webhook: webhook/cron_review.py).

The walk reads the raw document, not a model of it: the models take a field's Python name too
(`execution_policy`, populate_by_name), which the apiserver does not know and prunes, and a part of the
wrong type (the rules name that) does not hide the unknown keys of the others. It follows the spec models'
wire names (their aliases); the parts whose schema keeps any key (a step's Job template,
resourceTemplates, ...) are plain types there, not looked into.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from zen_flow.api.constants import CLUSTER_TEMPLATE_KIND, CRON_KIND, TEMPLATE_KIND
from zen_flow.api.cronjobflow import CronJobFlowSpec
from zen_flow.api.jobflow import FLOWS_OWN, JobFlowSpec

TEMPLATE_SPEC = "spec.jobFlowTemplate.spec"


@dataclass(frozen=True)
class UnknownKey:
    path: str  # `spec.steps[1].dependecies`
    meant: str | None  # the schema's key it most likely stands for (`dependencies`), None when none is close
    # `meant` is that key in another spelling (`execution_policy`, `ExecutionPolicy`): a typo for sure,
    # never a newer release's field
    respelt: bool = False


def detail(found: UnknownKey, respelt: str, unknown: str) -> str:
    """What an error says of `found`: the key meant, when one is close, then `respelt` (why a key in another
    spelling is lost) or `unknown` (what this release can tell of a key it lacks)."""
    meant = f"did you mean {found.meant}? " if found.meant else ""
    return f"unknown field: {meant}{respelt if found.respelt else unknown}"


def unknown_keys(
    model: type[BaseModel], value: Any, root: str = "spec", without: frozenset[str] = frozenset()
) -> list[UnknownKey]:
    """Every key of `value` (a raw `model`, less its top-level fields in `without`), at any depth, that the
    schema does not have, as its path."""
    found: list[UnknownKey] = []
    _walk(model, value, root, found, without)
    return found


def document_unknown_keys(doc: Mapping[str, Any]) -> list[UnknownKey]:
    """`unknown_keys` of a JobFlow's spec, a CronJobFlow's (its run template's spec too), or a
    JobFlowTemplate's or ClusterJobFlowTemplate's (a JobFlow's spec without the flow's own `suspend` and
    `templateRef`, which their CRDs do not have: the apiserver would prune them)."""
    spec = doc.get("spec")
    if doc.get("kind") in (TEMPLATE_KIND, CLUSTER_TEMPLATE_KIND):
        return unknown_keys(JobFlowSpec, spec, without=FLOWS_OWN)
    if doc.get("kind") != CRON_KIND:
        return unknown_keys(JobFlowSpec, spec)
    return unknown_keys(CronJobFlowSpec, spec) + run_template_unknown_keys(doc)


def run_template_unknown_keys(cron: Mapping[str, Any]) -> list[UnknownKey]:
    """`unknown_keys` of a CronJobFlow's `spec.jobFlowTemplate.spec`: a JobFlow's spec."""
    spec = cron.get("spec")
    template = spec.get("jobFlowTemplate") if isinstance(spec, dict) else None
    if not isinstance(template, dict):
        return []
    return unknown_keys(JobFlowSpec, template.get("spec"), TEMPLATE_SPEC)


def _walk(
    model: type[BaseModel],
    value: Any,
    path: str,
    found: list[UnknownKey],
    without: frozenset[str] = frozenset(),
) -> None:
    if not isinstance(value, dict):
        return  # absent, or of the wrong type: the rules name that
    fields = _wire_fields(model)
    if without:
        fields = {key: held for key, held in fields.items() if key not in without}
    for key, item in value.items():
        child = fields.get(key) if isinstance(key, str) else None
        if child is None:
            found.append(_unknown(f"{path}.{key}", str(key), fields))
            continue
        inner, listed = child
        if inner is None:
            continue
        if not listed:
            _walk(inner, item, f"{path}.{key}", found)
        elif isinstance(item, list):
            for i, element in enumerate(item):
                _walk(inner, element, f"{path}.{key}[{i}]", found)


def _unknown(path: str, key: str, fields: Mapping[str, Any]) -> UnknownKey:
    squashed = key.replace("_", "").replace("-", "").lower()
    for wire in fields:
        if wire.lower() == squashed:
            return UnknownKey(path, wire, respelt=True)
    close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.8)
    return UnknownKey(path, close[0] if close else None)


# Per model: its wire names, each with the model its value holds (None: a plain value) and whether it
# holds a list of them.
_FIELDS: dict[type[BaseModel], dict[str, tuple[type[BaseModel] | None, bool]]] = {}


def _wire_fields(model: type[BaseModel]) -> dict[str, tuple[type[BaseModel] | None, bool]]:
    fields = _FIELDS.get(model)
    if fields is None:
        fields = _FIELDS[model] = {
            info.alias or name: _holds(info.annotation)
            for name, info in model.model_fields.items()
            if not info.exclude  # the effective spec's own (matrix groups): never on the wire
        }
    return fields


def _holds(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field of this type holds (`X | None`, `tuple[X, ...]`), and whether as a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            held = _holds(arg)
            if held[0] is not None:
                return held
        return None, False
    if origin in (tuple, list):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return args[0], True
    return None, False
