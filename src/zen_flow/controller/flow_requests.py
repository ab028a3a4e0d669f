"""A plan's requests on flows rather than Jobs: a Flow step's child flow suspended or resumed with its
parent (planner.children `suspensions`), or asked to stop and run its finally steps (planner.child_stops),
and the flow itself deleted once its TTL expired (planner.lifecycle `terminal_plan`).

A 404 or a 409 leaves nothing to do: the child (or the flow) is gone, its name is another flow's now (the
UID precondition), or the child changed since the plan read it (a stop a user set meanwhile): the next
plan decides again. Any other answer fails that request alone (`RequestFailure`), and the plan's other
requests are sent all the same.

A child's patch that failed is asked for again by the next plans while the child is not as its parent
wants it (suspended or not, carrying a stop), so the parent's status is written all the same (its phase
Suspended, the finally grace recorded), a Warning event `ChildUpdateForbidden` (a 4xx verdict: a
webhook's or RBAC's 403, a ValidatingAdmissionPolicy's 422) or `ChildUpdateFailed` (a 5xx, a 429, no
answer) names the child and quotes the answer, and the reconciler raises the error for the queue's
backoff. Never told as a refused create (`CreateForbidden`), as it was when the error left the executor.
A first 5xx or lost answer is taken for a blip the retry gets past, as a Job delete's (job_deletes.py):
said only when the flow's child patches failed the time before as well.

A failed TTL deletion leaves no status to write (the plan that deletes the flow records nothing else):
the reconciler raises it for the backoff, and every retry sends it again. It is told once, as a Job
delete's would be, `DeleteForbidden` (a 4xx verdict) or `DeleteFailed` (a 5xx, a 429 or no answer, from
its second time in a row), and again only when the answer's reason changes: a refusal that lasts (a
policy protecting the flow) would otherwise count one more on its Event at each retry for as long as the
flow is kept.

Neither counts in zen_flow_job_delete_failures_total: a patch is no delete, and the TTL deletion is the
JobFlow's, which zen_flow_job_deletes_total (whose causes that metric shares) does not count either.
zen_flow_api_requests_total{verb, resource="jobflows", code} does, and a 403 fires ZenFlowAPIForbidden.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from zen_flow import planner
from zen_flow.api import JobFlow
from zen_flow.controller.create_failures import (
    REASON_CHILD_UPDATE_FAILED,
    REASON_CHILD_UPDATE_FORBIDDEN,
    RequestFailure,
    said,
    verdict,
)
from zen_flow.kube.errors import Conflict, NotFound
from zen_flow.logging import get_logger
from zen_flow.planner.delete_refusals import REASON_DELETE_FAILED, REASON_DELETE_FORBIDDEN

log = get_logger(__name__)


class FlowApi(Protocol):
    async def delete_flow(self, namespace: str, name: str, uid: str) -> None: ...
    async def suspend_flow(self, namespace: str, name: str, suspend: bool, uid: str) -> None: ...
    async def stop_flow(
        self, namespace: str, name: str, uid: str, by: str, resource_version: str = ""
    ) -> None: ...


@dataclass(frozen=True)
class Requested:
    """What a plan's requests on flows did: `unpatched`, the child patches that failed (in the plan's
    order); `undeleted`, the flow's TTL deletion, when it failed."""

    unpatched: tuple[RequestFailure, ...] = ()
    undeleted: RequestFailure | None = None


