"""What `zen-flow list` and `zen-flow get` print: plain-text tables like kubectl's, as pure functions of
the flows and the current time (so tests render real status objects at a fixed instant).

Messages, outputs and names come from tenants (a Manual step's message, a pod's termination message, an
approver's annotation): a control character in them would reach the reader's terminal as a command (OSC
52 writes the clipboard; a bidi override reorders what is shown), so every line is made printable here
(`printable`), escaped as `\\x1b` or `\\u202e`, before colour is added (colour.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_MATRIX, ConditionType, StepPhase
from zen_flow.api.flow_status import JobFlowStatus, StepStatus
from zen_flow.api.jobflow import MatrixVerdict, Step
from zen_flow.api.meta import format_time
from zen_flow.core.dag import CycleError, Graph
from zen_flow.planner.backoff import retry_limit
from zen_flow.planner.status import REASON_SUCCEEDED_WITH_FAILURES
from zen_flow.planner.tolerance import tolerated

_GAP = "   "
# What follows the phase of a step whose failure allowFailure tolerated (`shown_phase`).
ALLOWED_NOTE = "(allowed)"
# C0 and C1 controls, and the bidi controls of "Trojan Source" (CVE-2021-42574).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with every control character shown as its escape (`\\x1b`, `\\n`, `\\u202e`)."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def few(names: Sequence[str], shown: int = 8) -> str:
    """`names` for a message, the first `shown` and how many more: a 256-item matrix step would
    otherwise fill the screen with its items' names."""
    if len(names) <= shown + 1:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def span(seconds: float) -> str:
    """A duration as kubectl shows ages: 45s, 3m20s, 2h5m, 3d4h."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs and minutes < 10 else f"{minutes}m"
    return f"{secs}s"


def _since(start: datetime | None, now: datetime) -> str:
    return span((now - start).total_seconds()) if start is not None else "-"


def _between(start: datetime | None, end: datetime | None, now: datetime) -> str:
    if start is None:
        return "-"
    return span(((end or now) - start).total_seconds())


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart; the last column is not padded."""
    shown = [[printable(str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in (header, *shown)) for i in range(len(header))]
    lines = []
    for row in (header, *shown):
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)] + [row[-1]]
        lines.append(_GAP.join(cells).rstrip())
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class FlowRow:
    """One flow as `zen-flow list` (and the web UI's list) shows it; the cells are tenants' text, raw."""

    namespace: str
    name: str
    phase: str
    progress: str
    age: str
    duration: str
    message: str


def flow_rows(flows: Sequence[JobFlow], now: datetime) -> list[FlowRow]:
    """The flows sorted by namespace and name, each as the row `list` shows."""
    rows = []
    for flow in sorted(flows, key=lambda f: (f.metadata.namespace, f.metadata.name)):
        status = flow.status
        rows.append(
            FlowRow(
                namespace=flow.metadata.namespace,
                name=flow.metadata.name,
                phase=status.phase or "Pending",
                progress=status.progress_summary or "-",
                age=_since(flow.metadata.creation_timestamp, now),
                duration=_between(status.start_time, status.completion_time, now),
                message=status.message or "",
            )
        )
    return rows


def flow_list(flows: Sequence[JobFlow], now: datetime, *, all_namespaces: bool) -> str:
    header = [*(["NAMESPACE"] if all_namespaces else []), "NAME", "PHASE", "PROGRESS", "AGE", "MESSAGE"]
    rows = [
        [*([r.namespace] if all_namespaces else []), r.name, r.phase, r.progress, r.age, r.message]
        for r in flow_rows(flows, now)
    ]
    return table(header, rows)


def dependency_order(flow: JobFlow) -> list[tuple[str, int]]:
    """(step, depth) in a topological order (depth: the longest chain of dependencies above it); spec
    order when the graph has a cycle (an invalid flow is still shown)."""
    steps = flow.spec.steps
    graph = Graph.build([(s.name, s.dependencies) for s in steps])
    try:
        order = list(graph.topological_order())
    except CycleError:
        return [(s.name, 0) for s in steps]
    deps = {s.name: s.dependencies for s in steps}
    depth: dict[str, int] = {}
    for name in order:
        depth[name] = 1 + max((depth.get(d, -1) for d in deps.get(name, ())), default=-1)
    return [(name, depth[name]) for name in order]


def outputs(step: StepStatus | None) -> str:
    """What a step produced, shortly: `name=value` parameters, then artifacts as `name (size)`."""
    if step is None or step.outputs is None:
        return ""
    shown = [f"{p.name}={_short(p.value)}" for p in step.outputs.parameters]
    shown += [f"{a.name} ({a.size} B)" if a.size is not None else a.name for a in step.outputs.artifacts]
    return ", ".join(shown)


def _short(value: str, limit: int = 40) -> str:
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 3] + "..."


def step_message(step: StepStatus | None, spec: Step, now: datetime) -> str:
    """A step's message; a Retrying step's says first when its next attempt starts (`nextRetryTime`)."""
    if step is None:
        return ""
    message = step.message or ""
    if step.phase != StepPhase.RETRYING or step.next_retry_time is None:
        return message
    left = (step.next_retry_time - now).total_seconds()
    limit = retry_limit(spec)
    attempt = (
        f"{step.retry_count + 2} of {limit + 1}" if limit > step.retry_count else f"{step.retry_count + 2}"
    )
    when = f"in {span(left)}" if left >= 1 else "due now"
    return f"next attempt {attempt} {when}; {message}" if message else f"next attempt {attempt} {when}"


