"""Input parameters: resolved when a step's Job is built, substituted into it, and exposed as env vars.

Sources (`spec.steps[].inputs.parameters[]`):
  value                     the literal text;
  valueFrom.argument        one of the flow's spec.arguments.parameters;
  valueFrom.jsonPath        `<step>:<JSONPath>` over that step's document: its Job's status as the cache
                            holds it (as in the original: `build:$.succeeded`), plus `outputs.parameters`
                            with its stored output values (`build:$.outputs.parameters.version`; still
                            readable when the Job is gone);
  valueFrom.configMapKeyRef / secretKeyRef
                            never read by the controller: the pod gets an env var with Kubernetes' own
                            `valueFrom`, and a placeholder becomes `$(ENV_NAME)`, which Kubernetes expands
                            in containers' `command`, `args` and `env[].value` (and nowhere else, so a
                            placeholder of such a parameter anywhere else fails the step).

Every parameter is also an env var `ZF_PARAM_<NAME>` (upper-cased, other characters `_`) in every
container and init container, placed before the container's own env so those can use `$(ZF_PARAM_X)`.

Placeholders `{{inputs.parameters.NAME}}`, and the original's `{{.Parameters.NAME}}`, `{{parameters.NAME}}`,
`{{.parameters.NAME}}` and `${parameters.NAME}`, are replaced in every string VALUE of the Job (never in
keys, never as text over serialized JSON, so any value is JSON-safe), in one pass (a value containing
`{{` is not expanded again); so are the original's `{{.JobFlow.Name}}`, `{{.JobFlow.Namespace}}` and
`{{.StepName}}`, and `{{.JobFlow.ScheduledTime}}`, the run's logical time (planner/scheduled_time.py)
(core/parameter_forms.py); every `{{ }}` form also with text/template's trim markers
(`{{- x -}}` trims the white space beside it, in the same string). Where Kubernetes expands `$(VAR)`
(command, args, env values) a substituted value has `$` doubled so it arrives literally. An unknown
name, a parameter that cannot be resolved, or another action on the original's template context
(`{{ .Parameters.x | upper }}`) fails the step: the Job is never created with a placeholder left in it.

What substitution adds to one object (a Job body: placeholders' values, context fields included, and
the env vars; a child flow's arguments, all of them) is counted as it is made, and past
MAX_SUBSTITUTED_BYTES the step fails before the rest is built: a 100 KB value in 3,000 placeholders would
otherwise build a 300 MB Job in the controller's memory, for the apiserver to refuse (it takes no object
over 1.5 MiB).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from zen_flow.api.constants import StepPhase
from zen_flow.api.jobflow import JobFlow, Step
from zen_flow.api.step_io import InputParameter, KeyRef
from zen_flow.core.jsonpath import JsonPathError, NotFound, evaluate, render
from zen_flow.core.parameter_forms import (
    MAX_SUBSTITUTED_BYTES,
    SUPPORTED,
    context_field,
    env_name,
    marked,
    parameter,
    substitute,
    unsupported,
)
from zen_flow.planner.jobs import JobBuildError
from zen_flow.planner.scheduled_time import scheduled_time

_CONTAINER_LISTS = ("containers", "initContainers")
_FINISHED = (StepPhase.SUCCEEDED.value, StepPhase.FAILED.value)
# Linux refuses to exec a program one of whose environment strings (`NAME=value` and its NUL) is longer
# than MAX_ARG_STRLEN, 32 pages: the container would never start, so the step fails before its Job.
MAX_ENV_STRING = 131072
# What one plan's Jobs may hold of substituted values before its other ready steps wait for the next plan
# (a second later): a matrix's 256 items of 1 MiB each would otherwise be built in one plan. Small, as
# every reconcile worker may plan such a flow at once: 16 workers (--workers 8) x (4 MiB + the one Job
# built past it, 1 MiB) is 80 MiB of the controller pod's 384 MiB, where 16 MiB a plan allowed 272 MiB.
MAX_PLAN_SUBSTITUTED_BYTES = 4 * MAX_SUBSTITUTED_BYTES


class FlowFields(NamedTuple):
    """What the `{{.JobFlow.X}}` placeholders read of the flow."""

    name: str
    namespace: str
    scheduled_time: str


def flow_fields(flow: JobFlow) -> FlowFields:
    meta = flow.metadata
    return FlowFields(meta.name, meta.namespace, scheduled_time(meta))


class ParameterError(JobBuildError):
    """A parameter cannot be resolved or substituted; the message names it."""


@dataclass(frozen=True, slots=True)
class Producer:
    """What a `<step>:<path>` input can read of an earlier step."""

    phase: str
    job_name: str | None
    job_status: Mapping[str, Any] | None  # None: the Job is gone (or the step never had one)
    outputs: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Resolved:
    name: str
    env_name: str
    value: str | None  # None: from a ConfigMap or Secret, known only inside the pod
    env: Mapping[str, Any]  # the container env entry


def escape_expansion(value: str) -> str:
    """Kubernetes turns `$$` into `$` where it expands `$(VAR)`; doubling keeps a value literal."""
    return value.replace("$", "$$")


def json_path_reads(step: Step) -> tuple[tuple[str, str], ...]:
    """(step, path) of each `<step>:<path>` input of this step: whose document it reads, and where."""
    params = step.inputs.parameters if step.inputs is not None else ()
    reads: list[tuple[str, str]] = []
    for param in params:
        path = param.value_from.json_path if param.value_from is not None else None
        if param.value is None and path and not path.startswith("$") and ":" in path:
            ref, _, rest = path.partition(":")
            reads.append((ref, rest))
    return tuple(reads)


def json_path_sources(step: Step) -> tuple[str, ...]:
    """The steps whose documents this step's `<step>:<path>` inputs read."""
    return tuple(ref for ref, _ in json_path_reads(step))


