"""Output parameters: values read from a step's finished Job, kept in `status.steps[].outputs`.

Each `outputs.parameters[].valueFrom.jsonPath` is evaluated on the Job's `status` as the controller's
cache holds it (`conditions`, `startTime`, `completionTime`, `active`, `succeeded`, `failed`, `ready`;
the counters read 0 when the Job controller left them out), e.g. `$.succeeded` -> "1". The VALUES are
stored (the original stored the jsonPath strings), in the same status write that marks the step
Succeeded. A path that finds nothing, or a value above MAX_VALUE_BYTES, fails the step: a silent empty
value would flow into later steps unnoticed, and status must stay small (JOBFLOW_API.md decision 14).
"""

from __future__ import annotations

from typing import Any

from zen_flow.api.job import Job
from zen_flow.api.jobflow import ParameterValue, Step, StepOutputValues
from zen_flow.core.jsonpath import JsonPathError, NotFound, evaluate, render

MAX_VALUE_BYTES = 1024


class OutputError(ValueError):
    """An output parameter could not be captured; the message names it."""


def own_path(step: Step, json_path: str) -> str:
    """The JSONPath without the `<this step>:` prefix the original's validator allowed."""
    prefix = step.name + ":"
    return json_path[len(prefix) :] if json_path.startswith(prefix) else json_path


def job_document(job: Job) -> dict[str, Any]:
    """The Job's status as JSON, the document output paths (and `<step>:` input paths) read."""
    return job.status.to_wire()


def check_size(what: str, value: str) -> None:
    size = len(value.encode())
    if size > MAX_VALUE_BYTES:
        raise OutputError(f"{what}: the value has {size} bytes, more than the limit of {MAX_VALUE_BYTES}")


def capture_outputs(step: Step, job: Job, current: StepOutputValues | None) -> StepOutputValues | None:
    """The step's outputs once `job` completed: `current` with the parameter values filled in (its
    artifacts are kept). None (nothing to store) for a step without output parameters."""
    params = step.outputs.parameters if step.outputs is not None else ()
    if not params:
        return current
    document: dict[str, Any] | None = None
    values: list[ParameterValue] = []
    for param in params:
        what = f"output parameter {param.name}"
        source = param.value_from.json_path if param.value_from is not None else None
        if not source:
            raise OutputError(f"{what}: valueFrom.jsonPath is not set")
        if document is None:
            document = job_document(job)
        try:
            found = evaluate(own_path(step, source), document)
        except JsonPathError as err:
            raise OutputError(f"{what}: invalid jsonPath: {err}") from None
        except NotFound as err:
            raise OutputError(
                f"{what}: jsonPath found nothing in Job {job.metadata.name}'s status: {err}"
            ) from None
        value = render(found)
        check_size(what, value)
        values.append(ParameterValue(name=param.name, value=value))
    artifacts = current.artifacts if current is not None else ()
    return StepOutputValues(parameters=tuple(values), artifacts=artifacts)
