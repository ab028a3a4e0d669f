"""Matrix fan-out (`spec.steps[].matrix`): a step run once per combination of values, expanded: pure.

A matrix step `build` with parameters `os: [linux, darwin]` and `arch: [amd64, arm64]` stands for the
item steps `build-0` ... `build-3`, one per combination in product order (the first parameter varies
slowest), each a copy of the step without `matrix`, with one literal input parameter per matrix
parameter appended (`{name: os, value: linux}`) and the annotation `workflow.kube-zen.io/matrix` (the
item's values as a JSON object) in its `metadata`, so its Job and pod carry it. A step that depends on
`build` depends on every item instead (fan-in). Nothing else is new at run time: the validator, the
planner and the CLI all work on this *effective* flow, so every item is checked and run as an ordinary
step. The stored flow keeps its `matrix` (unlike a templateRef, nothing is written back).

`expand_matrix` works on the raw spec (a dict as the apiserver holds it) and never raises: a matrix it
cannot expand is a `MatrixProblem` with the field's path, and its step stays one step (its matrix
parameters as empty input values), so the other rules still check the rest of the flow. A spec with no
matrix comes back as the very same object, for the cost of one look at each step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from pydantic import ValidationError

from zen_flow.api.flow_status import StepStatus
from zen_flow.api.jobflow import JobFlow, JobFlowSpec
from zen_flow.api.jobflow import MatrixVerdict as Verdict
from zen_flow.core.matrix_items import fan_in, item_step, stand_in
from zen_flow.core.matrix_parameters import (
    DUPLICATE,
    INVALID,
    MATRIX,
    MAX_EFFECTIVE_STEPS,
    MAX_PARALLEL,
    TOO_MANY,
    MatrixProblem,
    argument_values,
    bound_of,
    combinations,
    count_items,
    describe,
)
from zen_flow.core.matrix_sources import (
    FAILED,
    Sources,
    dynamic_parameters,
    is_dynamic,
    read_sources,
    resolved_step,
    source_problems,
    step_sources,
)
from zen_flow.core.naming import MAX_NAME


@dataclass(frozen=True)
class MatrixExpansion:
    """The effective spec; `groups`: each expanded matrix step's items in index order; `origins`: for
    each effective step, the index in `spec.steps` of the step it comes from (None when no matrix)."""

    spec: Mapping[str, Any]
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    origins: tuple[int, ...] | None = None
    problems: tuple[MatrixProblem, ...] = ()
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # item -> its values
    # A matrix step reading an output that stays its stand-in -> what the planner does when it is ready.
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)
    limits: Mapping[str, int] = field(default_factory=dict)  # expanded step -> its maxParallel


def has_matrix(spec: Any) -> bool:
    """Does a raw spec have a step with `matrix` (cheap: one key lookup per step)?"""
    steps = spec.get("steps") if isinstance(spec, Mapping) else None
    # isinstance of dict, not of Mapping (an ABC check, 4 times slower): a decoded spec holds dicts.
    return isinstance(steps, list | tuple) and any(
        isinstance(s, dict) and s.get(MATRIX) is not None for s in steps
    )


def expand_matrix(spec: Mapping[str, Any], sources: Sources | None = None) -> MatrixExpansion:
    """The effective spec of `spec` (see the module's docstring); `spec` itself when it has no matrix.
    `sources`: what the flow's status says of the outputs matrices read (core/matrix_sources.py); None
    at admission, where each such step stays its stand-in."""
    if not has_matrix(spec):
        return MatrixExpansion(spec)
    steps: list[Any] = list(spec["steps"])
    arguments = argument_values(spec.get("arguments"))
    problems: list[MatrixProblem] = []
    verdicts: dict[str, Verdict] = {}
    # Names that are strings only: a corrupt one (a list) is the validator's to report, and would not hash.
    names = {
        s["name"]: i
        for i, s in reversed(list(enumerate(steps)))
        if isinstance(s, Mapping) and isinstance(s.get("name"), str)
    }
    # Each matrix step's parameter names and value columns (None: it cannot be expanded). The items
    # are only built once their count is known to fit: 500 steps of 256 items would be 128,000.
    combos: dict[int, tuple[tuple[str, ...], list[list[str]]] | None] = {}
    dynamic: set[int] = set()  # the steps whose items come from an output, known at run time
    for i, step in enumerate(steps):
        if isinstance(step, Mapping) and step.get(MATRIX) is not None:
            if is_dynamic(step):
                dynamic.add(i)
                combos[i] = _dynamic_combinations(steps, i, arguments, sources, problems, verdicts)
            else:
                combos[i] = combinations(step, f"spec.steps[{i}]", arguments, problems)
    counts = {i: count_items(found[1]) for i, found in combos.items() if found is not None}
    static = {i: n for i, n in counts.items() if i not in dynamic}
    total = len(steps) - len(static) + sum(static.values())
    if static and total > MAX_EFFECTIVE_STEPS:
        biggest = max(static, key=static.__getitem__)
        problems.append(
            MatrixProblem(
                TOO_MANY,
                "spec.steps",
                total,
                f"the flow would have {total} steps once its matrix steps are expanded into their items "
                f"(spec.steps[{biggest}].matrix alone makes {counts[biggest]}): use fewer items or steps",
                MAX_EFFECTIVE_STEPS,
            )
        )
        combos = dict.fromkeys(combos)  # no item is built: each matrix step stays one stand-in
    for i in sorted(dynamic):  # run time: an output's items that do not fit fail their step
        if combos[i] is not None and total - 1 + counts[i] > MAX_EFFECTIVE_STEPS:
            verdicts[steps[i]["name"]] = Verdict(
                FAILED,
                f"spec.steps[{i}].matrix: its {counts[i]} items would make the flow {total - 1 + counts[i]} "
                f"steps, more than {MAX_EFFECTIVE_STEPS}",
                step_sources(steps[i]),
            )
            combos[i] = None
        elif combos[i] is not None:
            total += counts[i] - 1
    taken: dict[str, str] = {}  # item name -> the path of the step it comes from
    for i, found in combos.items():
        if found is None:
            continue
        name = steps[i].get("name")
        if not isinstance(name, str) or not name:
            combos[i] = None  # the validator reports the name
            continue
        problem = _naming_problem(name, counts[i], f"spec.steps[{i}]", names, taken)
        if problem is not None and i in dynamic:
            verdicts[name] = Verdict(FAILED, describe(problem), step_sources(steps[i]))
        elif problem is not None:
            problems.append(problem)
        if problem is not None:
            combos[i] = None
            continue
        taken.update((f"{name}-{k}", f"spec.steps[{i}]") for k in range(counts[i]))
    groups: dict[str, tuple[str, ...]] = {}
    limits: dict[str, int] = {}
    values: dict[str, dict[str, str]] = {}
    effective: list[Any] = []
    origins: list[int] = []
    for i, step in enumerate(steps):
        if i not in combos:
            effective.append(step)
            origins.append(i)
            continue
        found = combos[i]
        if found is None:
            effective.append(stand_in(step))
            origins.append(i)
            continue
        params, columns = found
        name = step["name"]
        items = tuple(f"{name}-{k}" for k in range(counts[i]))
        groups[name] = items
        if (limit := bound_of(step[MATRIX], MAX_PARALLEL)) is not None:
            limits[name] = limit
        for item, row in zip(items, product(*columns), strict=True):
            given = dict(zip(params, row, strict=True))
            values[item] = given
            effective.append(item_step(step, name, item, given))
            origins.append(i)
    if groups:
        effective = [fan_in(s, groups) for s in effective]
    return MatrixExpansion(
        {**spec, "steps": effective}, groups, tuple(origins), tuple(problems), values, verdicts, limits
    )


def _dynamic_combinations(
    steps: Sequence[Any],
    i: int,
    arguments: Mapping[str, Any],
    sources: Sources | None,
    problems: list[MatrixProblem],
    verdicts: dict[str, Verdict],
) -> tuple[tuple[str, ...], list[list[str]]] | None:
    """A matrix step reading an output: its references and other parameters checked (as a static
    matrix's, with one placeholder value per output), and its combinations once the values are known;
    otherwise None, its verdict (if any) recorded by name."""
    step = steps[i]
    path = f"spec.steps[{i}]"
    before = len(problems)
    problems.extend(source_problems(steps, i))
    params = step[MATRIX].get("parameters")
    outputs = {j for j, _ in dynamic_parameters(step)}
    placeholder = [
        {"name": p.get("name"), "values": [""]} if j in outputs else p for j, p in enumerate(params)
    ]
    combinations({**step, MATRIX: {**step[MATRIX], "parameters": placeholder}}, path, arguments, problems)
    if len(problems) > before:
        return None
    resolved, verdict = resolved_step(step, i, sources)
    if verdict is not None:
        verdicts[step["name"]] = verdict
    if resolved is None:
        return None
    own: list[MatrixProblem] = []  # the values' problems fail the step, not the flow
    found = combinations(resolved, path, arguments, own)
    if own:
        verdicts[step["name"]] = Verdict(FAILED, describe(own[0]), step_sources(step))
        return None
    return found


def _naming_problem(
    name: str, count: int, path: str, names: Mapping[Any, int], taken: Mapping[str, str]
) -> MatrixProblem | None:
    longest = f"{name}-{count - 1}"
    if len(longest) > MAX_NAME:
        return MatrixProblem(
            INVALID,
            path + "." + MATRIX,
            longest,
            f"its items are named {name}-0 to {longest}, step names that must be no more than "
            f"{MAX_NAME} characters (they are label values): shorten the step's name or use "
            "fewer items",
        )
    clash = next(
        (
            (item, where)
            for k in range(count)
            if (item := f"{name}-{k}") in names or item in taken
            for where in (taken.get(item) or f"spec.steps[{names[item]}]",)
        ),
        None,
    )
    if clash is None:
        return None
    return MatrixProblem(
        DUPLICATE,
        path + ".name",
        clash[0],
        f"its matrix item {clash[0]} has the name of {_whose(clash[1])}: rename one",
    )


def _whose(path: str) -> str:
    return f"the step at {path}" if path.startswith("spec.steps[") else path


def effective_spec(
    spec: JobFlowSpec, status: Sequence[StepStatus] = ()
) -> tuple[JobFlowSpec, tuple[MatrixProblem, ...]]:
    """`expand_matrix` of a decoded spec (the controller's and the CLI's) at run time, the outputs its
    matrices read taken from `status` (the flow's `status.steps`): the effective spec, with its
    `matrix_groups`, `matrix_verdicts` and `matrix_limits`, and the problems; `spec` itself when it
    has no matrix. A spec with problems still comes back expanded as far as it can be (its broken matrix
    steps as one step each)."""
    if not any(s.matrix is not None for s in spec.steps):
        return spec, ()
    try:
        sources = read_sources(spec, status)
        expansion = expand_matrix(spec.model_dump(by_alias=True, exclude_none=True, mode="json"), sources)
    except Exception as err:  # a bug, or a value no rule foresaw: never raise
        # Raised out of the controller's reconcile it would requeue the flow forever (Running, no
        # message, its finally steps never run), and crash `zen-flow get`: the flow fails, saying why.
        detail = f"its matrix could not be expanded: {type(err).__name__}: {str(err)[:200]}"
        return spec, (MatrixProblem(INVALID, "spec.steps", None, detail),)
    try:
        found = JobFlowSpec.model_validate(expansion.spec)
    except ValidationError as err:  # not expected (the items are made of the model's own fields): never raise
        why = MatrixProblem(
            INVALID, "spec.steps", None, f"its items do not parse: {err.error_count()} errors"
        )
        return spec, (*expansion.problems, why)
    update = {
        "matrix_groups": dict(expansion.groups),
        "matrix_verdicts": dict(expansion.verdicts),
        "matrix_limits": dict(expansion.limits),
    }
    return found.model_copy(update=update), expansion.problems


def effective_flow(flow: JobFlow) -> JobFlow:
    """`flow` with its effective spec (`effective_spec`, of its status), `flow` itself when it has no
    matrix."""
    spec, _ = effective_spec(flow.spec, flow.status.steps)
    return flow if spec is flow.spec else flow.model_copy(update={"spec": spec})