def _key_ref(ref: KeyRef, kind: str, what: str) -> dict[str, str]:
    if not ref.name:
        raise ParameterError(f"{what}: {kind}.name is not set")
    return {"name": ref.name, "key": ref.key or "value"}  # the original's default key


def _from_step(param: InputParameter, source: str, producer: Callable[[str], Producer | None]) -> str:
    what = f"input parameter {param.name}"
    ref, colon, path = source.partition(":")
    if not colon or source.startswith("$"):
        raise ParameterError(f'{what}: jsonPath {source!r} must name the step it reads: "<step>:$.path"')
    found = producer(ref)
    if found is None:
        raise ParameterError(f"{what}: jsonPath {source!r} names no step of this flow")
    if found.phase not in _FINISHED:
        raise ParameterError(f"{what}: step {ref} has not finished (it is {found.phase})")
    document = {**(found.job_status or {}), "outputs": {"parameters": dict(found.outputs)}}
    try:
        return render(evaluate(path, document))
    except JsonPathError as err:
        raise ParameterError(f"{what}: invalid jsonPath: {err}") from None
    except NotFound as err:
        hint = ""
        if found.job_status is None and not path.startswith("$.outputs"):
            job = f"its Job {found.job_name}" if found.job_name else "it has no Job that"
            hint = f" ({job} no longer exists; stored values are read as {ref}:$.outputs.parameters.NAME)"
        raise ParameterError(f"{what}: nothing found in step {ref}: {err}{hint}") from None


def _check_env_size(what: str, env: str, value: str, json_path: str | None) -> None:
    size = len(env.encode()) + 1 + len(value.encode()) + 1  # NAME=value and its NUL, as exec counts it
    if size <= MAX_ENV_STRING:
        return
    hint = ""
    if json_path and ":$.outputs.parameters." in json_path and "[" not in json_path:
        hint = (
            " (a matrix step's output is every item's value in one JSON array: keep the items' values "
            "short, or read single items, <step>-0:$.outputs.parameters.NAME)"
        )
    raise ParameterError(
        f"{what}: its value is {len(value.encode())} bytes, too long for its environment variable {env}: "
        f"Linux starts no container with an environment string over {MAX_ENV_STRING} bytes "
        f"(128 KiB, {env}=value included){hint}"
    )


