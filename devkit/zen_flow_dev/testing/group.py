"""Several flows in one fake cluster, for concurrency groups: one `Simulator` per flow, one shared
clock, and the peers each reconcile sees, built the way the controller builds them from its cache.

    group = FlowGroup(T0)
    group.add(make_flow([...], name="a", labels={LABEL_CONCURRENCY_KEY: "k"}, created=T0))
    group.add(make_flow([...], name="b", labels={LABEL_CONCURRENCY_KEY: "k"}, created=T1))
    group.reconcile("a"); group.reconcile("b")   # b waits for a (Forbid)
    group.complete_all("a"); group.reconcile("a"); group.reconcile("b")   # b starts

A flow added with `visible=False` exists but the controller's cache has not seen it yet (its watch
event is late): its peers do not see it until `show(name)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner import Peer, Plan, group_of, peers_of
from zen_flow_dev.testing.simulator import Simulator


@dataclass
class FlowGroup:
    now: datetime
    sims: dict[str, Simulator] = field(default_factory=dict)
    visible: set[str] = field(default_factory=set)

    def add(self, flow: JobFlow, *, visible: bool = True, instant_delete: bool = True) -> Simulator:
        sim = Simulator(flow, self.now, instant_delete=instant_delete)
        self.sims[flow.metadata.name] = sim
        if visible:
            self.visible.add(flow.metadata.name)
        return sim

    def show(self, name: str) -> None:
        self.visible.add(name)

    def __getitem__(self, name: str) -> Simulator:
        return self.sims[name]

    def peers(self, name: str) -> tuple[Peer, ...]:
        flow = self.sims[name].flow
        group = group_of(flow)
        if group is None:
            return ()
        members = [
            sim.flow
            for other, sim in self.sims.items()
            if other in self.visible and not sim.flow_deleted and group_of(sim.flow) == group
        ]
        return peers_of(flow, members, jobs_for=self.jobs_for)

    def jobs_for(self, uid: str) -> list[Job]:
        # The controller's Job cache: every Job the flow of that UID made and the cluster still has.
        return [
            job for sim in self.sims.values() if sim.flow.metadata.uid == uid for job in sim.jobs.values()
        ]

    def reconcile(self, name: str) -> Plan:
        sim = self.sims[name]
        sim.now = self.now
        return sim.reconcile(peers=self.peers(name))

    def reconcile_all(self) -> dict[str, Plan]:
        """Reconcile every visible flow once, oldest name first."""
        return {name: self.reconcile(name) for name in sorted(self.visible)}

    def complete_all(self, name: str) -> None:
        """The Job controller finishes every running Job of flow `name` successfully."""
        sim = self.sims[name]
        for job in sim.running():
            sim.complete(job)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        for sim in self.sims.values():
            sim.now = self.now

    def phases(self) -> dict[str, str | None]:
        return {name: sim.phase for name, sim in self.sims.items()}

    def running(self) -> list[str]:
        """Flows that have a Job running (created, not finished, not being deleted)."""
        return sorted(name for name, sim in self.sims.items() if sim.running())

    @property
    def terminal(self) -> bool:
        return all(sim.terminal for sim in self.sims.values())
