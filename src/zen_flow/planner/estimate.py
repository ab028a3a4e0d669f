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
from zen_flow.api.jobflow import JobFlow, StepStatus

_TERMINAL = frozenset({StepPhase.SUCCEEDED, StepPhase.FAILED, StepPhase.SKIPPED})


def _mean_duration(steps: Sequence[StepStatus]) -> timedelta | None:
    spans = [
        s.completion_time - s.start_time
        for s in steps
        if s.phase == StepPhase.SUCCEEDED and s.job_ref is not None and s.start_time and s.completion_time
    ]
    return sum(spans, timedelta()) / len(spans) if spans else None


def estimate_completion(
    flow: JobFlow, steps: Sequence[StepStatus], phase: FlowPhase, now: datetime
) -> datetime | None:
    if phase != FlowPhase.RUNNING:
        return None
    mean = _mean_duration(steps)
    if mean is None:
        return None
    status: Mapping[str, StepStatus] = {s.name: s for s in steps}
    specs = {s.name: s for s in flow.spec.steps}
    if any(spec.is_manual and status[name].phase not in _TERMINAL for name, spec in specs.items()):
        return None
    finish: dict[str, datetime] = {}
    # Iterative post-order over dependencies (a 500-step chain would be deep for recursion).
    for root in specs:
        stack, entered = [root], set()
        while stack:
            name = stack[-1]
            if name in finish:
                stack.pop()
                continue
            deps = [d for d in specs[name].dependencies if d in specs]
            pending = [d for d in deps if d not in finish]
            if pending:
                if name in entered:
                    return None  # a cycle: the planner fails such a flow before it runs
                entered.add(name)
                stack.extend(pending)
                continue
            stack.pop()
            finish[name] = _expected_finish(status[name], [finish[d] for d in deps], mean, now)
    return max(finish.values(), default=now).replace(microsecond=0)


def _expected_finish(step: StepStatus, deps: Sequence[datetime], mean: timedelta, now: datetime) -> datetime:
    if step.phase in _TERMINAL:
        return step.completion_time or now
    if step.phase == StepPhase.RETRYING and step.next_retry_time is not None:
        return max(now, step.next_retry_time + mean)
    if step.phase == StepPhase.RUNNING and step.start_time is not None:
        return max(now, step.start_time + mean)
    return max([now, *deps]) + mean
