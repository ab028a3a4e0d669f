"""Rules for one step: name, type, dependencies, dependencyPolicy, retryPolicy, timeoutSeconds, `when`,
finally, approval (validation/gates.py), memoize (validation/memoize.py), synchronization
(validation/synchronization.py), template."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from zen_flow.api.constants import FINALLY_CROSSING, MANUAL_FINALLY, DependencyPolicy, StepPhase
from zen_flow.core.expression_facts import facts
from zen_flow.core.expression_scanner import phase_test_references
from zen_flow.core.expressions import compile_when
from zen_flow.validation.conditions import EQUALITIES, compiled_or_refused, literal_type, mistyped
from zen_flow.validation.errors import (
    Path,
    duplicate,
    forbidden,
    invalid,
    not_found,
    not_supported,
    quote,
    required,
    too_long,
    too_many,
)
from zen_flow.validation.flow_steps import check_flow_step, flow_field_forbidden
from zen_flow.validation.formats import label_problem
from zen_flow.validation.gates import check_approval
from zen_flow.validation.index import StepIndex
from zen_flow.validation.limits import (
    MAX_MESSAGE,
    MAX_STEPS,
    MAX_TIMEOUT_SECONDS,
    MAX_WHEN,
)
from zen_flow.validation.memo import CheckMemo
from zen_flow.validation.memoize import check_memoize
from zen_flow.validation.policy import check_pod_pending_timeout
from zen_flow.validation.reader import Reader
from zen_flow.validation.retry_policy import (
    check_retry_affinity,
    check_retry_expression,
    check_retry_policy,
)
from zen_flow.validation.synchronization import check_synchronization
from zen_flow.validation.template import TemplateInfo, check_metadata_maps, refuse_own_keys

STEP_TYPES = ("Job", "Manual", "Flow")
# `flow.outcome`: how the steps that are not finally ended, read by the `when` of finally steps only.
OUTCOME = "outcome"
_OUTCOME_ONLY = (
    "reads flow.outcome, which only the when of a finally step can read (it says how the other steps "
    "ended, known only once they all have)"
)
DEPENDENCY_POLICIES = tuple(p.value for p in DependencyPolicy)


def check_stored_step_keys(r: Reader, steps: Sequence[Any], path: Path) -> None:
    """No key of zen-flow's own in a step's `metadata`, which goes onto its Job and pods: checked on the
    steps as stored, before a matrix expands them (each item carries zen-flow's annotation
    `workflow.kube-zen.io/matrix`, check_step_fields sees the items). The map's other rules, and a
    metadata that is no object, are check_step_fields'; a Flow step takes no metadata at all."""
    for i, step in enumerate(steps):
        meta = step.get("metadata") if isinstance(step, dict) and step.get("type") != "Flow" else None
        if not isinstance(meta, dict):
            continue
        for field in ("labels", "annotations"):
            keys = meta.get(field)
            if isinstance(keys, dict):
                refuse_own_keys(r, keys, f"{path}[{i}].metadata.{field}")


def check_step_names(r: Reader, steps: Sequence[tuple[Path, Mapping[str, Any]]]) -> None:
    """Every step has a unique DNS-1123 label as its name (it becomes a label value and a key part)."""
    seen: set[str] = set()
    for path, step in steps:
        name = step.get("name")
        if type(name) is str and name and name not in seen and label_problem(name) is None:
            seen.add(name)  # nearly always: no field path built
            continue
        name_path = path + ".name"
        name = r.string(step.get("name"), name_path, require=True)
        if name is None:
            continue
        if problem := label_problem(name):
            r.add(invalid(name_path, name, problem))
        if name in seen:
            r.add(duplicate(name_path, name))
        seen.add(name)


def check_step_count(r: Reader, steps: Sequence[Any] | None, path: Path) -> None:
    if steps is None:
        return
    if not steps:
        r.add(required(path, "a JobFlow needs at least one step"))
    elif len(steps) > MAX_STEPS:
        r.add(too_many(path, len(steps), MAX_STEPS))


def check_cycle(r: Reader, index: StepIndex) -> None:
    if index.cycle is None:
        return
    first = index.paths[index.cycle[0]]
    r.add(
        invalid(
            first + ".dependencies",
            " -> ".join(index.cycle),
            "the dependencies form a cycle, so these steps could never start",
        )
    )


def is_manual(step: Mapping[str, Any]) -> bool:
    """As `api.jobflow.Step.is_manual`: `type: Manual`, or no type and no template (the original's rule).
    "No template" means absent (or null): an empty or falsy template (`{}`, `0`, `""`) is a Job step's
    broken template, reported as such, never silently an approval gate."""
    kind = step.get("type")
    if isinstance(kind, str) and kind:
        return kind == "Manual"
    return step.get("template") is None


