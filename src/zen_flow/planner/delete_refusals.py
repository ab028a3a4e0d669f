"""A Job delete the apiserver refused for now (403 or 422: an admission policy or webhook that denies
DELETE, missing RBAC; a 5xx: a failing webhook; no answer), and the condition that says so.

The controller deletes Jobs before a plan's status write (a timed-out step's, jobRetention's, an ended
flow's strays) and after it (a graceful stop's, planner.actions `held`). One that fails no longer discards
the plan: every delete is sent (but those held back once one got no answer: controller/job_deletes.py),
the status is written as planned (the timed-out step Retrying or Failed, the Jobs the plan created
recorded), and the first failure is raised for the queue's backoff. Every later
plan asks for the delete again while the Job runs: planner.undeleted (an ended attempt's Job),
planner.retention (jobRetention's), planner.lifecycle `strays` (an ended flow's), planner.finale
`delete_again` (a graceful stop's).

Condition JobDeleteFailing says why Jobs the flow should have stopped run on (`kubectl describe`,
`kubectl wait --for=condition=JobDeleteFailing=false`): True naming the first refused Job and the
apiserver's answer, False once a plan's deletes pass (JobsDeleted) or it had none left to send
(NoDeletesRefused: the Job ended, or someone else deleted it). The planner never names it, so every status
written carries it on (`with_delete_condition`), by JobCreateFailing's rule (planner.failing_condition):
its message stays as first written while the Job it names is refused for the same reason. A first 5xx or
lost answer is taken for a blip the retry gets past (`quiet`): the status is written, the delete tried
again, nothing said.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from zen_flow.api.constants import JOB_DELETE_FAILING
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.planner.actions import DeleteJob, EventSpec
from zen_flow.planner.create_refusals import RETRIED
from zen_flow.planner.failing_condition import FailingCondition, Refused, with_failing
from zen_flow.planner.lifecycle import stray_events

__all__ = ["JOB_DELETE_FAILING", "DeleteRefusal", "untold", "with_delete_condition"]

# A 4xx verdict: 403 (a webhook, RBAC), 422 (a ValidatingAdmissionPolicy); also the Warning event's.
REASON_DELETE_FORBIDDEN = "DeleteForbidden"
REASON_DELETE_FAILED = "DeleteFailed"  # a 5xx, a 429, no answer (also the Warning event's, when repeated)
REASON_JOBS_DELETED = "JobsDeleted"  # False: the last plan's deletes passed
REASON_NONE_REFUSED = "NoDeletesRefused"  # False: the last plan had nothing left to delete
DELETE_FAILING = FailingCondition(JOB_DELETE_FAILING, REASON_JOBS_DELETED, REASON_NONE_REFUSED)
# What follows the Job a refusal's message names (`Job x (step a) delete refused: ...`).
_DELETE = " delete "


@dataclass(frozen=True)
class DeleteRefusal:
    """A Job (or child flow) delete that failed and is tried again by the next plans: `delete` is the
    plan's action, `reason` the condition's and the event's, `message` what they say (`Job x (step a)
    delete refused: 403 ...`). `sent` False: held back, an earlier delete having got no answer (no
    Warning event of its own: the apiserver never refused it)."""

    delete: DeleteJob
    reason: str
    message: str
    sent: bool = True


def with_delete_condition(
    old: JobFlowStatus,
    status: JobFlowStatus,
    refusals: Sequence[DeleteRefusal],
    now: datetime,
    *,
    deleted: bool = False,
    quiet: bool = False,
) -> JobFlowStatus:
    """`status` with condition JobDeleteFailing (planner.failing_condition): True naming the first
    refusal, False once a plan of a flow that had it got by without one (JobsDeleted when it `deleted`
    something). `quiet`: as it was (a first blip)."""
    refused = None
    if refusals:
        first = refusals[0]
        more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
        leads = tuple(r.message.partition(_DELETE)[0] + _DELETE for r in refusals)
        refused = Refused(first.reason, f"{first.message}{more} ({RETRIED})", leads)
    return with_failing(old, status, DELETE_FAILING, refused, now, passed=deleted, quiet=quiet)


def untold(events: Iterable[EventSpec], refusals: Sequence[DeleteRefusal]) -> tuple[EventSpec, ...]:
    """`events` without those that tell of a refused delete as done (a stray's `StrayJobDeleted`)."""
    events = tuple(events)
    if not refusals:
        return events
    undone = set(stray_events(r.delete for r in refusals))
    return tuple(e for e in events if e not in undone)
