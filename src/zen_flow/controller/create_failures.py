"""What a plan's Job creates did (`Executed`), and what a create that failed for now says.

Apart from the executor (controller/executor.py) that sends them, so the reconciler, the announcements
and the executor read one wording of a failed create's answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from zen_flow import planner
from zen_flow.kube.errors import ApiError
from zen_flow.planner.create_refusals import REASON_CREATE_FAILED, REASON_CREATE_FORBIDDEN


@dataclass(frozen=True)
class Executed:
    """What a plan's creates did. `created`: {name: uid} of the Jobs (and child flows) it created or
    adopted; `rejected`: why the apiserver refused Jobs for good (422/400: sending them again could not
    succeed); `refused`: the steps whose creates failed for now (403, 5xx, no answer), tried again with
    backoff, and `errors` their errors in the same order (the reconciler raises the first once the
    status is written, for the queue's backoff); `again`: the flow's creates had failed the time before
    as well; `unwritten`: a create that failed otherwise (a Job name taken by one on its way out, a
    failed look at who holds it), for which the reconciler writes nothing and raises, to retry soon;
    `unanswered`: the names of refused creates with no verdict (a 5xx, no answer): the object may exist."""

    created: dict[str, str]
    rejected: list[str]
    refused: tuple[planner.CreateRefusal, ...] = ()
    errors: tuple[Exception, ...] = ()
    again: bool = False
    unwritten: Exception | None = None
    unanswered: tuple[str, ...] = ()


def answer(err: Exception) -> str:
    """What a failed create got: `403 <message>`, or `no answer: <error>`."""
    if isinstance(err, ApiError):
        return f"{err.status} {err.message}"
    return f"no answer: {str(err) or type(err).__name__}"


def refusal(create: planner.CreateJob, err: Exception) -> planner.CreateRefusal:
    """What the step of a create that failed for now says (`Job create refused: 403 ...`)."""
    what = "JobFlow" if planner.is_child_body(create.body) else "Job"
    if isinstance(err, ApiError):
        reason = REASON_CREATE_FORBIDDEN if err.status == 403 else REASON_CREATE_FAILED
        return planner.CreateRefusal(create.step, reason, f"{what} create refused: {answer(err)}")
    return planner.CreateRefusal(create.step, REASON_CREATE_FAILED, f"{what} create failed, {answer(err)}")