def check_step_fields(
    r: Reader, step: Mapping[str, Any], path: Path, templates: CheckMemo[TemplateInfo | None]
) -> TemplateInfo | None:
    """The rules of one step that do not read its name or wiring (name, dependencies, when, inputs),
    so a flow checks them once per distinct step (`CheckMemo`); returns the template summary of a Job
    step (for podFailurePolicy)."""
    kind = r.string(step.get("type"), path + ".type")
    if kind and kind not in STEP_TYPES:
        r.add(not_supported(path + ".type", kind, STEP_TYPES))
    message = r.string(step.get("message"), path + ".message")
    if message is not None and len(message) > MAX_MESSAGE:
        r.add(too_long(path + ".message", message, MAX_MESSAGE))
    check_approval(r, step.get("approval"), path + ".approval", manual=is_manual(step))
    meta = r.mapping(step.get("metadata"), path + ".metadata")
    if meta is not None:
        check_metadata_maps(r, meta, path + ".metadata", own_keys=False)  # check_stored_step_keys
    retry = r.mapping(step.get("retryPolicy"), path + ".retryPolicy")
    if retry is not None:
        check_retry_policy(r, retry, path + ".retryPolicy")
        if retry.get("affinity") is not None:
            check_retry_affinity(r, step, path, kind, manual=is_manual(step))
        if retry.get("expression") is not None:
            check_retry_expression(r, step, path, kind, manual=is_manual(step))
    timeout = r.integer(step.get("timeoutSeconds"), path + ".timeoutSeconds")
    if timeout is not None and timeout <= 0:
        r.add(invalid(path + ".timeoutSeconds", timeout, "must be greater than 0"))
    elif timeout is not None and timeout > MAX_TIMEOUT_SECONDS:
        r.add(invalid(path + ".timeoutSeconds", timeout, f"must be at most {MAX_TIMEOUT_SECONDS} (30 days)"))
    pending = step.get("podPendingTimeoutSeconds")
    check_pod_pending_timeout(r, pending, path + ".podPendingTimeoutSeconds")
    if pending is not None and is_manual(step):
        r.add(forbidden(path + ".podPendingTimeoutSeconds", "a Manual step runs no pod"))
    r.boolean(step.get("continueOnFailure"), path + ".continueOnFailure")
    # Allowed beside continueOnFailure (which it implies), on every kind of step: a Manual step's
    # rejection or timeout, a Flow step's failed child, a finally step's failure are tolerated alike.
    r.boolean(step.get("allowFailure"), path + ".allowFailure")
    if r.boolean(step.get("finally"), path + ".finally") and is_manual(step):
        r.add(forbidden(path + ".finally", MANUAL_FINALLY))
    policy = r.string(step.get("dependencyPolicy"), path + ".dependencyPolicy")
    if policy is not None and policy not in DEPENDENCY_POLICIES:
        r.add(not_supported(path + ".dependencyPolicy", policy, DEPENDENCY_POLICIES))
    if step.get("memoize") is not None:
        outputs = step.get("outputs")
        check_memoize(
            r,
            step["memoize"],
            path + ".memoize",
            manual=is_manual(step) or kind == "Manual",
            final=step.get("finally") is True,
            outputs=outputs if isinstance(outputs, dict) else None,
        )
    if step.get("synchronization") is not None:
        kind_of = "Manual" if is_manual(step) else str(step.get("type") or "Job")
        check_synchronization(r, step["synchronization"], path + ".synchronization", kind=kind_of)
    return _check_template_for_type(r, step, kind, path + ".template", templates)


def check_step_references(
    r: Reader,
    index: StepIndex,
    step: Mapping[str, Any],
    path: Path,
    arguments: frozenset[str] = frozenset(),
) -> None:
    """The rules of one step that name other steps (dependencies, `when`), and what `when` reads of
    them and of the flow's `arguments` (the names declared)."""
    final = step.get("finally") is True
    deps = step.get("dependencies")
    if deps is not None:
        _check_dependencies(r, index, deps, path + ".dependencies", final)
    when = step.get("when")
    if when is not None and (when := r.string(when, path + ".when")) is not None:
        name = step.get("name")
        _check_when(r, index, name if isinstance(name, str) else "", when, path + ".when", arguments, final)


def _check_template_for_type(
    r: Reader,
    step: Mapping[str, Any],
    kind: str | None,
    path: Path,
    templates: CheckMemo[TemplateInfo | None],
) -> TemplateInfo | None:
    raw = step.get("template")
    if kind == "Flow":
        check_flow_step(r, step, path.removesuffix(".template"))
        return None
    flow_field_forbidden(r, step, path.removesuffix(".template"))
    if kind == "Manual":
        if raw is not None:
            r.add(
                forbidden(
                    path, "Manual steps take no template: a Manual step is an approval gate and runs nothing"
                )
            )
        return None
    if is_manual(step):
        return None  # no type and no template: the original's implicit approval gate
    if raw is None or raw == {}:
        r.add(
            required(
                path, "Job steps need a template (a batch/v1 Job); for an approval gate use type: Manual"
            )
        )
        return None
    template = r.mapping(raw, path)
    if template is None:
        return None
    return templates.run(r, template, path)


