"""Which flows stand in no line, whatever else they show: the rule the controller's books decide with
first (planner/slot_standing.py's `ended`, planner/lock_holders.py's `declared`), and that `zen-flow get`
applies to a namespace's listed flows before it makes them into models (cli/candidates.py), so that what
it drops is what the books place nowhere.

It takes the few fields it reads, not a JobFlow, so the CLI can try it on a flow as the LIST's bytes hold
it, at a fraction of a model's cost (a namespace that has run for a while holds mostly finished flows).

Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from zen_flow.api.constants import FlowPhase
from zen_flow.planner.interventions import request_id


def out_of_line(
    phase: str | None,
    deleting: bool,
    retry: str | None,
    synchronization: Iterable[object] | None = None,
) -> bool:
    """Does a flow stand in no line for a running-flow slot nor a lock, and hold none (nor host a child)?

    So it does when it is being deleted (`deleting`: a deletionTimestamp), Succeeded, or Failed with no
    rerun asked (`retry`: its `workflow.kube-zen.io/retry` annotation; a Failed flow asked to rerun may be
    reset to contend again, so it may stand in line whether or not it will). For a lock's line
    (`synchronization` given: the flow's own `spec.synchronization` and each of its steps', None where
    unset), so does a flow that declares none at all. A flow it says stands in line may still stand in
    none: the books decide that, from the whole flow."""
    if deleting or phase == FlowPhase.SUCCEEDED:
        return True
    if phase == FlowPhase.FAILED and not request_id(retry or ""):
        return True
    return synchronization is not None and all(s is None for s in synchronization)
