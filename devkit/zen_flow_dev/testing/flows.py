"""Building JobFlows for tests and benchmarks.

`job_template` makes a Job whose fate the local kwok cluster decides through pod annotations read by
the Stages of `zen_flow_dev.cluster.stages`: a pod runs for `run_seconds`, then succeeds, or fails with
`exit_code` (only on its first `fail_attempts` attempts when that is given, so a retry can succeed).
`make_flow` returns a `JobFlow` model (planner tests); `flow_manifest`/`chain` return API dicts (e2e).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from zen_flow.api import JobFlow
from zen_flow.api.constants import API_VERSION, KIND
from zen_flow.api.meta import format_time


def job_template(
    *,
    restart_policy: str = "Never",
    exit_code: int | None = None,
    run_seconds: float | None = None,
    fail_attempts: int | None = None,
    backoff_limit: int = 0,
) -> dict[str, Any]:
    annotations: dict[str, str] = {}
    if exit_code is not None:
        annotations["zenflow.test/exit-code"] = str(exit_code)
    if run_seconds is not None:
        annotations["zenflow.test/run-seconds"] = f"{run_seconds:g}"
    if fail_attempts is not None:
        annotations["zenflow.test/fail-attempts"] = str(fail_attempts)
    pod: dict[str, Any] = {
        "spec": {
            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
            "restartPolicy": restart_policy,
        }
    }
    if annotations:
        pod["metadata"] = {"annotations": annotations}
    return {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": backoff_limit, "template": pod}}


def job_step(
    name: str, *deps: str, template: Mapping[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """A Job step; keyword fields are camelCase step fields (e.g. `continueOnFailure=True`)."""
    step: dict[str, Any] = {"name": name, "template": copy.deepcopy(dict(template or job_template()))}
    if deps:
        step["dependencies"] = list(deps)
    step.update(fields)
    return step


def manual_step(name: str, *deps: str, **fields: Any) -> dict[str, Any]:
    step: dict[str, Any] = {"name": name, "type": "Manual"}
    if deps:
        step["dependencies"] = list(deps)
    step.update(fields)
    return step


def flow_manifest(
    name: str,
    namespace: str,
    steps: Sequence[Mapping[str, Any]],
    *,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A JobFlow as the API takes it; keyword `spec` fields are camelCase (e.g. `executionPolicy=...`)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = dict(annotations)
    if labels:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {**spec, "steps": [copy.deepcopy(dict(s)) for s in steps]},
    }


def chain(name: str, namespace: str, length: int, **spec: Any) -> dict[str, Any]:
    """A linear flow s0 -> s1 -> ... of `length` steps."""
    steps = [job_step(f"s{i}", *([f"s{i - 1}"] if i else [])) for i in range(length)]
    return flow_manifest(name, namespace, steps, **spec)


def make_flow(
    steps: Sequence[Mapping[str, Any]],
    *,
    name: str = "flow",
    namespace: str = "default",
    execution_policy: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    suspend: bool | None = None,
    generation: int = 1,
    created: datetime | None = None,
    arguments: Mapping[str, str] | None = None,
    step_defaults: Mapping[str, Any] | None = None,
    synchronization: Mapping[str, Any] | None = None,
    artifact_repository: Mapping[str, Any] | None = None,
) -> JobFlow:
    """A parsed JobFlow (uid `uid-<name>`, creationTimestamp `created`; `synchronization`: the flow's own
    locks; `artifact_repository`: its spec.artifactRepository) for planner tests."""
    spec: dict[str, Any] = {}
    if step_defaults is not None:
        spec["stepDefaults"] = dict(step_defaults)
    if synchronization is not None:
        spec["synchronization"] = dict(synchronization)
    if artifact_repository is not None:
        spec["artifactRepository"] = dict(artifact_repository)
    if execution_policy is not None:
        spec["executionPolicy"] = dict(execution_policy)
    if suspend is not None:
        spec["suspend"] = suspend
    if arguments is not None:
        spec["arguments"] = {"parameters": [{"name": n, "value": v} for n, v in arguments.items()]}
    doc = flow_manifest(name, namespace, steps, annotations=annotations, labels=labels, **spec)
    doc["metadata"].update(uid=f"uid-{name}", generation=generation)
    if created is not None:
        doc["metadata"]["creationTimestamp"] = format_time(created)
    return JobFlow.model_validate(doc)
