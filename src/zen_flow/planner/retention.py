"""`spec.executionPolicy.jobRetention`: which of a step's attempts keep their Job (and its pods, so logs).

All (the default, also when omitted): every attempt's Job stays until the flow is deleted.
LastAttempt: an attempt superseded by the step's next one (a retry, or a rerun's new attempt: the same
rule) loses its Job, deleted with background propagation like the controller's other deletes, so a step
keeps only its last attempt's Job. Only once the next attempt's Job is seen to exist: a create the
apiserver refused (a quota, a webhook) leaves the step with the logs of the attempt that failed, not none.
A retry served from the memoize cache (planner.memoization) has no Job, and needs none: Succeeded with its
stored outputs, it supersedes the earlier attempts in the plan that serves it.

What is never deleted:
- the step's current attempt's Job (`job_ref`): the one `<step>:` inputs read (planner.readiness.producer),
  and whose outputs a Succeeded step holds; a superseded attempt's outputs are needed by nothing (outputs
  are captured into status from the attempt that completes, and that attempt is never superseded: a
  rerun takes Failed steps only);
- a Job that has not finished (its pods would be killed), or one already being deleted (a timed-out
  attempt's, which the timeout's own delete stops: asked once is enough).

Only the steps a plan walks (`moving`) are looked at: the next attempt's Job is first seen by the plan
after the one that created it, while the step is Running, so no superseded attempt is missed, and a
quiet flow's plan stays free of work. The price: set on a flow that already ran, the policy acts on the
attempts superseded from then on, not on the Jobs of steps that had already settled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from zen_flow.api.constants import JobRetention, StepPhase
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.actions import DeleteJob
from zen_flow.planner.steps import StepWork

# The DeleteJob reason; zen_flow_job_deletes_total counts it as "superseded" (controller.executor).
SUPERSEDED_REASON = "superseded by a later attempt (jobRetention LastAttempt)"


def keeps_last_attempt_only(flow: JobFlow) -> bool:
    policy = flow.spec.execution_policy
    return policy is not None and policy.job_retention == JobRetention.LAST_ATTEMPT


def superseded(
    works: Iterable[StepWork], jobs: Mapping[str, Job], job_name: Callable[[str, int], str]
) -> list[DeleteJob]:
    """The deletes of the finished Jobs of attempts superseded by a later attempt whose Job exists."""
    out: list[DeleteJob] = []
    for w in works:
        ref = w.job_ref
        if w.retry_count == 0:
            continue
        if ref is None and w.phase != StepPhase.SUCCEEDED:  # a Job step has a Job, but when served
            continue
        if ref is not None and (not ref.name or ref.name not in jobs):
            continue
        for attempt in range(w.retry_count):
            name = job_name(w.name, attempt)
            job = jobs.get(name)
            if job is not None and (ref is None or name != ref.name) and job.finished and not job.deleting:
                out.append(DeleteJob(name, w.name, SUPERSEDED_REASON))
    return out
