"""What a plan's Job creates and deletes did (`Executed`), and what a create or a delete that failed for
now says.

Apart from the executor (controller/executor.py) that sends them, so the reconciler, the announcements
and the executor read one wording of a failed request's answer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from zen_flow import planner
from zen_flow.api import JobFlowStatus
from zen_flow.kube.errors import ApiError
from zen_flow.planner.create_refusals import REASON_CREATE_FAILED, REASON_CREATE_FORBIDDEN
from zen_flow.planner.delete_refusals import REASON_DELETE_FAILED, REASON_DELETE_FORBIDDEN


def _first_blip(
    failed: tuple[planner.CreateRefusal, ...] | tuple[planner.DeleteRefusal, ...], again: bool, blip: str
) -> bool:
    """Requests failed, each only with `blip` (a 5xx or no answer), and not the time before as well: most
    often a blip the retry gets past, so nothing is said of it yet."""
    return bool(failed) and not again and all(r.reason == blip for r in failed)


@dataclass(frozen=True)
class Executed:
    """What a plan's creates and deletes did. `created`: {name: uid} of the Jobs (and child flows) it
    created or adopted; `rejected`: why the apiserver refused Jobs for good (422/400: sending them again
    could not succeed); `refused`: the steps whose creates failed for now (403, 5xx, no answer), tried
    again with backoff, and `errors` their errors in the same order (the reconciler raises the first once
    the status is written, for the queue's backoff); `again`: the flow's creates had failed the time
    before as well; `unwritten`: a create that failed otherwise (a Job name taken by one on its way out, a
    failed look at who holds it), for which the reconciler writes nothing and raises, to retry soon;
    `unanswered`: the names of refused creates with no verdict (a 5xx, no answer): the object may exist.
    `undeleted`: the deletes that failed (any answer but 404 and 409, which leave nothing of the flow's
    to delete), tried again by the next plans, and `delete_errors` their errors in the same order (raised
    once the status is written); `deletes_again`: the flow's deletes had failed the time before as well;
    `deleted`: a delete went through."""

    created: dict[str, str]
    rejected: list[str]
    refused: tuple[planner.CreateRefusal, ...] = ()
    errors: tuple[Exception, ...] = ()
    again: bool = False
    unwritten: Exception | None = None
    unanswered: tuple[str, ...] = ()
    undeleted: tuple[planner.DeleteRefusal, ...] = ()
    delete_errors: tuple[Exception, ...] = ()
    deletes_again: bool = False
    deleted: bool = False

    @property
    def quiet(self) -> bool:
        """Only a first 5xx or lost answer failed the creates (_first_blip; a 403 is said at once)."""
        return _first_blip(self.refused, self.again, REASON_CREATE_FAILED)

    @property
    def deletes_quiet(self) -> bool:
        """Only a first 5xx or lost answer failed the deletes (_first_blip; a 4xx verdict is said at once)."""
        return _first_blip(self.undeleted, self.deletes_again, REASON_DELETE_FAILED)

    def and_deletes(self, later: Executed) -> Executed:
        """This with the deletes a `later` execution of the same reconcile sent (its creates are none)."""
        if not later.undeleted and not later.deleted:
            return self
        return replace(
            self,
            undeleted=(*self.undeleted, *later.undeleted),
            delete_errors=(*self.delete_errors, *later.delete_errors),
            deletes_again=self.deletes_again or later.deletes_again,
            deleted=self.deleted or later.deleted,
        )


def answer(err: Exception) -> str:
    """What a failed create or delete got: `403 <message>`, or `no answer: <error>`."""
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


def verdict(err: Exception) -> bool:
    """Is this failed request's answer a verdict (a 4xx: a webhook's or RBAC's 403, a policy's 422), the
    admin's or the policy's to lift? A 5xx, a 429 or no answer is the apiserver's trouble, most often a
    blip."""
    return isinstance(err, ApiError) and 400 <= err.status < 500 and err.status != 429


def delete_refusal(delete: planner.DeleteJob, err: Exception, *, child: bool) -> planner.DeleteRefusal:
    """What a delete that failed for now says (`Job x (step a) delete refused: 403 ...`); `child`: the
    step's object is a child JobFlow."""
    what = _deleted(delete, child)
    if isinstance(err, ApiError):
        reason = REASON_DELETE_FORBIDDEN if verdict(err) else REASON_DELETE_FAILED
        return planner.DeleteRefusal(delete, reason, f"{what} delete refused: {answer(err)}")
    return planner.DeleteRefusal(delete, REASON_DELETE_FAILED, f"{what} delete failed, {answer(err)}")


def delete_held(delete: planner.DeleteJob, first: Exception, *, child: bool) -> planner.DeleteRefusal:
    """A delete not sent once an earlier one of the plan got no verdict (`first`: a 5xx, no answer): the
    next plans send it again (controller/job_deletes.py). Not told as refused: it was not asked."""
    what = _deleted(delete, child)
    said = f"{what} delete not sent: an earlier delete got {answer(first)}"
    return planner.DeleteRefusal(delete, REASON_DELETE_FAILED, said, sent=False)


def _deleted(delete: planner.DeleteJob, child: bool) -> str:
    return f"{'JobFlow' if child else 'Job'} {delete.name}{f' (step {delete.step})' if delete.step else ''}"


def with_failing_conditions(
    old: JobFlowStatus, status: JobFlowStatus, executed: Executed, now: datetime
) -> JobFlowStatus:
    """`status` (planned from `old`) with conditions JobCreateFailing and JobDeleteFailing as `executed`
    leaves them. Creates the apiserver rejected for good fail the flow: none is said to be retried."""
    rejected = bool(executed.rejected)
    status = planner.with_create_condition(
        old,
        status,
        () if rejected else executed.refused,
        now,
        created=bool(executed.created),
        quiet=executed.quiet and not rejected,
    )
    return planner.with_delete_condition(
        old, status, executed.undeleted, now, deleted=executed.deleted, quiet=executed.deletes_quiet
    )
