"""Writing a flow's status for the reconciler: once per reconcile, only what changed, conditionally.

It also remembers each write until the informer shows it: a flow whose cached copy is older than our
last write would only earn a 409 if reconciled, so the reconciler waits for the watch event instead.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from zen_flow import planner
from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.controller.announcements import Announcements
from zen_flow.controller.flow_memory import cached_as
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.newer_schema_marks import NewerSchemaMarks
from zen_flow.controller.status_holds import RETRY_CAP_SECONDS, StatusHolds
from zen_flow.controller.transition_metrics import record_transitions
from zen_flow.core import jsonpatch
from zen_flow.kube.errors import ApiError, Conflict
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock
from zen_flow.planner.actions import EventSpec
from zen_flow.planner.events import WARNING
from zen_flow.planner.newer_schema import REASON_NEWER_SCHEMA
from zen_flow.planner.status import REASON_STATUS_REJECTED, cut

log = get_logger(__name__)

# How long to wait for our own status write to show up in the cache before trusting the cache anyway.
WRITE_VISIBLE_TIMEOUT = 5.0


class StatusApi(Protocol):
    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        """Applies a JSON patch (`zen_flow.core.jsonpatch`) to /status; returns the new resourceVersion."""
        ...


class WrittenFlows(Protocol):
    def get(self, key: str) -> JobFlow | None: ...
    def expect_status(self, flow: JobFlow, resource_version: str, ops: list[dict[str, Any]]) -> None:
        """Our status patch `ops` of `flow` made `resource_version`: the cache may take its watch event
        as known instead of decoding it."""
        ...


class StatusWriter:
    def __init__(
        self,
        *,
        api: StatusApi,
        flows: WrittenFlows,
        announcements: Announcements,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._api = api
        self._flows = flows
        self._announcements = announcements
        self._metrics = metrics
        self._clock = clock
        # flow uid -> (resourceVersion of our last status write, monotonic deadline). Until the informer
        # delivers that version, the cached flow is older than what we wrote: reconciling it would only
        # earn a 409 (the patch is conditional) and a wasted round trip.
        self._written: dict[str, tuple[str, float]] = {}
        self._holds: StatusHolds[JobFlow, JobFlowStatus] = StatusHolds(clock.monotonic)
        self._newer = NewerSchemaMarks(clock.now, flows.get)  # refusals of a NewerSchema write told

    def observed(self, flow: JobFlow) -> None:
        """The informer delivered `flow`: if it is our last write, the cache has caught up."""
        written = self._written.get(flow.metadata.uid)
        if written is not None and written[0] == flow.metadata.resource_version:
            del self._written[flow.metadata.uid]

    def forget(self, uid: str) -> None:
        self._written.pop(uid, None)
        self._holds.forget(uid)
        self._newer.forget(uid)

    def uids(self) -> list[str]:
        return [*self._written, *self._holds.uids(), *self._newer.uids()]

    def unseen_for(self, uid: str) -> float | None:
        """Seconds to go before the cache is trusted although it has not shown our last write of the
        flow; None when the cache shows every write (or the wait is over: a relist may skip an event)."""
        written = self._written.get(uid)
        if written is None:
            return None
        remaining = written[1] - self._clock.monotonic()
        if remaining > 0:
            return remaining
        del self._written[uid]
        return None

    async def write(self, flow: JobFlow, status: JobFlowStatus, *, stored: JobFlow | None = None) -> bool:
        """True when a patch was sent and accepted; False when there was nothing to write. `stored`: the
        flow as stored when `flow` is its effective flow (controller/matrix_flows.py), which the cache
        must keep."""
        # Only the step entries that changed are sent, and the resourceVersion makes the patch
        # conditional: a status computed from a stale cache is refused (409) instead of overwriting a
        # newer one (or replacing an entry by a stale index); the worker retries once the cache caught up.
        ops = jsonpatch.status_ops(flow.status, status, flow.metadata.resource_version)
        if not ops:
            self._metrics.status_patches.labels("unchanged").inc()
            return False
        ns, name = flow.metadata.namespace, flow.metadata.name
        try:
            try:
                rv = await self._api.patch_flow_status(ns, name, ops)
            except ApiError as err:
                if err.status != 422 or jsonpatch.writes_whole(ops):
                    raise
                # The stored status lacks an entry or member the cached one showed: a cache behind an
                # edit by hand (a patch is applied before its version is checked, so this is a 422, not a
                # 409). Write the status whole, still conditional: a stale cache now gets its 409 and
                # waits; a status the apiserver finds invalid is refused again and fails the flow.
                log.warning("status patch did not apply; writing the whole status", error=err.message)
                ops = jsonpatch.whole_status_ops(status, flow.metadata.resource_version)
                rv = await self._api.patch_flow_status(ns, name, ops)
        except Conflict:
            self._metrics.status_patches.labels("conflict").inc()
            raise
        self._metrics.status_patches.labels("written").inc()
        self._holds.accepted(flow.metadata.uid)
        cached = cached_as(self._flows.get, flow.key, flow.metadata.uid)
        # The watch event may already have been applied while we awaited the response, or the flow's
        # delete event: then nothing of it comes any more, and nothing is kept for it.
        if rv and cached is not None and cached.metadata.resource_version != rv:
            self._written[flow.metadata.uid] = (rv, self._clock.monotonic() + WRITE_VISIBLE_TIMEOUT)
            self._flows.expect_status(stored or flow, rv, ops)
        record_transitions(self._metrics, flow, status)
        return True

    async def refused(
        self,
        flow: JobFlow,
        err: ApiError,
        now: datetime,
        planned: JobFlowStatus,
        *,
        stored: JobFlow | None = None,
    ) -> tuple[planner.DeleteJob, ...]:
        """The apiserver refused the new status for good (too large for etcd, or invalid). End the flow
        Failed with a write that changes only its phase, conditions and message (the status it has
        already fits), instead of retrying the same refused write forever. Returns the deletes of the
        Jobs still running in the `planned` status (those the refused plan created included): a Failed
        flow must not leave them running, unrecorded. When that write is refused too, the stored object
        is what the apiserver refuses: the flow is held (status_holds.py) and nothing is deleted."""
        cause = "too large to store" if err.too_large else "refused"
        log.error(
            "status write refused; failing the flow", flow=flow.key, status=err.status, error=err.message
        )
        self._metrics.status_patches.labels("refused").inc()
        ended = planner.fail_invalid(
            flow,
            [f"the apiserver answered {err.status}: {err.message}"],
            now,
            reason=REASON_STATUS_REJECTED,
            prefix=f"the flow's status is {cause}",
            base=planned,
        )
        failed = ended.status
        unchanged = {"steps", "progress", "progress_summary", "resource_refs", "audit"}
        minimal = failed.model_copy(update={k: getattr(flow.status, k) for k in unchanged})
        # Its Event is told whatever becomes of the write below (acted), unless the flow is held; its
        # CloudEvent (failed.v1) once the write records the failure, as a transition's.
        told = (
            EventSpec(
                WARNING, REASON_STATUS_REJECTED, cut(f"status {cause}: {err.message}", 1024), acted=True
            ),
        )
        try:
            written = await self.write(flow, minimal, stored=stored)
        except BaseException as again:
            if not isinstance(again, ApiError) or not again.permanent:
                self._announcements.acted(flow, told)
                self._announcements.in_doubt(flow, minimal, told, now, again)
                raise
            self._hold(flow, planned, err, stored=stored)
            return ()
        self._announcements.acted(flow, told)
        self._announcements.recorded(flow, minimal, told, now, written=written)
        return tuple(a for a in ended.actions if isinstance(a, planner.DeleteJob))

    def _hold(self, flow: JobFlow, planned: JobFlowStatus, err: ApiError, *, stored: JobFlow | None) -> None:
        """Even the smallest write is refused: hold the flow (status_holds.py), told once per cause."""
        self._metrics.status_patches.labels("refused").inc()
        if not self._holds.hold(flow, planned, err.message, stored=stored):
            log.debug("status write refused again; the flow stays held", flow=flow.key, error=err.message)
            return
        log.error(
            "the flow's failure status was refused too; holding the flow: no Job is created or deleted "
            "until a status write is accepted",
            flow=flow.key,
            status=err.status,
            error=err.message,
        )
        message = (
            f"status refused ({err.status}): {err.message}. The flow is held: its Jobs are neither created "
            f"nor deleted until a status write is accepted (tried again up to every {RETRY_CAP_SECONDS:g}s, "
            "and at once when the flow changes)"
        )
        self._announcements.acted(
            flow, (EventSpec(WARNING, REASON_STATUS_REJECTED, cut(message, 1024), acted=True),)
        )

    async def held(self, flow: JobFlow) -> float | None:
        """Seconds until the held `flow` is looked at again; None when it is not held (or changed since:
        planned as any flow). A held flow due for it has its refused write sent again: accepted, the
        flow goes on from the status it recorded (its watch event, or the returned safety net, brings it
        back); refused again, it backs off further."""
        hold = self._holds.held(flow)
        if hold is None:
            return None
        if (wait := self._holds.due_in(hold)) > 0:
            return wait
        err = await self._holds.resend(hold, partial(self.write, hold.flow, hold.status, stored=hold.stored))
        if err is None:
            log.info("held flow's status write accepted; the flow goes on", flow=flow.key)
            return self.unseen_for(flow.metadata.uid) or 0.0
        if err.permanent:
            self._hold(hold.flow, hold.status, err, stored=hold.stored)
        else:
            log.info("held flow's status write failed; tried again later", flow=flow.key, error=str(err))
        return self._holds.due_in(self._holds.held(flow) or hold)

    async def newer_schema(self, flow: JobFlow, found: str, *, stored: JobFlow) -> float:
        """The flow was written for a newer zen-flow (`found`: api/known_fields.newer_field): its
        condition Valid says so (Unknown, NewerSchema), nothing of it is planned; looked at again slowly.
        A refusal of that write for good is told once (newer_schema_marks.py), not raised."""

        def tell(message: str) -> None:
            self._announcements.acted(flow, (EventSpec(WARNING, REASON_NEWER_SCHEMA, message, acted=True),))

        return await self._newer.mark(
            stored.metadata, flow.status, found, partial(self.write, flow, stored=stored), tell
        )

    def held_flows(self) -> list[str]:
        """namespace/name of the flows held (read at scrape time)."""
        return self._holds.keys()


def with_job_uids(status: JobFlowStatus, created: dict[str, str]) -> JobFlowStatus:
    """Fill in the UIDs of Jobs this reconcile just created, so the status is complete in one write
    (otherwise the next reconcile would learn them from the cache and write status a second time)."""
    steps = tuple(
        replace(step, job_ref=replace(step.job_ref, uid=created[step.job_ref.name]))
        if step.job_ref is not None and not step.job_ref.uid and step.job_ref.name in created
        else step
        for step in status.steps
    )
    return status.model_copy(update={"steps": steps})
