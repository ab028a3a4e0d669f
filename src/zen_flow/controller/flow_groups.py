"""Concurrency groups in the controller (`concurrencyPolicy`, planner.concurrency): one planner at a time
per group, the group's flows a plan weighs (`peers`), and the group woken when one of them starts,
finishes or goes away.

A Forbid flow must see a peer that another worker just decided to start, also while a plan runs in a
thread: the group's lock serializes their plans, and `_starting` holds the UIDs of grouped flows this
controller started whose start the cache does not show yet (read your own writes across flows).
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractAsyncContextManager

from zen_flow import planner
from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.api.constants import FlowPhase
from zen_flow.controller.cluster_access import FlowCache, JobCache
from zen_flow.machinery.keyed_locks import KeyedLocks
from zen_flow.machinery.workqueue import WorkQueue


class FlowGroups:
    def __init__(self, flows: FlowCache, jobs: JobCache, queue: WorkQueue[str]) -> None:
        self._flows = flows
        self._jobs = jobs
        self._queue = queue
        self._locks = KeyedLocks()
        self._starting: set[str] = set()

    def observe(self, old: JobFlow | None, new: JobFlow | None) -> None:
        """`old` became `new` in the cache (None: added or deleted)."""
        flow = new if new is not None else old
        if flow is not None and (
            new is None
            or flow.status.start_time is not None
            or flow.status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)
        ):
            self._starting.discard(flow.metadata.uid)  # the cache shows it now (or it is gone)
        # A flow of a group started, finished or went away: its group decides anew.
        for key in planner.keys_to_wake(old, new, self._flows.concurrency_group):
            self._queue.add(key)

    def hold(self, flow: JobFlow) -> AbstractAsyncContextManager[None]:
        """The lock of the flow's group while its plan is made (none for a flow of no group)."""
        group = planner.group_of(flow)
        return self._locks.hold(group) if group else contextlib.nullcontext()

    def peers(self, flow: JobFlow) -> tuple[planner.Peer, ...]:
        group = planner.group_of(flow)
        if group is None:
            return ()
        return planner.peers_of(
            flow, self._flows.concurrency_group(group), self._starting, self._jobs.jobs_for
        )

    def settle(self, flow: JobFlow, status: JobFlowStatus) -> None:
        """The plan of `flow` made `status`. Before any await: another worker may plan a flow of the same
        group while this one's Job creates and status write are in flight."""
        if status.start_time is None:
            self._starting.discard(flow.metadata.uid)
        elif flow.status.start_time is None and planner.group_of(flow) is not None:
            self._starting.add(flow.metadata.uid)
