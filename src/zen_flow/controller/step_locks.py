"""Step synchronization in the controller (planner/locks.py): the `planner.LockBook` kept from the flow
informer's events, and the flows a freed lock lets go queued again.

The reconciler tells it what the informer saw (`observe`), asks it before it plans a flow (`claim`: the
other flows' use of the locks the flow's steps declare) and tells it what the plan did (`settle`). A lock
freed (a holder ended, a flow deleted, a plan that did not take what it reserved) queues only the flows
with steps waiting for it in that namespace: no polling, and a waiting flow costs nothing meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence

from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.controller.cluster_access import FlowCache, JobCache
from zen_flow.controller.flow_queue import priority
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner.lock_book import Expand, LockBook
from zen_flow.planner.locks import LockView


class StepLocks:
    def __init__(self, flows: FlowCache, jobs: JobCache, queue: WorkQueue[str], effective: Expand) -> None:
        """`effective`: a cached flow's effective flow (controller/matrix_flows.py: remembered per
        generation), asked only of flows whose matrix steps declare locks."""
        self._book = LockBook(jobs.jobs_for, effective)
        self._flows = flows
        self._queue = queue

    def observe(self, old: JobFlow | None, new: JobFlow | None) -> None:
        """`old` became `new` in the cache (None: added or deleted; `observe(flow, flow)`: its Jobs
        changed: a Job running for a step whose status records no start holds its locks)."""
        self._wake(self._book.observe(old, new))

    def claim(self, flow: JobFlow) -> LockView:
        """What the namespace's other flows hold and wait for of the locks `flow`'s steps declare; those
        its unstarted steps declare are reserved until `settle`."""
        return self._book.claim(flow)

    def settle(self, flow: JobFlow, status: JobFlowStatus | None) -> None:
        """The plan of `flow` made `status` (None: there was no plan)."""
        self._wake(self._book.settle(flow, status))

    def _wake(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._queue.add(key, priority(self._flows.get(key)))