def resolve_inputs(
    step: Step, producer: Callable[[str], Producer | None], arguments: Mapping[str, str] | None = None
) -> tuple[Resolved, ...]:
    """Every input parameter of `step`, resolved; `producer(name)` describes an earlier step,
    `arguments` are the flow's spec.arguments (name -> value)."""
    params = step.inputs.parameters if step.inputs is not None else ()
    out: list[Resolved] = []
    seen: dict[str, str] = {}
    for param in params:
        what = f"input parameter {param.name}"
        env = env_name(param.name)
        if env in seen:
            raise ParameterError(f"{what}: its env var {env} is also that of input parameter {seen[env]}")
        seen[env] = param.name
        source = param.value_from
        if param.value is not None:
            value: str | None = param.value
        elif source is not None and source.json_path:
            value = _from_step(param, source.json_path, producer)
        elif source is not None and source.argument:
            if source.argument not in (arguments or {}):
                raise ParameterError(f"{what}: the flow has no argument {source.argument}")
            value = (arguments or {})[source.argument]
        else:
            value = None
        if value is not None:
            _check_env_size(what, env, value, source.json_path if source is not None else None)
            entry: dict[str, Any] = {"name": env, "value": escape_expansion(value)}
        elif source is not None and source.config_map_key_ref is not None:
            ref = _key_ref(source.config_map_key_ref, "configMapKeyRef", what)
            entry = {"name": env, "valueFrom": {"configMapKeyRef": ref}}
        elif source is not None and source.secret_key_ref is not None:
            ref = _key_ref(source.secret_key_ref, "secretKeyRef", what)
            entry = {"name": env, "valueFrom": {"secretKeyRef": ref}}
        else:
            raise ParameterError(f"{what}: it has neither a value nor a valueFrom source")
        out.append(Resolved(param.name, env, value, entry))
    return tuple(out)


def _where(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "the Job"


def _expandable(path: tuple[str | int, ...]) -> bool:
    """Kubernetes expands `$(VAR)` here: containers' command/args items and env values."""
    if len(path) < 7 or path[:3] != ("spec", "template", "spec") or path[3] not in _CONTAINER_LISTS:
        return False
    if len(path) == 7:
        return path[5] in ("command", "args")
    return len(path) == 8 and path[5] == "env" and path[7] == "value"


class Meter:
    """The bytes substitution added to one object so far; past `limit` it raises ParameterError."""

    def __init__(self, limit: int = MAX_SUBSTITUTED_BYTES) -> None:
        self.limit = limit
        self.used = 0

    def add(self, size: int, what: str, path: tuple[str | int, ...]) -> None:
        """Count `size` bytes substituted for `what` at `path` (named only in the error: formatting it
        for every placeholder of every Job built would be work for nothing)."""
        self.used += size
        if self.used > self.limit:
            raise ParameterError(
                f"substituting {what} at {_where(path)} brings what substitution adds past {self.limit:,} "
                "bytes (1 MiB; the apiserver refuses an object over 1.5 MiB): use the parameter in fewer "
                "places, or pass large data as an artifact"
            )


class _Substitution:
    def __init__(
        self, step: str, resolved: tuple[Resolved, ...], context: Mapping[str, str], meter: Meter
    ) -> None:
        self.step = step
        self.by_name = {r.name: r for r in resolved}
        self.context = context  # {"Name", "Namespace", "ScheduledTime", "StepName"}
        self.meter = meter

    def text(self, value: str, path: tuple[str | int, ...]) -> str:
        if not marked(value):
            return value
        if found := unsupported(value):
            raise ParameterError(f"unsupported template action {found[0]} at {_where(path)}: use {SUPPORTED}")
        expandable = _expandable(path)

        def replace(match: re.Match[str]) -> str:
            if (field := context_field(match)) is not None:
                known = self.context[field]
                done = escape_expansion(known) if expandable else known
                # Counted as values are: 30,000 `{{.StepName}}` of a 40-character name are 1.3 MB.
                self.meter.add(len(done.encode()), f"{{{{.{field}}}}}", path)
                return done
            name = parameter(match) or ""
            found = self.by_name.get(name)
            if found is None:
                known = ", ".join(sorted(self.by_name)) or "none"
                raise ParameterError(
                    f"unknown parameter {name} in {match.group(0)} at {_where(path)} "
                    f"(the inputs.parameters of step {self.step}: {known})"
                )
            if found.value is not None:
                out = escape_expansion(found.value) if expandable else found.value
                self.meter.add(len(out.encode()), f"input parameter {name}", path)
                return out
            if not expandable:
                raise ParameterError(
                    f"input parameter {name} comes from a ConfigMap or Secret, which only the pod reads: "
                    f"use it in a container's command, args or env value (as $({found.env_name})), "
                    f"not at {_where(path)}"
                )
            return f"$({found.env_name})"

        return substitute(value, replace)

    def walk(self, node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, str):
            return self.text(node, path)
        if isinstance(node, dict):
            for key, item in node.items():
                if isinstance(item, str | dict | list):
                    node[key] = self.walk(item, (*path, key))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str | dict | list):
                    node[index] = self.walk(item, (*path, index))
        return node


