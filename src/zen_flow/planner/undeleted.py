"""The Jobs of attempts the stored status has ended that still run: every plan deletes them again.

A plan deletes a Job as it ends the Job's attempt before its time (`timeoutSeconds`,
`podPendingTimeoutSeconds`: planner.observation), before its status write. A delete the apiserver refuses
(an admission policy or webhook denying DELETE, missing RBAC, a 5xx, no answer) no longer holds that write
back (controller/executor.py): the status records the attempt ended (its step Retrying, or Failed) while
the Job runs on. Nothing else would stop it: a Retrying or Failed step is never observed again, a retry's
new attempt makes a new Job name, and jobRetention deletes finished Jobs only. So every plan deletes the
live Jobs (not finished, not being deleted) of the attempts the stored status says ended: the Job a
Retrying or Failed step records, and the earlier attempts' Jobs of every step (a later attempt started
meanwhile, or a rerun cleared the step). It is the retry of the refused delete, with the queue's backoff,
for as long as the refusal lasts, and after a restart too.

Read from the stored status only, as jobRetention is (planner.retention): a lost write never recorded the
end, and the next plan, seeing the Job still running past its timeout, ends the attempt again. The Job of
a step's next attempt (a create whose status write was lost: `Observation.adopt` takes it over) is never
one of these: an earlier attempt's name is below the step's count, and a Retrying step records the attempt
that failed. A graceful stop's, held for its write, are deleted again by planner.finale (`delete_again`)
first. An ended flow's (planner.lifecycle `terminal_plan`) are these before they are strays: the status
records them, and a stray's event would say it does not.

A Flow step's child flow can run again, unlike a Job: `zen-flow retry <child>` sets a Failed child
Running. Only a running parent's child that the controller itself deleted is asked for again: the one a
step records whose attempt timed out (the only delete of a child that leaves its parent running: a graceful
stop or the finally grace stops a child, planner.child_stops), or an earlier attempt's that no user has
rerun (its `status.audit.retries` is empty: it never failed, so it ran on past a refused delete). Once the
parent has ended (its plans are `terminal_plan`'s, not a rerun's), nothing of it runs on behind it: every
live child of an ended attempt goes, as a stray would.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zen_flow.api.constants import StepPhase
from zen_flow.api.flow_status import StepStatus
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.naming import job_name
from zen_flow.planner.actions import Action, DeleteJob
from zen_flow.planner.child_job import ChildFlowJob
from zen_flow.planner.create_refusals import unnoted
from zen_flow.planner.events import TIMEOUT_MARK
from zen_flow.planner.memo import MEMO_STEPS, IdentityMemo
from zen_flow.planner.steps import cause_of

# Before the cause the ended attempt's step says (`timed out after 60s`), which names the delete's cause in
# zen_flow_job_deletes_total (controller/job_deletes.py `delete_cause`); an earlier attempt's says none.
ENDED_ATTEMPT = "its attempt ended and the Job still runs"
# The steps whose recorded Job is of an attempt that ended (a Running step's is its current one; a Pending
# step's is none: a rerun clears it).
_ENDED = frozenset({StepPhase.RETRYING, StepPhase.FAILED})
_ATTEMPT_FAILED = re.compile(r"\Aattempt \d+ failed: ")  # how a Retrying step's cause begins


@dataclass(frozen=True, slots=True)
class _Ended:
    """The stored status's Jobs of ended attempts: their names -> (the step, whether the step records it)."""

    flow: str
    jobs: Mapping[str, tuple[StepStatus, bool]]

    @staticmethod
    def of(flow: str, entries: tuple[StepStatus, ...]) -> _Ended:
        jobs: dict[str, tuple[StepStatus, bool]] = {}
        for s in entries:
            current = s.job_ref.name if s.job_ref is not None else None
            for attempt in range(s.retry_count):
                name = job_name(flow, s.name, attempt)
                if name != current:
                    jobs[name] = (s, False)
            if current and s.phase in _ENDED:
                jobs[current] = (s, True)
        return _Ended(flow, jobs)


_ended: IdentityMemo[_Ended] = IdentityMemo(MEMO_STEPS)


def undeleted(
    flow: JobFlow, jobs: Mapping[str, Job], planned: Iterable[Action] = (), *, flow_ended: bool = False
) -> list[DeleteJob]:
    """The deletes of the live Jobs of attempts the stored status has ended (the module's docstring), not
    those `planned` deletes already. `flow_ended`: the plan of a flow that has ended (planner.lifecycle
    `terminal_plan`), whose every live child goes. A plan costs a look at each of the flow's Jobs; the
    index of the status is derived once per status write (by identity: planner.memo)."""
    live = [name for name, job in jobs.items() if not job.finished and not job.deleting]
    if not live:
        return []
    name, entries = flow.metadata.name, flow.status.steps
    ended = _ended.get(entries, lambda: _Ended.of(name, entries))
    if ended.flow != name:
        ended = _Ended.of(name, entries)
    found = [job for job in live if job in ended.jobs]
    if not found:
        return []
    deleted = {a.name for a in planned if isinstance(a, DeleteJob)}
    out: list[DeleteJob] = []
    for job in found:
        step, recorded = ended.jobs[job]
        if job in deleted:
            continue
        ref = step.job_ref
        uid = jobs[job].metadata.uid
        if recorded and ref is not None and ref.uid and uid and ref.uid != uid:
            continue  # not the Job the step records: someone else's under its name
        cause = cause_of(unnoted(step.message) or "") if recorded else ""
        child = jobs[job]
        if isinstance(child, ChildFlowJob) and not flow_ended and not _deleted_child(child, recorded, cause):
            continue  # a child a user reran, or one that ended on its own: not ours to stop
        out.append(DeleteJob(job, step.name, f"{ENDED_ATTEMPT}: {cause}" if cause else ENDED_ATTEMPT))
    return out


def _deleted_child(child: ChildFlowJob, recorded: bool, cause: str) -> bool:
    """Did the controller delete this live child of a running parent (the module's docstring)? The one
    its step records, when the step's attempt timed out; an earlier attempt's, when no user reran it."""
    if recorded:
        return _ATTEMPT_FAILED.sub("", cause, count=1).startswith(TIMEOUT_MARK)
    audit = child.child.status.audit if child.flow is not None else None
    return audit is None or not audit.retries
