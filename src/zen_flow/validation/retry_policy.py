"""A step's `retryPolicy`: its limit, its backoff curve, `affinity.nodeAntiAffinity` (a retry avoids
the nodes the step's failed attempts ran on: planner/node_avoidance.py), and `expression` (a retry only
when this CEL condition over the failed attempt holds: core/retry_condition.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.core.durations import parse_duration
from zen_flow.core.expression_facts import MemberRead, member_reads
from zen_flow.core.retry_condition import ERROR, FAILED, LAST_RETRY_FIELDS, NUMBER_FIELDS, compile_retry
from zen_flow.validation.conditions import EQUALITIES, compiled_or_refused, literal_type, mistyped
from zen_flow.validation.errors import Path, forbidden, invalid, not_supported, quote, too_long
from zen_flow.validation.formats import DURATION_MSG
from zen_flow.validation.limits import MAX_BACKOFF_SECONDS, MAX_WHEN
from zen_flow.validation.reader import INT32_MAX, Reader
from zen_flow.validation.template import step_pod_spec

BACKOFF_TYPES = ("Exponential", "Linear", "Fixed")
STATUSES = (FAILED, ERROR)  # lastRetry.status


def check_retry_policy(r: Reader, retry: Mapping[str, Any], path: Path) -> None:
    limit = r.integer(retry.get("limit"), path + ".limit", maximum=INT32_MAX)
    if limit is not None and limit < 0:
        r.add(invalid(path + ".limit", limit, "must be greater than or equal to 0"))
    backoff_path = path + ".backoff"
    backoff = r.mapping(retry.get("backoff"), backoff_path)
    if backoff is None:
        return
    kind = r.string(backoff.get("type"), backoff_path + ".type")
    if kind and kind not in BACKOFF_TYPES:
        r.add(not_supported(backoff_path + ".type", kind, BACKOFF_TYPES))
    factor = r.number(backoff.get("factor"), backoff_path + ".factor")
    if factor is not None and factor < 1:
        r.add(invalid(backoff_path + ".factor", backoff.get("factor"), "must be greater than or equal to 1"))
    for field in ("duration", "maxDuration"):
        text = r.string(backoff.get(field), backoff_path + "." + field)
        if text is None:
            continue
        seconds = parse_duration(text)
        if seconds is None:
            r.add(invalid(backoff_path + "." + field, text, DURATION_MSG))
        elif seconds <= 0:
            r.add(invalid(backoff_path + "." + field, text, "must be greater than 0"))
        elif seconds > MAX_BACKOFF_SECONDS:
            r.add(invalid(backoff_path + "." + field, text, "must be at most 720h (30 days)"))


def check_retry_affinity(
    r: Reader, step: Mapping[str, Any], step_path: Path, kind: str | None, *, manual: bool
) -> None:
    """`retryPolicy.affinity.nodeAntiAffinity: {}` (Argo's spelling): an empty object, on a Job step
    whose pod the scheduler places (planner/node_avoidance.py)."""
    path = step_path + ".retryPolicy.affinity"
    if manual:
        r.add(forbidden(path, "a Manual step runs no pod"))
        return
    if kind == "Flow":
        r.add(forbidden(path, "a Flow step has no pod of its own: set it on its template's steps"))
        return
    found = r.mapping(step["retryPolicy"]["affinity"], path)
    if found is None:
        return
    anti = r.mapping(found.get("nodeAntiAffinity"), path + ".nodeAntiAffinity")
    if anti:  # Argo's field takes nothing either: the nodes are those the step's failed attempts ran on
        r.add(invalid(path + ".nodeAntiAffinity", dict(anti), "must be an empty object: {}"))
        return
    if anti is not None and (pod := step_pod_spec(step)) is not None and pod.get("nodeName"):
        # Pinned: the scheduler is skipped, and kubelet admission would reject each retry on that node.
        r.add(
            forbidden(
                path + ".nodeAntiAffinity",
                "a pod pinned to a node by its template.spec.template.spec.nodeName cannot avoid it: "
                "remove one of them",
            )
        )


def check_retry_expression(
    r: Reader, step: Mapping[str, Any], step_path: Path, kind: str | None, *, manual: bool
) -> None:
    """`retryPolicy.expression`: `when`'s language over `lastRetry` and `flow`, as long as a `when` may
    be, compiled in its shape (the program itself is compiled when a failure first asks it); only on a
    Job step, whose attempts fail with a pod's exit."""
    path = step_path + ".retryPolicy.expression"
    if manual:
        r.add(forbidden(path, "a Manual step runs no pod, and is never retried"))
        return
    if kind == "Flow":
        r.add(forbidden(path, "a Flow step has no pod of its own: set it on its template's steps"))
        return
    expr = r.string(step["retryPolicy"]["expression"], path)
    if expr is None:
        return
    if len(expr) > MAX_WHEN:
        r.add(too_long(path, expr, MAX_WHEN))
        return
    compiled = compiled_or_refused(r, path, expr, compile_retry, 0)
    if compiled is not None and compiled.constant is None:
        _check_last_retry(r, expr, path)


def _check_last_retry(r: Reader, expr: str, path: Path) -> None:
    """What it reads of `lastRetry` by name must be one of its fields, and a field compared with a literal
    must be compared with one of its type (and `status` with one of its two values): a typo
    (`lastRetry.exitcode`) fails every evaluation (no retry, ever), `lastRetry.exitCode != '2'` always
    holds (in CEL a number never equals a string), as does `lastRetry.status != 'failed'`."""
    known = ", ".join(LAST_RETRY_FIELDS)
    for read in dict.fromkeys(member_reads(expr, "lastRetry")):
        if read.field not in LAST_RETRY_FIELDS:
            r.add(invalid(path, expr, f"lastRetry has no field {quote(read.field)} (its fields: {known})"))
        elif read.literal is not None and (refused := _compared_wrongly(read)) is not None:
            r.add(invalid(path, expr, refused))


def _compared_wrongly(read: MemberRead) -> str | None:
    """Why the comparison of a lastRetry field with a literal is refused, by its operator; None if not."""
    number = read.field in NUMBER_FIELDS
    kind = "a number" if number else "a string"
    literal = read.literal or ""
    if number == read.string:  # a number with a string, a string with a number or a bool
        return mistyped(
            f"lastRetry.{read.field}",
            kind,
            literal,
            "a string" if read.string else literal_type(literal),
            read.operator,
            example="2 != '2' is true",
            fails="no retry, ever",
            fix=f"compare with {kind}",
        )
    # Two tests, not `not in (None, *STATUSES)`: mypyc cannot compile a starred tuple there.
    if (
        read.field == "status"
        and read.operator in EQUALITIES
        and read.value is not None
        and read.value not in STATUSES
    ):
        return (
            f"lastRetry.status is {quote(FAILED)} or {quote(ERROR)}, never {read.literal}, so the "
            "comparison always says the same (case matters)"
        )
    return None
