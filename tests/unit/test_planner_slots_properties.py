"""Limits on running flows under random interleavings: flows arriving in several namespaces with few
distinct creation times, the controller's cache seeing each flow's changes late and in any order across
flows, reconciles only of the keys the informer events and the book's wake-ups queue (no polling),
flows finishing or deleted at random.

- Never more than N flows run in a namespace, nor more than the global limit in all.
- Every flow runs and ends: draining the queue (events delivered, queued keys reconciled, running flows
  finishing) leaves no flow waiting.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zen_flow.api import JobFlow
from zen_flow.api.constants import FlowPhase
from zen_flow.planner import SlotBook, SlotLimits, needs_slot
from zen_flow_dev.testing.flows import job_step, make_flow

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NAMESPACES = ["ns-a", "ns-b", "ns-c"]
DRAIN_ROUNDS = 400


@dataclass
class World:
    """The apiserver's flows (the truth), the controller's cache of them (what the book saw), the
    events on their way to the cache, and the controller's queue."""

    book: SlotBook
    truth: dict[str, JobFlow | None] = field(default_factory=dict)
    cache: dict[str, JobFlow] = field(default_factory=dict)
    pending: dict[str, list[JobFlow | None]] = field(default_factory=dict)  # per flow, in order
    queue: set[str] = field(default_factory=set)
    ran: set[str] = field(default_factory=set)

    def write(self, key: str, new: JobFlow | None) -> None:
        self.truth[key] = new
        self.pending.setdefault(key, []).append(new)

    def deliver(self, key: str) -> None:
        """The informer's next event of one flow: the cache, the book and the queue see it."""
        new = self.pending[key].pop(0)
        if not self.pending[key]:
            del self.pending[key]
        old = self.cache.get(key)
        if new is None:
            self.cache.pop(key, None)
        else:
            self.cache[key] = new
        self.queue.add(key)
        self.queue.update(self.book.observe(old, new))

    def reconcile(self, key: str) -> None:
        """The reconciler: from the cache, and never while its own write is unseen (StatusWriter)."""
        self.queue.discard(key)
        flow = self.cache.get(key)
        if flow is None or key in self.pending:
            return
        if not needs_slot(flow, ()):
            # Its plan runs all the same (a running flow's next steps, a finished one's TTL), and the
            # controller tells the book what it did, as after every plan.
            self.queue.update(self.book.settle(flow, begun=flow.status.start_time is not None))
            return
        if self.book.claim(flow) is not None:
            self.queue.update(self.book.settle(flow, begun=False))
            return
        self.book.settle(flow, begun=True)
        status = flow.status.model_copy(update={"phase": FlowPhase.RUNNING.value, "start_time": T0})
        self.write(key, flow.model_copy(update={"status": status}))
        self.ran.add(key)

    def finish(self, key: str) -> None:
        flow = self.truth[key]
        assert flow is not None
        status = flow.status.model_copy(update={"phase": FlowPhase.SUCCEEDED.value})
        self.write(key, flow.model_copy(update={"status": status}))

    def running(self) -> list[str]:
        return [k for k, f in self.truth.items() if f is not None and f.status.phase == FlowPhase.RUNNING]

    def check(self, limits: SlotLimits) -> None:
        running = self.running()
        if limits.total:
            assert len(running) <= limits.total, running
        if limits.per_namespace:
            by_ns = Counter(k.partition("/")[0] for k in running)
            assert max(by_ns.values(), default=0) <= limits.per_namespace, by_ns


ops = st.lists(
    st.tuples(st.sampled_from(["create", "deliver", "reconcile", "finish", "delete"]), st.integers(0, 99)),
    min_size=10,
    max_size=120,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    total=st.sampled_from([0, 1, 2, 4]),
    per_namespace=st.sampled_from([0, 1, 2]),
    script=ops,
)
def test_limits_hold_under_any_interleaving_and_every_flow_runs(
    total: int, per_namespace: int, script: list[tuple[str, int]]
) -> None:
    limits = SlotLimits(total=total, per_namespace=per_namespace or (0 if total else 1))
    world = World(SlotBook(limits))
    created = 0
    for op, n in script:
        if op == "create":
            ns = NAMESPACES[n % len(NAMESPACES)]
            # Few distinct creation seconds: equal timestamps, ranked by name.
            f = make_flow(
                [job_step("s0")], name=f"f{created}", namespace=ns, created=T0 + timedelta(seconds=n % 4)
            )
            created += 1
            world.write(f.metadata.key, f)
        elif op == "deliver" and world.pending:
            world.deliver(sorted(world.pending)[n % len(world.pending)])
        elif op == "reconcile" and world.queue:
            world.reconcile(sorted(world.queue)[n % len(world.queue)])
        elif op == "finish" and (running := world.running()):
            world.finish(sorted(running)[n % len(running)])
        elif op == "delete":
            alive = sorted(k for k, f in world.truth.items() if f is not None and k not in world.pending)
            if alive and n % 5 == 0:  # now and then: deleting a waiting flow frees nothing it held
                world.write(alive[n % len(alive)], None)
        world.check(limits)
    for _ in range(DRAIN_ROUNDS):
        if world.pending:
            for key in sorted(world.pending):
                world.deliver(key)
        elif world.queue:
            for key in sorted(world.queue):
                world.reconcile(key)
        elif running := world.running():
            world.finish(running[0])
        else:
            break
        world.check(limits)
    alive = {k for k, f in world.truth.items() if f is not None}
    assert not world.pending
    assert not world.queue
    assert not world.running()
    never_ran = sorted(k for k in alive if k not in world.ran)
    assert never_ran == [], f"flows left waiting with nothing queued: {never_ran}"
