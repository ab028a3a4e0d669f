"""`zen-flow-dev bench` draws what its tables say: one latency distribution per workload, zen-flow against
the baseline of the same run, and the cost per step; the same results draw the same files."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from zen_flow_dev.bench.charts import write_charts


def engine_run(seed: int, scale: float, api: dict[str, float]) -> dict[str, Any]:
    rng = random.Random(seed)
    return {
        "transition_latency_samples_ms": sorted(round(rng.expovariate(1 / scale), 1) for _ in range(200)),
        "transition_latency_timeline": [
            [s, 10, scale, round(rng.expovariate(1 / scale), 1)] for s in range(20)
        ],
        "api": api,
    }


def results() -> dict[str, Any]:
    def flows(name: str, kind: str = "flows", samples: bool = True) -> dict[str, Any]:
        zen = engine_run(1, 40.0, {"cluster_writes_per_step": 14.2, "controller_requests_per_step": 2.3})
        zen["observer_resumed_at"] = [7.0]  # drawn as a mark on the timeline
        base = engine_run(2, 30.0, {"cluster_writes_per_step": 11.1})
        if not samples:
            zen["transition_latency_samples_ms"] = base["transition_latency_samples_ms"] = []
            zen["transition_latency_timeline"] = base["transition_latency_timeline"] = []
        return {"workload": name, "kind": kind, "zen-flow": zen, "baseline": base}

    return {
        "meta": {"commit": "abc1234", "date": "2026-12-02T05:00:00+00:00"},
        "workloads": [
            flows("chain"),
            flows("wide"),
            flows("drain", kind="drain", samples=False),  # single-step flows: no transitions
            {"workload": "waiting", "kind": "waiting"},
        ],
    }


def test_latency_and_cost_charts_show_every_workload_that_has_figures(tmp_path: Path) -> None:
    written = write_charts(results(), tmp_path / "run.json")
    assert [p.name for p in written] == ["run-latency.svg", "run-timeline.svg", "run-cost.svg"]
    latency, timeline, cost = (p.read_text() for p in written)
    for text in (latency, timeline, cost):
        assert text.startswith("<?xml")
        assert "abc1234" in text
    # Latency: one panel per workload with samples on both engines; drain has none, so no empty panel.
    assert "chain" in latency
    assert "wide" in latency
    assert "drain" not in latency
    assert "zen-flow" in latency
    assert "baseline" in latency
    # Timeline: the same workloads, each engine's slowest and median per second.
    assert "chain" in timeline
    assert "drain" not in timeline
    assert "zen-flow: slowest" in timeline
    assert "baseline: slowest" in timeline
    # Cost: every flow workload with API figures, values written on the bars.
    assert all(name in cost for name in ("chain", "wide", "drain"))
    assert "14.2" in cost
    assert "11.1" in cost
    assert "2.3" in cost


def test_the_same_results_draw_the_same_files(tmp_path: Path) -> None:
    first = [p.read_bytes() for p in write_charts(results(), tmp_path / "a.json")]
    second = [p.read_bytes() for p in write_charts(results(), tmp_path / "b.json")]
    assert first == second  # no timestamps or random ids: a re-run diff shows only what changed


def test_results_without_figures_draw_nothing(tmp_path: Path) -> None:
    assert write_charts({"meta": {}, "workloads": []}, tmp_path / "empty.json") == []


def test_the_growth_chart_shows_cpu_per_step_of_each_length(tmp_path: Path) -> None:
    def length(name: str, steps: int, cpu: float) -> dict[str, Any]:
        run = engine_run(3, 20.0, {"controller_requests_per_step": 2.0})
        run.update(steps_completed=steps, resources={"controller_cpu_seconds": cpu})
        run["transition_latency_ms"] = {"p50": 10.0, "p99": 40.0}
        return {"workload": name, "kind": "flows", "zen-flow": run}

    results = {"meta": {}, "workloads": [length("length-10", 10, 0.12), length("length-500", 500, 42.8)]}
    written = write_charts(results, tmp_path / "grow.json")
    growth = next(p for p in written if p.name == "grow-growth.svg").read_text()
    assert "length-10" in growth
    assert "length-500" in growth
    assert "85.6" in growth  # 42.8 CPU s over 500 steps
