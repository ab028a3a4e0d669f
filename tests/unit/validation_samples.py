"""Valid JobFlows to start from, and helpers to assert on validation errors (shared by test_validation_*)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from zen_flow.validation import ErrorType, FieldError, validate_jobflow
from zen_flow_dev.testing.examples import original_forms, project_examples, upstream_examples

# Every flow file the project answers for; the original's own files only when they are beside the checkout.
EXAMPLES = project_examples() + original_forms() + upstream_examples()

Flow = dict[str, Any]
Mutation = Callable[[Flow], Any]


def job_template(container: str = "main", restart: str | None = "Never", **job_spec: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {"containers": [{"name": container, "image": "busybox:1.36", "command": ["true"]}]}
    if restart is not None:
        pod["restartPolicy"] = restart
    return {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": pod}, **job_spec}}


def job_step(name: str, *deps: str, **fields: Any) -> dict[str, Any]:
    step: dict[str, Any] = {"name": name, "template": job_template()}
    if deps:
        step["dependencies"] = list(deps)
    step.update(fields)
    return step


def manual_step(name: str, *deps: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": "Manual", "dependencies": list(deps), "message": "go?", **fields}


def make_flow(*steps: dict[str, Any], name: str = "flow", **spec: Any) -> Flow:
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"steps": list(steps), **spec},
    }


def base_flow() -> Flow:
    """a -> b -> gate (Manual) -> c, plus d after a; a declares outputs others may read."""
    return make_flow(
        job_step(
            "a",
            outputs={
                "parameters": [{"name": "count", "valueFrom": {"jsonPath": "$.succeeded"}}],
                "artifacts": [{"name": "out", "path": "/work/out", "s3": {"bucket": "results"}}],
            },
        ),
        job_step("b", "a"),
        manual_step("gate", "b"),
        job_step("c", "gate"),
        job_step("d", "a"),
    )


def step(flow: Flow, name: str) -> dict[str, Any]:
    return next(s for s in flow["spec"]["steps"] if s["name"] == name)


def pod_spec(flow: Flow, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = step(flow, name)["template"]["spec"]["template"]["spec"]
    return spec


def container(flow: Flow, name: str) -> dict[str, Any]:
    first: dict[str, Any] = pod_spec(flow, name)["containers"][0]
    return first


def mutated(mutation: Mutation, start: Callable[[], Flow] = base_flow) -> Flow:
    flow = copy.deepcopy(start())
    mutation(flow)
    return flow


def errors_of(flow: Any) -> list[FieldError]:
    return validate_jobflow(flow)


def assert_valid(flow: Any) -> None:
    errors = validate_jobflow(flow)
    assert errors == [], "\n".join(map(str, errors))


def assert_error(flow: Any, path: str, kind: ErrorType, text: str = "") -> FieldError:
    """Exactly one error at `path` of type `kind` (whose message contains `text`) among the errors."""
    errors = validate_jobflow(flow)
    matching = [e for e in errors if e.path == path and e.type == kind and text in str(e)]
    assert len(matching) == 1, f"wanted one {kind} at {path!r} containing {text!r}; got:\n" + "\n".join(
        map(str, errors)
    )
    return matching[0]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
