"""A flow's first Jobs, created by a reconcile whose status write an edit of the flow then refused.

Until a flow's start is recorded in its status, admission lets its `spec.steps` change (docs/API.md,
"Spec edits"). A reconcile creates the first Jobs and then writes the status, conditional on the flow's
resourceVersion: an edit in between refuses the write (409). The next plan would take those Jobs over by
their names, which come from the flow's and steps' names only: a step whose command the edit changed would
run the old one, and the Job of a step the edit removed would run on, untracked. So when the edit changed
the spec (a new generation), those Jobs are deleted, and the steps start from the new spec. An edit that
left the spec alone (a label, an annotation) keeps them: the retried status write records them.

Held in memory only: a restart between the refused write and the next reconcile loses it (the race needs
an edit within the milliseconds between the creates and the write; a restart there too is not covered).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zen_flow import planner
from zen_flow.api import JobFlow

# The DeleteJob reason, and the Normal event's reason when it happens.
REASON_STEPS_CHANGED = "StepsChanged"
STEPS_CHANGED = "the flow's steps changed before its start was recorded"


@dataclass(frozen=True)
class _Start:
    generation: int
    jobs: tuple[tuple[str, str], ...]  # (Job name, step)


class FirstJobs:
    """The unrecorded first Jobs of flows, by flow UID, until their start is recorded or they are replaced."""

    def __init__(self) -> None:
        self._starts: dict[str, _Start] = {}

    def unrecorded(
        self, flow: JobFlow, created: Mapping[str, str], actions: Iterable[planner.Action]
    ) -> None:
        """The status write after `created` (Job name -> UID) was refused for a conflict."""
        if flow.status.start_time is not None or not created or flow.metadata.uid in self._starts:
            return
        steps = {a.body["metadata"]["name"]: a.step for a in actions if isinstance(a, planner.CreateJob)}
        jobs = tuple((name, steps[name]) for name in created if name in steps)
        self._starts[flow.metadata.uid] = _Start(flow.metadata.generation, jobs)

    def outdated(self, flow: JobFlow) -> tuple[planner.DeleteJob, ...]:
        """The deletes of `flow`'s first Jobs if its spec changed since they were built, else ()."""
        start = self._starts.get(flow.metadata.uid)
        if start is None:
            return ()
        if flow.status.start_time is not None:  # recorded: they are the flow's Jobs now
            del self._starts[flow.metadata.uid]
            return ()
        if flow.metadata.generation == start.generation:  # no spec change, or the cache lags: keep
            return ()
        del self._starts[flow.metadata.uid]
        return tuple(planner.DeleteJob(name, step, STEPS_CHANGED) for name, step in start.jobs)

    def forget(self, uid: str) -> None:
        self._starts.pop(uid, None)
