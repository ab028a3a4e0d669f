"""Step and flow locks under random interleavings: flows in two namespaces whose steps (one to three, some
in a chain, the first a matrix step of 2 or 3 items, with or without maxParallel, in some) take a mutex,
a semaphore of 2, the same semaphore at limit 1 (mixed limits), or a mutex and a semaphore, and some of
which take locks of their own (`spec.synchronization`: their steps then take none), some creating
`resourceTemplates` first (the plan taking a flow's locks then starts no Job), some whose later steps may
fail (`continueOnFailure`) before a step that needs one of them to succeed (`dependencyPolicy:
AnySucceeded`, skipped when none did); plans in flight while other flows plan (claimed, not yet settled),
writes and Job changes whose watch events reach the cache late (each on its own), status writes lost
(409: the Jobs created, the status not) and Job creates failed (nothing written), Jobs ending or failing,
failed flows rerun (`zen-flow retry`, all or `--step s0`), flows suspended and resumed, flows deleted
mid-plan, a controller restart (the book rebuilt from the cache), and reconciles only of the keys the
informer events, the book's wake-ups and failed reconciles queue (no polling).

- Never more holders (steps, matrix items and flows holding their own locks each count) hold a lock
  in a namespace than the largest limit its holders declared (each started only while fewer held it
  than its own limit; what the flows' statuses say, and the running Jobs of starts whose status write
  was lost: the truth).
- No wake-up is lost: whenever nothing is queued, in flight or undelivered, no waiting step (or flow
  waiting for its own locks) could start (a plan of its flow now would start none), suspended flows left
  asleep.
- Every waiter gets its locks: draining the queue (queued keys reconciled, running Jobs ending) leaves
  every flow ended, none waiting for a lock nobody holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from zen_flow.api.constants import ANNOTATION_RETRY, ANNOTATION_RETRY_STEPS, FlowPhase, StepPhase
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow, ResourceTemplates
from zen_flow.controller.matrix_flows import MatrixFlows
from zen_flow.planner import CreateJob, CreateResource, LockBook, Plan, plan
from zen_flow.planner.locks import HOLDING_PHASES, Need, flow_needs, flow_queued, lock_waiting, needs_of
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NAMESPACES = ["ns-a", "ns-b"]
LOCKS: dict[str, dict[str, Any]] = {
    "mutex": {"mutexes": [{"name": "db"}]},
    "semaphore": {"semaphores": [{"name": "pool", "limit": 2}]},
    "narrow": {"semaphores": [{"name": "pool", "limit": 1}]},
    "both": {"mutexes": [{"name": "db"}], "semaphores": [{"name": "pool", "limit": 2}]},
}
DRAIN_ROUNDS = 600


@dataclass
class World:
    """The apiserver's flows (`sims`: the truth), the controller's cache of them and of their Jobs (what
    the book saw: a write or a Job change lands in the cache only when its watch event is delivered), its
    queue, and the plans in flight (claimed, not yet settled)."""

    sims: dict[str, Simulator] = field(default_factory=dict)
    book: LockBook = field(init=False)
    cache: dict[str, JobFlow] = field(default_factory=dict)
    job_cache: dict[str, dict[str, Job]] = field(default_factory=dict)  # flow key -> its Jobs, by name
    queue: list[str] = field(default_factory=list)
    in_flight: dict[str, tuple[JobFlow, Plan]] = field(default_factory=dict)
    matrix: MatrixFlows = field(default_factory=MatrixFlows)  # each flow's expansion, as the controller's

    def __post_init__(self) -> None:
        self.book = LockBook(self.jobs_for, self.effective)

    def effective(self, flow: JobFlow) -> JobFlow:
        """The flow its plan gets: its matrix steps' items."""
        return self.matrix.effective(flow)[0]

    def jobs_for(self, uid: str) -> list[Job]:
        """The Jobs the cache shows (late: `deliver_jobs`; a flow's own plan waits for its own creates)."""
        return [
            j
            for k, sim in self.sims.items()
            if sim.flow.metadata.uid == uid
            for j in self.job_cache.get(k, {}).values()
        ]

    def deliver_jobs(self, key: str) -> None:
        """The watch events of the flow's Jobs created or changed since reach the cache: `observe(flow,
        flow)`, and the flow is queued."""
        sim = self.sims.get(key)
        if sim is None or self.job_cache.get(key) == sim.jobs:
            return
        self.job_cache[key] = dict(sim.jobs)
        if (cached := self.cache.get(key)) is not None:
            self.queue += [key, *self.book.observe(cached, cached)]

    def add(self, f: JobFlow) -> None:
        self.sims[f.metadata.key] = Simulator(f, T0)
        self.cache[f.metadata.key] = f
        self.job_cache[f.metadata.key] = {}
        self.queue += [f.metadata.key, *self.book.observe(None, f)]

    def undelivered(self) -> list[str]:
        return [
            k
            for k, sim in self.sims.items()
            if self.cache.get(k) is not sim.flow or self.job_cache.get(k) != sim.jobs
        ]

    def deliver(self, key: str) -> None:
        """The watch event of the flow's last write reaches the cache (its Jobs' may stay late)."""
        sim = self.sims.get(key)
        if sim is None or self.cache.get(key) is sim.flow:
            return
        old, self.cache[key] = self.cache[key], sim.flow
        self.queue += [key, *self.book.observe(old, sim.flow)]

    def begin(self, key: str) -> None:
        """A worker claims the flow's view and plans it; the settle comes later (`end`). A flow whose own
        write, or Job creates and deletes, the cache has not shown yet is not planned (the controller
        waits for them: `unseen_for`, expectations); it plans with the Jobs the cache shows."""
        sim = self.sims.get(key)
        if sim is None or key in self.in_flight or self.cache.get(key) is not sim.flow:
            return
        jobs = self.job_cache.get(key, {})
        if jobs.keys() != sim.jobs.keys():
            return
        self.queue = [k for k in self.queue if k != key]  # a worker took it (the queue holds a key once)
        before = self.effective(sim.flow)  # its plan gets the matrix steps' items, as the controller's does
        view = self.book.claim(before)
        self.in_flight[key] = (before, plan(before, list(jobs.values()), sim.now, locks=view))

    def end(self, key: str, how: str = "end") -> None:
        """The plan is settled and done: written (`end`), its status write lost after its Job creates
        (`lost`: 409), or its first Job create failed (`nocreate`: nothing written); a failed reconcile
        is queued again."""
        if key not in self.in_flight:
            return
        before, result = self.in_flight.pop(key)
        self.queue += self.book.settle(before, result.status)
        sim = self.sims.get(key)
        if sim is None:  # deleted meanwhile: its creates and writes fail
            return
        # An object of resourceTemplates a lost write created before is there: the controller adopts it.
        actions = tuple(
            a
            for a in result.actions
            if not (isinstance(a, CreateResource) and (a.kind, a.name) in sim.resources)
        )
        result = replace(result, actions=actions)
        if how == "nocreate":
            self.queue.append(key)
        elif how == "lost":
            sim.apply(result, write_status=False)  # its Jobs' events come later (`deliver_jobs`)
            self.queue.append(key)  # the failed write's reconcile is retried
        else:
            sim.apply(result)  # the cache sees it, and its Jobs, when they are delivered

    def rerun(self, key: str, step: str | None = None) -> None:
        """`zen-flow retry` (`--step STEP`) of a failed flow (the cache sees it when it is delivered)."""
        sim = self.sims.get(key)
        if sim is not None and sim.flow.status.phase == FlowPhase.FAILED:
            sim.annotate(ANNOTATION_RETRY_STEPS, step)
            sim.annotate(ANNOTATION_RETRY, str(len(sim.plans)))

    def suspend(self, key: str, suspend: bool) -> None:
        sim = self.sims.get(key)
        if sim is not None and bool(sim.flow.spec.suspend) != suspend and not sim.terminal:
            sim.set_suspend(suspend)

    def finish(self, key: str, failed: bool) -> None:
        sim = self.sims.get(key)
        if sim is None or not sim.running():
            return
        for job in sim.running():
            sim.fail(job) if failed else sim.complete(job)

    def delete(self, key: str) -> None:
        sim = self.sims.pop(key, None)
        if sim is not None:
            self.job_cache.pop(key, None)
            self.queue += self.book.observe(self.cache.pop(key), None)

    def restart(self) -> None:
        """A new leader: the book rebuilt from the cache, every flow queued (the informer's list)."""
        self.in_flight.clear()  # the old process's plans died with it (their writes never came)
        self.matrix = MatrixFlows()
        self.book = LockBook(self.jobs_for, self.effective)  # its Jobs listed before the workers start
        for key, sim in self.sims.items():  # the new process lists what the apiserver stores
            self.cache[key] = sim.flow
            self.job_cache[key] = dict(sim.jobs)
            self.queue += [key, *self.book.observe(None, sim.flow)]

    def check_quiet(self) -> None:
        """Nothing queued, in flight or undelivered: a waiting step that could start now lost its wake-up
        (it would wait until some unrelated event)."""
        for key, sim in self.sims.items():
            waiting = {s.name for s in sim.flow.status.steps if lock_waiting(s.message)}
            own = flow_queued(sim.flow)  # the flow waits for its own locks
            if not (waiting or own) or sim.flow.spec.suspend:
                continue
            effective = self.effective(sim.flow)
            view = self.book.claim(effective)
            result = plan(effective, list(sim.jobs.values()), sim.now, locks=view)
            self.book.settle(effective, None)
            could = [a.step for a in result.actions if isinstance(a, CreateJob) and a.step in waiting]
            if own and result.status.held_locks:
                could.append("the flow's own locks")
            assert not could, f"{key}: {could} could start, but nothing queued it"

    def drain(self) -> None:
        """Only what the events and the book queue is reconciled; Jobs end when nothing is queued."""
        for _ in range(DRAIN_ROUNDS):
            if late := self.undelivered():
                self.deliver(late[0])
                self.deliver_jobs(late[0])
            elif self.queue:
                key = self.queue[0]
                self.queue = [k for k in self.queue if k != key]
                self.begin(key)
                self.end(key)
            else:
                self.check_quiet()
                if running := [k for k, sim in self.sims.items() if sim.running()]:
                    self.finish(running[0], failed=False)
                else:
                    return
            self.check_limits()

    def check_limits(self) -> None:
        held: Counter[tuple[str, str]] = Counter()
        widest: dict[tuple[str, str], int] = {}

        def count(key: str, needs: tuple[Need, ...]) -> None:
            for need in needs:
                lock = (key.partition("/")[0], need.name)
                held[lock] += 1
                widest[lock] = max(widest.get(lock, 0), need.limit)

        for key, sim in self.sims.items():
            effective = self.effective(sim.flow)
            specs = {s.name: s for s in effective.spec.steps}
            # A Job running that the status does not record holds its step's locks (its start's write was
            # lost), and its flow's own while the status does not say it holds them.
            live = {sim.steps[j] for j, job in sim.jobs.items() if not job.finished and not job.deleting}
            if sim.flow.status.held_locks or (live and not sim.terminal):
                count(key, flow_needs(effective))  # the flow holds its own (its status says so until it ends)
            shown = {s.name for s in sim.flow.status.steps if s.phase in HOLDING_PHASES}
            for step in shown | live:
                count(key, needs_of(specs[step]))
        over = {k: n for k, n in held.items() if n > widest[k]}
        assert not over, f"more holders than the limit: {over}"


