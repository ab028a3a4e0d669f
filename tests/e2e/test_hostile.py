"""One tenant's flow must never stop another's: pathological `when` expressions fail their own flow while
other flows run to the end and the leader keeps its lease.

The probe that found it: a 448-character `when` passed admission, took 18.8 s to evaluate inline on the
event loop, starved the lease renewal, and every leader that picked the flow up resigned in turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from zen_flow.machinery.leader import LeadershipLost
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.flows import chain, flow_manifest, job_step

LEASE = "zen-flow-controller"
TEN = "[0,1,2,3,4,5,6,7,8,9]"
# Comprehensions eight deep: 10^8 iterations (half a minute of CPU). Admission refuses it.
NESTED = "".join(f"{TEN}.all(v{i}, " for i in range(8)) + "true" + ")" * 8
# Passes admission (20 x 20 iterations), but each iteration copies 400 kB: far past a 0.05 s budget.
COSTLY = "steps.all(a, steps.all(b, size(flow.annotations.big + flow.annotations.big) > 0))"


async def _lease(driver: FlowDriver, namespace: str) -> dict[str, Any] | None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{LEASE}"
    try:
        return await driver.kube.request("GET", path)
    except Exception:
        return None


async def test_pathological_when_expressions_fail_alone_and_the_leader_keeps_its_lease(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    controller = start_controller(
        leader_elect=True, lease_namespace=namespace, extra_args=["--expression-budget", "0.05"]
    )

    async def held() -> dict[str, Any] | None:
        lease = await _lease(driver, namespace)
        return lease if lease and lease["spec"].get("holderIdentity") else None

    before = (await wait_until(held, 30, what="the controller to lead"))["spec"]

    nested = flow_manifest("nested", namespace, [job_step("a"), job_step("judge", "a", when=NESTED)])
    costly_steps = [job_step(f"s{i}") for i in range(19)] + [job_step("judge", when=COSTLY)]
    costly = flow_manifest("costly", namespace, costly_steps, annotations={"big": "x" * 200_000})
    good = [chain(f"good-{n}", namespace, 5) for n in range(2)]
    await asyncio.gather(*(driver.create(m) for m in (nested, costly, *good)))

    results = {
        name: await driver.wait_phase(namespace, name, timeout=120)
        for name in ("nested", "costly", "good-0", "good-1")
    }
    invalid = next(c for c in results["nested"]["status"]["conditions"] if c["type"] == "Failed")
    assert invalid["reason"] == "InvalidSpec"
    assert "too expensive: comprehensions nested 8 deep (at most 2)" in invalid["message"]
    assert results["costly"]["status"]["phase"] == "Failed"
    judge = next(s for s in results["costly"]["status"]["steps"] if s["name"] == "judge")
    assert judge["phase"] == "Failed"
    assert judge["message"].startswith("when stopped: evaluation ran past its 0.05s budget")
    for name in ("good-0", "good-1"):
        assert results[name]["status"]["phase"] == "Succeeded"
        assert set(step_phases(results[name]).values()) == {"Succeeded"}

    after = (await _lease(driver, namespace) or {})["spec"]
    assert after["holderIdentity"] == before["holderIdentity"]
    assert after.get("leaseTransitions") == before.get("leaseTransitions")
    assert controller.alive
    assert LeadershipLost.__name__ not in controller.log_tail(400)
    assert "lost leadership" not in controller.log_tail(400)
