"""`spec.executionPolicy.parallelism`: at most that many of the flow's Job steps run at once (and a
matrix's `maxParallel`: at most that many of its items).

A Job step counts while its current attempt's Job exists and has not finished (a Job held suspended by
a queue such as Kueue counts too: it holds its place in that queue), and so does every Job the plan
itself creates. Manual gates waiting for a decision and steps waiting for their retry backoff run
nothing, so they do not count; a due retry needs a free place like any other start.

Ready steps held back by the limit keep their phase (Pending, or Retrying for a due retry) and say why
in their message (`wait`); when places free up, the held steps start in spec order. A held step's own
`timeoutSeconds` does not run (it counts from its Job's creation); the flow's activeDeadlineSeconds does.

A matrix step's `maxParallel` (`spec.matrix_limits`, core/matrix.py) is the same limit on its items
alone, counted the same way and held beside the flow's: an item starts only when both leave room, and
a held item says which one holds it (the flow's when both do).

A memoized step runs no Job when its cache has its result, so it takes no place for that: its cache is
read as soon as it is ready, slot or not (planner.starts). A miss is said in its held message (`MISSED`),
the status being the only memory a plan has: the plans that follow neither read its cache nor decide its
`when` again until its slot, where the cache is read once more (a result stored meanwhile is served).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from zen_flow.api.constants import StepPhase
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.steps import StepWork, bound

# How a held step's message begins; `status` finds the held steps by it (a Retrying step keeps, after
# it, why its last attempt failed).
WAITING = "waiting for a slot: "
FLOW_WAITING = WAITING + "parallelism "  # held by executionPolicy.parallelism, not a matrix's maxParallel
# After the reason, on a held memoized step whose cache was read when it became ready, without a result.
MISSED = " (no memoized result yet)"


def parallelism_of(flow: JobFlow) -> int | None:
    """The limit, or None: no limit (unset, or an invalid value the validator refuses)."""
    policy = flow.spec.execution_policy
    limit = policy.parallelism if policy is not None else None
    return limit if limit is not None and limit >= 1 else None


class Holder(NamedTuple):
    """The limit that holds a step: the flow's parallelism (`group` None) or a matrix's maxParallel."""

    limit: int
    group: str | None = None


def item_limits(flow: JobFlow) -> dict[str, Holder]:
    """Each item of a matrix step with `maxParallel` -> that limit, by its matrix step's name."""
    spec = flow.spec
    if not spec.matrix_limits:
        return {}
    return {
        item: Holder(limit, group)
        for group, limit in spec.matrix_limits.items()
        for item in spec.matrix_groups.get(group, ())
    }


def running(works: Iterable[StepWork], jobs: Mapping[str, Job]) -> int:
    """Job steps that take a place: Running, with their Job not finished. One whose Job the status does
    not find yet counts (the plan that created it left it so)."""
    count = 0
    for w in works:
        if w.phase == StepPhase.RUNNING:
            job = jobs.get(w.job_ref.name or "") if w.job_ref is not None else None
            count += job is None or not job.finished
    return count


def wait(message: str | None, holder: Holder, missed: bool = False) -> str:
    """`message` of a step held by `holder`: the reason first (`missed`: and that its cache has no
    result), what it said before (a failed attempt's error) after it; unchanged when already said so, so
    a held step costs no status write."""
    which = "parallelism" if holder.group is None else f"matrix {holder.group} maxParallel"
    reason = f"{WAITING}{which} {holder.limit} reached{MISSED if missed else ''}"
    rest = unwait(message)
    return bound(f"{reason}; {rest}") if rest else reason


def unwait(message: str | None) -> str | None:
    """`message` without the reason `wait` put first."""
    if message is None or not message.startswith(WAITING):
        return message
    _, _, rest = message.partition("; ")
    return rest or None


def waiting(message: str | None) -> bool:
    return message is not None and message.startswith(WAITING)


def flow_waiting(message: str | None) -> bool:
    """Is the step held by the flow's parallelism (not by a matrix's maxParallel)?"""
    return message is not None and message.startswith(FLOW_WAITING)


def missed(message: str | None) -> bool:
    """Does the held step's message say its cache was read, without a result (`wait`'s `missed`)?"""
    return message is not None and message.startswith(WAITING) and message.partition("; ")[0].endswith(MISSED)