flows_st = st.lists(
    st.tuples(
        st.sampled_from(NAMESPACES),
        st.lists(st.sampled_from(sorted(LOCKS)), min_size=1, max_size=3),
        st.booleans(),  # chained steps
        st.sampled_from([0, 0, 5]),  # priority
        st.sampled_from([(0, None), (0, None), (2, None), (3, None), (3, 1)]),  # matrix items, maxParallel
        st.sampled_from([None, None, "mutex", "semaphore", "narrow"]),  # the flow's own locks
        st.sampled_from([False, False, True]),  # s1 may fail, s2 needs any of its dependencies to succeed
        st.sampled_from([False, False, True]),  # resourceTemplates
    ),
    min_size=1,
    max_size=6,
)
ops_st = st.lists(
    st.tuples(
        st.sampled_from(
            [
                *("begin", "begin", "end", "end", "lost", "nocreate", "deliver", "deliver", "jobs"),
                *("finish", "fail", "retry", "retry-step", "suspend", "resume", "delete", "restart"),
            ]
        ),
        st.integers(0, 5),
    ),
    max_size=40,
)


def make(
    i: int,
    ns: str,
    locks: list[str],
    chained: bool,
    priority: int,
    matrix: tuple[int, int | None] = (0, None),
    own: str | None = None,
    lenient: bool = False,
    resources: bool = False,
) -> JobFlow:
    # A flow taking locks of its own has no step taking more (admission refuses it: hold and wait).
    steps = [
        job_step(
            f"s{j}",
            *([f"s{j - 1}"] if (chained or (lenient and j == 2)) and j else []),
            **({} if own else {"synchronization": LOCKS[lock]}),
        )
        for j, lock in enumerate(locks)
    ]
    if lenient and len(steps) > 2:  # s1 may fail; s2 runs if it succeeds, else is skipped
        steps[1]["continueOnFailure"] = True
        steps[2]["dependencyPolicy"] = "AnySucceeded"
    items, max_parallel = matrix
    if items:  # the first step fans out: each item holds a place of its own
        values = {"parameters": [{"name": "shard", "values": [str(k) for k in range(items)]}]}
        steps[0]["matrix"] = values if max_parallel is None else {**values, "maxParallel": max_parallel}
    flow = make_flow(
        steps,
        name=f"f{i}",
        namespace=ns,
        created=T0 + timedelta(seconds=i // 2),
        execution_policy={"priority": priority},
        synchronization=LOCKS[own] if own else None,
    )
    if resources:  # created first: the plan that takes the flow's own locks starts no Job
        templates = ResourceTemplates(config_map_templates=({"metadata": {"name": "settings"}, "data": {}},))
        flow = flow.model_copy(
            update={"spec": flow.spec.model_copy(update={"resource_templates": templates})}
        )
    return flow


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows_st, ops_st)
# Two plans in flight at once, each of a flow whose step wants the one mutex: the first's claim reserves it.
@example([("ns-a", ["mutex"], False, 0)] * 2, [("begin", 0), ("begin", 1), ("end", 0), ("end", 1)])
# The first's start written, its watch event late: the second, planned meanwhile, finds it reserved.
@example([("ns-a", ["mutex"], False, 0)] * 2, [("begin", 0), ("end", 0), ("begin", 1), ("end", 1)])
# A plan in flight when its flow is deleted, its earlier start's status write lost: nothing stays reserved.
@example(
    [("ns-a", ["mutex"], False, 0)] * 2,
    [("begin", 0), ("lost", 0), ("begin", 0), ("delete", 0), ("end", 0)],
)
# A start whose Job create failed keeps the other waiting; the next plan starts nothing (suspended): the
# waiter is woken.
@example(
    [("ns-a", ["mutex"], False, 0)] * 2,
    [
        *(("begin", 0), ("nocreate", 0), ("begin", 1), ("end", 1), ("deliver", 1), ("begin", 1), ("end", 1)),
        *(("suspend", 0), ("deliver", 0), ("begin", 0), ("end", 0)),
    ],
)
# A rerun planned while the waiter is: it reserves the failed step it runs again.
@example(
    [("ns-a", ["mutex"], False, 0)] * 2,
    [
        *(("begin", 0), ("end", 0), ("deliver", 0), ("begin", 1), ("end", 1), ("deliver", 1), ("fail", 0)),
        *(("begin", 0), ("end", 0), ("deliver", 0), ("retry", 0), ("deliver", 0)),
        *(("begin", 0), ("begin", 1), ("end", 0), ("end", 1)),
    ],
)
# The waiter's own no-op replan is in flight when the holder ends: the wake-up it held back is its own (a
# plan that changes nothing writes nothing, so no event of its own queues it again).
@example(
    [("ns-a", ["mutex"], False, 0)] * 2,
    [
        *(("begin", 0), ("end", 0), ("deliver", 0), ("begin", 1), ("end", 1), ("deliver", 1), ("begin", 1)),
        *(("finish", 0), ("begin", 0), ("end", 0), ("deliver", 0), ("end", 1)),
    ],
)
# A start's status write lost, then a restart: the book rebuilt from the cache counts its running Job (the
# flow's next plan takes it over under no lock check), so the other flow does not take the mutex too.
@example([("ns-a", ["both"], False, 0)] * 2, [("begin", 0), ("lost", 0), ("restart", 0)])
# Flows taking their own locks (a mutex, the semaphore) and a flow whose steps take both: the line and the
# limits are shared; the first's start lost before a restart, its Job says it holds them.
@example(
    [
        ("ns-a", ["semaphore"], False, 0, (0, None), "mutex"),
        ("ns-a", ["mutex"], False, 0, (2, None), "semaphore"),
        ("ns-a", ["both"], True, 5, (0, None), None),
    ],
    [("begin", 0), ("lost", 0), ("restart", 0), ("begin", 2), ("end", 2), ("begin", 1), ("end", 1)],
)
# A flow holding its own mutex between two steps (its first Job done, its next not started yet) still holds
# it: the other flow, planned first, waits.
@example(
    [("ns-a", ["mutex", "mutex"], True, 0, (0, None), "mutex")] * 2,
    [
        *(("begin", 0), ("end", 0), ("deliver", 0), ("begin", 1), ("end", 1), ("deliver", 1)),
        *(("finish", 0), ("begin", 1), ("end", 1)),
    ],
)
# A matrix's items each hold a place of the semaphore (two run, one waits), the start of those two lost
# before a restart: the other flow's step, planned first, finds them holding.
@example(
    [("ns-a", ["semaphore"], False, 0, (3, None)), ("ns-a", ["semaphore"], False, 0, (0, None))],
    [("begin", 0), ("lost", 0), ("restart", 0), ("begin", 1), ("end", 1), ("begin", 0), ("end", 0)],
)
# Two plans in flight at once, each of a flow taking the one mutex as its own: the first's claim reserves it.
@example(
    [("ns-a", ["mutex"], False, 0, (0, None), "mutex")] * 2,
    [("begin", 0), ("begin", 1), ("end", 0), ("end", 1)],
)
# The first takes its own mutex and creates its resources (no Job yet); its write's watch event late, the
# second, planned meanwhile, finds the mutex reserved by the first's settle.
@example(
    [("ns-a", ["mutex"], False, 0, (0, None), "mutex", False, True)] * 2,
    [("begin", 0), ("end", 0), ("begin", 1), ("end", 1)],
)
# The first takes its own mutex and starts its Job, the Job's and the write's events late: the same.
@example(
    [("ns-a", ["mutex"], False, 0, (0, None), "mutex")] * 2,
    [("begin", 0), ("end", 0), ("begin", 1), ("end", 1)],
)
# A rerun of s0 alone waits for the mutex f1 holds, and skips s2 at once (s1 failed before): that skip
# does not start it, and its next plan does not take the mutex over as a lost start's.
@example(
    [
        ("ns-a", ["mutex"] * 3, False, 0, (0, None), "mutex", True),
        ("ns-a", ["mutex"], False, 0, (0, None), "mutex"),
    ],
    [
        *(("begin", 0), ("end", 0), ("deliver", 0), ("jobs", 0), ("fail", 0), ("jobs", 0)),
        *(("begin", 0), ("end", 0), ("deliver", 0), ("begin", 0), ("end", 0), ("deliver", 0)),
        *(("begin", 1), ("end", 1), ("deliver", 1), ("jobs", 1), ("retry-step", 0), ("deliver", 0)),
        *(("begin", 0), ("end", 0), ("deliver", 0), ("begin", 0), ("end", 0)),
    ],
)
def test_locks_never_overflow_and_every_waiter_gets_them(flows: list[Any], ops: list[Any]) -> None:
    world = World()
    for i, spec in enumerate(flows):
        world.add(make(i, *spec))
    keys = list(world.sims)
    for op, n in ops:
        key = keys[n % len(keys)]
        if op == "begin":
            world.begin(key)
        elif op in ("end", "lost", "nocreate"):
            world.end(key, op)
        elif op in ("retry", "retry-step"):
            world.rerun(key, "s0" if op == "retry-step" else None)
        elif op in ("suspend", "resume"):
            world.suspend(key, op == "suspend")
        elif op in ("finish", "fail"):
            world.finish(key, failed=op == "fail")
        elif op == "deliver":
            world.deliver(key)
        elif op == "jobs":
            world.deliver_jobs(key)
        elif op == "delete":
            world.delete(key)
        else:
            world.restart()
        world.check_limits()
    for key in list(world.in_flight):
        world.end(key)
    world.drain()  # suspended flows asleep: what they hold stays held
    for key in world.sims:  # every flow resumed (its resume's event queues it)
        world.suspend(key, False)
    world.drain()
    stuck = {
        key: [(s.name, s.phase, s.message) for s in sim.flow.status.steps if not StepPhase(s.phase).terminal]
        for key, sim in world.sims.items()
        if not sim.terminal
    }
    assert not stuck, f"flows that never ended: {stuck}"
    assert not any(lock_waiting(s.message) for sim in world.sims.values() for s in sim.flow.status.steps)
