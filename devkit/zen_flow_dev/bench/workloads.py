"""What the benchmark runs: DAG shapes, workloads (N concurrent copies of one shape), and their objects.

The same `Dag` becomes a JobFlow for zen-flow (`flow_manifest`) and plain Jobs for the baseline driver
(`baseline_job`), with the same Job template, so both executions differ only in who creates the Jobs.
Flows are named `<workload>-<index>`, steps `s<n>`: short enough that the flow and step labels zen-flow
puts on its Jobs are the names themselves, which is how the observer maps a Job back to its step.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from zen_flow.api.constants import LABEL_FLOW, LABEL_STEP
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template

BENCH_LABEL = "zenflow.bench/engine"
"""On the baseline's Jobs (value "baseline"); zen-flow's Jobs are told apart by its managed-by label."""

Kind = Literal["flows", "drain", "waiting", "cache"]


@dataclass(frozen=True)
class Dag:
    """One flow's shape: (step, dependencies) in topological order."""

    steps: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def size(self) -> int:
        return len(self.steps)

    @property
    def edges(self) -> int:
        """Steps with dependencies: one step-transition latency sample each."""
        return sum(1 for _, deps in self.steps if deps)

    @cached_property
    def dependencies(self) -> dict[str, tuple[str, ...]]:
        return dict(self.steps)

    @cached_property
    def dependents(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {name: [] for name, _ in self.steps}
        for name, deps in self.steps:
            for dep in deps:
                out[dep].append(name)
        return {name: tuple(children) for name, children in out.items()}

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(name for name, deps in self.steps if not deps)


def chain(length: int) -> Dag:
    """s0 -> s1 -> ... -> s<length-1>."""
    return Dag(tuple((f"s{i}", (f"s{i - 1}",) if i else ()) for i in range(length)))


def diamond(width: int) -> Dag:
    """Fan-out/fan-in: s0 -> s1..s<width> -> s<width+1>."""
    middle = tuple(f"s{i}" for i in range(1, width + 1))
    return Dag((("s0", ()), *((name, ("s0",)) for name in middle), (f"s{width + 1}", middle)))


def wide(width: int) -> Dag:
    """Fan-out only: s0 -> s1..s<width>."""
    return Dag((("s0", ()), *((f"s{i}", ("s0",)) for i in range(1, width + 1))))


def parallel(width: int) -> Dag:
    """`width` independent steps (every one a root)."""
    return Dag(tuple((f"s{i}", ()) for i in range(width)))


@dataclass(frozen=True)
class Workload:
    """`flows` concurrent copies of `dag`, created at once.

    kind "flows": step latency and throughput, against the baseline. "drain": the same, plus the time
    until every flow is Succeeded (single-step flows). "waiting": long-running first steps; the controller's
    API calls over a quiet window. "cache": suspended Jobs that stay in the controller's cache (no pods);
    its memory once they are all there. The last two run on zen-flow only.
    """

    name: str
    title: str
    kind: Kind
    dag: Dag
    flows: int
    run_seconds: float = 0.0
    """How long each pod runs (kwok Stage annotation; ignored by real kubelets)."""
    suspend_jobs: bool = False
    job_retention: str | None = None
    """`executionPolicy.jobRetention` of every flow (None: left out, the API's default `All`). zen-flow's
    only: the baseline's Jobs stay until their namespace goes, as `All` keeps them."""

    @property
    def steps(self) -> int:
        return self.dag.size * self.flows

    @property
    def has_baseline(self) -> bool:
        return self.kind in ("flows", "drain")

    def flow_names(self) -> list[str]:
        return [f"{self.name}-{i:04d}" for i in range(self.flows)]

    def template(self, step: str) -> dict[str, Any]:
        """The Job template of `step`. In a "waiting" workload only the roots run long."""
        run_seconds = self.run_seconds
        if self.kind == "waiting" and self.dag.dependencies[step]:
            run_seconds = 0.0
        template = job_template(run_seconds=run_seconds or None)
        if self.suspend_jobs:
            template["spec"]["suspend"] = True
        return template


def flow_manifest_for(workload: Workload, flow: str, namespace: str) -> dict[str, Any]:
    steps = [job_step(name, *deps, template=workload.template(name)) for name, deps in workload.dag.steps]
    if workload.job_retention is None:
        return flow_manifest(flow, namespace, steps)
    return flow_manifest(flow, namespace, steps, executionPolicy={"jobRetention": workload.job_retention})


def baseline_job(workload: Workload, flow: str, step: str, namespace: str) -> dict[str, Any]:
    """The Job the baseline creates for one step: the step's template, named and labelled, nothing else."""
    body = copy.deepcopy(workload.template(step))
    labels = {LABEL_FLOW: flow, LABEL_STEP: step, BENCH_LABEL: "baseline"}
    body["metadata"] = {"name": f"{flow}-{step}", "namespace": namespace, "labels": labels}
    return body


PRESETS: Mapping[str, Mapping[str, int]] = {
    # Each knob is a CLI flag (`--chain-length` etc.); a preset only changes the defaults.
    "quick": {
        "chain_length": 5,
        "chain_flows": 1,
        "diamond_width": 10,
        "diamond_flows": 1,
        "wide_width": 50,
        "many_flows": 20,
        "many_steps": 5,
        "many_large_flows": 0,
        "drain_flows": 50,
        "waiting_flows": 10,
        "quiet_seconds": 3,
        "cache_flows": 10,
        "cache_steps": 20,
        "length_max": 50,
    },
    "default": {
        "chain_length": 20,
        "chain_flows": 5,
        "diamond_width": 20,
        "diamond_flows": 5,
        "wide_width": 200,
        "many_flows": 100,
        "many_steps": 10,
        "many_large_flows": 0,
        "drain_flows": 500,
        "waiting_flows": 100,
        "quiet_seconds": 15,
        "cache_flows": 200,
        "cache_steps": 20,
        "length_max": 500,
    },
    "large": {
        "chain_length": 20,
        "chain_flows": 5,
        "diamond_width": 20,
        "diamond_flows": 5,
        "wide_width": 200,
        "many_flows": 100,
        "many_steps": 10,
        "many_large_flows": 1000,
        "drain_flows": 2000,
        "waiting_flows": 500,
        "quiet_seconds": 30,
        "cache_flows": 1000,
        "cache_steps": 20,
        "length_max": 500,
    },
}

WORKLOAD_NAMES = ("chain", "diamond", "wide", "many", "many-large", "drain", "waiting", "cache", "length")


def build_workloads(
    sizes: Mapping[str, int], only: frozenset[str] | None = None, job_retention: str | None = None
) -> list[Workload]:
    """The workloads of one run, in run order; `only` keeps those named (see WORKLOAD_NAMES); every
    flow with `job_retention` (`--job-retention`)."""
    s = sizes
    candidates = [
        Workload(
            "chain", f"{s['chain_flows']} x linear chain of {s['chain_length']}", "flows",
            chain(s["chain_length"]), s["chain_flows"],
        ),
        Workload(
            "diamond", f"{s['diamond_flows']} x diamond 1 -> {s['diamond_width']} -> 1", "flows",
            diamond(s["diamond_width"]), s["diamond_flows"],
        ),
        Workload("wide", f"1 x wide 1 -> {s['wide_width']}", "flows", wide(s["wide_width"]), 1),
        Workload(
            "many", f"{s['many_flows']} concurrent flows x chain of {s['many_steps']}", "flows",
            chain(s["many_steps"]), s["many_flows"],
        ),
        Workload(
            "many-large", f"{s['many_large_flows']} concurrent flows x chain of {s['many_steps']}", "flows",
            chain(s["many_steps"]), s["many_large_flows"],
        ),
        Workload("drain", f"{s['drain_flows']} single-step flows", "drain", chain(1), s["drain_flows"]),
        Workload(
            "waiting", f"{s['waiting_flows']} flows waiting on a long step", "waiting",
            chain(2), s["waiting_flows"], run_seconds=3600,
        ),
        Workload(
            "cache", f"{s['cache_flows']} flows x {s['cache_steps']} suspended Jobs", "cache",
            parallel(s["cache_steps"]), s["cache_flows"], suspend_jobs=True,
        ),
    ]  # fmt: skip
    # Cost as flows grow: one chain of 10, of a fifth of the longest, of the longest, and a fan-out as wide.
    # Only when asked for (`--only length`): a chain step takes ~1 s, so they take ~25 minutes at 500.
    longest = s["length_max"]
    if longest and only is not None and "length" in only:
        for length in sorted({10, longest // 5, longest}):
            candidates.append(
                Workload(f"length-{length}", f"1 x chain of {length}", "flows", chain(length), 1)
            )
        # 1 -> longest-1: as many steps as the longest chain (a flow holds at most 500 steps)
        fan = wide(longest - 1)
        candidates.append(Workload(f"length-wide-{longest}", f"1 x wide 1 -> {longest - 1}", "flows", fan, 1))
    return [
        dataclasses.replace(w, job_retention=job_retention)
        for w in candidates
        if w.flows > 0 and (only is None or w.name in only or w.name.startswith("length-"))
    ]
