"""`status.estimatedCompletionTime`: when a running flow should finish, judged by its own finished steps.

Each step that has yet to finish is expected to take as long as the mean of this flow's succeeded Job
steps so far; a step starts when its last dependency is expected to finish. Under
`executionPolicy.parallelism` N or a matrix's `maxParallel` M a Job step also waits for a slot, so the
rest of the flow is played forward as the planner would start it (`_Run`): at each expected start or
end, the ready steps in spec order, each taking one of the N slots (the running Jobs holding theirs
until their expected end) only when its matrix has one of its M free too. An item its matrix holds
leaves the flow's slot to a later step that can start; 256 items of a minute under parallelism 4 are
expected in about 64 minutes, not one. There is no estimate (the field is absent) while nothing has
succeeded yet, while the flow is not Running, or while an approval gate is still open: a human's wait
cannot be predicted. Under `executionPolicy.finallyGraceSeconds` (planner.grace) the steps that are not
finally are expected to end by the grace point at the latest, the finally steps to start then, and the
flow to end by its deadline at the latest.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from zen_flow.api.constants import FlowPhase, StepPhase
from zen_flow.api.flow_status import StepStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.grace import grace_of
from zen_flow.planner.parallelism import item_limits, parallelism_of
from zen_flow.planner.shape import Shape, shape_of
from zen_flow.planner.timing import after

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
    # A finished step finished when it did; the others when they are expected to (`_Run`).
    finish = {s.name: s.completion_time or now for s in steps if s.phase in _TERMINAL}
    start = flow.status.start_time
    bounds = grace_of(flow.spec.execution_policy) if shape.final and start is not None else None
    if bounds is None or start is None:
        _Run(shape, status, finish, mean, now, flow).run()
        return max(finish.values(), default=now).replace(microsecond=0)
    # The grace ends the other steps at its point: the finally steps start then, and the deadline ends all.
    cut = max(after(start, bounds[0] - bounds[1]), now)
    _Run(shape, status, finish, mean, now, flow, cut).run()
    ends = (t if name in shape.final else min(t, cut) for name, t in finish.items())
    return min(max(ends, default=now), max(after(start, bounds[0]), now)).replace(microsecond=0)


class _Run:
    """The rest of the flow played forward from `now`, event by event, as the planner would start it.

    A step is ready when its last dependency is expected to finish (a finally step: once every other
    step is, a Retrying step: at its next attempt); at each moment the ready steps start in spec order,
    each taking a slot of the flow's parallelism and of its matrix's maxParallel, both or none, and end
    `mean` later. Without a limit a step starts as soon as it is ready. A step the limits do not count
    (a Retrying one no limit holds) is expected to finish as `_expected_finish` says, slot-free.

    Cheap enough for every reconcile of a 500-step flow: each step passes through each heap once, and a
    held matrix item is looked at again only when a slot of its own matrix frees up.
    """

    def __init__(
        self,
        shape: Shape,
        status: Mapping[str, StepStatus],
        finish: dict[str, datetime],
        mean: timedelta,
        now: datetime,
        flow: JobFlow,
        cut: datetime | None = None,
    ) -> None:
        self.shape, self.status, self.finish, self.mean, self.now = shape, status, finish, mean, now
        self.cut = cut  # the finally grace's point: the other steps end then at the latest
        self.limit = parallelism_of(flow)
        self.items = item_limits(flow)
        self.held = self.limit is not None or bool(self.items)
        self.group_limits = {item.group: item.limit for item in self.items.values() if item.group}
        self.position = {name: i for i, name in enumerate(shape.specs)}  # spec order
        self.ends: list[tuple[datetime, str]] = []  # expected end and matrix ("" none) of each slot held
        self.running = 0
        self.in_group: dict[str, int] = {}
        self.arrivals: list[tuple[datetime, int, str]] = []  # when a step is ready, its position, its name
        self.ready: list[tuple[int, str]] = []  # ready now, by position
        self.blocked: dict[str, list[tuple[int, str]]] = {}  # ready, held by their matrix's maxParallel
        self.blocked_count = 0
        self.left: dict[str, int] = {}  # a step yet to be placed -> its dependencies yet to be
        self.main_left = 0  # steps that are not finally yet to be placed
        self.main_end: datetime | None = None
        self.t = now  # the moment `play` is at
        self.deferred: list[str] = []  # finally steps with their dependencies placed, waiting for main_end

    def run(self) -> None:
        shape, status, finish = self.shape, self.status, self.finish
        for name in shape.order:  # the running Jobs hold their slots first
            step = status[name]
            if step.phase == StepPhase.RUNNING and name not in finish:
                finish[name] = _expected_finish(step, (), self.mean, self.now)
                self.take(name, finish[name])
        placed = [name for name in shape.order if name not in finish]
        specs, left = shape.specs, self.left
        for name in placed:
            deps = specs[name].dependencies
            left[name] = len(set(deps).difference(finish)) if deps else 0
        self.main_left = sum(name not in shape.final for name in placed)
        settled = self.close_main() if not self.main_left else []
        for name in placed:
            if not self.left[name]:
                settled.extend(self.arrive(name))
        self.settle(settled)
        self.play()

    def take(self, name: str, end: datetime) -> None:
        """`name` runs until `end`, holding a slot of the flow's and of its matrix's; a step that is not
        finally gives its slots back by the grace point at the latest (`cut`): the grace ends it then, and
        a finally step waiting for a slot starts."""
        if self.cut is not None and name not in self.shape.final:
            end = max(min(end, self.cut), self.t)
        item = self.items.get(name)
        group = (item.group or "") if item is not None else ""
        heapq.heappush(self.ends, (end, group))
        self.running += 1
        if group:
            self.in_group[group] = self.in_group.get(group, 0) + 1

    def play(self) -> None:
        t = self.now  # (self.t: the same, for `arrive`)
        limit, items, ready, ends = self.limit, self.items, self.ready, self.ends
        dependents, final = self.shape.dependents, self.shape.final
        while ready or self.arrivals or self.blocked_count:
            freed: set[str] = set()
            while ends and ends[0][0] <= t:
                _, group = heapq.heappop(ends)
                self.running -= 1
                if group:
                    self.in_group[group] -= 1
                    freed.add(group)
            while self.arrivals and self.arrivals[0][0] <= t:
                _, position, name = heapq.heappop(self.arrivals)
                heapq.heappush(ready, (position, name))
            for group in freed:  # as many of its held items as it has free slots, the first in spec order
                blocked = self.blocked.get(group, [])
                room = self.group_limits[group] - self.in_group[group]
                while blocked and room > 0:
                    heapq.heappush(ready, heapq.heappop(blocked))
                    self.blocked_count -= 1
                    room -= 1
            while ready and (limit is None or self.running < limit):
                entry = heapq.heappop(ready)
                name = entry[1]
                item = items.get(name)
                if item is not None and item.group and self.in_group.get(item.group, 0) >= item.limit:
                    heapq.heappush(self.blocked.setdefault(item.group, []), entry)
                    self.blocked_count += 1
                    continue
                end = t + self.mean
                self.take(name, end)
                self.finish[name] = end
                if name in dependents or name not in final:
                    self.settle([name])
            upcoming = [self.arrivals[0][0]] if self.arrivals else []
            if (ready or self.blocked_count) and ends:
                upcoming.append(ends[0][0])
            if not upcoming:
                break  # nothing left that could start (a limit below 1, which the validator refuses)
            t = self.t = min(upcoming)

    def settle(self, todo: list[str]) -> None:
        """The steps in `todo` have their expected finish: the steps that wait for them may be ready."""
        shape, left = self.shape, self.left
        while todo:
            done = todo.pop()
            if done not in shape.final:
                self.main_left -= 1
                if not self.main_left:
                    todo.extend(self.close_main())
            for dependent in shape.dependents.get(done, ()):
                if dependent in left:
                    left[dependent] -= 1
                    if not left[dependent]:
                        todo.extend(self.arrive(dependent))

    def close_main(self) -> list[str]:
        """Every step that is not finally has its expected finish: the finally steps may be ready."""
        final = self.shape.final
        self.main_end = max((t for n, t in self.finish.items() if n not in final), default=self.now)
        if self.cut is not None:
            self.main_end = min(self.main_end, self.cut)
        settled: list[str] = []
        for name in self.deferred:
            settled.extend(self.arrive(name))
        return settled

    def arrive(self, name: str) -> list[str]:
        """Every dependency of `name` has its expected finish: `name` is ready at a known time, or (a
        step no limit counts) has its own expected finish at once, returned."""
        step, finish = self.status[name], self.finish
        deps = self.shape.specs[name].dependencies
        if step.phase == StepPhase.PENDING or (self.held and step.phase == StepPhase.RETRYING):
            begin = self.now
            if step.phase == StepPhase.RETRYING and step.next_retry_time is not None:
                begin = max(begin, step.next_retry_time)
            if name in self.shape.final:
                if self.main_end is None:
                    self.deferred.append(name)
                    return []
                begin = max(begin, self.main_end)
            for dep in deps:
                begin = max(begin, finish[dep])
            if self.limit is None and name not in self.items:  # no slot to wait for: starts when ready
                finish[name] = begin + self.mean
                return [name]
            if begin <= self.t:
                heapq.heappush(self.ready, (self.position[name], name))
            else:
                heapq.heappush(self.arrivals, (begin, self.position[name], name))
            return []
        finish[name] = _expected_finish(step, [finish[d] for d in deps], self.mean, self.now)
        return [name]


def _expected_finish(step: StepStatus, deps: Sequence[datetime], mean: timedelta, now: datetime) -> datetime:
    if step.phase == StepPhase.RETRYING and step.next_retry_time is not None:
        return max(now, step.next_retry_time + mean)
    if step.phase == StepPhase.RUNNING and step.start_time is not None:
        return max(now, step.start_time + mean)
    return max([now, *deps]) + mean
