"""`spec.executionPolicy.jobRetention`: which of a step's attempts keep their Job (and its pods, so logs).

All (the default, also when omitted): every attempt's Job stays until the flow is deleted.
LastAttempt: an attempt superseded by the step's next one (a retry, or a rerun's new attempt: the same
rule) loses its Job, deleted with background propagation like the controller's other deletes, so a step
keeps only its last attempt's Job. Only once the status the plan read (the stored one) records the later
attempt, and its Job is seen to exist: a create the apiserver refused (a quota, a webhook) leaves the step
with the logs of the attempt that failed, not none, and so does a rerun whose request is withdrawn before
its status write lands (the step stays Failed at its earlier attempt).
A retry served from the memoize cache (planner.memoization) has no Job, and needs none: it supersedes the
earlier attempts once the stored status holds it Succeeded (a served rerun whose write is lost, its request
withdrawn, leaves the step Failed at the attempt whose Job it records).
FailedOnly: LastAttempt, and the Job of a step that Succeeded goes too once nothing needs it (`released`),
so what a flow leaves in the cluster is the Jobs of the steps that failed (their last attempt, for
`kubectl logs`) and those still running: Argo's `podGC: OnPodSuccess`, for Jobs. Named for what stays, as
the other two are.

What is never deleted:
- the step's current attempt's Job (`job_ref`) under LastAttempt: the one `<step>:` inputs read
  (planner.readiness.producer), and whose outputs a Succeeded step holds; a superseded attempt's outputs
  are needed by nothing (outputs are captured into status from the attempt that completes, and that
  attempt is never superseded: a rerun takes Failed steps only);
- under FailedOnly, a Succeeded step's Job until:
  - the status the plan read (the stored one) holds the success, with its outputs: never on the plan that
    sees the Job complete, whose write may be lost (the next plan captures the outputs again from the Job);
  - every step whose inputs read it (`<step>:` JSONPath sources, `readers`) has started or been decided in
    that status (its Job built from this one). One that reads the Job's own status (a path not under
    `$.outputs`) reads it again at its next attempt, a rerun's included: the Job stays until that reader
    Succeeded (a finally reader is rerun whatever its outcome), or until the flow did (nothing reruns a
    Succeeded flow). One that reads only stored outputs reads the status, never the Job. Memoization
    reads nothing more: a memoized reader's key comes from its inputs when it starts and when it stores
    its result, in the plan that marks it Succeeded, both while this rule keeps the Job;
  - the Job is the one the step records (its uid), and has completed;
  a Flow step's child flow is never deleted (it has no Job; its parent's TTL, or its own, decides). With
  the log archive on, the controller holds any delete of a finished Job whose logs are not written yet
  (planner.archive_logs.logs_hold): these too.
- a Job that has not finished (its pods would be killed), or one already being deleted (a timed-out
  attempt's, which the timeout's own delete stops: asked once is enough).

A step whose Job this policy deleted stays Succeeded: a settled step is never observed again, so no plan
looks for its Job (a restart, a rerun, which takes Failed steps only, and a lost write alike: the status
that holds the success is the one stored).

Both are found from the stored status, not from the steps a plan walks: a settled step is never walked
again, and a later attempt may settle before any plan saw it run (the plan that created its Job lost its
status write; the next one took it over and marked it Succeeded), its earlier attempts then superseded by
no step a plan walks. The flow's Jobs, which every plan indexes already, are looked up against the stored
status's earlier attempts' Job names and its Succeeded steps' Jobs, indexed once per status write (by
identity: planner.memo). A plan costs one lookup per Job left, and few are left (under FailedOnly: those
running, failed, or still needed); a flow that has ended does the same (planner.lifecycle). Set on a flow
that already ran, the policy acts on the Jobs it left too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zen_flow.api.constants import KIND, FlowPhase, JobRetention, StepPhase
from zen_flow.api.flow_status import StepStatus
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow, Step
from zen_flow.core.jsonpath import JsonPathError, parse
from zen_flow.core.naming import job_name
from zen_flow.planner.actions import Action, DeleteJob
from zen_flow.planner.memo import MEMO_STEPS, IdentityMemo
from zen_flow.planner.parameters import json_path_reads
from zen_flow.planner.shape import shape_of

# The DeleteJob reasons; zen_flow_job_deletes_total counts a superseded attempt's as "superseded", a
# Succeeded step's as "succeeded" (controller.executor).
SUPERSEDED_REASON = "superseded by a later attempt (jobRetention LastAttempt)"
SUPERSEDED_FAILED_ONLY = "superseded by a later attempt (jobRetention FailedOnly)"
RELEASED_REASON = "its step succeeded and nothing needs the Job any more (jobRetention FailedOnly)"
RETENTION_REASONS = frozenset({SUPERSEDED_REASON, SUPERSEDED_FAILED_ONLY, RELEASED_REASON})

# A reader in one of these has started or been decided; any other phase (Pending, or one this version
# does not know) may still build its Job from the step's.
_STARTED = frozenset(
    {
        StepPhase.RUNNING,
        StepPhase.RETRYING,
        StepPhase.PENDING_APPROVAL,
        StepPhase.SUCCEEDED,
        StepPhase.FAILED,
        StepPhase.SKIPPED,
    }
)


def retention_of(flow: JobFlow) -> str:
    policy = flow.spec.execution_policy
    return (policy.job_retention if policy is not None else None) or JobRetention.ALL


def retention_deletes(
    flow: JobFlow, jobs: Mapping[str, Job], planned: Iterable[Action] = ()
) -> list[DeleteJob]:
    """The deletes the flow's jobRetention asks of a plan that read `jobs` (`planned`: its deletes so far,
    not asked twice); none under All. The same for a running flow's plan and an ended one's."""
    retention = retention_of(flow)
    if retention == JobRetention.LAST_ATTEMPT:
        return superseded(flow, jobs, planned)
    if retention != JobRetention.FAILED_ONLY:
        return []
    out = superseded(flow, jobs, planned, SUPERSEDED_FAILED_ONLY)
    return out + released(flow, jobs, (*planned, *out))


def superseded(
    flow: JobFlow, jobs: Mapping[str, Job], planned: Iterable[Action] = (), reason: str = SUPERSEDED_REASON
) -> list[DeleteJob]:
    """The deletes of the finished Jobs of attempts the stored status has superseded (the module's
    docstring), not those `planned` deletes already."""
    if not jobs:
        return []
    stored = _stored_of(flow)
    found = [name for name in jobs if name in stored.earlier] if stored.earlier else []
    if not found:
        return []
    deleted = {a.name for a in planned if isinstance(a, DeleteJob)}
    out: list[DeleteJob] = []
    for name in found:
        job, step = jobs[name], stored.earlier[name]
        if name in deleted or not job.finished or job.deleting:
            continue
        ref = step.job_ref
        # A later attempt that has a Job supersedes once that Job is seen: a create the apiserver refused
        # leaves the logs of the attempt that failed. One served from the memoize cache has no Job, and
        # supersedes once its success is stored.
        if step.phase == StepPhase.SUCCEEDED or (ref is not None and ref.name in jobs):
            out.append(DeleteJob(name, step.name, reason))
    return out


@dataclass(frozen=True, slots=True)
class Reader:
    """A step whose inputs read another's document (`<step>:<path>`)."""

    step: str
    job: bool  # a path into the Job's own status (not only `$.outputs`, the stored values)
    final: bool  # a finally step: a rerun runs it again whatever its outcome


