"""What the planner told a step's transfer containers: the Job it created last for a step, one of its
init containers, and the transfer plan in that container's env. Shared by the planner's unit tests and
the transfer tier, which runs those very plans against a real S3 server."""

from __future__ import annotations

from typing import Any

from zen_flow.api.transfer import PLAN_ENV, TransferPlan
from zen_flow.planner import CreateJob
from zen_flow_dev.testing.simulator import Simulator


def created(sim: Simulator, step_name: str) -> dict[str, Any] | None:
    """The body of the last Job the simulated planner created for `step_name`, None if none."""
    bodies = [
        a.body for p in sim.plans for a in p.actions if isinstance(a, CreateJob) and a.step == step_name
    ]
    return bodies[-1] if bodies else None


def container(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The init container `name` of a Job body (the uploader, the downloader), None if it has none."""
    spec = body["spec"]["template"]["spec"]
    return next((c for c in spec.get("initContainers") or () if c["name"] == name), None)


def transfer_plan(found: dict[str, Any] | None) -> TransferPlan:
    """The plan a transfer container was given in its env."""
    assert found is not None
    value = next(e["value"] for e in found["env"] if e["name"] == PLAN_ENV)
    return TransferPlan.model_validate_json(value)
