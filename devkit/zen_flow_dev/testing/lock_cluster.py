"""Flows whose steps take locks (planner/locks.py), in one fake cluster, with the lock book the
controller keeps: each reconcile claims the flow's view before its plan, settles after it, and the book
observes every change the cache sees; the keys it wakes are kept for the test to read. A flow with the
concurrency-key label gets the other flows of its group as its peers, as the controller's does.

    c = LockCluster(T0)
    c.add(make_flow([job_step("m", synchronization={"mutexes": [{"name": "db"}]})], name="a"))
    c.reconcile("a")   # a's step m takes db
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from zen_flow.api.jobflow import JobFlow
from zen_flow.core.matrix import effective_flow
from zen_flow.planner import LockBook, Plan, group_of, peers_of, plan
from zen_flow_dev.testing.simulator import Simulator


@dataclass
class LockCluster:
    now: datetime
    book: LockBook = field(default_factory=LockBook)
    sims: dict[str, Simulator] = field(default_factory=dict)
    woken: list[str] = field(default_factory=list)  # every key the book asked to reconcile, in order

    def add(self, flow: JobFlow) -> Simulator:
        sim = Simulator(flow, self.now)
        self.sims[flow.metadata.key] = sim
        self.woken.extend(self.book.observe(None, flow))
        return sim

    def __getitem__(self, key: str) -> Simulator:
        return self.sims[key]

    def reconcile(self, key: str) -> Plan:
        """Claim, plan, settle, write, and the cache sees the write. The plan gets the effective flow (a
        matrix step's items), as the controller's does; the book observes the stored one."""
        sim = self.sims[key]
        sim.now = self.now
        before = sim.flow
        effective = effective_flow(before)
        group = group_of(before)
        members = [s.flow for s in self.sims.values() if group is not None and group_of(s.flow) == group]
        view = self.book.claim(effective)
        result = plan(
            effective, list(sim.jobs.values()), sim.now, peers=peers_of(before, members), locks=view
        )
        self.woken.extend(self.book.settle(effective, result.status))
        sim.apply(result)
        self.woken.extend(self.book.observe(before, sim.flow))
        return result

    def change(self, key: str, how: Callable[[Simulator], None]) -> None:
        """Someone changes the flow (a spec edit): the cache sees it."""
        old = self.sims[key].flow
        how(self.sims[key])
        self.woken.extend(self.book.observe(old, self.sims[key].flow))

    def delete(self, key: str) -> None:
        sim = self.sims.pop(key)
        self.woken.extend(self.book.observe(sim.flow, None))

    def finish(self, key: str, *, failed: bool = False) -> None:
        """The Job controller ends every running Job of the flow."""
        sim = self.sims[key]
        for job in sim.running():
            sim.fail(job) if failed else sim.complete(job)

    def finish_step(self, key: str, step: str, *, failed: bool = False) -> None:
        """The Job controller ends the running Job of one step (a matrix item) of the flow."""
        sim = self.sims[key]
        for job in sim.running():
            if sim.steps.get(job) == step:
                sim.fail(job) if failed else sim.complete(job)

    def holding(self, key: str) -> list[str]:
        """The flow's steps the status shows Running, in status order."""
        return [s.name for s in self.sims[key].flow.status.steps if s.phase == "Running"]

    def take_woken(self) -> list[str]:
        out, self.woken = self.woken, []
        return out

    def step(self, key: str, step: str) -> tuple[str, str | None]:
        """The step's phase and message as the flow's status says."""
        for s in self.sims[key].flow.status.steps:
            if s.name == step:
                return s.phase, s.message
        return "Pending", None
