"""A CronJobFlow's status write (one conditional merge patch of /status), and the hold of a CronJobFlow
whose every status write the apiserver refuses for good.

Such a refusal (400, 413, 422: `ApiError.permanent`) is a verdict on the stored object, not on the
status: after a CRD rolled back past a value the CronJobFlow holds (an enum widened under the atomic
steps list of its template, which validation does not ratchet), every write of it gets 422, whatever it
changes. Raising would fail every reconcile, backing off, a warning logged each time and nothing said on
the object; and its runs, recorded by their names only (planner/cron.py), would go on being made, one a
run time, under a status that records none of them and cannot say why. So it is held, as a flow is
(status_holds.py): no run created, stopped or deleted (the schedule's run times pass; once the hold ends
the latest missed one is started, as after an outage), a Warning event StatusRejected quoting the
apiserver (which names the field) once per cause, the refused write sent again from 10 s doubling up to
every 5 minutes, and at once when the object changes (a new resourceVersion). Counted, with the held
flows, by zen_flow_jobflows_status_held. The book is in memory: a restart costs one more plan and refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from zen_flow.api.cronjobflow import CronJobFlow, CronJobFlowStatus
from zen_flow.controller.flow_memory import holds
from zen_flow.controller.shard_gate import ShardGate
from zen_flow.controller.status_holds import RETRY_CAP_SECONDS, StatusHolds
from zen_flow.kube.cronjobflows import CronJobFlowClient
from zen_flow.kube.errors import ApiError
from zen_flow.kube.events import EventRecorder
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock
from zen_flow.planner.events import WARNING
from zen_flow.planner.status import REASON_STATUS_REJECTED, cut

log = get_logger(__name__)


class CronStatus:
    def __init__(
        self,
        api: CronJobFlowClient,
        events: EventRecorder,
        clock: Clock,
        look_again: Callable[[str, float], None],
        cached: Callable[[str], CronJobFlow | None],
    ) -> None:
        """`look_again(key, seconds)`: the work queue's delayed add; `cached`: the CronJobFlows' cache."""
        self._api = api
        self._cached = cached
        self._events = events
        self._look_again = look_again
        self._holds: StatusHolds[CronJobFlow, CronJobFlowStatus] = StatusHolds(clock.monotonic)

    async def write(self, cron: CronJobFlow, status: CronJobFlowStatus) -> None:
        """Write `status` unless it is the stored one; any failure is raised."""
        new, old = status.to_wire(), cron.status.to_wire()
        if new == old:
            return
        # A merge patch: a field the new status no longer has is removed with a null.
        patch: dict[str, Any] = {**{k: None for k in old if k not in new}, **new}
        await self._api.patch_status(
            cron.metadata.namespace, cron.metadata.name, patch, cron.metadata.resource_version
        )

    async def record(self, cron: CronJobFlow, status: CronJobFlowStatus) -> bool:
        """Write the plan's `status`: True when written (or unchanged). Refused for good: the CronJobFlow
        is held (False), looked at again when its retry is due. Any other failure is raised."""
        try:
            await self.write(cron, status)
        except ApiError as err:
            if not err.permanent:
                raise
            self._refused(cron, status, err)
            return False
        self._holds.accepted(cron.metadata.uid)
        return True

    async def held(self, cron: CronJobFlow) -> bool:
        """Whether `cron` is held (not to be planned now): not when it is not, or changed since (a change
        lifts the hold: planned as any other). A held CronJobFlow due for it has its refused write sent
        again; accepted, it is planned again at once (by the key's next turn)."""
        hold = self._holds.held(cron)
        if hold is None:
            return False
        if (wait := self._holds.due_in(hold)) > 0:
            self._look_again(cron.key, wait)
            return True
        err = await self._holds.resend(hold, partial(self.write, hold.flow, hold.status))
        if err is None:
            log.info("held cronjobflow's status write accepted; it goes on")
            self._look_again(cron.key, 0.0)
        elif err.permanent:
            self._refused(hold.flow, hold.status, err)  # looked at again when its retry is due
        else:
            log.info("held cronjobflow's status write failed; tried again later", error=str(err))
            self._look_again(cron.key, self._holds.due_in(self._holds.held(cron) or hold))
        return True

    def _refused(self, cron: CronJobFlow, status: CronJobFlowStatus, err: ApiError) -> None:
        """Hold `cron` (told once per cause) and look at it again when its retry is due."""
        if not holds(self._cached, cron):
            return  # deleted meanwhile: its delete event forgot it, nothing would again (nor uncount it)
        new = self._holds.hold(cron, status, err.message, stored=None)
        hold = self._holds.held(cron)  # the one just made
        self._look_again(cron.key, RETRY_CAP_SECONDS if hold is None else self._holds.due_in(hold))
        if not new:
            log.debug("cronjobflow status write refused again; it stays held", error=err.message)
            return
        log.error(
            "the cronjobflow's status was refused; holding it: no run is created, stopped or deleted "
            "until a status write is accepted",
            status=err.status,
            error=err.message,
        )
        message = (
            f"status refused ({err.status}): {err.message}. The CronJobFlow is held: no run of it is "
            f"created, stopped or deleted until a status write is accepted (tried again up to every "
            f"{RETRY_CAP_SECONDS:g}s, and at once when it changes)"
        )
        self._events.emit(cron, WARNING, REASON_STATUS_REJECTED, cut(message, 1024))

    def forget(self, uid: str) -> None:
        self._holds.forget(uid)

    def held_keys(self, shards: ShardGate | None) -> list[str]:
        """namespace/name of the CronJobFlows held (read at scrape time): under --shards, only those of
        the shards held (a CronJobFlow handed over is another replica's to count)."""
        held = self._holds.keys()
        return [k for k in held if shards is None or shards.key_shard(k) in shards.owned]