def matrix_values(spec: Step, pending: Mapping[str, MatrixVerdict] | None = None) -> str:
    """The matrix values an item of a matrix step runs with, `os=linux, arch=arm64`; `(from gen)` for a
    matrix step whose items an earlier step's output gives, not expanded (yet); "-" for a step that is
    no item (its annotation, core/matrix.py)."""
    if pending and (verdict := pending.get(spec.name)) is not None:
        return f"(from {', '.join(verdict.sources)})"
    text = spec.metadata.annotations.get(ANNOTATION_MATRIX) if spec.metadata else None
    try:
        values = json.loads(text) if text else None
    except ValueError:
        values = None
    if not isinstance(values, dict):
        return "-"
    return ", ".join(f"{k}={_short(str(v))}" for k, v in values.items())


def _priority(flow: JobFlow) -> int:
    """`spec.executionPolicy.priority`: its rank among its namespace's flows waiting for a slot."""
    policy = flow.spec.execution_policy
    return policy.priority or 0 if policy is not None else 0


def flow_summary(
    flow: JobFlow, now: datetime, extra: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """The (label, value) lines above `get`'s step table: the flow's state, `extra` lines after its
    message (its place in line: cli/waits.py), and the conditions that ask for attention."""
    status = flow.status
    lines = [
        ("Name", f"{flow.metadata.namespace}/{flow.metadata.name}"),
        ("Phase", status.phase or "Pending"),
        ("Progress", status.progress_summary or "-"),
        # Only when set: most flows never wait for a slot, and 0 is the default.
        *([("Priority", str(priority))] if (priority := _priority(flow)) else []),
        ("Started", format_time(status.start_time) if status.start_time else "-"),
        ("Duration", _between(status.start_time, status.completion_time, now)),
        ("Message", status.message or ""),
        *extra,
    ]
    for cond in status.conditions:
        # The conditions that ask for attention; the others repeat the phase.
        stalled = cond.type == ConditionType.PROGRESSING and cond.status == "False" and cond.message
        failed = cond.type == ConditionType.FAILED and cond.status == "True"
        # A success with failures allowFailure tolerated (planner.status) is one to look at, too.
        tolerated = cond.type == ConditionType.COMPLETE and cond.reason == REASON_SUCCEEDED_WITH_FAILURES
        if stalled or failed or tolerated:
            lines.append(("Condition", f"{cond.type}={cond.status} {cond.reason}: {cond.message}"))
    return lines


@dataclass(frozen=True)
class StepTable:
    """`get`'s step table: `rows[i]` is step `steps[i]` (its name indented by its depth in the first
    cell), in dependency order; the cells are tenants' text, raw."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    steps: tuple[str, ...]


def step_table(
    flow: JobFlow, now: datetime, *, wide: bool = False, notes: Mapping[str, str] | None = None
) -> StepTable:
    """One row per step in dependency order (`wide`: with each step's outputs; `notes`: by step, what
    follows its message: who holds the locks it waits for, cli/waits.py)."""
    notes = notes or {}
    status = flow.status
    specs = {s.name: s for s in flow.spec.steps}
    # Its effective flow has matrix items, or a matrix step waiting for its items: show their values.
    matrix = bool(flow.spec.matrix_groups or flow.spec.matrix_verdicts)
    rows = []
    order = dependency_order(flow)
    for name, depth in order:
        step = status.step(name)
        spec = specs[name]
        job = (
            step.job_ref.name if step is not None and step.job_ref is not None and step.job_ref.name else "-"
        )
        if spec.is_flow and job != "-":
            job = f"jobflow/{job}"  # a Flow step's child flow (planner/children.py), not a Job
        rows.append(
            (
                "  " * depth + name,
                shown_phase(step, spec, status),
                str(step.retry_count + 1)
                if step is not None and step.start_time and not spec.is_manual
                else "-",
                _since(step.start_time, now) + " ago" if step is not None and step.start_time else "-",
                _between(step.start_time, step.completion_time, now) if step is not None else "-",
                ", ".join(spec.dependencies) or "-",
                job,
                *([matrix_values(spec, flow.spec.matrix_verdicts)] if matrix else []),
                *([outputs(step)] if wide else []),
                _noted(step_message(step, spec, now), notes.get(name)),
            )
        )
    header = (
        "STEP",
        "PHASE",
        "ATTEMPT",
        "STARTED",
        "DURATION",
        "AFTER",
        "JOB",
        *(["VALUES"] if matrix else []),
        *(["OUTPUTS"] if wide else []),
        "MESSAGE",
    )
    return StepTable(header, tuple(rows), tuple(name for name, _ in order))


def shown_phase(step: StepStatus | None, spec: Step, flow: JobFlowStatus) -> str:
    """A step's phase, a failure allowFailure tolerates said as such: it did not fail the flow (one a
    stop or the deadline ended is no such failure: planner.tolerance)."""
    if step is None:
        return "Pending"
    return f"{step.phase} {ALLOWED_NOTE}" if tolerated(spec, step, flow) else step.phase


def _noted(message: str, note: str | None) -> str:
    return f"{message}: {note}" if note and message else note or message


def flow_detail(
    flow: JobFlow,
    now: datetime,
    *,
    wide: bool = False,
    extra: Sequence[tuple[str, str]] = (),
    notes: Mapping[str, str] | None = None,
) -> str:
    """`zen-flow get NAME`: the flow's state, then one row per step in dependency order (`wide`: with
    each step's outputs; `extra` and `notes`: what cli/waits.py adds for a flow that waits)."""
    lines = [f"{label + ':':<12}{value}" for label, value in flow_summary(flow, now, extra)]
    steps = step_table(flow, now, wide=wide, notes=notes)
    return "\n".join(map(printable, lines)) + "\n\n" + table(steps.header, steps.rows)
