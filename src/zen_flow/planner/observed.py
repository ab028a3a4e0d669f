"""Which changes of a Job a plan can see, so that the ones it cannot wake no reconcile.

A Job's status changes several times while it runs (`startTime` and `active`, `ready`, then the
`succeeded` or `failed` counters, `SuccessCriteriaMet` or `FailureTarget` before `Complete` or `Failed`);
the planner reads only whether the Job exists (its UID), whether it finished (the `Complete` and `Failed`
conditions, with their reason, message and time), whether it is held suspended or was resumed (the
`Suspended` condition and its time), whether it is being deleted, and when it was created (a step's
timeout counts from then, or from the last resume; the Job's `startTime` stands in only for a Job without
a creation time, which the apiserver never sends). Every other update planned the whole flow again for
nothing: first the counters' updates, then the start time's and `SuccessCriteriaMet`'s, 2 of the 4.9
plans per step of a chain (docs/BENCHMARKS.md, "Cost as flows grow", "Job updates a plan cannot see").
What `outputs` read from the Job's status (a jsonPath) is read once the Job finished, when it is final.
The interim conditions are read only by a plan made once the step's timeout has passed (a Job decided
before it is not ended by it: planner/job_verdicts.py): the timeout's own wake-up makes that plan, which
asks for a wake-up of its own for what follows, so their updates need no plan either.
"""

from __future__ import annotations

from zen_flow.api.job import JOB_COMPLETE, JOB_FAILED, JOB_SUSPENDED, Job

READ_CONDITIONS = (JOB_COMPLETE, JOB_FAILED, JOB_SUSPENDED)
"""The Job conditions whose change a plan reads (zen_flow.planner.observation; the interim ones only at
a step's timeout, see the module)."""


def plan_sees_change(old: Job, new: Job) -> bool:
    """Could `new` (the same Job's next version) lead to another plan than `old`?"""
    return (
        old.metadata.uid != new.metadata.uid
        or old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        or old.metadata.creation_timestamp != new.metadata.creation_timestamp
        or (new.metadata.creation_timestamp is None and old.status.start_time != new.status.start_time)
        or any(old.condition(kind) != new.condition(kind) for kind in READ_CONDITIONS)
    )
