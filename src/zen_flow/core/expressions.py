"""The `when` language: CEL over the steps' phases and outputs and the flow's metadata, fail-closed.

Variables (JOBFLOW_API.md decision 7):
  steps  map step name -> {"phase": "Succeeded", "outputs": {"parameters": {name: value}}}
  flow   {"name", "namespace", "labels", "annotations", "arguments"}

Forms of the original keep working: `always` / `true` and `never` / `false` (any case), and
`steps.<name>.phase == 'Succeeded'` with names that contain dashes. `steps.extract-a.phase` is not CEL
(CEL reads `steps.extract - a.phase`), so before compiling, a dotted step reference whose name is not a
plain CEL identifier is rewritten to the index form `steps["extract-a"]`. The name after `steps.` runs
over letters, digits, `_` and `-` written without spaces; write subtraction with spaces. A step name
with dots must use the index form (`steps["a.b"]`).

Evaluation is fail-closed: an error (unknown key, wrong type, division by zero...) or a non-bool result
counts as false, and the reason is returned for the step's status message. Compilation is cached: the
planner evaluates on every reconcile.

Where it is evaluated: only constants and phase tests (`steps.<name>.phase == 'Succeeded'` joined by &&
and ||, `inline`) cost the same whatever the flow holds, so only they are evaluated in-process when the
caller gives an `Evaluator`. Any other expression can cost far more than its length suggests: a chain of
`+` over a 250 KiB annotation copies ever longer strings (50 terms: 70 ms per evaluation, quadratic in
the terms), and a flow brings one per step. The controller's evaluator runs those in worker processes
under a time budget.

Admission checks that an expression compiles without building its program: a 500-step flow carries 500
conditions that differ only in the step they name (`steps.build-7.phase == 'Succeeded'`), and compiling
each took a quarter of a millisecond. Whether an expression compiles does not depend on the names it
refers to (the rewrite in expression_scanner.py produces them: an identifier after a dot, or a plain
quoted string in an index), so the check compiles its *shape* (every such name replaced by one
placeholder) once per shape; the program itself is compiled the first time the planner evaluates it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import cel

from zen_flow.api.flow_status import StepStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.expression_scanner import ExpressionError as ExpressionError  # the language's error
from zen_flow.core.expression_scanner import scan, scan_phase_tests

MAX_EXPRESSION_LENGTH = 4096
COMPILE_CACHE_SIZE = 4096  # conditions kept compiled (the planner evaluates them on every reconcile)
_MAX_REASON = 200
_CONSTANTS = {"always": True, "true": True, "never": False, "false": False, "": True}
# The variables a `when` reads; a step's retryPolicy.expression has its own (core/retry_condition.py).
WHEN_VARIABLES = ("steps", "flow")


class BudgetExceeded(Exception):
    """An evaluator stopped an expression that ran past its budget (time, or its worker's memory); the
    message says which. The step fails: a skip would hide a broken spec."""


class Deferred(Exception):
    """An evaluator declined to evaluate now: the plan has had its share of the expression workers, and
    the step's condition is decided by a later plan (other flows' expressions go first meanwhile)."""


class Unavailable(Deferred):
    """The evaluator itself cannot evaluate (its worker does not start, it is closed): nothing is known
    of the expression, so the condition is decided by a later plan, never taken as false."""


class EvaluationError(Exception):
    """An evaluator's report that the expression itself failed (unknown key, wrong type...): the
    condition is false. Anything else an evaluator raises is its own failure (`Unavailable`)."""


class Offload(Exception):
    """An evaluator that must not evaluate where the plan runs (the controller's event loop). The plan
    is abandoned (it is pure) and made again where the evaluator may wait; `check_when` passes it on."""


@dataclass(frozen=True, eq=False)
class CompiledWhen:
    """A compiled `when`: a constant, or a CEL program plus the steps it names."""

    source: str
    cel_source: str
    constant: bool | None
    references: frozenset[str]
    # True when `steps` is used in a way that names no step statically (`steps.exists(...)`,
    # `steps[x]`): evaluation then needs every step.
    dynamic: bool
    # Uses a comprehension macro or `matches` (a regex compiled per call): admission bounds their
    # iterations (expression_cost.py).
    loops: bool = False
    # Phase tests only (`scan_phase_tests`): a cost that no data of the flow can raise, so evaluated
    # in-process; every other expression goes to the evaluator when there is one (module docstring).
    inline: bool = False
    # The members of `flow` it reads (None: maybe all); an evaluation is given only these.
    flow_fields: frozenset[str] | None = None

    @cached_property
    def program(self) -> cel.Program:
        """The CEL program, compiled on first use (admission never needs it). Its shape compiled, so it
        compiles; a constant has none."""
        if self.constant is not None:
            raise ValueError(f"{self.source!r} is a constant, not a program")
        import cel  # see _compile_shape

        return cel.compile(self.cel_source)


@dataclass(frozen=True)
class WhenContext:
    """What an expression sees; `steps` maps names to `step_view` dicts."""

    steps: Mapping[str, Mapping[str, Any]]
    flow: Mapping[str, Any]

    @classmethod
    def from_flow(cls, flow: JobFlow, steps: Mapping[str, StepStatus] | None = None) -> WhenContext:
        statuses = steps if steps is not None else {s.name: s for s in flow.status.steps}
        return cls({name: step_view(st) for name, st in statuses.items()}, flow_view(flow))


@dataclass(frozen=True)
class WhenResult:
    value: bool
    reason: str  # why it is false (or "true"); goes into the step message
    # The evaluation was stopped for running too long: the step fails (a skip would hide a broken spec).
    exceeded: bool = False


# Evaluates a compiled expression that is not `inline` on the given variables and returns CEL's value.
# Raises EvaluationError for an error of the expression (false), BudgetExceeded when it takes too long
# (or too much memory), Deferred (or Unavailable) when it decides later, Offload when not here. Anything
# else it raises is taken as Unavailable. The controller passes one that runs in another process.
Evaluator = Callable[["CompiledWhen", dict[str, Any]], Any]


def step_view(status: StepStatus) -> dict[str, Any]:
    params = status.outputs.parameters if status.outputs else ()
    return {"phase": status.phase, "outputs": {"parameters": {p.name: p.value for p in params}}}


def flow_view(flow: JobFlow) -> dict[str, Any]:
    meta = flow.metadata
    return {
        "name": meta.name,
        "namespace": meta.namespace,
        "labels": dict(meta.labels),
        "annotations": dict(meta.annotations),
        "arguments": {
            a.name: a.value for a in (flow.spec.arguments.parameters if flow.spec.arguments else ())
        },
    }


# --- compiling and evaluating -------------------------------------------------------------------------


@lru_cache(maxsize=COMPILE_CACHE_SIZE)
def _compile(expr: str, names: tuple[str, ...] = WHEN_VARIABLES) -> CompiledWhen | ExpressionError:
    key = expr.strip().lower()
    if key in _CONSTANTS:
        return CompiledWhen(expr, key, _CONSTANTS[key], frozenset(), False)
    if len(expr) > MAX_EXPRESSION_LENGTH:
        return ExpressionError(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        phase_tests = scan_phase_tests(expr) if "steps" in names else None
        scanned = phase_tests or scan(expr)
    except ExpressionError as err:
        return err
    cel_source, shape, refs, dynamic, loops, fields = scanned
    variables = _compile_shape(shape)
    if variables is None:  # compiled again for an error message that quotes the expression, not its shape
        import cel

        try:
            variables = tuple(cel.compile(cel_source).variables())
        except Exception as err:  # the binding raises ValueError; any failure means "does not compile"
            return ExpressionError(_first_lines(str(err)))
    bad = [v for v in variables if v not in names and not _bound_by_macro(v, expr)]
    if bad:
        known = " and ".join(repr(n) for n in names)
        return ExpressionError(f"unknown variable {bad[0]!r}: only {known} are defined")
    return CompiledWhen(expr, cel_source, None, refs, dynamic, loops, phase_tests is not None, fields)


@lru_cache(maxsize=1024)
def _compile_shape(shape: str) -> tuple[str, ...] | None:
    """The variables a shape uses; None when it does not compile."""
    # Imported on first use: the `cel` package's __init__ also imports its command-line interface
    # (typer, prompt_toolkit, rich): 9 MB resident and 0.2 s of start-up for a controller whose flows
    # may never use `when`.
    import cel

    try:
        return tuple(cel.compile(shape).variables())
    except Exception:  # the binding raises ValueError, but any failure means "does not compile"
        return None


def _bound_by_macro(name: str, expr: str) -> bool:
    # Program.variables() also lists names bound by comprehensions (`steps.exists(s, ...)`); such a
    # name appears as the first macro argument `(name,`.
    compact = "".join(expr.split())
    return f"({name}," in compact


def _first_lines(message: str, limit: int = 600) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def compile_condition(expr: str, names: tuple[str, ...]) -> CompiledWhen | ExpressionError:
    """Compile (cached) a condition of this language over the variables `names` instead of `when`'s
    (a step's retryPolicy.expression: core/retry_condition.py)."""
    return _compile(expr, names)


def compile_when(expr: str) -> CompiledWhen:
    """Compile (cached); raise `ExpressionError` when the expression cannot compile. Used at admission."""
    result = _compile(expr)
    if isinstance(result, ExpressionError):
        raise result
    return result


def referenced_steps(expr: str) -> set[str]:
    """The step names the expression names statically; the validator checks they exist."""
    return set(compile_when(expr).references)


def check_when(
    expr: str | CompiledWhen | None, context: WhenContext, evaluate: Evaluator | None = None
) -> WhenResult:
    """Evaluate fail-closed and say why: errors and non-bool results are false. Expressions that are not
    `inline` go to `evaluate` when one is given (in-process otherwise)."""
    if expr is None:
        return WhenResult(True, "no condition")
    compiled = _compile(expr) if isinstance(expr, str) else expr
    return check_compiled(compiled, lambda c: _variables(c, context), evaluate, context=context)


# What a KeyError means to the user, by the condition's label (`_explained`).
_WHEN_HINT = "not set: e.g. an output of a step that did not succeed; test its phase first"


def check_compiled(
    compiled: CompiledWhen | ExpressionError,
    variables: Callable[[CompiledWhen], dict[str, Any]],
    evaluate: Evaluator | None,
    *,
    label: str = "when",
    quote: Callable[[str], str] = repr,
    hint: str = _WHEN_HINT,
    context: WhenContext | None = None,
) -> WhenResult:
    """`check_when` for any condition of this language: `variables` gives what the expression reads,
    `label` names it in the reason (`when`, `retryPolicy.expression`), `quote` quotes its source there.
    Only a `when` (with its `context`) has `inline` phase tests."""
    if isinstance(compiled, ExpressionError):
        return WhenResult(False, _bound(f"{label} does not compile: {compiled}"))
    if compiled.constant is not None:
        return WhenResult(compiled.constant, f"{label} is {compiled.cel_source or 'empty'}")
    source = quote(compiled.source)
    inline = compiled.inline and context is not None
    evaluator = evaluate is not None and not inline
    try:
        if inline and context is not None:  # phase tests read phases only
            steps = context.steps
            phases = {n: {"phase": steps[n]["phase"]} for n in compiled.references if n in steps}
            value = compiled.program.execute({"steps": phases})  # compiled here the first time
        elif evaluate is not None:
            value = evaluate(compiled, variables(compiled))
        else:
            value = compiled.program.execute(variables(compiled))
    except (Deferred, Offload):
        raise
    except BudgetExceeded as err:
        # The reason first: a long expression would push it past the message bound.
        reason = _bound(f"{label} stopped: {err}; expression {source}")
        return WhenResult(False, reason, exceeded=True)
    except EvaluationError as err:
        return WhenResult(False, _bound(f"{label} {source} failed: {_explained(str(err), hint)}"))
    except Exception as err:
        if evaluator:  # the evaluator's own failure says nothing of the condition
            raise Unavailable(f"the expression evaluator failed: {type(err).__name__}: {err}") from err
        # fail-closed: whatever went wrong, the condition does not hold
        why = _explained(f"{type(err).__name__}: {err}", hint)
        return WhenResult(False, _bound(f"{label} {source} failed: {why}"))
    if not isinstance(value, bool):
        return WhenResult(False, _bound(f"{label} {source} is not a bool: {value!r}"))
    return WhenResult(value, _bound(f"{label} {source} is {str(value).lower()}"))


def _explained(error: str, hint: str = _WHEN_HINT) -> str:
    """The evaluator's error in the user's terms: a missing key is Python's `KeyError: 'url'`, and most
    often an output of a step that did not succeed, or a label or annotation the flow does not have."""
    if error.startswith("KeyError: "):
        key = error.removeprefix("KeyError: ")
        return f"no such key {key} ({hint})"
    return error


def _variables(compiled: CompiledWhen, context: WhenContext) -> dict[str, Any]:
    if compiled.dynamic:
        steps: Mapping[str, Any] = dict(context.steps)
    else:
        steps = {name: context.steps[name] for name in compiled.references if name in context.steps}
    fields = compiled.flow_fields
    flow = context.flow
    return {
        "steps": steps,
        "flow": dict(flow) if fields is None else {k: flow[k] for k in fields if k in flow},
    }


def evaluate_when(expr: str | CompiledWhen | None, context: WhenContext) -> bool:
    """True only when the expression evaluates to the bool true (fail-closed)."""
    return check_when(expr, context).value


def _bound(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."
