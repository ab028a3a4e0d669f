"""Limits on running flows under random interleavings: flows arriving in several namespaces with few
distinct creation times, the controller's cache seeing each flow's changes late and in any order across
flows, reconciles only of the keys the informer events and the book's wake-ups queue (no polling),
flows finishing, failing, rerun, suspended, resumed or deleted at random (a delete also while a plan of
the flow is in flight), starts whose status write is lost (their Job runs), controller restarts (the
book rebuilt from the cache), and flows created with random priorities, edited while they wait.

- Never more than N flows run in a namespace, nor more than the global limit in all.
- Every flow runs and ends: draining the queue (events delivered, queued keys reconciled, running flows
  finishing) leaves no flow waiting.
- No slot stays idle: whenever nothing is pending, queued or in flight, no waiting flow may start (a
  flow that may is woken when it becomes so, not at some unrelated flow's finish).
- Priority within a namespace: a flow starts only if every waiting flow the controller saw ahead of it
  in its namespace (a higher priority, or the same and older) still has a slot: no lower-priority flow
  takes the slot a higher-priority one created before the decision waits for.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from zen_flow.api import Job, JobFlow, StepStatus
from zen_flow.api.constants import ANNOTATION_RETRY, FlowPhase
from zen_flow.api.job import JOB
from zen_flow.planner import SlotBook, SlotLimits, needs_slot
from zen_flow.planner.interventions import request, rerun
from zen_flow.planner.slots import Standing, standing
from zen_flow_dev.testing.flows import job_step, make_flow

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NAMESPACES = ["ns-a", "ns-b", "ns-c"]
DRAIN_ROUNDS = 400
PRIORITIES = [0, 0, 5, -5, 1000]


def as_planned(flow: JobFlow) -> tuple[JobFlow, bool]:
    """The flow its plan sees: reset when it carries a rerun request it honours (the engine's own)."""
    retry = request(flow)
    if retry is None or flow.status.phase != FlowPhase.FAILED:
        return flow, False
    planned, _ = rerun(flow, retry, T0)
    return planned, planned.status.phase != FlowPhase.FAILED


RUNNING_JOB = JOB.validate_python({"metadata": {"name": "s0", "namespace": "ns-a"}, "spec": {}})


@dataclass
class World:
    """The apiserver's flows (the truth) and their running Jobs, the controller's cache of the flows (what
    the book saw), the events on their way to the cache, the controller's queue, and the plans in flight
    (claimed, not yet settled)."""

    limits: SlotLimits
    truth: dict[str, JobFlow | None] = field(default_factory=dict)
    cache: dict[str, JobFlow] = field(default_factory=dict)
    jobs: set[str] = field(default_factory=set)  # UIDs of the flows with a Job running (the Job cache)
    pending: dict[str, list[JobFlow | None]] = field(default_factory=dict)  # per flow, in order
    queue: set[str] = field(default_factory=set)
    inflight: dict[str, tuple[JobFlow, bool]] = field(default_factory=dict)  # the flow planned, begun
    claimed: set[str] = field(default_factory=set)  # the plans in flight that reserved a slot
    ran: set[str] = field(default_factory=set)
    uids: int = 0

    def __post_init__(self) -> None:
        self.book = SlotBook(self.limits, self.jobs_for)

    def jobs_for(self, uid: str) -> list[Job]:
        return [RUNNING_JOB] if uid in self.jobs else []

    def create(self, f: JobFlow) -> None:
        self.uids += 1  # a name created again is another flow
        meta = f.metadata.model_copy(update={"uid": f"uid-{self.uids}"})
        self.write(f.metadata.key, f.model_copy(update={"metadata": meta}))

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

    def begin(self, key: str) -> None:
        """A worker plans the flow from the cache (never while its own write is unseen: StatusWriter).
        A key queued while its plan is in flight stays queued (the WorkQueue's dirty set): it is
        reconciled again after."""
        if key in self.inflight:
            return
        self.queue.discard(key)
        flow = self.cache.get(key)
        if flow is None or key in self.pending:
            return
        # What the engine does, with the verdict of the book when the controller asks it.
        planned, _ = as_planned(flow)
        ended = planned.status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)
        started = (planned.status.start_time is not None) or flow.metadata.uid in self.jobs
        asks = needs_slot(flow, ())
        slot = self.book.claim(flow) if asks else None
        if asks and slot is None:
            self.claimed.add(key)
        began = not ended and (started or (not planned.spec.suspend and slot is None))
        if began and not started:
            self.check_priority(flow)
        self.inflight[key] = (flow, began)

    def check_priority(self, flow: JobFlow) -> None:
        """`flow` starts now: the flows waiting ahead of it in its namespace, as the cache shows them, and
        those that run (or are starting), this one included, fit in the namespace's limit."""
        limit, ns = self.limits.per_namespace, flow.metadata.namespace
        if not limit:
            return
        busy = {k for k in self.running() if k.startswith(ns + "/")}
        # A plan in flight of a flow that runs already (no claim) holds nothing once the flow is deleted:
        # the book frees its slot when the cache shows the delete. One that claimed holds it till it ends.
        busy.update(k for k, (f, began) in self.inflight.items() if began and self.holds(k, f, ns))
        ahead = [
            k
            for k, f in self.cache.items()
            if f.metadata.namespace == ns
            and k not in busy
            and k != flow.metadata.key
            and standing(f, self.jobs_for) == Standing.CONTENDING
            and ahead_of(f, flow)
        ]
        assert len(busy) + 1 + len(ahead) <= limit, (flow.metadata.key, sorted(busy), ahead)

    def holds(self, key: str, flow: JobFlow, ns: str) -> bool:
        """Does the plan in flight of `flow` hold a slot of namespace `ns`: it claimed one, or its flow
        is still there."""
        if flow.metadata.namespace != ns:
            return False
        current = self.truth.get(key)
        return key in self.claimed or (current is not None and current.metadata.uid == flow.metadata.uid)

    def land(self, key: str, *, lose: bool = False) -> None:
        """The plan ends: the book is told, its Job created and its status written (unless `lose`: the
        Job runs, the status write is lost) to the flow it planned, if that flow is still there."""
        flow, began = self.inflight.pop(key)
        self.claimed.discard(key)
        self.queue.update(self.book.settle(flow, begun=began))
        planned, rerun = as_planned(flow)
        current = self.truth.get(key)
        if current is None or current.metadata.uid != flow.metadata.uid:
            return
        if began and planned.status.start_time is None:
            self.jobs.add(flow.metadata.uid)
            self.ran.add(key)
            self.queue.add(key)
            # The Job informer's event: the controller has the book look at the flow again.
            if (cached := self.cache.get(key)) is not None:
                self.queue.update(self.book.observe(cached, cached))
            if lose:
                return
            status = planned.status.model_copy(update={"phase": FlowPhase.RUNNING.value, "start_time": T0})
            self.write(key, current.model_copy(update={"status": status}))
        elif rerun and not lose:  # the rerun waits: Pending, the request recorded
            status = planned.status.model_copy(update={"phase": FlowPhase.PENDING.value})
            self.write(key, current.model_copy(update={"status": status}))

    def reconcile(self, key: str, *, lose: bool = False) -> None:
        self.begin(key)
        if key in self.inflight:
            self.land(key, lose=lose)

    def finish(self, key: str, phase: FlowPhase) -> None:
        flow = self.truth[key]
        assert flow is not None
        self.jobs.discard(flow.metadata.uid)
        steps = (StepStatus(name="s0", phase=phase.value),)
        status = flow.status.model_copy(update={"phase": phase.value, "steps": steps})
        self.write(key, flow.model_copy(update={"status": status}))
        if (cached := self.cache.get(key)) is not None:
            self.queue.update(self.book.observe(cached, cached))  # its Job ended

    def restart(self) -> None:
        """A new leader: plans in flight and reservations gone, the book rebuilt from the cache."""
        self.inflight.clear()
        self.claimed.clear()
        self.book = SlotBook(self.limits, self.jobs_for)
        for key, flow in self.cache.items():
            self.book.observe(None, flow)
            self.queue.add(key)

    def running(self) -> list[str]:
        """Flows that run: started by their status, or with a Job running."""
        return [
            k
            for k, f in self.truth.items()
            if f is not None
            and (f.metadata.uid in self.jobs or (f.status.phase == FlowPhase.RUNNING and f.status.start_time))
        ]

    def check(self) -> None:
        running = self.running()
        if self.limits.total:
            assert len(running) <= self.limits.total, running
        if self.limits.per_namespace:
            by_ns = Counter(k.partition("/")[0] for k in running)
            assert max(by_ns.values(), default=0) <= self.limits.per_namespace, by_ns

    def check_quiet(self) -> None:
        """Nothing pending, queued or in flight: no flow that would start may start now (none sleeps
        while a slot it may take is free, waiting for some unrelated flow's finish to wake it)."""
        for key, flow in sorted(self.cache.items()):
            if needs_slot(flow, ()) and flow.metadata.uid not in self.jobs:
                assert self.book.claim(flow) is not None, f"{key} may start, nothing woke it"

    def idle(self, key: str) -> bool:
        return key not in self.pending and key not in self.inflight


