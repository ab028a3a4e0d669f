"""The pods, steps and clock of the pending-pod planner tests: pods that wait, run or ended, a flow started
in the simulator, and the controller's wake-ups driving it for a while."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from zen_flow.api.flow_status import StepStatus
from zen_flow.api.pod import Pod
from zen_flow.planner import DeleteJob
from zen_flow_dev.testing.flows import job_template, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
# The Job controller's finalizer on its pods until it has counted their end.
JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
UNSCHEDULABLE = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(owner: dict[str, Any], created: datetime, **status: Any) -> Pod:
    return Pod.model_validate(
        {"metadata": {"creationTimestamp": stamp(created), "ownerReferences": [owner]}, "status": status}
    )


def unschedulable(owner: dict[str, Any], created: datetime = T0) -> Pod:
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": UNSCHEDULABLE}
    return pod(owner, created, phase="Pending", conditions=[cond])


def pulling(owner: dict[str, Any], reason: str, message: str, created: datetime = T0) -> Pod:
    waiting = {"name": "main", "state": {"waiting": {"reason": reason, "message": message}}}
    scheduled = {"type": "PodScheduled", "status": "True"}
    return pod(owner, created, phase="Pending", conditions=[scheduled], containerStatuses=[waiting])


def step(sim: Simulator, name: str = "a") -> StepStatus:
    found = sim.flow.status.step(name)
    assert found is not None
    return found


def events(sim: Simulator, reason: str) -> list[str]:
    return [e.message for plan in sim.plans for e in plan.events if e.reason == reason]


def started(flow_steps: list[dict[str, Any]], **policy: Any) -> tuple[Simulator, str]:
    sim = Simulator(make_flow(flow_steps, execution_policy=policy or None), T0)
    sim.reconcile()
    (name,) = sim.running()
    return sim, name


def ended(
    owner: dict[str, Any],
    created: datetime,
    finished: datetime,
    *,
    phase: str = "Failed",
    uncounted: bool = False,
    deleting: datetime | None = None,
) -> Pod:
    """A pod of the Job that ran and ended at `finished`; `uncounted`: the Job controller has not counted
    it yet (its tracking finalizer is still on it)."""
    code = 0 if phase == "Succeeded" else 1
    term = {"name": "main", "state": {"terminated": {"exitCode": code, "finishedAt": stamp(finished)}}}
    meta: dict[str, Any] = {"creationTimestamp": stamp(created), "ownerReferences": [owner]}
    if uncounted:
        meta["finalizers"] = [JOB_TRACKING_FINALIZER]
    if deleting is not None:
        meta["deletionTimestamp"] = stamp(deleting)
    return Pod.model_validate({"metadata": meta, "status": {"phase": phase, "containerStatuses": [term]}})


def run_for(sim: Simulator, seconds: int, name: str = "a") -> datetime | None:
    """Let the controller's wake-ups drive the flow for `seconds` (each plan's requeue, at least every 30
    s, as other events would): when step `name` stopped Running, or None."""
    end = sim.now + timedelta(seconds=seconds)
    while sim.now < end:
        if step(sim, name).phase != "Running":
            return sim.now
        wait = sim.last.requeue_after or 30
        sim.advance(min(wait, 30, (end - sim.now).total_seconds()))
        sim.reconcile()
    return sim.now if step(sim, name).phase != "Running" else None


def deletes(sim: Simulator) -> list[DeleteJob]:
    return [a for plan in sim.plans for a in plan.actions if isinstance(a, DeleteJob)]


def completions(n: int | str) -> dict[str, Any]:
    """A step's Job template field: its `completions`."""
    return job_spec(completions=n)


def job_spec(**fields: int | str | None) -> dict[str, Any]:
    """A step's Job template with these Job spec fields (`completions`, `parallelism`)."""
    return {"template": {**job_template(), "spec": {**job_template()["spec"], **fields}}}
