"""Driving a flow through the bare-apiserver profile, where the test plays the Job controller: which Jobs
exist per step, waiting for step phases, finishing a step's Job (zen_flow_dev.testing.jobstatus); and a
step's status entry, read alike on the full clusters (`scheduled`)."""

from __future__ import annotations

from typing import Any

from zen_flow.api.constants import LABEL_FLOW, LABEL_STEP
from zen_flow.core.naming import label_value
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.jobstatus import complete_job, fail_job

WAIT = 30.0  # seconds; generous for a 2-core machine shared by the control plane and the controller


async def jobs_by_step(
    driver: FlowDriver, namespace: str, flow: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The namespace's Jobs by step (only those of `flow` when given)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for job in await driver.jobs(namespace):
        labels = job["metadata"].get("labels", {})
        if flow is not None and labels.get(LABEL_FLOW) != label_value(flow):
            continue
        out.setdefault(labels.get(LABEL_STEP, "?"), []).append(job)
    return out


async def job_of(driver: FlowDriver, namespace: str, step: str, *, flow: str | None = None) -> dict[str, Any]:
    """The one Job of `step` (of `flow`, when given; waits for it to appear; fails if there are several)."""

    async def probe() -> list[dict[str, Any]] | None:
        return (await jobs_by_step(driver, namespace, flow)).get(step)

    jobs = await wait_until(probe, WAIT, what=f"a Job for step {step!r}")
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    return jobs[0]


async def wait_steps(
    driver: FlowDriver, namespace: str, name: str, expected: dict[str, str]
) -> dict[str, Any]:
    """The flow once its step phases include `expected` (and Running steps name their Job)."""

    async def probe() -> dict[str, Any] | None:
        flow = await driver.get(namespace, name)
        if flow is None:
            return None
        phases = step_phases(flow)
        if any(phases.get(step) != phase for step, phase in expected.items()):
            return None
        refs = {s["name"]: s.get("jobRef") or {} for s in flow["status"]["steps"]}
        running = [step for step, phase in expected.items() if phase == "Running"]
        return flow if all(refs[step].get("uid") for step in running) else None

    return await wait_until(probe, WAIT, what=f"{name} steps {expected}")


async def finish(driver: FlowDriver, namespace: str, step: str, *, ok: bool = True) -> dict[str, Any]:
    job = await job_of(driver, namespace, step)
    name = job["metadata"]["name"]
    if ok:
        return await complete_job(driver.kube, namespace, name)
    return await fail_job(driver.kube, namespace, name)


def conditions(flow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in flow["status"].get("conditions", [])}


def step_of(flow: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """Step `name`'s entry in the flow's status.steps; empty when it has none (yet)."""
    steps = ((flow or {}).get("status") or {}).get("steps") or []
    return next((s for s in steps if s["name"] == name), {})
