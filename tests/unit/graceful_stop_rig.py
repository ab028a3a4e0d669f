"""The flow the graceful stop tests stop (build, test, lint, a gate, publish; finally cleanup, notify),
and how they stop it and read how it ended."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from test_planner_finally import FINALLY, failed_condition, started
from test_planner_joins import phases

from zen_flow.api.constants import (
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
)
from zen_flow.planner import Plan
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RETRY: dict[str, Any] = {"retryPolicy": {"limit": 3, "backoff": {"type": "Fixed", "duration": "1s"}}}
ON_FAILURE: dict[str, Any] = {"when": "flow.outcome == 'Failed'", **FINALLY}


def flow(**spec: Any) -> Simulator:
    """build, then test and lint (test retries), a gate after lint, a publish step after both; finally:
    cleanup when the flow failed, then notify."""
    steps = [
        job_step("build"),
        job_step("test", "build", **RETRY),
        job_step("lint", "build"),
        manual_step("gate", "lint"),
        job_step("publish", "test", "gate"),
        job_step("cleanup", **ON_FAILURE),
        job_step("notify", "cleanup", **FINALLY),
    ]
    return Simulator(make_flow(steps, **spec), T0)


def to_the_gate(sim: Simulator) -> None:
    """build succeeded, lint succeeded (the gate waits for a decision), test runs."""
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    sim.complete(job_of(sim, "lint"))
    sim.reconcile()
    assert phases(sim) == {
        "build": "Succeeded",
        "test": "Running",
        "lint": "Succeeded",
        "gate": "PendingApproval",
        "publish": "Pending",
        "cleanup": "Pending",
        "notify": "Pending",
    }


def job_of(sim: Simulator, step: str) -> str:
    return next(j for j in sim.running() if sim.steps[j] == step)


def stop(sim: Simulator, value: str = "RunFinally", user: str = "alice") -> None:
    sim.annotate(ANNOTATION_STOP, value)
    sim.annotate(ANNOTATION_STOPPED_BY, user)


def reasons(result: Plan) -> list[str]:
    return [e.reason for e in result.events]


def ending(sim: Simulator) -> tuple[Any, ...]:
    """How the flow ended, to compare two runs of it: its phase, Failed condition, steps and started Jobs."""
    steps = tuple((s.name, s.phase, s.message, s.retry_count) for s in sim.flow.status.steps)
    return sim.phase, failed_condition(sim), steps, sorted(started(sim))
