"""Which changes of a Job a plan can see, so that the ones it cannot wake no reconcile.

A Job's status changes several times while it runs (`active`, `ready`, then `succeeded` or `failed`
counters, `SuccessCriteriaMet` before `Complete`); the planner reads only whether the Job exists (its
UID), whether it finished (`Complete`/`Failed` conditions, with their message), whether it is being
deleted, and when it started. Every other update planned the whole flow again for nothing: two of a
chain step's four reconciles, each O(steps) (docs/BENCHMARKS.md, "Cost as flows grow"). Counters read by
`outputs` (a jsonPath on the Job's status) are read once the Job finished, when they are final.
"""

from __future__ import annotations

from zen_flow.api.job import Job


def plan_sees_change(old: Job, new: Job) -> bool:
    """Could `new` (the same Job's next version) lead to another plan than `old`?"""
    return (
        old.metadata.uid != new.metadata.uid
        or old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        or old.metadata.creation_timestamp != new.metadata.creation_timestamp
        or old.status.start_time != new.status.start_time
        or old.status.conditions != new.status.conditions
    )
