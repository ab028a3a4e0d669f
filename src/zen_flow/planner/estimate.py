"""`status.estimatedCompletionTime`: when a running flow should finish, judged by its own finished steps.

Each step that has yet to finish is expected to take as long as the mean of this flow's succeeded Job
steps so far; the estimate is the latest expected finish over the DAG (a step starts when its last
dependency is expected to finish). Under `executionPolicy.parallelism` N a Job step also waits for a
slot: the N earliest expected finishes (the running Jobs' first) are the slots, handed out in
topological order, so 256 items of a minute under parallelism 4 are expected in about 64 minutes, not
one; a matrix's `maxParallel` M is M such slots for its own items (both limits hold). In that order a
step ready later may take a slot before one ready sooner that comes after it (the planner starts ready
steps in spec order): an estimate, not a schedule. There is no estimate (the field
is absent) while nothing has succeeded yet, while the flow is not Running, or while an approval gate is
still open: a human's wait cannot be predicted.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from zen_flow.api.constants import FlowPhase, StepPhase
from zen_flow.api.flow_status import StepStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.parallelism import item_limits, parallelism_of
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
    manual = frozenset(shape.manual)
    limit = parallelism_of(flow)
    # A matrix's maxParallel: the same slots, of its items alone (its step's name -> its heap).
    items = item_limits(flow)
    group_slots: dict[str | None, list[datetime]] = {}
    # With a limit: the expected ends of the Jobs that hold a slot (a min-heap); a Job step that is yet
    # to start takes the earliest once `limit` are held. The running Jobs hold theirs first.
    slots: list[datetime] = []
    if limit is not None or items:
        for name in shape.order:
            step = status[name]
            if step.phase == StepPhase.RUNNING and name not in manual and name not in finish:
                finish[name] = _expected_finish(step, (), mean, now)
                if limit is not None:
                    slots.append(finish[name])
                if name in items:
                    group_slots.setdefault(items[name].group, []).append(finish[name])
        heapq.heapify(slots)
        for heap in group_slots.values():
            heapq.heapify(heap)
    # The finally steps start once every other step has ended; the shape orders them last, so when the
    # first one is reached every other step's expected end is known.
    main_end: datetime | None = None
    for name in shape.order:
        if name in finish:
            continue
        step = status[name]
        held = limit is not None or name in items
        if step.phase == StepPhase.PENDING or (held and step.phase == StepPhase.RETRYING):
            begin = now  # most of a long flow: inline, no list, no call
            if step.phase == StepPhase.RETRYING and step.next_retry_time is not None:
                begin = max(begin, step.next_retry_time)
            if name in final:
                if main_end is None:
                    main_end = max((t for n, t in finish.items() if n not in final), default=now)
                begin = max(begin, main_end)
            for dep in specs[name].dependencies:
                begin = max(begin, finish[dep])
            if name in items:
                heap = group_slots.setdefault(items[name].group, [])
                while len(heap) >= items[name].limit:
                    begin = max(begin, heapq.heappop(heap))
            if limit is not None and name not in manual:
                while len(slots) >= limit:  # more when the limit was lowered under the running Jobs
                    begin = max(begin, heapq.heappop(slots))
                heapq.heappush(slots, begin + mean)
            if name in items:
                heapq.heappush(group_slots[items[name].group], begin + mean)
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
