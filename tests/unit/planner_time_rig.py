"""The instant, step status, event reasons and retry policies the planner's time tests (durations, retries,
timeouts, the flow deadline, TTL) share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from zen_flow.api.jobflow import Backoff, RetryPolicy
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def step(sim: Simulator, name: str = "a") -> Any:
    status = sim.flow.status.step(name)
    assert status is not None
    return status


def reasons(sim: Simulator) -> list[str]:
    return [e.reason for e in sim.last.events]


def policy(type_: str | None = None, **backoff: Any) -> RetryPolicy:
    return RetryPolicy(limit=10, backoff=Backoff(type=type_, **backoff))
