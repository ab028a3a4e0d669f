"""Output parameters: values read from a step's finished Job, kept in `status.steps[].outputs`.

Two sources:
- `valueFrom.jsonPath` is evaluated on the Job's `status` as the controller's cache holds it
  (`conditions`, `startTime`, `completionTime`, `active`, `succeeded`, `failed`, `ready`; the counters
  read 0 when the Job controller left them out), e.g. `$.succeeded` -> "1";
- `valueFrom.terminationMessage` reads what a container wrote to its termination message
  (/dev/termination-log, at most 4 KiB per container): with `key`, a field of a JSON object, else a
  `key=value` line; without `key`, the whole message (one trailing newline dropped). The controller
  reads the messages of the Job's succeeded pod once, when the Job completed (`PodMessages`).
The VALUES are stored (the original stored the jsonPath strings), in the same status write that marks
the step Succeeded. A source that finds nothing, or a value above MAX_VALUE_BYTES, fails the step: a
silent empty value would flow into later steps unnoticed, and status must stay small (JOBFLOW_API.md
decision 14).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import compress
from typing import Any

from zen_flow.api.constants import StepPhase
from zen_flow.api.flow_status import ParameterValue, StepOutputValues
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow, Step
from zen_flow.api.step_io import OutputParameter, TerminationMessageSource
from zen_flow.core.jsonpath import (
    JsonPathError,
    NotFound,
    NotJson,
    evaluate,
    read_json,
    render,
    surrogate_problem,
)
from zen_flow.planner.artifacts import downloads, uploads
from zen_flow.planner.children import document
from zen_flow.planner.reports import ReportError, stored_artifacts
from zen_flow.planner.shape import shape_of
from zen_flow.planner.steps import JOB_NAME, PHASE

MAX_VALUE_BYTES = 1024

# {container name: termination message} of a finished Job's succeeded pod; None: no such pod is left.
PodMessages = Mapping[str, str] | None


class OutputError(ValueError):
    """An output parameter could not be captured; the message names it."""


def own_path(step: Step, json_path: str) -> str:
    """The JSONPath without the `<this step>:` prefix the original's validator allowed."""
    prefix = step.name + ":"
    return json_path[len(prefix) :] if json_path.startswith(prefix) else json_path


def job_document(job: Job) -> dict[str, Any]:
    """The Job's status as JSON, the document output paths (and `<step>:` input paths) read; a child
    flow's status for a Flow step's (planner.children)."""
    child = document(job)
    return child if child is not None else job.status.to_wire()


def check_size(what: str, value: str) -> None:
    size = len(value.encode())
    if size > MAX_VALUE_BYTES:
        raise OutputError(f"{what}: the value has {size} bytes, more than the limit of {MAX_VALUE_BYTES}")


def reads_messages(flow: JobFlow, step: Step) -> bool:
    """Must the pod of `step`'s completed Job be read: an output parameter comes from a termination
    message, or artifacts were stored (the uploader's report)?"""
    params = step.outputs.parameters if step.outputs is not None else ()
    written = any(p.value_from is not None and p.value_from.termination_message is not None for p in params)
    return written or bool(uploads(flow, step))


def explains_failure(step: Step) -> bool:
    """Must the pod of `step`'s failed Job be read: the downloader may say why it failed?"""
    return bool(downloads(step))


def jobs_to_read(flow: JobFlow, jobs: Sequence[Job]) -> tuple[str, ...]:
    """The finished Jobs whose pods the controller must read before planning: those of Running steps
    whose outputs come from the pod (`reads_messages`) or whose failure the pod explains; once per
    finished step, since the next status write moves the step on. An ending Job (`Job.interim`) too when
    its step has a timeout: the step may end from that condition (planner/job_verdicts.py); read in the
    plans made while it ends, which are few (the interim condition wakes none: planner/observed.py)."""
    # Only Running steps' Jobs matter: a long flow has few of them, so the Jobs are looked at by name
    # instead of asking every one of them whether it finished.
    running = _running_jobs(flow)
    if not running:
        return ()
    specs = shape_of(flow).specs
    names = []
    for job in compress(jobs, map(running.__contains__, map(JOB_NAME, jobs))):
        step = specs.get(running[job.metadata.name])
        if step is None or step.is_flow:
            continue
        if not (job.finished or (step.timeout_seconds and job.ending)):
            continue
        # A failed Job's pod always: how its containers ended (exit code, OOMKilled) goes in the message.
        if not job.succeeds or reads_messages(flow, step):
            names.append(job.metadata.name)
    return tuple(names)


