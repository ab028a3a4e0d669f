"""The limits on running flows in the controller (`--max-running-flows`, `--namespace-max-running-flows`):
the `planner.SlotBook` kept from the flow informer's events, and the flows a freed slot lets go queued.

The reconciler tells it what the informers saw (`observe`), asks it before it plans a flow that would
start (`claim`) and tells it what the plan did (`settle`); each may free a slot or a place in line, and
then only the flows that may take it are queued again (at most N per line, never the whole queue).
"""

from __future__ import annotations

from collections.abc import Sequence

from zen_flow import planner
from zen_flow.api import JobFlow
from zen_flow.controller.cluster_access import ChildFlowCache, FlowCache, JobCache
from zen_flow.controller.flow_queue import priority
from zen_flow.machinery.workqueue import WorkQueue


class FlowSlots:
    def __init__(
        self,
        limits: planner.SlotLimits,
        flows: FlowCache,
        jobs: JobCache,
        queue: WorkQueue[str],
        family: ChildFlowCache | None = None,
    ) -> None:
        """`family`: which flows are verified child flows (planner/lineage.py), when Flow steps' children
        are cached. A child runs under its parent's slot and counts in its namespace's line only."""
        self._family = family
        self._is_child = family.is_child if family is not None else None
        self._book = planner.SlotBook(limits, jobs.jobs_for, self._is_child)
        self._flows = flows
        self._queue = queue

    def observe(self, old: JobFlow | None, new: JobFlow | None) -> None:
        """`old` became `new` in the cache (None: added or deleted; `observe(flow, flow)`: its Jobs
        changed: a Job running for a flow whose status records no start holds a slot)."""
        self._wake(self._book.observe(old, new))

    def family_changed(self, parent: JobFlow) -> None:
        """A flow came or went: its children, verified only while it is cached (the informer's first
        list brings flows in any order), stand anew in the lines and decide anew."""
        if self._family is None:
            return
        for child in self._family.children(parent):
            self.observe(child, child)
            self._queue.add(child.key, priority(child))

    def claim(self, flow: JobFlow, peers: Sequence[planner.Peer]) -> str | None:
        """Why `flow` may not start now (None: it may, and its slot is reserved until `settle`). Only a
        flow that would start but for the limits asks: one that could not start anyway reserves none."""
        child = self._is_child is not None and self._is_child(flow)
        return self._book.claim(flow, peers) if planner.needs_slot(flow, peers, child) else None

    def settle(self, flow: JobFlow, begun: bool) -> None:
        """The plan of `flow` started it (`begun`) or not (no plan: a slot it claimed is free again)."""
        self._wake(self._book.settle(flow, begun))

    def _wake(self, keys: Sequence[str]) -> None:
        """A slot freed: the flows that may take it decide anew."""
        for key in keys:
            self._queue.add(key, priority(self._flows.get(key)))
