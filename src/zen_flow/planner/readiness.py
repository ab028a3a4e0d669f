"""Whether a step may run after its dependencies (its `dependencyPolicy`), what its inputs read from the
steps before it, and whether those values exist and are committed yet.

`dependencyPolicy` (a step without dependencies has nothing to judge and is ready):
  AllSucceeded (default)  every dependency Succeeded, or Failed with continueOnFailure (or allowFailure,
                          which implies it, here and below); the first one Skipped skips the step (the
                          original's rule, kept when the field is omitted);
  SucceededOrSkipped      every dependency ended: Succeeded, Skipped, or Failed with continueOnFailure;
                          the step runs even when all were Skipped (its own `when` can test their phases);
  AnySucceeded            every dependency ended and at least one Succeeded; Skipped otherwise.
Whatever the policy, a dependency Failed for good (without continueOnFailure, or allowFailure which
implies it) skips the step: the flow is failing (fail-fast), and a join must not turn a failure into a
run. Finally steps do not fail-fast each other: a finally dependency that failed counts as if it had
continueOnFailure (the cleanup after a failed cleanup still runs; its `when` can test the phase).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from zen_flow.api.constants import DependencyPolicy, StepPhase
from zen_flow.api.job import Job
from zen_flow.api.jobflow import Step
from zen_flow.core.jsonpath import JsonPathError, parse
from zen_flow.core.matrix_items import aggregate
from zen_flow.planner.outputs import job_document
from zen_flow.planner.parameters import Producer, json_path_sources
from zen_flow.planner.steps import StepWork, Works


def dependency_verdict(
    w: StepWork, works: Mapping[str, StepWork], unsettled: Collection[str]
) -> tuple[bool, str | None]:
    """(ready, why it can never run) of the Pending step `w`, by its dependencies' phases; those in
    `unsettled` count as still running whatever their phase."""
    policy = w.spec.dependency_policy or DependencyPolicy.ALL_SUCCEEDED
    strict = policy == DependencyPolicy.ALL_SUCCEEDED
    ready = True
    succeeded = 0
    judged = 0
    for dep in w.spec.dependencies:
        d = works.get(dep)
        if d is None or d is w:
            continue  # unknown names are the validator's business; the plan's shape rejects them
        judged += 1
        if dep in unsettled:
            ready = False
        elif d.phase == StepPhase.SKIPPED:
            if strict:
                return False, f"dependency {dep} was skipped"
        elif d.phase == StepPhase.FAILED:
            if not d.spec.goes_on_after_failure and not d.spec.is_finally:
                return False, f"dependency {dep} failed"
        elif d.phase == StepPhase.SUCCEEDED:
            succeeded += 1
        else:
            ready = False
    if ready and judged and not succeeded and policy == DependencyPolicy.ANY_SUCCEEDED:
        return False, "none of its dependencies succeeded (dependencyPolicy AnySucceeded)"
    return ready, None


def skipped_input(step: Step, works: Mapping[str, StepWork]) -> str | None:
    """Why `step` cannot be built: an input reads the outputs of a step that was Skipped (reachable only
    past a dependencyPolicy that lets a Skipped dependency through). Those outputs do not exist; the step
    fails naming them rather than run on something else. None: no such input."""
    inputs = step.inputs
    if inputs is None:
        return None
    for param in inputs.parameters:
        source = param.value_from.json_path if param.value_from is not None else None
        if param.value is not None or not source or source.startswith("$"):
            continue
        ref, colon, path = source.partition(":")
        if colon and _skipped(ref, works):
            what = _output_named(path)
            return (
                f"input parameter {param.name} reads {what} of step {ref} ({source}), "
                f"but step {ref} was skipped and has no outputs"
            )
    for artifact in inputs.artifacts:
        if artifact.from_ is None or artifact.http is not None or artifact.s3 is not None:
            continue
        ref, _, name = artifact.from_.partition("/")
        if _skipped(ref, works):
            what = f"artifact {name}" if name else "its artifact"
            return (
                f"input artifact {artifact.name} reads {what} of step {ref} ({artifact.from_}), "
                f"but step {ref} was skipped and has no outputs"
            )
    return None


def _skipped(name: str, works: Mapping[str, StepWork]) -> bool:
    d = works.get(name)
    return d is not None and d.phase == StepPhase.SKIPPED


def _output_named(path: str) -> str:
    try:
        segments = parse(path)
    except JsonPathError:
        return "a value"
    if segments[:2] == ("outputs", "parameters") and len(segments) > 2 and isinstance(segments[2], str):
        return f"output parameter {segments[2]}"
    return "the Job status"


def uncommitted(w: StepWork, works: Works) -> bool:
    """A step `w` reads (a dependency or a `<step>:` input) captured output values in this very plan:
    `w` waits for the next reconcile, so the values are committed in status before it starts (the
    controller creates Jobs before it writes status; the status write itself wakes the flow). A finally
    step's `when` may read every step: those that are not finally ended in the stored status before it
    may start (planner.finale), their outputs with them; it waits while another finally step got its
    outputs in this plan."""
    if w.spec.is_finally and w.spec.when is not None:
        # A step that got outputs in this plan moved in it: the others need not be read.
        names: Iterable[str] = [n for n, d in works.moving.items() if n != w.name and d.spec.is_finally]
    else:
        names = (*w.spec.dependencies, *json_path_sources(w.spec))
    for name in names:
        d = works.get(name)
        if d is not None and d.outputs != (d.old.outputs if d.old is not None else None):
            return True
    return False


def producer(
    name: str,
    works: Mapping[str, StepWork],
    jobs: Mapping[str, Job],
    groups: Mapping[str, tuple[str, ...]] | None = None,
) -> Producer | None:
    """What a `<name>:<path>` input reads: the step's last Job's status and its stored outputs; of a
    matrix step (`groups`: the effective flow's, core/matrix.py), its items' outputs as JSON arrays."""
    d = works.get(name)
    if d is None:
        items = groups.get(name) if groups else None
        return matrix_producer(items, works) if items else None
    job_name = d.job_ref.name if d.job_ref is not None and d.job_ref.name else None
    job = jobs.get(job_name) if job_name else None
    params = d.outputs.parameters if d.outputs is not None else ()
    return Producer(
        phase=d.phase.value,
        job_name=job_name,
        job_status=job_document(job) if job is not None else None,
        outputs={p.name: p.value for p in params},
    )


def matrix_producer(items: tuple[str, ...], works: Mapping[str, StepWork]) -> Producer:
    """A matrix step as a `<step>:` input reads it once all its items ended: no Job status (admission
    refuses a path into one), and each output parameter its items declare as a JSON array of their
    values in index order, null for an item with none (skipped, or failed and continued). Its phase is
    Failed when an item failed, else Succeeded; while an item has not ended, that item's phase."""
    found = [works[item] for item in items if item in works]
    waiting = next((d for d in found if not d.phase.terminal), None)
    if waiting is not None:
        return Producer(phase=waiting.phase.value, job_name=None, job_status=None, outputs={})
    names = [p.name for p in found[0].spec.outputs.parameters] if found and found[0].spec.outputs else []
    stored = [{p.name: p.value for p in d.outputs.parameters} if d.outputs is not None else {} for d in found]
    failed = any(d.phase == StepPhase.FAILED for d in found)
    return Producer(
        phase=(StepPhase.FAILED if failed else StepPhase.SUCCEEDED).value,
        job_name=None,
        job_status=None,
        outputs={name: aggregate([values.get(name) for values in stored]) for name in names},
    )
