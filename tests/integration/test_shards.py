"""Active-active sharding (`--shards 4`) on the real control plane: two replicas split the shards 2/2 and
each reconciles only its own shards' flows; a replica SIGKILLed leaves its shards to the other, which
completes new flows; started again, it gets its share back (docs/OPERATOR_GUIDE.md, "Sharding across
replicas")."""

from __future__ import annotations

from typing import Any

import pytest
from controller_steps import WAIT, job_of

from zen_flow.core.shards import LABEL_SHARDED_LEASE, shard_of, shard_of_lease
from zen_flow.kube.leases import LEASES
from zen_flow_dev.testing.controller import ControllerProcess, StartController
from zen_flow_dev.testing.driver import FlowDriver, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.jobstatus import complete_job

pytestmark = pytest.mark.integration

LEASE, SHARDS = "zen-flow-controller", 4
# Short timings, so a takeover after a SIGKILL is seconds away: a Lease unchanged for 4 s has expired.
SHARDED = ["--shards", str(SHARDS), "--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "0.5"]


async def _holders(driver: FlowDriver, namespace: str) -> dict[int, str]:
    """Shard -> holder identity ("" for free), read from the shard Leases."""
    answer = await driver.kube.request(
        "GET", LEASES.path(namespace), query=[("labelSelector", f"{LABEL_SHARDED_LEASE}={LEASE}")]
    )
    found: dict[int, str] = {}
    for lease in answer.get("items", []):
        shard = shard_of_lease(LEASE, lease["metadata"]["name"], SHARDS)
        if shard is not None:
            found[shard] = _replica_name(lease["spec"].get("holderIdentity") or "")
    return found


async def _split(driver: FlowDriver, namespace: str, want: dict[str, int]) -> dict[str, set[int]]:
    """Wait until the shard Leases are held as `want` says (identity -> how many) and each replica's
    metric agrees; returns identity -> its shards."""

    async def probe() -> dict[str, set[int]] | None:
        owners: dict[str, set[int]] = {}
        for shard, holder in (await _holders(driver, namespace)).items():
            owners.setdefault(holder, set()).add(shard)
        counts = {who: len(owners.get(who, set())) for who in want}
        return owners if counts == want and sum(want.values()) == SHARDS else None

    return await wait_until(probe, WAIT, what=f"shard Leases held {want}")


async def _members(driver: FlowDriver, namespace: str) -> set[str]:
    """The holders of the member Leases: the replicas that announce themselves."""
    answer = await driver.kube.request(
        "GET", LEASES.path(namespace), query=[("labelSelector", f"{LABEL_SHARDED_LEASE}={LEASE}")]
    )
    return {
        _replica_name(lease["spec"].get("holderIdentity") or "")
        for lease in answer.get("items", [])
        if lease["metadata"]["name"].startswith(f"{LEASE}-member-")
    }


def _owned(controller: ControllerProcess) -> float:
    return controller.metric("zen_flow_shards_owned")


async def _run_flows(driver: FlowDriver, namespace: str, names: list[str]) -> None:
    for name in names:
        await driver.create(flow_manifest(name, namespace, [job_step("only")]))
    for name in names:
        job = await job_of(driver, namespace, "only", flow=name)
        await complete_job(driver.kube, namespace, job["metadata"]["name"])
    for name in names:
        flow: dict[str, Any] = await driver.wait_phase(namespace, name, timeout=WAIT)
        assert flow["status"]["phase"] == "Succeeded", name


def _replica(start_controller: StartController, namespace: str, name: str) -> ControllerProcess:
    # --identity is refused with --shards: the identity is <POD_NAME>_<random>, as in a pod.
    return start_controller(
        leader_elect=True, lease_namespace=namespace, env={"POD_NAME": name}, extra_args=SHARDED
    )


def _replica_name(identity: str) -> str:
    """The replica an identity `<POD_NAME>_<random>` belongs to ("" stays "")."""
    return identity.rsplit("_", 1)[0]


async def test_two_replicas_share_the_shards_and_take_over_from_each_other(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    a = _replica(start_controller, namespace, "replica-a")
    b = _replica(start_controller, namespace, "replica-b")
    owners = await _split(driver, namespace, {"replica-a": 2, "replica-b": 2})

    async def metrics_agree() -> bool:
        return _owned(a) == 2 and _owned(b) == 2

    await wait_until(metrics_agree, WAIT, what="each replica reports 2 shards")

    names = [f"flow-{i}" for i in range(12)]
    shards = {name: shard_of(f"{namespace}/{name}", SHARDS) for name in names}
    assert {s for s in shards.values() if s in owners["replica-a"]}, "no flow on replica-a's shards"
    assert {s for s in shards.values() if s in owners["replica-b"]}, "no flow on replica-b's shards"
    await _run_flows(driver, namespace, names)
    # Each shard's flows were reconciled by its holder only.
    for replica, mine, theirs in (
        (a, owners["replica-a"], owners["replica-b"]),
        (b, owners["replica-b"], owners["replica-a"]),
    ):
        for shard in {shards[n] for n in names}:
            count = replica.metric("zen_flow_shard_reconciles_total", shard=str(shard))
            if shard in mine:
                assert count > 0, (replica.args, shard)
            else:
                assert shard in theirs
                assert count == 0, (replica.args, shard)

    b.kill()  # SIGKILL: its Leases are not released, they expire
    await _split(driver, namespace, {"replica-a": 4})

    async def a_owns_all() -> bool:
        return _owned(a) == 4

    await wait_until(a_owns_all, WAIT, what="replica-a reports all 4 shards")
    await _run_flows(driver, namespace, [f"after-kill-{i}" for i in range(4)])

    b2 = _replica(start_controller, namespace, "replica-b2")
    await _split(driver, namespace, {"replica-a": 2, "replica-b2": 2})
    await _run_flows(driver, namespace, [f"after-restart-{i}" for i in range(4)])

    # SIGTERM: replica-a releases its shards and deletes its member Lease on the way out.
    assert a.stop() == 0
    assert "replica-a" not in await _members(driver, namespace)
    await _split(driver, namespace, {"replica-b2": 4})

    async def b2_owns_all() -> bool:
        return _owned(b2) == 4

    await wait_until(b2_owns_all, WAIT, what="replica-b2 reports all 4 shards")

    # The member Lease of the replica killed is deleted by a live one, once stale for a while.
    async def killed_member_gone() -> bool:
        return await _members(driver, namespace) == {"replica-b2"}

    await wait_until(killed_member_gone, WAIT, what="only replica-b2's member Lease left")
