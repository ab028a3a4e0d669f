"""`zen-flow get` on a big flow: what the command spends after the apiserver answered (parse the JSON,
build the model, render the step table), the bar being 300 ms for 500 steps (issue 12).

The flow is the admission benchmark's DAG (`admission.admission_flow`, each step depending on up to three
earlier ones), run to the end on the planner simulator so `status.steps` is as full as a finished
flow's; the JSON is what the apiserver would send, managedFields aside.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from zen_flow.api import JobFlow
from zen_flow.cli.render import flow_detail
from zen_flow_dev.bench.admission import SIZES, admission_flow, repeat
from zen_flow_dev.bench.stats import summarize
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def finished_flow(steps: int) -> bytes:
    """The flow of `steps` steps after it Succeeded, as JSON bytes."""
    manifest = admission_flow(steps, rich=False)
    manifest["metadata"].update(uid="bench", resourceVersion="1", creationTimestamp="2026-01-01T00:00:00Z")
    sim = Simulator(JobFlow.model_validate(manifest), T0)
    while not sim.terminal:
        sim.reconcile()
        sim.advance(1)
        for job in sim.running():
            sim.complete(job)
    flow: dict[str, Any] = sim.flow.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps(flow).encode()


def get_command(raw: bytes, now: datetime) -> str:
    """What `zen-flow get` does with the apiserver's answer."""
    return flow_detail(JobFlow.model_validate(json.loads(raw)), now)


def time_get(budget: float) -> list[dict[str, Any]]:
    rows = []
    now = datetime.now(UTC)
    for steps in SIZES:
        raw = finished_flow(steps)
        first, times = repeat(lambda raw=raw: get_command(raw, now), budget)  # type: ignore[misc]
        rows.append(
            {
                "path": "zen-flow get",
                "shape": f"{len(raw) // 1024} KiB",
                "steps": steps,
                "first_ms": round(first * 1000, 2),
                "latency_ms": summarize(times).as_dict(),
            }
        )
    return rows
