"""The controller reads a pending step's pods when its plan says so, and only then (controller/pod_reads.py),
and the Job updates that move the step's pod watch wake it (controller/reconciler.py): against the fake
apiserver, on a fake clock."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from controller_rig import Rig

from zen_flow.api.pod import Pod
from zen_flow.controller.pod_reads import NAMESPACE_POD_READS_BURST, PodReads
from zen_flow.kube.errors import from_status
from zen_flow.planner import PendingJob, refused
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

FLOW = make_flow([job_step("a")], name="pods", namespace="team")
BOUNDED = make_flow([job_step("a", podPendingTimeoutSeconds=5)], name="bounded", namespace="team")
WHY = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."


def unschedulable(rig: Rig, job: str) -> Pod:
    uid = rig.api.jobs[("team", job)].metadata.uid
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": uid, "controller": True}
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": WHY}
    return Pod.model_validate(
        {
            "metadata": {"creationTimestamp": "2020-01-01T00:00:00Z", "ownerReferences": [owner]},
            "status": {"phase": "Pending", "conditions": [cond]},
        }
    )


async def started(rig: Rig) -> str:
    rig.api.sync()
    await rig.settle()
    rig.api.sync()
    await rig.settle()
    job = rig.job("a")
    rig.api.pods[("team", job)] = [unschedulable(rig, job)]
    return job


def report(rig: Rig, job: str, ready: int) -> None:
    """The Job controller reports the Job's pods; the controller gets the update with the old version,
    as from the Job informer (the fake's `sync` hands on only the new one)."""
    old = rig.api.jobs[("team", job)]
    new = rig.api.report_pods("team", job, ready=ready)
    rig.api.on_job = None
    rig.api.sync()
    rig.api.on_job = rig.controller.on_job_event
    rig.controller.on_job_event(new, old)


def stuck_events(rig: Rig) -> list[str]:
    return [m for _, r, m in rig.api.events if r == "StepPodStuck"]


@pytest.mark.parametrize("rig", [FLOW], indirect=True)
async def test_a_pending_jobs_pods_are_read_when_due_and_its_ready_pod_clears_the_message(rig: Rig) -> None:
    job = await started(rig)
    # The Job controller's first report: a pod, not ready. No plan now; a look once it may be stuck.
    report(rig, job, ready=0)
    await rig.settle(30)
    assert rig.api.pod_reads == []
    await rig.settle(1)  # 30 s after the controller saw it pending (+1: whole seconds)
    assert rig.api.pod_reads == [("team", job)]
    assert rig.api.cached_pod_reads == [("team", job)]  # a read for a message: from the apiserver's cache
    rig.api.sync()
    await rig.settle()
    assert rig.flow.status.step("a").message == f"pod unschedulable: {WHY}"  # type: ignore[union-attr]
    assert stuck_events(rig) == [f"step a: pod unschedulable: {WHY}"]
    # Nothing changes: one read per half minute, no status write.
    version = rig.flow.metadata.resource_version
    await rig.settle(30)
    rig.api.sync()
    await rig.settle()
    assert len(rig.api.pod_reads) == 2
    assert rig.flow.metadata.resource_version == version
    # Its pod runs: the update wakes the flow at once, and the message goes.
    report(rig, job, ready=1)
    await rig.settle()
    rig.api.sync()
    assert rig.flow.status.step("a").message is None  # type: ignore[union-attr]
    assert rig.step("a") == "Running"
    assert len(stuck_events(rig)) == 1


@pytest.mark.parametrize("rig", [BOUNDED], indirect=True)
async def test_a_pod_read_that_fails_fails_nothing_and_is_tried_again(rig: Rig) -> None:
    job = await started(rig)
    real = rig.api.pods_of
    refusals = [from_status(403, {"reason": "Forbidden", "message": "pods is forbidden"})]

    async def flaky(namespace: str, name: str, *, cached: bool = False) -> Sequence[Pod]:
        if refusals:
            raise refusals.pop()
        return await real(namespace, name, cached=cached)

    rig.api.pods_of = flaky  # type: ignore[method-assign]
    report(rig, job, ready=0)
    await rig.settle(6)  # the flow's 5 s bound: its look, whose read is refused
    rig.api.sync()
    assert rig.step("a") == "Running"
    await rig.settle(5)  # asked again a few seconds later: still stuck, past the bound
    rig.api.sync()
    await rig.settle()
    step: Any = rig.flow.status.step("a")
    assert step.phase == "Failed"
    assert step.message == f"PodPendingTimeout: no pod running for 5s; pod unschedulable: {WHY}"
    assert ("team", job) not in rig.api.jobs  # deleted, its pod with it
    assert rig.flow.status.phase == "Failed"


class CountingPods:
    """Answers every pod read with no pod, and counts them by namespace."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, str, bool]] = []

    async def pods_of(self, namespace: str, job: str, *, cached: bool = False) -> Sequence[Pod]:
        self.reads.append((namespace, job, cached))
        return ()


async def test_pod_reads_are_capped_so_one_tenants_stuck_jobs_leave_the_others_theirs() -> None:
    # One namespace's three flows of eight stuck Jobs each, another's one: their reads fall due at once.
    t0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
    clock = FakeClock()
    api = CountingPods()
    reads = PodReads(api, monotonic=clock.monotonic)
    sims = []
    for namespace, flows in (("busy", 3), ("quiet", 1)):
        for i in range(flows):
            sim = Simulator(make_flow([job_step(f"s{k}") for k in range(8)], name=f"{namespace}-{i}"), t0)
            sim.flow = sim.flow.model_copy(
                update={"metadata": sim.flow.metadata.model_copy(update={"namespace": namespace})}
            )
            sim.reconcile()
            for name in sim.running():
                sim.stick(name, [])
                reads.saw(sim.flow.metadata.uid, sim.jobs[name], t0)  # the informer: it turned pending
            sims.append(sim)
    for sim in sims:
        await reads.read(sim.flow, list(sim.jobs.values()), t0 + timedelta(seconds=31))
    made = Counter(namespace for namespace, _, _ in api.reads)
    assert made == {"busy": NAMESPACE_POD_READS_BURST, "quiet": 8}
    assert all(cached for _, _, cached in api.reads)  # none is at a bound: all from the apiserver's cache
    # The ones put off are made later, as the tokens come back (the plans ask again a few seconds on).
    clock.jump(10.0)
    for sim in sims[:3]:
        await reads.read(sim.flow, list(sim.jobs.values()), t0 + timedelta(seconds=41))
    assert Counter(namespace for namespace, _, _ in api.reads)["busy"] == 24


def test_a_refused_read_is_tried_again_later_and_later_until_one_is_made() -> None:
    look = PendingJob("uid", datetime(2026, 3, 1, 9, tzinfo=UTC))
    t = look.seen_at
    waits = []
    for _ in range(6):
        look = refused(look, t)
        assert look.retry_at is not None
        waits.append((look.retry_at - t).total_seconds())
    assert waits == [5, 10, 20, 40, 60, 60]


async def test_a_namespace_over_its_share_re_plans_less_and_less_and_its_bounds_are_never_put_off() -> None:
    # A namespace's many stuck Jobs (more than its share of reads) in flows with a 120 s bound: the reads
    # the limiter refuses are asked for again 5, 10, 20 s on (each flow's wake-up), not every 5 s; the read
    # at each bound is made, whatever the share.
    t0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
    clock = FakeClock()
    api = CountingPods()
    reads = PodReads(api, monotonic=clock.monotonic)
    sims = []
    for i in range(4):
        sim = Simulator(
            make_flow([job_step(f"s{k}", podPendingTimeoutSeconds=120) for k in range(8)], name=f"f{i}"), t0
        )
        sim.reconcile()
        for name in sim.running():
            sim.stick(name, [])
            reads.saw(sim.flow.metadata.uid, sim.jobs[name], t0)
        sims.append(sim)
    now = t0 + timedelta(seconds=31)
    for sim in sims:
        await reads.read(sim.flow, list(sim.jobs.values()), now)
    assert len(api.reads) == NAMESPACE_POD_READS_BURST  # two flows read, two refused
    late = sims[3]
    looks = reads.seen(late.flow)
    assert {look.refusals for look in looks.values()} == {1}
    assert {look.retry_at for look in looks.values()} == {now + timedelta(seconds=5)}
    # Refused again (the share not back yet): put off twice as long; a read made resets it.
    later = now + timedelta(seconds=5)
    await reads.read(late.flow, list(late.jobs.values()), later)
    assert {look.retry_at for look in reads.seen(late.flow).values()} == {later + timedelta(seconds=10)}
    await reads.read(late.flow, list(late.jobs.values()), later + timedelta(seconds=5))
    assert len(api.reads) == NAMESPACE_POD_READS_BURST  # not due: nothing asked of the limiter
    clock.jump(60.0)
    await reads.read(late.flow, list(late.jobs.values()), later + timedelta(seconds=10))
    assert {(look.refusals, look.retry_at) for look in reads.seen(late.flow).values()} == {(0, None)}
    # At the bound (120 s from the first read that found no pod, at +51 s), the share spent by the
    # others' reads: each read is made, from the apiserver's storage.
    for sim in sims[:3]:
        await reads.read(sim.flow, list(sim.jobs.values()), t0 + timedelta(seconds=100))
    made = len(api.reads)
    assert all(look.refusals for look in reads.seen(sims[2].flow).values())  # the share spent again
    await reads.read(late.flow, list(late.jobs.values()), t0 + timedelta(seconds=172))
    assert all(not cached for _, _, cached in api.reads[made:])
    assert len(api.reads) - made == 8
