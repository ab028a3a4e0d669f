"""`status.estimatedCompletionTime`: when a running flow should finish, judged by its own finished steps.

Each step that has yet to finish is expected to take as long as the mean of this flow's succeeded Job
steps so far; the estimate is the latest expected finish over the DAG (a step starts when its last
dependency is expected to finish). There is no estimate (the field is absent) while nothing has
succeeded yet, while the flow is not Running, or while an approval gate is still open: a human's wait
cannot be predicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from zen_flow.api.constants import FlowPhase, StepPhase
from zen_flow.api.flow_status import StepStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.shape import shape_of

_TERMINAL = frozenset({StepPhase.SUCCEEDED, StepPhase.FAILED, StepPhase.SKIPPED})


def estimate_completion(
    flow: JobFlow, steps: Sequence[StepStatus], phase: FlowPhase, now: datetime
) -> datetime | None:
    if phase != FlowPhase.RUNNING:
        return None
    shape = shape_of(flow)
    spans = [
        s.completion_time - s.start_time
        for s in steps
        if s.phase == StepPhase.SUCCEEDED and s.job_ref is not None and s.start_time and s.completion_time
    ]
    if not spans or shape.errors:
        return None  # errors: a cycle, say; the planner fails such a flow before it runs
    mean = sum(spans, timedelta()) / len(spans)
    status: Mapping[str, StepStatus] = {s.name: s for s in steps}
    if any(status[name].phase not in _TERMINAL for name in shape.manual):
        return None
    # A finished step finished when it did; the others, in topological order (dependencies first), when
    # their last dependency is expected to finish plus the mean.
    finish = {s.name: s.completion_time or now for s in steps if s.phase in _TERMINAL}
    latest = max(finish.values(), default=now)
    specs = shape.specs
    final = shape.final
    # The finally steps start once every other step has ended; the shape orders them last, so when the
    # first one is reached every other step's expected end is known.
    main_end: datetime | None = None
    for name in shape.order:
        if name in finish:
            continue
        step = status[name]
        if step.phase == StepPhase.PENDING:  # most of a long flow: inline, no list, no call
            begin = now
            if name in final:
                if main_end is None:
                    main_end = max((t for n, t in finish.items() if n not in final), default=now)
                begin = max(begin, main_end)
            for dep in specs[name].dependencies:
                begin = max(begin, finish[dep])
            end = begin + mean
        else:
            end = _expected_finish(step, [finish[d] for d in specs[name].dependencies], mean, now)
        finish[name] = end
        latest = max(latest, end)
    return latest.replace(microsecond=0)


def _expected_finish(step: StepStatus, deps: Sequence[datetime], mean: timedelta, now: datetime) -> datetime:
    if step.phase == StepPhase.RETRYING and step.next_retry_time is not None:
        return max(now, step.next_retry_time + mean)
    if step.phase == StepPhase.RUNNING and step.start_time is not None:
        return max(now, step.start_time + mean)
    return max([now, *deps]) + mean