OPS = [
    "create",
    "deliver",
    "reconcile",
    "begin",
    "land",
    "lose",
    "finish",
    "fail",
    "rerun",
    "delete",
    "priority",
]
ops = st.lists(
    st.tuples(st.sampled_from([*OPS, "suspend", "resume", "restart"]), st.integers(0, 99)),
    min_size=10,
    max_size=150,
)


def ahead_of(f: JobFlow, other: JobFlow) -> bool:
    """Is `f` ahead of `other` in their namespace's line: a higher priority, or the same and older (by
    name at an equal creation second)?"""

    def place(flow: JobFlow) -> tuple[int, datetime, str]:
        policy = flow.spec.execution_policy
        priority = policy.priority if policy is not None and policy.priority is not None else 0
        return (-priority, flow.metadata.creation_timestamp or T0, flow.metadata.name)

    return place(f) < place(other)


def pick(keys: Any, n: int) -> str | None:
    ordered = sorted(keys)
    return ordered[n % len(ordered)] if ordered else None


def set_suspend(world: World, key: str, value: bool) -> None:
    f = world.truth[key]
    assert f is not None
    world.write(key, f.model_copy(update={"spec": f.spec.model_copy(update={"suspend": value})}))


def step(world: World, op: str, n: int, created: int) -> int:
    alive = {k for k, f in world.truth.items() if f is not None}
    if op == "create":
        ns = NAMESPACES[n % len(NAMESPACES)]
        # Few distinct creation seconds: equal timestamps, ranked by name; some created suspended.
        seconds = T0 + timedelta(seconds=n % 4)
        policy = {"priority": PRIORITIES[n // 3 % len(PRIORITIES)]}
        world.create(
            make_flow(
                [job_step("s0")],
                name=f"f{created}",
                namespace=ns,
                created=seconds,
                suspend=n % 7 == 0,
                execution_policy=policy,
            )
        )
        return created + 1
    if op == "deliver" and (key := pick(world.pending, n)):
        world.deliver(key)
    elif op in ("reconcile", "begin", "lose") and (key := pick(world.queue, n)):
        if op == "begin":
            world.begin(key)
        else:
            world.reconcile(key, lose=op == "lose")
    elif op == "land" and (key := pick(world.inflight, n)):
        world.land(key)
    elif op in ("finish", "fail") and (key := pick(world.running(), n)) and world.idle(key):
        world.finish(key, FlowPhase.SUCCEEDED if op == "finish" else FlowPhase.FAILED)
    elif op == "rerun" and (
        key := pick((k for k in alive if world.truth[k].status.phase == FlowPhase.FAILED), n)
    ):
        f = world.truth[key]
        meta = f.metadata.model_copy(update={"annotations": {ANNOTATION_RETRY: f"r{n}"}})
        world.write(key, f.model_copy(update={"metadata": meta}))
    elif op == "delete" and n % 5 == 0 and (key := pick((k for k in alive if k not in world.pending), n)):
        world.write(key, None)  # also while a plan of it is in flight
    elif op == "priority" and (key := pick((k for k in alive if k not in world.pending), n)):
        f = world.truth[key]
        policy = f.spec.execution_policy.model_copy(update={"priority": PRIORITIES[n % len(PRIORITIES)]})
        world.write(
            key, f.model_copy(update={"spec": f.spec.model_copy(update={"execution_policy": policy})})
        )
    elif op in ("suspend", "resume"):
        unstarted = [
            k
            for k in alive
            if k not in world.pending
            and world.truth[k].status.start_time is None
            and bool(world.truth[k].spec.suspend) == (op == "suspend")
        ]
        # Mostly a flow whose plan is in flight: the cache then shows the change before the plan's write.
        planning = [k for k in unstarted if k in world.inflight]
        if key := pick(planning if planning and n % 3 else unstarted, n):
            set_suspend(world, key, op == "suspend")
    elif op == "restart" and n % 2 == 0:
        for key in list(world.inflight):
            world.land(key, lose=True)  # the old leader's last plans: Jobs made, writes lost
        world.restart()
    return created


def drain(world: World) -> None:
    """Everything settles: events delivered, plans landed, queued keys reconciled, suspended flows
    resumed, running flows finishing."""
    for _ in range(DRAIN_ROUNDS):
        suspended = [k for k, f in world.truth.items() if f is not None and f.spec.suspend and world.idle(k)]
        if world.inflight:
            for key in sorted(world.inflight):
                world.land(key)
        elif world.pending:
            for key in sorted(world.pending):
                world.deliver(key)
        elif world.queue:
            for key in sorted(world.queue):
                world.reconcile(key)
        else:
            world.check_quiet()
            if suspended:
                for key in suspended:
                    set_suspend(world, key, False)
            elif running := world.running():
                world.finish(running[0], FlowPhase.SUCCEEDED)
            else:
                return
        world.check()


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    total=st.sampled_from([0, 1, 2, 4]),
    per_namespace=st.sampled_from([0, 1, 2]),
    script=ops,
)
# ns-a's f3 (priority 1000) is created after ns-b's f1 and f2 and sits in ns-a's first seat; its start
# lets f0 move up into that seat, and a slot free to f0 must wake it.
@example(total=2, per_namespace=0, script=[("create", 48), ("create", 1), ("create", 34), ("create", 27)])
def test_limits_hold_under_any_interleaving_and_every_flow_runs(
    total: int, per_namespace: int, script: list[tuple[str, int]]
) -> None:
    world = World(SlotLimits(total=total, per_namespace=per_namespace or (0 if total else 1)))
    created = 0
    for op, n in script:
        created = step(world, op, n, created)
        world.check()
    drain(world)
    assert not world.pending
    assert not world.queue
    assert not world.running()
    left = {k: f for k, f in world.truth.items() if f is not None}
    never_ran = sorted(k for k in left if k not in world.ran)
    assert never_ran == [], f"flows left waiting with nothing queued: {never_ran}"
    # A rerun asked of a failed flow ran too: no flow is left with a request it did not honour.
    unran = sorted(k for k, f in left.items() if as_planned(f)[1])
    assert unran == [], f"reruns left waiting with nothing queued: {unran}"
