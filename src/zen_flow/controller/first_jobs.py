"""A flow's first Jobs, created by a reconcile whose status write then failed.

Until a flow's start is recorded in its status, admission lets its `spec.steps` change (docs/API.md,
"Spec edits"). A reconcile creates the first Jobs and then writes the status, conditional on the flow's
resourceVersion: an edit in between refuses the write (409), and one after a write that failed otherwise
(a timeout, a 503) is let through as well. The next plan would take those Jobs over by their names,
which come from the flow's and steps' names only: a step whose command the edit changed would run the old
one, and the Job of a step the edit removed would run on, untracked. So the Jobs of the steps the edit
changed or removed are deleted, and those steps start from the new spec; all of them when the arguments,
the pod failure policy or the step defaults (copied into every Job) changed, or the flow's own locks
(`spec.synchronization`: the Jobs ran under the locks it named then, which may guard other work than those
it names now), or its artifact repository (`spec.artifactRepository`: the Jobs store their outputs
where it named then), or its scheduled time (the annotation `workflow.kube-zen.io/scheduled-time`,
which the Jobs rendered as `{{.JobFlow.ScheduledTime}}`). Other edits (a label, `suspend`, the TTL)
keep the Jobs: the retried status write records them.

Held in memory only: a restart between the refused write and the next reconcile loses it (the race needs
an edit within the milliseconds between the creates and the write; a restart there too is not covered).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from zen_flow import planner
from zen_flow.api import JobFlow
from zen_flow.planner.scheduled_time import scheduled_time

# The DeleteJob reason, and the Normal event's reason when it happens.
REASON_STEPS_CHANGED = "StepsChanged"
STEPS_CHANGED = "the flow's steps changed before its start was recorded"


@dataclass(frozen=True)
class _Start:
    inputs: tuple[Any, ...]  # what every first Job was built from beside its step (`_shared`)
    jobs: tuple[tuple[str, str, Any], ...]  # (Job name, step, the step's spec)


def _shared(flow: JobFlow) -> tuple[Any, ...]:
    policy = flow.spec.execution_policy
    return (
        flow.spec.arguments,
        policy.pod_failure_policy if policy is not None else None,
        flow.spec.step_defaults,
        flow.spec.synchronization,
        flow.spec.artifact_repository,
        # What the Jobs rendered as `{{.JobFlow.ScheduledTime}}`: admission refuses a change only once
        # the start is recorded, so an edit in this window would leave the Jobs on another night.
        scheduled_time(flow.metadata),
    )


class FirstJobs:
    """The unrecorded first Jobs of flows, by flow UID, until their start is recorded or they are replaced."""

    def __init__(self) -> None:
        self._starts: dict[str, _Start] = {}

    def unrecorded(
        self, flow: JobFlow, created: Mapping[str, str], actions: Iterable[planner.Action]
    ) -> None:
        """The status write after `created` (Job name -> UID) failed, or those creates got no answer (a
        5xx, a timeout: the Jobs may exist all the same). Added to those recorded already: the flow's
        spec is the one they were built from, or `outdated` would have replaced them first."""
        if flow.status.start_time is not None or not created:
            return
        steps = {a.body["metadata"]["name"]: a.step for a in actions if isinstance(a, planner.CreateJob)}
        specs = {s.name: s for s in flow.spec.steps}
        jobs = tuple((name, steps[name], specs.get(steps[name])) for name in created if name in steps)
        known = self._starts.get(flow.metadata.uid)
        if known is not None:
            jobs = (*(j for j in known.jobs if j[0] not in created), *jobs)
        self._starts[flow.metadata.uid] = _Start(_shared(flow), jobs)

    def outdated(self, flow: JobFlow) -> tuple[planner.DeleteJob, ...]:
        """The deletes of those of `flow`'s first Jobs that its spec no longer describes, else (). The
        record stays until `replaced`: a delete that fails is sent again on the next reconcile."""
        start = self._starts.get(flow.metadata.uid)
        if start is None:
            return ()
        if flow.status.start_time is not None:  # recorded: they are the flow's Jobs now
            del self._starts[flow.metadata.uid]
            return ()
        everything = _shared(flow) != start.inputs
        specs = {s.name: s for s in flow.spec.steps}
        stale = [(name, step) for name, step, spec in start.jobs if everything or specs.get(step) != spec]
        # None stale: no edit of what they were built from, or the cache lags: keep them.
        return tuple(planner.DeleteJob(name, step, STEPS_CHANGED) for name, step in stale)

    def replaced(self, uid: str) -> None:
        """The deletes `outdated` asked for were sent."""
        self._starts.pop(uid, None)

    def forget(self, uid: str) -> None:
        self._starts.pop(uid, None)

    def uids(self) -> list[str]:
        return list(self._starts)
