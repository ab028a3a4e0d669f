"""Inputs of the shapes nearly every flow uses, recognised as clean in one pass.

A 500-step flow has a thousand inputs, and each went through a dozen calls that build field paths
(`spec.steps[41].inputs.parameters[0].valueFrom.jsonPath`) for errors that almost never come: ~25 % of
admitting a new 500-step spec. These predicates accept the two common shapes, a parameter read from a
dependency's output (`valueFrom.jsonPath: "<step>:$.path"`) and an artifact fetched from one
(`from: <step>/<artifact>`), when every rule io.py applies to them passes; anything else, or anything
they are unsure of, says False, and io.py checks that input the long way, where the errors and their
paths come from. So they may refuse what is valid but never accept what is not: a property test holds
them to io.py's rules (tests/unit/test_validation_plain_inputs.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.core.jsonpath import JsonPathError, parse
from zen_flow.validation.formats import abs_path_problem, label_problem, subdomain_problem
from zen_flow.validation.index import StepIndex
from zen_flow.validation.limits import MAX_JSON_PATH


def _new_name(item: Mapping[str, Any], seen: set[str]) -> bool:
    """The item's name is a valid one not used before in its list; recorded in `seen` when so."""
    name = item.get("name")
    if type(name) is not str or not name or name in seen or subdomain_problem(name) is not None:
        return False
    seen.add(name)
    return True


def _reads_dependency(index: StepIndex, step: str, ref: str) -> bool:
    return (
        ref in index.paths
        and ref != step
        and label_problem(ref) is None
        and index.precedes(ref, step) is True
    )


def plain_parameter(index: StepIndex, step: str, param: Mapping[str, Any], seen: set[str]) -> bool:
    """`{name, valueFrom: {jsonPath: "<dependency>:$..."}}` with every rule passing; the name is then in
    `seen`. False leaves `seen` as it was."""
    source = param.get("valueFrom")
    if param.get("value") is not None or type(source) is not dict or len(source) != 1:
        return False
    value = source.get("jsonPath")
    if type(value) is not str or len(value) > MAX_JSON_PATH:
        return False
    ref, colon, expr = value.partition(":")
    if not colon or not expr.startswith("$") or not _reads_dependency(index, step, ref):
        return False
    try:
        segments = parse(expr)
    except JsonPathError:
        return False
    output = segments[2] if segments[:2] == ("outputs", "parameters") and len(segments) > 2 else None
    if output is not None and output not in index.output_parameters.get(ref, ()):
        return False  # an output the step does not declare
    if output is None and ref in index.memoized:
        return False  # the Job status of a step that may run no Job
    return _new_name(param, seen)


def plain_artifact(index: StepIndex, step: str, artifact: Mapping[str, Any], seen: set[str]) -> bool:
    """`{name, path, from: "<dependency>/<artifact>"}` (the artifact stored by that step) with every
    rule passing; the name is then in `seen`. False leaves `seen` as it was."""
    path, origin = artifact.get("path"), artifact.get("from")
    if type(origin) is not str or artifact.get("http") is not None or artifact.get("s3") is not None:
        return False
    if path is not None and (type(path) is not str or abs_path_problem(path) is not None):
        return False
    ref, slash, name = origin.partition("/")
    if not slash or not name or "/" in name or not _reads_dependency(index, step, ref):
        return False
    if subdomain_problem(name) is not None or name not in index.stored_artifacts.get(ref, ()):
        return False
    return _new_name(artifact, seen)