def _inject_env(body: dict[str, Any], resolved: tuple[Resolved, ...], meter: Meter) -> None:
    pod = body.get("spec", {}).get("template", {}).get("spec")
    if not isinstance(pod, dict):
        return
    names = {r.env_name for r in resolved}
    # Every container gets every value: counted, as placeholders are (a value in 50 containers is 50).
    size = sum(len(str(r.env.get("value", "")).encode()) for r in resolved)
    for field in _CONTAINER_LISTS:
        containers = pod.get(field)
        if not isinstance(containers, list):
            continue
        for i, container in enumerate(containers):
            if not isinstance(container, dict):
                continue
            meter.add(size, "the input parameters' env vars", ("spec", "template", "spec", field, i, "env"))
            own = container.get("env")
            kept = (
                [e for e in own if not (isinstance(e, dict) and e.get("name") in names)]
                if isinstance(own, list)
                else []
            )
            # Ours first: a container's own env entries may then refer to them as $(ZF_PARAM_X).
            container["env"] = [_copy(r.env) for r in resolved] + kept


def _copy(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (_copy(v) if isinstance(v, Mapping) else v) for k, v in entry.items()}


def _marked(node: Any) -> bool:
    """Whether any string in `node` may hold a placeholder (a cheap scan: most templates have none)."""
    if isinstance(node, str):
        return marked(node)
    if isinstance(node, dict):
        node = node.values()
    elif not isinstance(node, list):
        return False
    return any(not isinstance(item, int | float | bool) and _marked(item) for item in node)


def apply_parameters(
    body: dict[str, Any],
    step: str,
    resolved: tuple[Resolved, ...],
    flow: FlowFields,
    meter: Meter | None = None,
) -> dict[str, Any]:
    """Substitute the placeholders in `body` (changed in place and returned) and add the env vars;
    `meter` counts what they add (a fresh one when None)."""
    meter = meter or Meter()
    if _marked(body):
        _Substitution(step, resolved, _context(flow, step), meter).walk(body, ())
    if resolved:
        _inject_env(body, resolved, meter)
    return body


def substitute_text(
    text: str,
    step: str,
    resolved: tuple[Resolved, ...],
    flow: FlowFields,
    where: tuple[str | int, ...] = ("memoize", "key"),
    meter: Meter | None = None,
) -> str:
    """`text` with its placeholders substituted as in a Job's string value that Kubernetes does not expand
    (a `memoize.key`, a child flow's argument at `where`): a parameter only the pod knows (ConfigMap,
    Secret) fails with ParameterError. `meter`: shared by the texts of one object (a child's arguments)."""
    return _Substitution(step, resolved, _context(flow, step), meter or Meter()).text(text, where)


def _context(flow: FlowFields, step: str) -> dict[str, str]:
    return {
        "Name": flow.name,
        "Namespace": flow.namespace,
        "ScheduledTime": flow.scheduled_time,
        "StepName": step,
    }
