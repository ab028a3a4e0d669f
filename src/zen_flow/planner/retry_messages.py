"""What a step's retry condition (planner/retry_gate.py) writes in its message: why a failed attempt is
not retried, and, while the verdict waits, the failure it waits on.

A refusal is `<the failure>; not retried: retryPolicy.expression "<it>" <verdict>` in the step's 256
characters: the failure keeps its start up to its first exit code, the quoted expression gives way
first, then the verdict's end (an error's hint).
"""

from __future__ import annotations

import re

from zen_flow.core.retry_condition import quoted
from zen_flow.planner.steps import MAX_MESSAGE, bound

NOT_RETRIED = "not retried: "
# How a Running step's message ends while its verdict waits, after the failure it waits on (`waiting`).
WAITING = "waiting to evaluate retryPolicy.expression"
# What of a message the failure itself keeps at least beside why it is not retried (the quoted
# expression gives way first, then the verdict's end), and up to its first exit code if that is further,
# up to the most: `attempt 2147483647 failed: Job failed: <a 63-character container>: exit code 255`
# (117 characters; the pod's first failed container is the first named).
MIN_FAILURE = 100
MAX_FAILURE = 117
_EXIT_CODE = re.compile(r"exit code -?[0-9]+")


def waiting(failure: str, why: str | None) -> str:
    """A Running step's message while its verdict waits: the failure it waits on (its lastRetry.message,
    whole if it is a pending timeout's: `pending_said`), then that it waits, and `why` if it is known. A
    flow-wide failure ending the step meanwhile keeps that failure (`waited_failure`)."""
    note = f"{WAITING}: {why}" if why else WAITING
    return bound(f"{bound(failure, MAX_MESSAGE - len(WAITING) - 2)}; {note}")


def waited_failure(message: str | None, retry_count: int) -> str | None:
    """`attempt N failed: ...` of a Running step whose verdict waits (`waiting`), else None."""
    failure, found, _ = (message or "").partition(f"; {WAITING}")
    return f"attempt {retry_count + 1} failed: {failure}" if found and failure else None


def refusal(error: str, reason: str, expr: str) -> str:
    """The step's message when its failed attempt (`error`) is not retried for its expression's verdict
    (`reason`, as core/retry_condition.py words it)."""
    note = _note(reason, expr, MAX_MESSAGE - failure_kept(error) - 2)
    return f"{bound(error, MAX_MESSAGE - len(note) - 2)}; {note}"


def failure_kept(error: str) -> int:
    """How long the failure `error` stays in a refusal: whole, or MIN_FAILURE characters, or up to its
    first exit code, then `...`."""
    found = _EXIT_CODE.search(error)
    wanted = min(max(MIN_FAILURE, found.end() if found is not None else 0), MAX_FAILURE)
    return len(error) if len(error) <= wanted + 3 else wanted + 3


def _note(reason: str, expr: str, room: int) -> str:
    """`not retried: <reason>` in at most `room` characters: the reason's verdict (`is false`, `failed:
    ...`) follows the quoted expression, so that is cut, not the verdict."""
    note = f"{NOT_RETRIED}{reason}"
    quote = quoted(expr)
    over = len(note) - room
    if over > 0 and quote in note:
        shown = quote[1:-1]  # its escapes counted as they show
        kept = shown[: max(0, len(shown) - over - 3)].rstrip("\\")  # never half an escape
        note = note.replace(quote, f'"{kept}..."', 1)
    return bound(note, room)