def _check_dependencies(r: Reader, index: StepIndex, raw: Any, path: Path, final: bool) -> None:
    deps = r.sequence(raw, path)
    if deps is None:
        return
    if len(deps) > MAX_STEPS:
        r.add(too_many(path, len(deps), MAX_STEPS))
    known = index.paths
    finals = index.final
    for i, dep in enumerate(deps):
        if type(dep) is str and dep in known:
            # nearly every dependency: no path built for a line that reports nothing
            if (finals or final) and (dep in finals) != final:
                r.add(invalid(path + f"[{i}]", dep, FINALLY_CROSSING[final]))
            continue
        if r.stop():
            return
        name = r.string(dep, path + f"[{i}]", item=True)
        if name is None:
            continue
        if name == "":
            r.add(invalid(path + f"[{i}]", name, "must name a step of this flow"))
        elif name not in index:
            r.add(not_found(path + f"[{i}]", name))


def _check_when(
    r: Reader, index: StepIndex, step: str, expr: str, path: Path, arguments: frozenset[str], final: bool
) -> None:
    if len(expr) > MAX_WHEN:
        r.add(too_long(path, expr, MAX_WHEN))
        return
    references = phase_test_references(expr)
    if references is not None:  # its only string literals are phases
        _check_phases([a or b for a, b in _QUOTED_WORD.findall(expr)], r, expr, path)
    else:
        compiled = compiled_or_refused(r, path, expr, compile_when, len(index.paths))
        if compiled is None:
            return
        references = compiled.references
        if compiled.constant is None:
            _check_facts(r, index, expr, path, arguments)
        if not final and compiled.flow_fields is not None and OUTCOME in compiled.flow_fields:
            r.add(invalid(path, expr, _OUTCOME_ONLY))
    for ref in sorted(references):
        if (items := index.groups.get(ref)) is not None:
            r.add(
                invalid(
                    path,
                    expr,
                    f"refers to step {quote(ref)}, a matrix step: a condition reads its items by name "
                    f"({', '.join(items[:3])}{', ...' if len(items) > 3 else ''}), not the matrix step",
                )
            )
        elif ref not in index.paths:
            r.add(not_found(path, ref, "the condition refers to a step this flow does not have"))
        elif index.precedes(ref, step) is False:
            r.add(
                invalid(
                    path,
                    expr,
                    f"refers to step {quote(ref)}, which is not among the dependencies (direct or indirect) "
                    f"of step {quote(step)}: its phase would not be final when the condition is evaluated"
                    + (" (a finally step reads any step that is not finally)" if final else ""),
                )
            )


# The string literals of a condition of phase tests (expression_scanner.scan_phase_tests).
_QUOTED_WORD = re.compile(r"'(\w*)'|\"(\w*)\"")
PHASES = tuple(phase.value for phase in StepPhase)


def _check_phases(literals: Iterable[str], r: Reader, expr: str, path: Path) -> None:
    for literal in dict.fromkeys(literals):
        if literal not in PHASES:
            r.add(
                invalid(
                    path,
                    expr,
                    f"compares a step's phase with {quote(literal)}, which is no phase, so the comparison "
                    f"never holds (phases: {', '.join(PHASES)}; case matters)",
                )
            )


def _check_facts(r: Reader, index: StepIndex, expr: str, path: Path, arguments: frozenset[str]) -> None:
    """What the condition reads by name must exist, and what it compares must be comparable."""
    found = facts(expr)
    _check_phases(found.phase_literals, r, expr, path)
    for step, output in dict.fromkeys(found.outputs):
        declared = index.output_parameters.get(step, frozenset())
        if step in index.paths and output not in declared:
            r.add(
                not_found(
                    path,
                    expr,
                    f"step {quote(step)} has no output parameter {quote(output)} "
                    f"(its outputs.parameters: {', '.join(sorted(declared)) or 'none'})",
                )
            )
    for argument in dict.fromkeys(found.arguments):
        if argument not in arguments:
            r.add(
                not_found(
                    path,
                    expr,
                    f"the flow has no argument {quote(argument)} "
                    f"(spec.arguments.parameters: {', '.join(sorted(arguments)) or 'none'})",
                )
            )
    for c in found.typed_comparisons:
        instead = "convert it first"  # ordered as strings, "10" < "9": only a conversion orders numbers
        if c.operator in EQUALITIES:
            instead = f"compare with a string ({quote(c.literal)}) or {instead}"
        said = mistyped(
            c.reference,
            "a string",
            c.literal,
            literal_type(c.literal),
            c.operator,
            example='"0" != 0 is true',
            fails="the step is always skipped",
            fix=f"outputs and arguments are strings, so {instead} (int(...), double(...))",
        )
        r.add(invalid(path, expr, said))
