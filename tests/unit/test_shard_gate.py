"""--shards: the workers reconcile only the flows of shards held; a handover waits for those in flight."""

from __future__ import annotations

import asyncio

from controller_rig import Rig, running

from zen_flow.api.constants import LABEL_CONCURRENCY_KEY
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.controller.cron_reconciler import cron_queue
from zen_flow.controller.flow_queue import flow_queue
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.shard_gate import ShardGate, queue_shard
from zen_flow.core.shards import shard_of
from zen_flow.kube.errors import from_status
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.clock import FakeClock, settle
from zen_flow_dev.testing.flows import job_step, make_flow

SHARDS = 4


async def converge(rig: Rig) -> None:
    """The caches catch up and the worker acts on them, a few times over."""
    for _ in range(5):
        rig.api.sync()
        await rig.settle()


async def test_a_flow_of_a_shard_not_held_is_dropped_until_the_shard_is_acquired() -> None:
    metrics = Metrics()
    gate = ShardGate(SHARDS, "zf", metrics)
    flow = make_flow([job_step("a")], name="nightly")
    shard = gate.flow_shard(flow)
    async with running(flow, shards=gate) as rig:
        await converge(rig)
        assert rig.step("a") == ""  # not reconciled: another replica's shard
        assert len(rig.api.jobs) == 0
        assert rig.count("zen_flow_reconcile_total", "ok") == 0
        queue = rig.controller._queue
        assert len(queue) == 0
        assert queue.delayed == 0
        gate.on_grant(lambda s: [rig.controller.on_flow_event(rig.flow)] if s == shard else None)
        gate.grant((shard + 1) % SHARDS)
        await converge(rig)
        assert len(rig.api.jobs) == 0
        gate.grant(shard)  # acquiring the shard queues its cached flows
        await converge(rig)
        assert len(rig.api.jobs) == 1
        assert rig.step("a") == "Running"
        assert metrics.registry.get_sample_value("zen_flow_shard_reconciles_total", {"shard": str(shard)})
        assert metrics.registry.get_sample_value("zen_flow_shards_owned") == 2
        assert metrics.registry.get_sample_value(
            "leader_election_master_status", {"name": f"zf-shard-{shard}"}
        )


def test_a_concurrency_group_has_one_shard_and_a_relabel_moves_a_flow() -> None:
    gate = ShardGate(SHARDS, "zf", Metrics())
    grouped = [
        make_flow([job_step("a")], name=f"deploy-{i}", labels={LABEL_CONCURRENCY_KEY: "prod"})
        for i in range(20)
    ]
    assert len({gate.flow_shard(f) for f in grouped}) == 1
    loose = {gate.flow_shard(make_flow([job_step("a")], name=f"f-{i}")) for i in range(40)}
    assert loose == set(range(SHARDS))
    # Relabelled into another group, a flow moves with it: its shard is the new group's.
    prod = gate.flow_shard(grouped[0])
    other = next(
        g for g in (f"canary-{i}" for i in range(40)) if gate.flow_shard(make_flow(
            [job_step("a")], name="x", labels={LABEL_CONCURRENCY_KEY: g})) != prod
    )  # fmt: skip
    relabelled = grouped[0].model_copy(
        update={"metadata": grouped[0].metadata.model_copy(update={"labels": {LABEL_CONCURRENCY_KEY: other}})}
    )
    assert gate.flow_shard(relabelled) != prod
    unlabelled = grouped[0].model_copy(
        update={"metadata": grouped[0].metadata.model_copy(update={"labels": {}})}
    )
    assert gate.flow_shard(unlabelled) == shard_of(f"{unlabelled.metadata.namespace}/deploy-0", SHARDS)


async def test_a_grant_queues_the_cached_flows_and_cronjobflows_of_that_shard_only() -> None:
    gate = ShardGate(SHARDS, "zf", Metrics())
    clock = FakeClock()
    flows = [make_flow([job_step("a")], name=f"f-{i}") for i in range(40)]
    crons = [
        CronJobFlow.model_validate(
            {
                "metadata": {"name": f"c-{i}", "namespace": "ns", "uid": f"uid-c-{i}"},
                "spec": {"schedule": "* * * * *", "jobFlowTemplate": {"spec": {"steps": [job_step("a")]}}},
            }
        )
        for i in range(40)
    ]
    queue, crons_queue = flow_queue(clock, 2, 4), cron_queue(clock)
    gate.on_grant(queue_shard(gate, lambda: flows, queue, lambda: crons, crons_queue))
    gate.grant(1)
    want_flows = {f.key for f in flows if gate.flow_shard(f) == 1}
    want_crons = {c.key for c in crons if gate.key_shard(c.key) == 1}
    assert want_flows
    assert want_flows != {f.key for f in flows}
    assert want_crons
    assert want_crons != {c.key for c in crons}
    assert set(await _drain(queue)) == want_flows
    assert set(await _drain(crons_queue)) == want_crons


async def _drain(queue: WorkQueue[str]) -> list[str]:
    keys = []
    while len(queue):
        key = await queue.get()
        keys.append(key)
        queue.done(key)
    return keys


async def test_a_drain_waits_for_the_reconciles_in_flight_and_admits_no_new_one() -> None:
    gate = ShardGate(SHARDS, "zf", Metrics())
    gate.grant(2)
    assert gate.admit(2)
    draining = asyncio.ensure_future(gate.drain(2))
    await settle()
    assert not draining.done()
    assert not gate.admit(2)  # no new reconcile starts
    gate.leave(2)
    await settle()
    assert draining.done()
    gate.released(2)
    assert gate.owned == frozenset()


async def test_unsharded_workers_reconcile_everything() -> None:
    async with running(make_flow([job_step("a")], name="plain")) as rig:
        await converge(rig)
        assert len(rig.api.jobs) == 1


async def test_a_flow_handed_over_no_longer_counts_as_failing_its_job_creates_here() -> None:
    metrics = Metrics()
    gate = ShardGate(SHARDS, "zf", metrics)
    flow = make_flow([job_step("a")], name="blocked", namespace="team")
    shard = gate.flow_shard(flow)
    async with running(flow, shards=gate) as rig:
        metrics.watch_job_creates(rig.controller.creates_failing)
        create = rig.api.create_job

        async def quota(namespace: str, body: dict[str, object]) -> object:
            raise from_status(403, {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "quota"})

        rig.api.create_job = quota  # type: ignore[method-assign,assignment]
        gate.on_grant(lambda s: [rig.controller.on_flow_event(rig.flow)] if s == shard else None)
        gate.grant(shard)
        await converge(rig)
        failing = {"namespace": "team"}
        assert metrics.registry.get_sample_value("zen_flow_jobflows_job_creates_failing", failing) == 1
        await gate.drain(shard)  # handed over: another replica reports it now
        gate.released(shard)
        rig.api.create_job = create  # type: ignore[method-assign]
        await converge(rig)
        assert not metrics.registry.get_sample_value("zen_flow_jobflows_job_creates_failing", failing)
