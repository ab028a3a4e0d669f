"""Time `validate_jobflow` on generated 10-, 100- and 500-step flows (`python tools/bench_validation.py`).

Two shapes: "rich" steps (template with resources, retryPolicy, timeout, inputs from a dependency,
outputs, a `when`, a flow-level podFailurePolicy) and "plain" steps like the original's examples.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from zen_flow import expressions
from zen_flow.validation import validate_jobflow

RUNS = 20


def _template(rich: bool) -> dict[str, Any]:
    main: dict[str, Any] = {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo hi"]}
    if rich:
        main["resources"] = {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "1", "memory": "128Mi"},
        }
    pod = {"restartPolicy": "Never" if rich else "OnFailure", "containers": [main]}
    return {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": pod}}}


def flow(n: int, rich: bool) -> dict[str, Any]:
    steps = []
    for i in range(n):
        deps = list(dict.fromkeys(f"s{j}" for j in (i - 1, i - 2, i // 2) if 0 <= j < i))
        step: dict[str, Any] = {"name": f"s{i}", "dependencies": deps, "template": _template(rich)}
        if rich:
            step["retryPolicy"] = {
                "limit": 2,
                "backoff": {"type": "Exponential", "duration": "10s", "factor": 2},
            }
            step["timeoutSeconds"] = 600
            step["outputs"] = {
                "parameters": [{"name": "n", "valueFrom": {"jsonPath": "$.succeeded"}}],
                "artifacts": [{"name": "out", "path": "/out"}],
            }
            if deps:
                step["when"] = f"steps.{deps[0]}.phase == 'Succeeded'"
                step["inputs"] = {
                    "parameters": [{"name": "p", "valueFrom": {"jsonPath": f"{deps[0]}:$.succeeded"}}],
                    "artifacts": [{"name": "in", "from": f"{deps[0]}/out", "path": "/in"}],
                }
        steps.append(step)
    spec: dict[str, Any] = {"steps": steps}
    if rich:
        rule = {"action": "FailJob", "onExitCodes": {"containerName": "main", "values": [42]}}
        spec["executionPolicy"] = {"podFailurePolicy": {"rules": [rule]}}
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {"name": "bench"},
        "spec": spec,
    }


def main() -> None:
    for rich in (False, True):
        for n in (10, 100, 500):
            f = flow(n, rich)
            expressions._compile.cache_clear()
            start = time.perf_counter()
            errors = validate_jobflow(f)
            cold = time.perf_counter() - start
            assert not errors, errors[:3]
            times = []
            for _ in range(RUNS):
                start = time.perf_counter()
                validate_jobflow(f)
                times.append(time.perf_counter() - start)
            median = statistics.median(times) * 1000
            shape = "rich" if rich else "plain"
            print(f"{shape:5} {n:4d} steps: median {median:6.2f} ms, first call {cold * 1000:6.2f} ms")


if __name__ == "__main__":
    main()