def unseen_jobs(flow: JobFlow, jobs: Sequence[Job]) -> tuple[str, ...]:
    """The Jobs of Running steps that `jobs` (the cache) lacks: the plan takes them for deleted, so the
    controller first asks the apiserver whether the cache merely lags (a new leader's, after the old one
    created them). Empty in the usual case, at the cost of a set of the Running steps' Job names."""
    running = _running_jobs(flow)
    if not running:
        return ()
    return tuple(sorted(running.keys() - set(map(JOB_NAME, jobs))))


def _running_jobs(flow: JobFlow) -> dict[str, str]:
    """{Job name: step name} of the flow's Running steps, as its status records them."""
    steps = flow.status.steps
    return {
        s.job_ref.name: s.name
        for s in compress(steps, map(StepPhase.RUNNING.__eq__, map(PHASE, steps)))
        if s.job_ref
    }


def message_value(message: str, key: str | None) -> str:
    """The value `key` selects in a termination message (NotFound when it has none, or when it holds a
    lone surrogate: JSON's `"\\ud800"`, which Python reads into text no status write could carry)."""
    value = _message_value(message, key)
    if (problem := surrogate_problem(value)) is not None:
        raise NotFound(f"its value {problem}")
    return value


def _message_value(message: str, key: str | None) -> str:
    if key is None:
        return message[:-1] if message.endswith("\n") else message
    beyond: NotJson | None = None
    try:
        document = read_json(message)
        if isinstance(document, dict):
            if key not in document:
                raise NotFound(f"the JSON object has no field {key!r}")
            if document[key] is None:  # as a jsonPath that finds null: nothing, not the text "null"
                raise NotFound(f"the JSON object's field {key!r} is null")
            return render(document[key])
    except RecursionError:  # 4 KiB of brackets nest 2,000 deep: the step fails saying so
        raise NotFound("its JSON nests too deep to read") from None
    except NotJson as err:  # NaN, Infinity, 1e400: Python's json reads them, the next step would get "nan"
        beyond = err
    except ValueError:
        pass
    for line in message.splitlines():
        name, equals, value = line.partition("=")
        if equals and name.strip() == key:
            return value.strip()
    if beyond is not None:
        raise NotFound(f"it is not JSON ({beyond}) and has no line {key}=...")
    raise NotFound(f"no JSON object field and no line {key}=... in the message")


def _from_message(
    step: Step, job: Job, param: OutputParameter, source: TerminationMessageSource, messages: PodMessages
) -> str:
    what = f"output parameter {param.name}"
    if messages is None:
        raise OutputError(
            f"{what}: Job {job.metadata.name} has no succeeded pod left to read its message from"
        )
    container = source.container or _only_container(step)
    if container is None or container not in messages:
        raise OutputError(f"{what}: the pod has no container {source.container or '(not named)'}")
    try:
        return message_value(messages[container], source.key)
    except NotFound as err:
        raise OutputError(f"{what}: container {container}'s termination message: {err}") from None


def _only_container(step: Step) -> str | None:
    """The name of the template's one container (None unless there is exactly one)."""
    try:
        containers = (step.template or {})["spec"]["template"]["spec"]["containers"]
    except (KeyError, TypeError):
        return None
    if not isinstance(containers, list) or len(containers) != 1 or not isinstance(containers[0], dict):
        return None
    name = containers[0].get("name")
    return name if isinstance(name, str) else None


def capture_outputs(
    flow: JobFlow, step: Step, job: Job, current: StepOutputValues | None, messages: PodMessages = None
) -> StepOutputValues | None:
    """The step's outputs once `job` completed: the parameter values and the stored artifacts. None
    (nothing to store) for a step without either. `messages`: the termination messages of the Job's
    pod (containers and init containers), for what comes from the pod."""
    params = step.outputs.parameters if step.outputs is not None else ()
    if not params and not uploads(flow, step):
        return current
    document: dict[str, Any] | None = None
    values: list[ParameterValue] = []
    for param in params:
        what = f"output parameter {param.name}"
        source = param.value_from
        if source is not None and source.termination_message is not None:
            value = _from_message(step, job, param, source.termination_message, messages)
        elif source is not None and source.json_path:
            if document is None:
                document = job_document(job)
            try:
                found = evaluate(own_path(step, source.json_path), document)
            except JsonPathError as err:
                raise OutputError(f"{what}: invalid jsonPath: {err}") from None
            except NotFound as err:
                raise OutputError(
                    f"{what}: jsonPath found nothing in Job {job.metadata.name}'s status: {err}"
                ) from None
            value = render(found)
        else:
            raise OutputError(f"{what}: valueFrom needs jsonPath or terminationMessage")
        check_size(what, value)
        values.append(ParameterValue(name=param.name, value=value))
    try:
        artifacts = stored_artifacts(flow, step, messages) if uploads(flow, step) else ()
    except ReportError as err:
        raise OutputError(str(err)) from None
    return StepOutputValues(parameters=tuple(values), artifacts=artifacts)
