"""Sending a plan's Job deletes for the executor (controller/executor.py), and what became of them.

Concurrently, as many at once as a plan's creates (the executor's CREATE_CONCURRENCY). One after the other,
each delete that hangs (an overloaded admission webhook with `failurePolicy: Fail` on DELETE, an apiserver
that does not answer) cost up to the client's timeout (30 s) or the webhook's `timeoutSeconds`: the stop of
a 300-wide fan-out held a worker for hours, and again on every retry, the status write waiting behind it.
Once a delete gets no answer, a 5xx or a 429, those not sent yet are not sent: the apiserver is in trouble,
and the next reconciles (the failure's backoff) ask for them again while their Jobs run (planner.undeleted,
planner.retention, planner.lifecycle `strays`, planner.finale `delete_again`). So a plan's deletes cost
about one request's timeout at most. A verdict (403, 422: a policy denying DELETE, missing RBAC) comes
fast and says nothing of the other Jobs: they are all still sent.

Expectations are raised (by the executor) before any goes out, and lowered for each one that fails, is not
sent, or finds nothing to delete, so the next reconcile never waits for a delete event that cannot come.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from zen_flow import planner
from zen_flow.api import Job, JobFlow
from zen_flow.controller.create_failures import delete_held, delete_refusal, verdict
from zen_flow.controller.metrics import Metrics
from zen_flow.kube.errors import Conflict, NotFound
from zen_flow.logging import get_logger
from zen_flow.machinery.expectations import Expectations
from zen_flow.planner.events import TIMEOUT_MARK
from zen_flow.planner.retention import RELEASED_REASON, RETENTION_REASONS

log = get_logger(__name__)


class DeleteApi(Protocol):
    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None: ...
    async def delete_flow(self, namespace: str, name: str, uid: str) -> None: ...


@dataclass(frozen=True)
class Deleted:
    """What a plan's deletes did: `undeleted`, those that failed or were not sent (in the plan's order),
    each with its error; `deleted`, whether one went through."""

    undeleted: tuple[tuple[planner.DeleteRefusal, Exception], ...] = ()
    deleted: bool = False


class JobDeletes:
    def __init__(
        self,
        *,
        api: DeleteApi,
        expectations: Expectations,
        metrics: Metrics,
        disown: Callable[[str], None],
        owned: Callable[[str], Iterable[Job]] | None,
        limit: int,
    ) -> None:
        """As the executor's (`PlanExecutor`); `limit`: how many deletes may be in flight at once."""
        self._api = api
        self._expectations = expectations
        self._metrics = metrics
        self._disown = disown
        self._owned = owned
        self._limit = limit

    async def send(
        self, flow: JobFlow, deletes: Sequence[planner.DeleteJob], made: Mapping[str, str]
    ) -> Deleted:
        """Send `deletes` (their expectations raised), as the module's docstring says."""
        if not deletes:
            return Deleted()
        ns, uid = flow.metadata.namespace, flow.metadata.uid
        objects = {j.metadata.name: j for j in self._owned(uid)} if self._owned else {}
        children = {s.name for s in flow.spec.steps if s.is_flow}
        gate = asyncio.Semaphore(self._limit)
        failed: dict[int, tuple[planner.DeleteRefusal, Exception]] = {}
        settled: set[int] = set()  # whose expectation is done with: observed, lowered, or left to its event
        unanswered: list[Exception] = []  # the first delete with no verdict: the rest are not sent
        deleted = False

        async def delete_one(place: int, delete: planner.DeleteJob) -> None:
            nonlocal deleted
            async with gate:
                child = delete.step in children
                if unanswered:
                    self._expectations.deletion_failed(uid, delete.name)
                    settled.add(place)
                    failed[place] = (delete_held(delete, unanswered[0], child=child), unanswered[0])
                    return
                if delete.reason == planner.ENDED_REASON or delete.reason in RETENTION_REASONS:
                    # Its tombstone would bring it back to the next plans, deleted again and again (and a
                    # stray's outcome taken over by a rerun: informer/tombstones.py). jobRetention's are
                    # finished Jobs whose outcome is stored or superseded: nothing reads their last state.
                    self._disown(f"{ns}/{delete.name}")
                try:
                    await self._delete(flow, delete, made, objects, child)
                except (NotFound, Conflict):  # gone, or its name another's now: nothing of ours to delete
                    self._expectations.deletion_observed(uid, delete.name)
                    settled.add(place)
                    return
                except Exception as err:
                    # Refused (a webhook's or RBAC's 403, a policy's 422), a 5xx, no answer: the status is
                    # written all the same, and the next plans ask for this delete again while the Job
                    # runs (planner.delete_refusals); the reconciler raises this for the queue's backoff.
                    self._expectations.deletion_failed(uid, delete.name)
                    settled.add(place)
                    if not verdict(err) and not unanswered:
                        unanswered.append(err)
                    self._metrics.job_delete_failures.labels(delete_cause(delete.reason)).inc()
                    failed[place] = (delete_refusal(delete, err, child=child), err)
                    log.info("job delete failed", step=delete.step, job=delete.name, error=str(err))
                    return
                settled.add(place)
                # Counted only when it deleted something: a Job someone else deleted (its tombstone still
                # among the flow's: informer/tombstones.py) is no delete of the controller's.
                self._metrics.job_deletes.labels(delete_cause(delete.reason)).inc()
                deleted = True
                log.info("deleted job", step=delete.step, job=delete.name, reason=delete.reason)

        try:
            outcomes = await asyncio.gather(
                *(delete_one(i, d) for i, d in enumerate(deletes)), return_exceptions=True
            )
            if lost := next((o for o in outcomes if isinstance(o, BaseException)), None):
                raise lost
        except BaseException:
            # Cancelled (the reconcile is going away), or a failure of our own: none left waited for.
            self.fail([d for i, d in enumerate(deletes) if i not in settled], uid)
            raise
        return Deleted(tuple(failed[i] for i in sorted(failed)), deleted)

    def fail(self, deletes: Sequence[planner.DeleteJob], uid: str) -> None:
        """A delete that failed or was never sent will not be observed: an expectation left for it held
        the flow's next reconcile until it expired (5 minutes) instead of the retry's backoff."""
        for delete in deletes:
            self._expectations.deletion_failed(uid, delete.name)

    async def _delete(
        self,
        flow: JobFlow,
        delete: planner.DeleteJob,
        made: Mapping[str, str],
        objects: Mapping[str, Job],
        child: bool,
    ) -> None:
        """Delete the flow's object of this name, as the cache shows it among the flow's: a verified child
        flow with a JobFlow delete (its Jobs follow it by ownerReference), a Job with a Job delete, each
        only if it is still the object of that UID (`Conflict` otherwise). Never chosen by the step's name:
        a JobFlow that claims this flow as its parent but is not its child is no Job of it, and a Job
        delete of its name would remove someone else's Job. `NotFound` when the cache no longer has it.
        `child`: the step is a Flow step."""
        ns, name = flow.metadata.namespace, delete.name
        if name in made:  # created by this very reconcile: its UID says which object it is
            await (self._api.delete_flow if child else self._api.delete_job)(ns, name, made[name])
            return
        if self._owned is None:
            await self._api.delete_job(ns, name)
            return
        found = objects.get(name)
        if isinstance(found, planner.ChildFlowJob) and found.flow is not None:
            await self._api.delete_flow(ns, name, found.metadata.uid)
        elif found is not None and not isinstance(found, planner.ChildFlowJob):
            await self._api.delete_job(ns, name, found.metadata.uid)
        else:  # a refused child (never created), or gone from the cache since the plan
            raise NotFound(404, "NotFound", f"{name} is not among the flow's objects")


def delete_cause(reason: str) -> str:
    """A bounded metric label for why a Job was stopped (the planner's reason is free text)."""
    lowered = reason.lower()
    if reason == planner.ENDED_REASON:  # planner.lifecycle.strays: a Job an ended flow does not record
        return "ended"
    if reason == RELEASED_REASON:  # planner.retention: a Succeeded step's Job (jobRetention FailedOnly)
        return "succeeded"
    for mark, cause in (
        ("podpendingtimeout", "pod_pending"),  # planner.pending_pods: podPendingTimeoutSeconds
        (TIMEOUT_MARK, "timeout"),
        ("deadline", "deadline"),
        ("replaced", "replaced"),
        ("stopped", "stopped"),
        ("steps changed", "edited"),  # first_jobs.STEPS_CHANGED: Jobs built from steps edited since
        ("superseded", "superseded"),  # planner.retention: an earlier attempt's Job (jobRetention)
    ):
        if mark in lowered:
            return cause
    return "other"
