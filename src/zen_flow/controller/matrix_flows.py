"""Each flow as the planner sees it: its effective flow, every matrix step expanded into its items
(core/matrix.py). The expansion is pure but not free (a 256-item step: milliseconds), and a spec only
changes with its generation, so it is remembered per flow and generation, as `Validity` remembers a
flow's errors; a flow without a matrix is the very same object, for one dictionary lookup.

A flow that started keeps the items it started with: its steps cannot change after the start, but where
no admission policy guards it an argument a matrix reads can, and items that vanished (or no longer
expanded) would leave their running Jobs behind and the flow failed under them. A finished flow's entry
is dropped (measured: a 128-item flow's effective spec holds 1.5 MB); a rerun expands it again.
"""

from __future__ import annotations

from zen_flow.api import JobFlow, JobFlowSpec
from zen_flow.api.constants import FlowPhase
from zen_flow.core.matrix import effective_spec
from zen_flow.core.matrix_parameters import describe

_FINISHED = (FlowPhase.SUCCEEDED, FlowPhase.FAILED)


class MatrixFlows:
    def __init__(self) -> None:
        # uid -> (generation, effective spec or None for a flow without a matrix, why it could not be
        # expanded): a flow without one costs a lookup per reconcile (measured: 0.3 us; looking at its
        # 100 steps every time, 8 us).
        self._specs: dict[str, tuple[int, JobFlowSpec | None, tuple[str, ...]]] = {}

    def effective(self, flow: JobFlow) -> tuple[JobFlow, tuple[str, ...]]:
        """`flow` with its effective spec, and the problems of its matrix (empty when it expands, and for
        a started flow this controller saw expand: it keeps those items)."""
        uid, generation = flow.metadata.uid, flow.metadata.generation
        cached = self._specs.get(uid)
        if cached is None or cached[0] != generation:
            spec, problems = effective_spec(flow.spec)
            found = None if spec is flow.spec else spec
            kept = cached[1] if cached is not None and not cached[2] else None
            if kept is not None and flow.status.start_time is not None:
                # The new generation's other fields (suspend, parallelism, ...) with the items it ran.
                found = (found or flow.spec).model_copy(
                    update={"steps": kept.steps, "matrix_groups": kept.matrix_groups}
                )
                problems = ()
            cached = self._specs[uid] = (generation, found, tuple(map(describe, problems)))
        if flow.status.phase in _FINISHED:
            self._specs.pop(uid)
        if cached[1] is None:
            return flow, cached[2]
        return flow.model_copy(update={"spec": cached[1]}), cached[2]

    def forget(self, uid: str) -> None:
        self._specs.pop(uid, None)

    def __len__(self) -> int:
        return len(self._specs)
