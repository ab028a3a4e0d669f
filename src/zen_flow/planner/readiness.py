"""What a step's inputs read from the steps before it, and whether those values are committed yet."""

from __future__ import annotations

from collections.abc import Mapping

from zen_flow.api.job import Job
from zen_flow.planner.outputs import job_document
from zen_flow.planner.parameters import Producer, json_path_sources
from zen_flow.planner.steps import StepWork


def uncommitted(w: StepWork, works: Mapping[str, StepWork]) -> bool:
    """A step `w` reads (a dependency or a `<step>:` input) captured output values in this very plan:
    `w` waits for the next reconcile, so the values are committed in status before it starts (the
    controller creates Jobs before it writes status; the status write itself wakes the flow)."""
    for name in (*w.spec.dependencies, *json_path_sources(w.spec)):
        d = works.get(name)
        if d is not None and d.outputs != (d.old.outputs if d.old is not None else None):
            return True
    return False


def producer(name: str, works: Mapping[str, StepWork], jobs: Mapping[str, Job]) -> Producer | None:
    """What a `<name>:<path>` input reads: the step's last Job's status and its stored outputs."""
    d = works.get(name)
    if d is None:
        return None
    job_name = d.job_ref.name if d.job_ref is not None and d.job_ref.name else None
    job = jobs.get(job_name) if job_name else None
    params = d.outputs.parameters if d.outputs is not None else ()
    return Producer(
        phase=d.phase.value,
        job_name=job_name,
        job_status=job_document(job) if job is not None else None,
        outputs={p.name: p.value for p in params},
    )
