"""Writing a flow's status for the reconciler: once per reconcile, only what changed, conditionally.

It also remembers each write until the informer shows it: a flow whose cached copy is older than our
last write would only earn a 409 if reconciled, so the reconciler waits for the watch event instead.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from zen_flow import planner
from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.controller.announcements import Announcements
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.transition_metrics import record_transitions
from zen_flow.core import jsonpatch
from zen_flow.kube.errors import ApiError, Conflict
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock
from zen_flow.planner.actions import EventSpec
from zen_flow.planner.events import WARNING
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

    def observed(self, flow: JobFlow) -> None:
        """The informer delivered `flow`: if it is our last write, the cache has caught up."""
        written = self._written.get(flow.metadata.uid)
        if written is not None and written[0] == flow.metadata.resource_version:
            del self._written[flow.metadata.uid]

    def forget(self, uid: str) -> None:
        self._written.pop(uid, None)

    def uids(self) -> list[str]:
        return list(self._written)

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
        cached = self._flows.get(flow.key)
        # The watch event may already have been applied while we awaited the response, or the flow's
        # delete event: then nothing of it comes any more, and nothing is kept for it.
        if (
            rv
            and cached is not None
            and cached.metadata.uid == flow.metadata.uid
            and cached.metadata.resource_version != rv
        ):
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
        flow must not leave them running, unrecorded."""
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
        # Its Event is told whatever becomes of the write below (acted); its CloudEvent (failed.v1) once
        # the write records the failure, as a transition's.
        told = (
            EventSpec(
                WARNING, REASON_STATUS_REJECTED, cut(f"status {cause}: {err.message}", 1024), acted=True
            ),
        )
        self._announcements.acted(flow, told)
        try:
            written = await self.write(flow, minimal, stored=stored)
        except BaseException as again:
            if not isinstance(again, ApiError) or not again.permanent:
                self._announcements.in_doubt(flow, minimal, told, now, again)
                raise
            # Even the smallest write is refused: nothing more we can do for this flow but say so.
            log.error(
                "the failure status was refused too; giving up on the flow", flow=flow.key, error=str(again)
            )
        else:
            self._announcements.recorded(flow, minimal, told, now, written=written)
        return tuple(a for a in ended.actions if isinstance(a, planner.DeleteJob))


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