def _reads_job(path: str) -> bool:
    """Does the JSONPath (after `<step>:`) read the Job's status rather than the stored outputs? One that
    does not parse fails its step (planner.parameters); counted as reading the Job all the same."""
    try:
        segments = parse(path)
    except JsonPathError:
        return True
    return not segments or segments[0] != "outputs"


def _derive_readers(steps: tuple[Step, ...]) -> Mapping[str, tuple[Reader, ...]]:
    found: dict[str, dict[str, Reader]] = {}
    for step in steps:
        for ref, rest in json_path_reads(step):
            seen = found.setdefault(ref, {})
            old = seen.get(step.name)
            job = _reads_job(rest) or (old is not None and old.job)
            seen[step.name] = Reader(step.name, job, step.is_finally)
    return {ref: tuple(readers.values()) for ref, readers in found.items()}


_readers: IdentityMemo[Mapping[str, tuple[Reader, ...]]] = IdentityMemo(MEMO_STEPS)


def readers(steps: tuple[Step, ...]) -> Mapping[str, tuple[Reader, ...]]:
    """step -> the steps whose inputs read it, by the identity of the spec's step tuple."""
    return _readers.get(steps, lambda: _derive_readers(steps))


@dataclass(frozen=True, slots=True)
class _Stored:
    """A status's step entries by name, its Succeeded Job steps by the name of the Job they record, and
    the entries that record a later attempt by the names of the Jobs of their earlier ones (`earlier`)."""

    flow: str
    steps: Mapping[str, StepStatus]
    succeeded: Mapping[str, StepStatus]
    earlier: Mapping[str, StepStatus]

    @staticmethod
    def of(flow: str, entries: tuple[StepStatus, ...]) -> _Stored:
        succeeded = {
            s.job_ref.name: s
            for s in entries
            if s.phase == StepPhase.SUCCEEDED
            and s.job_ref is not None
            and s.job_ref.name
            and s.job_ref.kind != KIND  # a Flow step's child flow
        }
        earlier: dict[str, StepStatus] = {}
        for s in entries:
            current = s.job_ref.name if s.job_ref is not None else None
            for attempt in range(s.retry_count):
                name = job_name(flow, s.name, attempt)
                if name != current:
                    earlier[name] = s
        return _Stored(flow, {s.name: s for s in entries}, succeeded, earlier)


