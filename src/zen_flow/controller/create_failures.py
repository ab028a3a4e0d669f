"""What a plan's Job creates and deletes did (`Executed`), and what a create or a delete that failed for
now says; also a child flow's patch or the flow's TTL deletion (controller/flow_requests.py).

Apart from the executor (controller/executor.py) that sends them, so the reconciler, the announcements
and the executor read one wording of a failed request's answer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from zen_flow import planner
from zen_flow.api import JobFlowStatus
from zen_flow.kube.errors import ApiError
from zen_flow.planner.create_refusals import (
    REASON_CREATE_FAILED,
    REASON_CREATE_FORBIDDEN,
    REASON_NAME_TAKEN,
)
from zen_flow.planner.delete_refusals import REASON_DELETE_FAILED, REASON_DELETE_FORBIDDEN

# The Warning events of a Flow step's child flow its parent could not suspend, resume or stop: a 4xx
# verdict (a webhook's or RBAC's 403, a policy's 422), and a 5xx, a 429 or no answer.
REASON_CHILD_UPDATE_FORBIDDEN = "ChildUpdateForbidden"
REASON_CHILD_UPDATE_FAILED = "ChildUpdateFailed"


def _first_blip(
    failed: tuple[planner.CreateRefusal, ...] | tuple[planner.DeleteRefusal, ...], again: bool, blip: str
) -> bool:
    """Requests failed, each only with `blip` (a 5xx or no answer), and not the time before as well: most
    often a blip the retry gets past, so nothing is said of it yet."""
    return bool(failed) and not again and all(r.reason == blip for r in failed)


@dataclass(frozen=True)
class RequestFailure:
    """A request on a flow that failed for now (controller/flow_requests.py): a child flow's suspend,
    resume or stop, or the flow's TTL deletion. `reason` and `message`: its Warning event's; `told`: is
    the event sent (not for a first blip, nor for a TTL deletion's refusal said already); `error`: the
    answer, raised for the queue's backoff."""

    reason: str
    message: str
    error: Exception
    told: bool = True


@dataclass(frozen=True)
class Executed:
    """What a plan's creates and deletes did. `created`: {name: uid} of the Jobs (and child flows) it
    created or adopted; `rejected`: why the apiserver refused Jobs for good (422/400: sending them again
    could not succeed); `refused`: the steps whose creates failed for now (403, 5xx, no answer), tried
    again with backoff, and `errors` their errors in the same order (the reconciler raises the first once
    the status is written, for the queue's backoff); `again`: the flow's creates had failed the time
    before as well; `unwritten`: a create that failed otherwise (a failed look at who holds a taken name),
    for which the reconciler writes nothing and raises, to retry soon;
    `unanswered`: the names of refused creates with no verdict (a 5xx, no answer): the object may exist.
    `undeleted`: the deletes that failed (any answer but 404 and 409, which leave nothing of the flow's
    to delete), tried again by the next plans, and `delete_errors` their errors in the same order (raised
    once the status is written); `deletes_again`: the flow's deletes had failed the time before as well;
    `deleted`: a delete went through. `unpatched`: the child flow patches (suspend, resume, stop) that
    failed, asked for again by the next plans (raised once the status is written); `flow_undeleted`: the
    flow's TTL deletion, when it failed (raised with no status written: the plan deleting the flow
    records nothing else). `taken`: the steps whose Job (or child flow) name is held by one on its way out
    (being deleted, a deleted flow's awaiting the garbage collector), held back as refused ones are, and
    `taken_errors` their JobNameTaken in the same order (raised once the status is written, to retry
    soon); no failing create (condition JobCreateFailing, zen_flow_jobflows_job_creates_failing)."""

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
    unpatched: tuple[RequestFailure, ...] = ()
    flow_undeleted: RequestFailure | None = None
    taken: tuple[planner.CreateRefusal, ...] = ()
    taken_errors: tuple[Exception, ...] = ()

    @property
    def held(self) -> tuple[planner.CreateRefusal, ...]:
        """The steps whose creates did not go through for now (refused, or their names taken)."""
        return (*self.refused, *self.taken)

    @property
    def held_errors(self) -> tuple[Exception, ...]:
        """Their errors: the first refused create's and the first taken name's are told as Warnings."""
        return (*self.errors, *self.taken_errors)

    @property
    def quiet(self) -> bool:
        """Only a first 5xx or lost answer failed the creates (_first_blip; a 403 is said at once)."""
        return _first_blip(self.refused, self.again, REASON_CREATE_FAILED)

    @property
    def deletes_quiet(self) -> bool:
        """Only a first 5xx or lost answer failed the deletes (_first_blip; a 4xx verdict is said at once)."""
        return _first_blip(self.undeleted, self.deletes_again, REASON_DELETE_FAILED)

    @property
    def undone_errors(self) -> tuple[Exception, ...]:
        """The errors of the failed deletes and child flow patches, raised once the status is written."""
        return (*self.delete_errors, *(f.error for f in self.unpatched))

    def and_later(self, later: Executed) -> Executed:
        """This with the deletes and child flow stops a `later` execution of the same reconcile sent (its
        creates are none)."""
        if not later.undeleted and not later.deleted and not later.unpatched:
            return self
        return replace(
            self,
            undeleted=(*self.undeleted, *later.undeleted),
            delete_errors=(*self.delete_errors, *later.delete_errors),
            deletes_again=self.deletes_again or later.deletes_again,
            deleted=self.deleted or later.deleted,
            unpatched=(*self.unpatched, *later.unpatched),
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


def waiting(create: planner.CreateJob, err: ApiError) -> planner.CreateRefusal:
    """What the step of a create whose name is held by one on its way out says (`Job create waits: Job x
    already exists and is on its way out ...`)."""
    what = "JobFlow" if planner.is_child_body(create.body) else "Job"
    return planner.CreateRefusal(create.step, REASON_NAME_TAKEN, f"{what} create waits: {err.message}")


def verdict(err: Exception) -> bool:
    """Is this failed request's answer a verdict (a 4xx: a webhook's or RBAC's 403, a policy's 422), the
    admin's or the policy's to lift? A 5xx, a 429 or no answer is the apiserver's trouble, most often a
    blip."""
    return isinstance(err, ApiError) and 400 <= err.status < 500 and err.status != 429


def said(request: str, err: Exception, forbidden: str, failed: str) -> tuple[str, str]:
    """The reason and the message of a `request` (`Job x (step a) delete`) that failed for now: `forbidden`
    for a 4xx verdict, `failed` for a 5xx, a 429 or no answer (`... refused: 403 ...`, `... failed, no
    answer: ...`)."""
    if isinstance(err, ApiError):
        return forbidden if verdict(err) else failed, f"{request} refused: {answer(err)}"
    return failed, f"{request} failed, {answer(err)}"


def delete_refusal(delete: planner.DeleteJob, err: Exception, *, child: bool) -> planner.DeleteRefusal:
    """What a delete that failed for now says (`Job x (step a) delete refused: 403 ...`); `child`: the
    step's object is a child JobFlow."""
    request = f"{_deleted(delete, child)} delete"
    reason, message = said(request, err, REASON_DELETE_FORBIDDEN, REASON_DELETE_FAILED)
    return planner.DeleteRefusal(delete, reason, message)


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
        taken=[r.step for r in executed.taken],
    )
    return planner.with_delete_condition(
        old, status, executed.undeleted, now, deleted=executed.deleted, quiet=executed.deletes_quiet
    )
