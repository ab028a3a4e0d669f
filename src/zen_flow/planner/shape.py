"""What a plan needs to know about a flow's steps that only their spec decides: the steps by name, the
topological order, whether a `when` needs the evaluator, which wait for approval, and what makes the
spec impossible to plan. A running flow's spec does not change, yet it is planned on every reconcile: a
500-step flow is planned ~1,500 times, and deriving these each time was a fifth of its planning.

The shape is remembered by the identity of the spec's step tuple (`planner.memo`): the informer keeps a
flow's spec object across watch events while its generation stays (`informer.resources.reuse_unchanged`),
and a frozen model's tuple never changes. The memo holds shapes up to `MEMO_STEPS` steps in all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from zen_flow.api.constants import FINALLY_CROSSING, MANUAL_FINALLY
from zen_flow.api.jobflow import JobFlow, Step
from zen_flow.core.dag import CycleError, Graph
from zen_flow.core.expressions import needs_evaluator
from zen_flow.core.retry_condition import retry_needs_evaluator
from zen_flow.planner.memo import MEMO_STEPS, IdentityMemo


@dataclass(frozen=True, slots=True)
class Shape:
    errors: tuple[str, ...]  # why the flow cannot be planned (the validator normally rejects it first)
    # Deterministic topological order, the steps that are not finally first (a plan schedules the finally
    # steps after them, in the same pass); empty when there are errors.
    order: tuple[str, ...]
    specs: Mapping[str, Step]  # by name (the first of duplicated names)
    dependents: Mapping[str, tuple[str, ...]]  # the steps that depend on each step (only those that do)
    manual: tuple[str, ...]  # steps that wait for an approval
    # Does a step's `when` or retryPolicy.expression go to the evaluator (off the event loop, bounded)?
    evaluated: bool
    final: frozenset[str] = frozenset()  # the finally steps (run once every other step has ended)


def _derive(steps: tuple[Step, ...]) -> Shape:
    specs: dict[str, Step] = {}
    errors: list[str] = []
    if not steps:
        errors.append("spec.steps must not be empty")
    for i, step in enumerate(steps):
        if not step.name:
            errors.append(f"spec.steps[{i}].name must not be empty")
        elif step.name in specs:
            errors.append(f"spec.steps[{i}].name: duplicate step name {step.name!r}")
        else:
            specs[step.name] = step
    for i, step in enumerate(steps):
        for dep in step.dependencies:
            if dep and dep not in specs:
                errors.append(f"spec.steps[{i}].dependencies: unknown step {dep!r}")
            elif dep and specs[dep].is_finally != step.is_finally:
                errors.append(f"spec.steps[{i}].dependencies: {_crossing(step, dep)}")
        if step.is_finally and step.is_manual:
            errors.append(f"spec.steps[{i}].finally: {MANUAL_FINALLY}")
    final = frozenset(name for name, step in specs.items() if step.is_finally)
    order: tuple[str, ...] = ()
    if not errors:
        try:
            order = Graph.build([(s.name, s.dependencies) for s in steps]).topological_order()
        except CycleError as err:
            errors.append(f"spec.steps: {err}")
        if final:  # no edge crosses the two groups, so each keeps its topological order
            order = (*(n for n in order if n not in final), *(n for n in order if n in final))
    dependents: dict[str, list[str]] = {}
    for name, step in specs.items():
        for dep in dict.fromkeys(step.dependencies):
            dependents.setdefault(dep, []).append(name)
    return Shape(
        errors=tuple(errors),
        order=order,
        specs=specs,
        dependents={name: tuple(names) for name, names in dependents.items()},
        manual=tuple(s.name for s in steps if s.is_manual),
        evaluated=any(needs_evaluator(s.when) or retry_needs_evaluator(retry_expression(s)) for s in steps),
        final=final,
    )


def retry_expression(step: Step) -> str | None:
    """Its retryPolicy.expression (planner.retry_gate), if it has one."""
    policy = step.retry_policy
    return policy.expression if policy is not None else None


def _crossing(step: Step, dep: str) -> str:
    """Why `step` may not depend on `dep` (one finally, the other not), as the validator says it."""
    return f"step {step.name!r} depends on {dep!r}, which {FINALLY_CROSSING[step.is_finally]}"


_memo: IdentityMemo[Shape] = IdentityMemo(MEMO_STEPS)


def shape_of(flow: JobFlow) -> Shape:
    steps = flow.spec.steps
    return _memo.get(steps, lambda: _derive(steps))
