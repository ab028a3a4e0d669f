"""Concurrency groups under random interleavings: flows of one group reconciled in random order,
arriving in the cache late and out of creation order, their Jobs finishing or failing at random.

- Forbid: no two flows of an all-Forbid group ever have Jobs running at the same time; and in any
  group, a Forbid flow starts only when no other flow of its group runs.
- Every flow ends (no deadlock in the queue); a finished flow never changes again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zen_flow.api.constants import LABEL_CONCURRENCY_KEY
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.group import FlowGroup

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NAMES = ["a", "b", "c", "d", "e", "nightly-1", "nightly-2", "zz"]
RANDOM_ROUNDS = 250
DRAIN_ROUNDS = 200


@dataclass(frozen=True)
class Member:
    name: str
    created: int  # seconds after T0; few distinct values, so equal timestamps are common
    policy: str | None  # None: the default (Forbid)
    steps: int
    parallel: bool
    arrival: int  # the round in which the controller's cache first sees the flow


@st.composite
def groups(draw: st.DrawFn, policies: list[str | None]) -> list[Member]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=2, max_size=5, unique=True))
    return [
        Member(
            name=name,
            created=draw(st.integers(0, 3)),
            policy=draw(st.sampled_from(policies)),
            steps=draw(st.integers(1, 3)),
            parallel=draw(st.booleans()),
            arrival=draw(st.integers(0, 12)),
        )
        for name in names
    ]


def build(members: list[Member]) -> FlowGroup:
    group = FlowGroup(T0)
    for m in members:
        steps = [job_step(f"s{i}", *([f"s{i - 1}"] if i and not m.parallel else [])) for i in range(m.steps)]
        policy: dict[str, Any] = {"concurrencyPolicy": m.policy} if m.policy else {}
        flow = make_flow(
            steps,
            name=m.name,
            labels={LABEL_CONCURRENCY_KEY: "k"},
            execution_policy=policy,
            created=T0 + timedelta(seconds=m.created),
        )
        group.add(flow, visible=False, instant_delete=m.created % 2 == 0)
    return group


class World:
    """Drives a group: random reconciles, Job outcomes and clock moves, checking after each event."""

    def __init__(self, members: list[Member], seed: int, *, exclusive: bool) -> None:
        self.members = members
        self.group = build(members)
        self.rng = random.Random(seed)
        self.exclusive = exclusive
        self.final: dict[str, Any] = {}  # statuses of finished flows, which must never change

    def arrive(self, round_: int) -> None:
        for m in self.members:
            if m.arrival <= round_:
                self.group.show(m.name)

    def reconcile(self, name: str) -> None:
        sim = self.group[name]
        before = sim.flow.status
        self.group.reconcile(name)
        after = sim.flow.status
        if name in self.final:
            assert after is self.final[name], f"finished flow {name} changed"
        elif sim.terminal:
            self.final[name] = after
        forbid = (next(m for m in self.members if m.name == name).policy or "Forbid") == "Forbid"
        if forbid and before.start_time is None and after.start_time is not None:
            others = [n for n in self.group.running() if n != name]
            assert not others, f"Forbid flow {name} started while {others} ran"
        self.check()

    def check(self) -> None:
        if self.exclusive:
            running = self.group.running()
            assert len(running) <= 1, f"flows of a Forbid group ran at once: {running}"

    def settle_one(self) -> None:
        busy = [(name, job) for name, sim in self.group.sims.items() for job in sim.running()]
        if not busy:
            return
        name, job = self.rng.choice(busy)
        if self.rng.random() < 0.2:
            self.group[name].fail(job)
        else:
            self.group[name].complete(job)
        self.group[name].collect()

    def random_phase(self) -> None:
        for round_ in range(RANDOM_ROUNDS):
            self.arrive(round_)
            roll = self.rng.random()
            if roll < 0.5 and self.group.visible:
                self.reconcile(self.rng.choice(sorted(self.group.visible)))
            elif roll < 0.85:
                self.settle_one()
            else:
                self.group.advance(self.rng.choice([1, 5, 60]))
            if self.group.terminal:
                return

    def drain(self) -> None:
        """Everyone arrived; the controller reconciles every flow per round, Jobs complete."""
        self.arrive(10**9)
        for _ in range(DRAIN_ROUNDS):
            for name in sorted(self.group.sims):
                self.reconcile(name)
            if self.group.terminal:
                return
            for name in self.group.running():
                self.group.complete_all(name)
                self.group[name].collect()
            self.check()
            self.group.advance(5)
        raise AssertionError(f"the group never finished: {self.group.phases()}")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups([None, "Forbid"]), st.integers(0, 2**32))
def test_forbid_group_never_runs_two_flows_at_once_and_always_finishes(
    members: list[Member], seed: int
) -> None:
    world = World(members, seed, exclusive=True)
    world.random_phase()
    world.drain()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups([None, "Forbid", "Allow", "Replace"]), st.integers(0, 2**32))
def test_mixed_group_forbid_starts_alone_and_every_flow_finishes(members: list[Member], seed: int) -> None:
    world = World(members, seed, exclusive=False)
    world.random_phase()
    world.drain()
    replaced = {
        name
        for name, sim in world.group.sims.items()
        if "replaced by newer flow" in (sim.flow.status.message or "")
    }
    assert all(world.group[name].phase == "Failed" for name in replaced)


@settings(max_examples=60, deadline=None)
@given(groups([None, "Forbid"]))
def test_forbid_flows_that_are_all_known_start_in_creation_order(members: list[Member]) -> None:
    group = build(members)
    for m in members:
        group.show(m.name)
    starts: list[str] = []
    for _ in range(DRAIN_ROUNDS):
        for name in sorted(group.sims, reverse=True):  # reconcile order must not matter
            before = group[name].flow.status.start_time
            group.reconcile(name)
            if before is None and group[name].flow.status.start_time is not None:
                starts.append(name)
        if group.terminal:
            break
        for name in group.running():
            group.complete_all(name)
        group.advance(1)
    assert group.terminal
    assert starts == [m.name for m in sorted(members, key=lambda m: (m.created, m.name))]