_stored: IdentityMemo[_Stored] = IdentityMemo(MEMO_STEPS)


def _stored_of(flow: JobFlow) -> _Stored:
    """The stored status's index, derived once per status write (by identity: planner.memo)."""
    name, entries = flow.metadata.name, flow.status.steps
    found = _stored.get(entries, lambda: _Stored.of(name, entries))
    return found if found.flow == name else _Stored.of(name, entries)


def released(flow: JobFlow, jobs: Mapping[str, Job], planned: Iterable[Action] = ()) -> list[DeleteJob]:
    """The deletes of the finished Jobs of steps the stored status holds Succeeded that nothing needs any
    more (the module's docstring), not those `planned` deletes already."""
    if not jobs:
        return []
    stored = _stored_of(flow)
    found = [name for name in jobs if name in stored.succeeded] if stored.succeeded else []
    if not found:
        return []
    deleted = {a.name for a in planned if isinstance(a, DeleteJob)}
    specs = shape_of(flow).specs
    index = readers(flow.spec.steps)
    reruns = flow.status.phase != FlowPhase.SUCCEEDED
    out: list[DeleteJob] = []
    for name in found:
        job, step = jobs[name], stored.succeeded[name]
        spec = specs.get(step.name)
        if spec is None or spec.is_flow or name in deleted or not job.complete or job.deleting:
            continue
        uid = step.job_ref.uid if step.job_ref is not None else None
        if uid and job.metadata.uid and uid != job.metadata.uid:
            continue  # not the Job the step records: someone else's under its name
        if any(_needs(r, stored.steps.get(r.step), reruns) for r in index.get(step.name, ())):
            continue
        out.append(DeleteJob(name, step.name, RELEASED_REASON))
    return out


def _needs(reader: Reader, status: StepStatus | None, reruns: bool) -> bool:
    """May `reader` (its stored `status`) still build a Job from the step's?"""
    phase = status.phase if status is not None else StepPhase.PENDING
    if phase not in _STARTED:
        return True
    if not reader.job or not reruns:
        return False
    return phase != StepPhase.SUCCEEDED or reader.final
