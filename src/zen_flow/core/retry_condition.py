"""A step's `retryPolicy.expression`: CEL over the failed attempt, deciding whether a retry can help.

Argo Workflows' `retryStrategy.expression`, with its variable: a failed attempt is retried only when
the other retry rules allow it (limit, the flow's budget, no FailJob rule) and this is true, so exit
code 2 ("bad input") can fail the step at once while a crash (137) is retried. Variables:

  lastRetry  {"exitCode": int, "status": "Failed" | "Error", "duration": double, "message": string}
  flow       {"name", "namespace", "labels", "annotations", "arguments"}, as in `when`

`exitCode` is the first failing container's (init containers first), -1 when none is known; `status`
is "Failed" when a container exited non-zero, "Error" when the pod never ran to an exit of its own (a
deadline, the pending timeout, an eviction, a deleted Job); `duration` is the seconds the attempt ran;
`message` the failure message.

The language is `when`'s (core/expressions.py): the same length bound, the same admission check of the
compiled shape, fail-closed (an error or a non-bool result means no retry, and the reason says why),
constants decided in-process, everything else given to the planner's evaluator (the controller's
sandboxed expression workers). Reasons quote the expression in double quotes, as a user writes it in
YAML.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zen_flow.core.expressions import (
    CompiledWhen,
    Evaluator,
    ExpressionError,
    WhenResult,
    check_compiled,
    compile_condition,
)

RETRY_VARIABLES = ("lastRetry", "flow")
LABEL = "retryPolicy.expression"
# lastRetry.status: a container exited non-zero, or the pod never ran to an exit of its own.
FAILED = "Failed"
ERROR = "Error"
UNKNOWN_EXIT_CODE = -1
# lastRetry's fields (`LastRetry.view`); admission refuses any other (validation/retry_policy.py).
LAST_RETRY_FIELDS = ("exitCode", "status", "duration", "message")
NUMBER_FIELDS = frozenset({"exitCode", "duration"})  # the others are strings
# How much of the expression a reason quotes (a step's message is 256 characters, an expression up to 1024).
QUOTED_MAX = 96
_HINT = "not set: a label, annotation or argument the flow lacks; lastRetry has " + ", ".join(
    LAST_RETRY_FIELDS
)


@dataclass(frozen=True, slots=True)
class LastRetry:
    """What the expression sees of the failed attempt (`lastRetry`)."""

    exit_code: int
    status: str
    duration: float
    message: str

    def view(self) -> dict[str, Any]:
        return {
            "exitCode": self.exit_code,
            "status": self.status,
            "duration": self.duration,
            "message": self.message,
        }


def compile_retry(expr: str) -> CompiledWhen:
    """Compile (cached); raise `ExpressionError` when it cannot. Used at admission."""
    result = compile_condition(expr, RETRY_VARIABLES)
    if isinstance(result, ExpressionError):
        raise result
    return result


def retry_needs_evaluator(expr: str | None) -> bool:
    """Does `check_retry` give the expression to its evaluator (it compiles and is no constant)?"""
    if expr is None:
        return False
    compiled = compile_condition(expr, RETRY_VARIABLES)
    return isinstance(compiled, CompiledWhen) and compiled.constant is None


def quoted(source: str) -> str:
    """The expression as the reason quotes it: in double quotes (JSON's escapes), cut to QUOTED_MAX
    characters so that what follows it (the verdict, the error) fits the reason's bound."""
    if len(source) > QUOTED_MAX:
        source = source[: QUOTED_MAX - 3] + "..."
    return json.dumps(source, ensure_ascii=False)


def check_retry(
    expr: str, last: LastRetry, flow: Mapping[str, Any], evaluate: Evaluator | None = None
) -> WhenResult:
    """May the failed attempt be retried? Fail-closed, with the reason (`check_when`'s rules). Raises
    `Deferred` (or `Unavailable`) and `Offload` as the evaluator does: nothing is decided then."""

    def variables(compiled: CompiledWhen) -> dict[str, Any]:
        fields = compiled.flow_fields
        seen = dict(flow) if fields is None else {k: flow[k] for k in fields if k in flow}
        return {"lastRetry": last.view(), "flow": seen}

    compiled = compile_condition(expr, RETRY_VARIABLES)
    return check_compiled(compiled, variables, evaluate, label=LABEL, quote=quoted, hint=_HINT)
