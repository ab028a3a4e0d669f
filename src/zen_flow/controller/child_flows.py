"""Child flows in the controller: a Flow step's child JobFlow shown to the planner as the step's Job.

`ChildFlows` stands where the Job cache stood: `jobs_for(uid)` is the flow's Jobs plus its verified
children (the JobFlow informer's index of flows by their controlling JobFlow, each checked against its
parent's spec: planner/lineage.py; a flow that only claims a parent is none of its) as
`planner.ChildFlowJob` records, so retries, timeouts, stops, the deadline, retention and expectations
treat a child as they treat a Job (planner/children.py). It also carries what the informers cannot: a
child whose create the apiserver refused for good (its admission webhook: the template does not exist,
an argument it does not declare), shown as a failed child until its parent goes, so that the step fails
saying why, never the whole flow and never a retry loop.

And it wakes the parent: a child's every change enqueues its parent's key, on every replica (the JobFlow
informer sees all flows, so under --shards the replica holding the parent's shard hears its children
whatever their shard), and lowers the parent's expectations as the Job informer does for Jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from zen_flow import planner
from zen_flow.api import Job, JobFlow
from zen_flow.controller.flow_memory import cached_as
from zen_flow.machinery.expectations import Expectations


class Jobs(Protocol):
    """The Job informer's part of `cluster_access.JobCache`."""

    def jobs_for(self, owner_uid: str) -> Sequence[Job]: ...
    def deleted_stray(self, key: str) -> None: ...


class ChildFlows:
    def __init__(
        self,
        jobs: Jobs,
        children_of: Callable[[str], Sequence[JobFlow]],
        expectations: Expectations,
        wake: Callable[[str], None],
        flow_by_key: Callable[[str], JobFlow | None],
    ) -> None:
        """`children_of`: the cached flows a flow (by uid) controls; `wake`: enqueue a flow's key;
        `flow_by_key`: the cached flow of a key (a child's parent)."""
        self._jobs = jobs
        self._children_of = children_of
        self._flow_by_key = flow_by_key
        self._expectations = expectations
        self._wake = wake
        # parent uid -> {child name: the apiserver's refusal}: children that will never exist.
        self._refused: dict[str, dict[str, planner.ChildFlowJob]] = {}
        # parent uid -> the children this replica created for it and has seen arrive: between the
        # child's arrival (its expectation lowered) and the parent's status write naming it, it still
        # runs under its parent's slot (planner.runs_under), never queued for a slot a moment.
        self._made: dict[str, set[str]] = {}

    # --- JobCache ----------------------------------------------------------------------------------

    def jobs_for(self, owner_uid: str) -> Sequence[Job]:
        jobs = self._jobs.jobs_for(owner_uid)
        children = self._verified(owner_uid)
        refused = self._refused.get(owner_uid)
        if not children and not refused:
            return jobs
        out: list[Job] = [*jobs, *map(planner.as_job, children)]
        if refused:
            seen = {c.metadata.name for c in children}
            out.extend(job for name, job in refused.items() if name not in seen)
        return out

    def deleted_stray(self, key: str) -> None:
        self._jobs.deleted_stray(key)

    def child_refused(self, owner_uid: str, namespace: str, name: str, why: str) -> None:
        """The apiserver refused the child `name` of the flow `owner_uid` for good: its step fails."""
        self._refused.setdefault(owner_uid, {})[name] = planner.refused_job(namespace, name, why)

    def uids(self) -> set[str]:
        """The parents (by UID) whose refused or arrived children are kept (controller/flow_memory.py)."""
        return {*self._refused, *self._made}

    def forget(self, uid: str) -> None:
        self._refused.pop(uid, None)
        self._made.pop(uid, None)

    # --- families (planner/lineage.py) -------------------------------------------------------------

    def _verified(self, owner_uid: str) -> list[JobFlow]:
        """The verified children of the flow of `owner_uid`: its parent looked up once (every flow the
        index holds under a UID names it as its controller), not once per child."""
        claimed = self._children_of(owner_uid)
        ref = planner.parent_of(claimed[0]) if claimed else None
        if ref is None:
            return []
        parent = cached_as(self._flow_by_key, f"{claimed[0].metadata.namespace}/{ref.name}", owner_uid)
        if parent is None:
            return []
        return planner.verified_children(parent, self._children_of)

    def is_child(self, flow: JobFlow) -> bool:
        """Does `flow` run under its parent's slot (`planner.runs_under`: a verified child its started
        parent's status names, or one the controller created for it)?"""
        ref = planner.parent_of(flow)
        if ref is None:
            return False
        parent = self._flow_by_key(f"{flow.metadata.namespace}/{ref.name}")
        made = self._made.get(ref.uid, set())
        return planner.runs_under(flow, parent, made | self._expectations.pending_creations(ref.uid))

    def children(self, parent: JobFlow) -> list[JobFlow]:
        """The cached verified children of `parent`."""
        return planner.verified_children(parent, self._children_of)

    def lineage(self, flow: JobFlow) -> planner.Lineage:
        """`flow`'s depth, whether it is a child, and its family's room, from the cache."""
        return planner.lineage(
            flow, self._flow_by_key, self._children_of, self._expectations.pending_creations
        )

    # --- the JobFlow informer's handlers -----------------------------------------------------------

    def on_flow_event(self, flow: JobFlow, *, deleted: bool = False) -> None:
        """A flow was added, changed or deleted: if it is a child, its parent hears of it."""
        if deleted:
            self.forget(flow.metadata.uid)  # a parent gone: its refusals with it
        parent = planner.parent_of(flow)
        if parent is None:
            return
        name = flow.metadata.name
        if deleted:
            self._expectations.deletion_observed(parent.uid, name)
            if (made := self._made.get(parent.uid)) is not None:
                made.discard(name)
        else:
            if name in self._expectations.pending_creations(parent.uid):
                self._made.setdefault(parent.uid, set()).add(name)
            self._expectations.creation_observed(parent.uid, name)
            if flow.metadata.deletion_timestamp is not None:
                self._expectations.deletion_observed(parent.uid, name)
        self._wake(f"{flow.metadata.namespace}/{parent.name}")
