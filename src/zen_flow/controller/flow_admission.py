"""What a plan may start, asked before it is made and told after: its concurrency group (one planner at a
time, and the peers it weighs: controller/flow_groups.py), the limits on running flows
(controller/flow_slots.py) and the step locks (controller/step_locks.py). Each reserves what the plan may
take before it is made, with no await between, so that a flow another worker plans meanwhile counts it,
and is told what the plan did as soon as it is made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from datetime import datetime

from zen_flow import planner
from zen_flow.api import Job, JobFlow
from zen_flow.controller.cluster_access import ChildFlowCache
from zen_flow.controller.flow_groups import FlowGroups
from zen_flow.controller.flow_slots import FlowSlots
from zen_flow.controller.memo_cache import MemoCache
from zen_flow.controller.plan_runner import PlanRunner
from zen_flow.controller.step_locks import StepLocks


class FlowAdmission:
    def __init__(
        self,
        *,
        groups: FlowGroups,
        slots: FlowSlots,
        locks: StepLocks,
        runner: PlanRunner,
        memo_cache: MemoCache,
        family: ChildFlowCache | None,
    ) -> None:
        self._groups = groups
        self._slots = slots
        self._locks = locks
        self._runner = runner
        self._memo_cache = memo_cache
        self._family = family

    async def plan(
        self, flow: JobFlow, jobs: Sequence[Job], now: datetime, messages: Mapping[str, planner.PodMessages]
    ) -> planner.Plan | None:
        """The flow's plan, under its concurrency group's lock, with the memoized steps' cache entries it
        needs (`MemoCache.plan`); None when no sandbox thread is free."""

        def make(memos: Mapping[str, planner.MemoAnswer]) -> Awaitable[planner.Plan | None]:
            peers = self._groups.peers(flow)
            # Claimed before the plan, with no await between: a flow another worker plans meanwhile
            # counts this one's slot (planner.slots) and its steps' locks (planner.lock_book).
            slot = self._slots.claim(flow, peers)
            locks = self._locks.claim(flow)
            lineage = self._family.lineage(flow) if self._family is not None else None
            # The Jobs as they were before reading the pods: a Job event meanwhile enqueued us again.
            return self._runner.plan(flow, jobs, now, messages, peers, memos, slot, lineage, locks)

        planned = None
        try:
            planned = await self._memo_cache.plan(
                flow,
                make,
                hold=lambda: self._groups.hold(flow),
                settle=lambda planned: self._track_start(flow, planned),
            )
        finally:
            if planned is None:  # no plan (no sandbox thread, an error): what it claimed is free again
                self._slots.settle(flow, begun=False)
                self._locks.settle(flow, None)
        return planned

    def _track_start(self, flow: JobFlow, planned: planner.Plan) -> None:
        # Before any await: another worker may plan a flow of the same group while this one's Job
        # creates and status write are in flight.
        status = planned.status
        self._slots.settle(flow, begun=status.start_time is not None)
        self._locks.settle(flow, status)
        self._groups.settle(flow, status)
