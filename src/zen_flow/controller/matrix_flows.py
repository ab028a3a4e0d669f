"""Each flow as the planner sees it: its effective flow, every matrix step expanded into its items
(core/matrix.py). The expansion is pure but not free (a 256-item step: milliseconds), and a spec only
changes with its generation, so it is remembered per flow and generation, as `Validity` remembers a
flow's errors; a flow without a matrix is the very same object, for one dictionary lookup.

A matrix reading an earlier step's output (`valueFrom.jsonPath`, core/matrix_sources.py) also depends on
the status: the entry holds what the status said of those outputs when it was made (each source's
phase once it ended, and its value), and a reconcile that finds them changed expands again. So the
items appear on the reconcile after the source's output lands (its status write wakes the flow), and
stay as they are after: a source that ended keeps its state (a rerun reruns failed steps, and the
items only exist once the source succeeded). A flow without such a matrix compares nothing more.

A flow that started keeps the items it started with: its steps cannot change after the start, but where
no admission policy guards it an argument a matrix reads can, and items that vanished (or no longer
expanded) would leave their running Jobs behind and the flow failed under them. So its entry keeps the
spec it was expanded from (its *basis*), and every later expansion (a new generation, an output landing)
expands that basis with the current status, taking only the new generation's other fields: the static
matrices keep their items, a matrix reading an output gets its items when the output lands, and the
sources' key is always the one of the status the expansion was made from (a key taken after a kept
expansion would say its stand-in was already expanded, and it never would be).

A finished flow is still reconciled (at startup, at relists, when its Jobs are deleted by its TTL or
retention), and expanding a 256-item flow again each time took 7 ms of the event loop. So the last
`FINISHED_KEPT` finished flows' expansions are kept, least recently used first out, and the others are
dropped (a rerun, or a reconcile after, expands it again). A finished flow without one (most) keeps its
small entry until it is deleted, so that those never push the expansions out. Memory bound: a running
flow's entry lives until it finishes or is deleted, as before; the finished ones' expansions are at most
`FINISHED_KEPT` effective specs (measured: a 256-item flow with a one-container Job template holds
0.9 MB, so about 30 MB for 32 such; larger templates scale it, and 500 steps are the most a flow expands
to).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from zen_flow.api import JobFlow, JobFlowSpec
from zen_flow.api.constants import FlowPhase
from zen_flow.core.matrix import effective_spec
from zen_flow.core.matrix_parameters import describe
from zen_flow.core.matrix_sources import SourceState, source_states, wanted_sources

_FINISHED = (FlowPhase.SUCCEEDED, FlowPhase.FAILED)
FINISHED_KEPT = 32  # finished flows whose expansion is kept (the module's docstring: the memory bound)


class _Entry(NamedTuple):
    generation: int
    spec: JobFlowSpec | None  # None: a flow without a matrix
    problems: tuple[str, ...]  # why it could not be expanded
    wanted: frozenset[tuple[str, str]]  # the outputs its matrices read
    sources: tuple[tuple[tuple[str, str], SourceState], ...]  # what the status said of them
    # The spec it was expanded from: the flow's own of `generation`, or for a started flow the one it
    # started with (an earlier generation's); None for a flow without a matrix.
    basis: JobFlowSpec | None


class MatrixFlows:
    def __init__(self) -> None:
        # uid -> its entry: a flow without a matrix costs a lookup per reconcile (measured: 0.3 us;
        # looking at its 100 steps every time, 8 us).
        self._specs: dict[str, _Entry] = {}
        # The finished flows' entries, the least recently used first.
        self._finished: OrderedDict[str, _Entry] = OrderedDict()

    def due(self, flow: JobFlow) -> Callable[[], _Entry] | None:
        """The expansion `effective(flow)` needs first (pure: a thread may make it, controller/plan_cpu.py),
        None when the one remembered holds."""
        cached = self._specs.get(flow.metadata.uid) or self._finished.get(flow.metadata.uid)
        if cached is None or cached.generation != flow.metadata.generation:
            kept = cached is not None and not cached.problems and flow.status.start_time is not None
            # A started flow keeps the items it started with (the module's docstring).
            return functools.partial(
                self._expand, flow, cached.basis if kept and cached is not None else None
            )
        if cached.wanted:
            sources = tuple(source_states(cached.wanted, flow.status.steps).items())
            if sources != cached.sources:  # an output a matrix reads landed: its items now
                return functools.partial(self._expand, flow, cached.basis)
        return None

    def effective(self, flow: JobFlow, expanded: _Entry | None = None) -> tuple[JobFlow, tuple[str, ...]]:
        """`flow` with its effective spec, and the problems of its matrix (empty when it expands, and for
        a started flow this controller saw expand: it keeps those items). `expanded`: what `due(flow)`
        made, elsewhere; None: expanded here if due."""
        uid = flow.metadata.uid
        finished = flow.status.phase in _FINISHED
        if expanded is not None:
            cached = expanded
        elif (expand := self.due(flow)) is not None:
            cached = expand()
        else:
            cached = self._specs.get(uid) or self._finished[uid]
        if finished and cached.spec is not None:
            # Only expansions take a place here: a finished flow without one (most) is a small entry,
            # and letting those in would push out the expansions the places are for.
            self._specs.pop(uid, None)
            self._finished[uid] = cached
            self._finished.move_to_end(uid)
            if len(self._finished) > FINISHED_KEPT:
                self._finished.popitem(last=False)
        else:  # running, running again (a rerun), or nothing expanded
            self._finished.pop(uid, None)
            self._specs[uid] = cached
        if cached.spec is None:
            return flow, cached.problems
        return flow.model_copy(update={"spec": cached.spec}), cached.problems

    @staticmethod
    def _expand(flow: JobFlow, basis: JobFlowSpec | None) -> _Entry:
        """The entry of `flow` expanded from `basis` (None: from its own spec) and its current status."""
        basis = basis or flow.spec
        spec, problems = effective_spec(basis, flow.status.steps)
        if spec is basis:  # no matrix
            return _Entry(
                flow.metadata.generation, None, tuple(map(describe, problems)), frozenset(), (), None
            )
        if basis is not flow.spec:
            # The new generation's other fields (suspend, parallelism, ...) with the items of its basis.
            spec = flow.spec.model_copy(
                update={
                    "steps": spec.steps,
                    "matrix_groups": spec.matrix_groups,
                    "matrix_verdicts": spec.matrix_verdicts,
                    "matrix_limits": spec.matrix_limits,
                }
            )
        wanted = wanted_sources(basis)
        sources = tuple(source_states(wanted, flow.status.steps).items())
        return _Entry(flow.metadata.generation, spec, tuple(map(describe, problems)), wanted, sources, basis)

    def forget(self, uid: str) -> None:
        self._specs.pop(uid, None)
        self._finished.pop(uid, None)

    def uids(self) -> list[str]:
        return [*self._specs, *self._finished]

    def __len__(self) -> int:
        return len(self._specs) + len(self._finished)
