"""Latency samples and their summaries; step-transition latencies from an observed run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from zen_flow_dev.bench.workloads import Dag

StepKey = tuple[str, str]


@dataclass(frozen=True)
class Summary:
    """Milliseconds. `n` = 0 means no samples (every other field is then 0)."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) on sorted data."""
    if not ordered:
        return 0.0
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(seconds: Sequence[float]) -> Summary:
    ordered = sorted(s * 1000 for s in seconds)
    if not ordered:
        return Summary(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    return Summary(
        n=len(ordered),
        p50=round(percentile(ordered, 0.5), 1),
        p90=round(percentile(ordered, 0.9), 1),
        p99=round(percentile(ordered, 0.99), 1),
        max=round(ordered[-1], 1),
        mean=round(sum(ordered) / len(ordered), 1),
    )


def transitions(
    dag: Dag, flows: Sequence[str], created: Mapping[StepKey, float], completed: Mapping[StepKey, float]
) -> list[tuple[float, float]]:
    """Per step with dependencies: (when its Job was seen created, that minus the last dependency's
    seen-Complete), in seconds on the observer's clock.

    Steps whose Job or dependencies were never seen are left out (the run is then reported incomplete).
    """
    out: list[tuple[float, float]] = []
    for flow in flows:
        for step, deps in dag.steps:
            if not deps or (flow, step) not in created:
                continue
            done = [completed.get((flow, dep)) for dep in deps]
            if any(t is None for t in done):
                continue
            seen = created[(flow, step)]
            out.append((seen, seen - max(t for t in done if t is not None)))
    return out


def start_end(dag: Dag, flows: Sequence[str], created: Mapping[StepKey, float]) -> float | None:
    """When the last flow's first Job was seen created (every flow had started), on the observer's clock;
    None when no root Job was seen."""
    seen = [created[(flow, root)] for flow in flows for root in dag.roots if (flow, root) in created]
    return max(seen, default=None)


def latencies_after(samples: Sequence[tuple[float, float]], moment: float) -> list[float]:
    """The latencies of the transitions (`transitions`) whose dependency was seen Complete after
    `moment`: none of their time was spent during what happened before it."""
    return [latency for seen, latency in samples if seen - latency > moment]


def latency_timeline(samples: Sequence[tuple[float, float]], started: float) -> list[list[float]]:
    """Per second of the run that had transitions: [second, count, p50 ms, max ms], in order.

    A tail in the distribution can be a steady cost or one stall; over time the two look different
    (a stall is a ramp: every step that finished during it waits until it ends).
    """
    by_second: dict[int, list[float]] = {}
    for seen, latency in samples:
        by_second.setdefault(max(int(seen - started), 0), []).append(latency * 1000)
    timeline = []
    for second in sorted(by_second):
        ordered = sorted(by_second[second])
        timeline.append([second, len(ordered), round(percentile(ordered, 0.5), 1), round(ordered[-1], 1)])
    return timeline


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None