class FlowRequests:
    def __init__(self, api: FlowApi) -> None:
        self._api = api
        # UIDs of the flows whose last child patches failed: a 5xx or no answer is told from its second
        # time in a row. By UID, as every book here: a flow re-created under its name starts afresh, and
        # the flow's memory (flow_memory.py) forgets them with it.
        self._patches_failing: set[str] = set()
        # UIDs of the flows whose last TTL deletion failed -> the reason last told of it ("": none yet).
        self._deletes_failing: dict[str, str] = {}
        # UIDs of the flows deleted here (an expired TTL) that the flow cache still shows: the delete has
        # no finalizer to wait for, so the cache holds the flow, not marked deleted, until its watch event
        # comes. A reconcile meanwhile (a Job event, a timer, a wake-up) would plan the expired TTL again
        # and send a second DELETE (404), logged as another deletion.
        self._deleted: set[str] = set()

    def uids(self) -> set[str]:
        """The flows (by UID) it keeps anything of."""
        return self._patches_failing | self._deletes_failing.keys() | self._deleted

    def forget(self, uid: str) -> None:
        self._patches_failing.discard(uid)
        self._deletes_failing.pop(uid, None)
        self._deleted.discard(uid)

    def deleted(self, uid: str) -> bool:
        """Was the flow of this UID deleted here (the cache has not shown it gone yet)?"""
        return uid in self._deleted

    async def send(self, flow: JobFlow, actions: Iterable[planner.Action]) -> Requested:
        """Send the child patches and the TTL deletion among `actions`, in order, as the module says."""
        uid = flow.metadata.uid
        again = uid in self._patches_failing
        unpatched: list[RequestFailure] = []
        undeleted: RequestFailure | None = None
        patched = False
        for action in actions:
            if isinstance(action, planner.SuspendChild | planner.StopChild):
                if (failed := await self._patch(flow, action, again)) is not None:
                    unpatched.append(failed)
                else:
                    patched = True
            elif isinstance(action, planner.DeleteFlow):
                undeleted = await self._delete(flow, action)
        if unpatched:
            self._patches_failing.add(uid)
        elif patched:
            self._patches_failing.discard(uid)
        return Requested(tuple(unpatched), undeleted)

    async def _patch(
        self, flow: JobFlow, action: planner.SuspendChild | planner.StopChild, again: bool
    ) -> RequestFailure | None:
        """Patch the child; a failure unless it passed or found nothing of the plan's to patch."""
        ns = flow.metadata.namespace
        if isinstance(action, planner.SuspendChild):
            verb = "suspend" if action.suspend else "resume"
            done = "child flow suspended" if action.suspend else "child flow resumed"
        else:
            verb, done = "stop", "child flow stopped to run its finally steps"
        try:
            if isinstance(action, planner.SuspendChild):
                await self._api.suspend_flow(ns, action.name, action.suspend, action.uid)
            else:
                # Its parent's finally grace or graceful stop: it runs its own finally steps.
                await self._api.stop_flow(ns, action.name, action.uid, action.by, action.resource_version)
        except (NotFound, Conflict):
            # Gone, or its name another's now (the UID precondition): its step sees that. Changed since the
            # plan read it (a user's stop perhaps): the next plan decides again.
            pass
        except Exception as err:
            request = f"JobFlow {action.name} (step {action.step}) {verb}"
            reason, message = said(request, err, REASON_CHILD_UPDATE_FORBIDDEN, REASON_CHILD_UPDATE_FAILED)
            log.info(f"child flow {verb} failed", flow=action.name, error=str(err))
            return RequestFailure(reason, message, err, told=verdict(err) or again)
        log.info(done, flow=action.name)
        return None

    async def _delete(self, flow: JobFlow, action: planner.DeleteFlow) -> RequestFailure | None:
        """Delete the flow (its Jobs follow by ownerReference); a failure unless it is gone."""
        ns, name, uid = flow.metadata.namespace, flow.metadata.name, flow.metadata.uid
        # Before the request, as its watch event may come before its answer (`forget`).
        self._deleted.add(uid)
        try:
            await self._api.delete_flow(ns, name, uid)
        except (NotFound, Conflict):  # gone already, or its name another flow's now: ours is gone
            pass
        except Exception as err:
            self._deleted.discard(uid)  # not deleted, or not known to be: planned again
            request = f"JobFlow {name} ({action.reason}) delete"
            reason, message = said(request, err, REASON_DELETE_FORBIDDEN, REASON_DELETE_FAILED)
            last = self._deletes_failing.get(uid)  # None: it did not fail the time before
            told = reason != last and (verdict(err) or last is not None)
            self._deletes_failing[uid] = reason if told else last or ""
            log.info("flow delete failed", reason=action.reason, error=str(err))
            return RequestFailure(reason, message, err, told)
        except BaseException:  # cancelled: not known to be deleted either
            self._deleted.discard(uid)
            raise
        self._deletes_failing.pop(uid, None)
        log.info("deleted flow", reason=action.reason)
        return None
