"""The flow's steps by name, their dependency graph and who comes before whom.

Built once per validation so that every per-step rule (dependencies, `when`, jsonPath and artifact
references) is a dictionary lookup or a bit test: a 500-step flow must validate in milliseconds, so
nothing here is quadratic. "Comes before" is a bitset of ancestors per step, computed in topological
order (one OR per edge).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zen_flow.core.dag import CycleError, Graph
from zen_flow.validation.errors import Path


@dataclass(frozen=True)
class StepIndex:
    paths: Mapping[str, Path]  # step name -> path of its first declaration
    # Steps without output artifacts have no entry in these two.
    output_artifacts: Mapping[str, frozenset[str]]
    stored_artifacts: Mapping[str, frozenset[str]]  # those with s3: the only ones a later step can fetch
    output_parameters: Mapping[str, frozenset[str]]  # steps without any have no entry
    graph: Graph
    cycle: tuple[str, ...] | None
    _bits: Mapping[str, int]
    _ancestors: Mapping[str, int] | None  # None when the graph has a cycle
    final: frozenset[str] = frozenset()  # the finally steps (`finally: true`)
    memoized: frozenset[str] = frozenset()  # the steps with `memoize` (a cache hit runs no Job)
    # The matrix steps of the stored flow, each with its items (core/matrix.py); the index itself is of
    # the effective flow, so these names are in no other member.
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.paths

    def precedes(self, earlier: str, later: str) -> bool | None:
        """Does `later` (transitively) depend on `earlier`? None when unknown (a cycle). A finally step
        comes after every step that is not finally, as if it depended on them all. A matrix step comes
        before `later` when each of its items does."""
        if self.groups and (items := self.groups.get(earlier)) is not None:
            found = [self.precedes(item, later) for item in items]
            return None if None in found else all(found)
        if self.final and later in self.final and earlier in self.paths and earlier not in self.final:
            return True
        if self._ancestors is None:
            return None
        bit = self._bits.get(earlier)
        return bit is not None and bool(self._ancestors.get(later, 0) & bit)


def _dependency_names(deps: Any) -> list[str]:
    if not isinstance(deps, list | tuple):
        return []
    return [d for d in deps if isinstance(d, str)]


def _artifact_names(outputs: Any, stores_all: bool) -> tuple[frozenset[str], frozenset[str]]:
    """The names of well-formed output artifacts (a mapping with a string name), and of those stored
    (with `s3`, or all of them: `stores_all`, the flow's artifact repository stores the others)."""
    artifacts = outputs.get("artifacts") if isinstance(outputs, dict) else None
    if not isinstance(artifacts, list | tuple):
        return frozenset(), frozenset()
    named = [a for a in artifacts if isinstance(a, dict) and isinstance(a.get("name"), str)]
    stored = (a["name"] for a in named if stores_all or isinstance(a.get("s3"), dict))
    return frozenset(a["name"] for a in named), frozenset(stored)


def _parameter_names(outputs: Any) -> frozenset[str]:
    params = outputs.get("parameters") if isinstance(outputs, dict) else None
    if not isinstance(params, list | tuple):
        return frozenset()
    return frozenset(p["name"] for p in params if isinstance(p, dict) and isinstance(p.get("name"), str))


def _ancestors(graph: Graph, bits: Mapping[str, int], order: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in order:
        acc = 0
        for dep in graph.deps[name]:
            acc |= out[dep] | bits[dep]
        out[name] = acc
    return out


def _declared_order(graph: Graph) -> tuple[str, ...] | None:
    """The declaration order when every step comes after its dependencies (as flows are usually written,
    and then no sort is needed), else None."""
    seen: set[str] = set()
    for name in graph.nodes:
        if not seen.issuperset(graph.deps[name]):
            return None
        seen.add(name)
    return graph.nodes


def build_index(
    steps: Sequence[tuple[Path, Mapping[str, Any]]],
    groups: Mapping[str, tuple[str, ...]] | None = None,
    *,
    stores_all: bool = False,
) -> StepIndex:
    """`steps` are the well-formed step objects with their paths (names already checked elsewhere);
    `groups`: the flow's matrix steps and their items, when it has any; `stores_all`: the flow has an
    artifact repository, which stores every output artifact without `s3`."""
    paths: dict[str, Path] = {}
    outputs: dict[str, frozenset[str]] = {}
    stored: dict[str, frozenset[str]] = {}
    parameters: dict[str, frozenset[str]] = {}
    edges: list[tuple[str, list[str]]] = []
    final: set[str] = set()
    memoized: set[str] = set()
    # By identity: the webhook decodes equal outputs of different steps as one object (decode_spec).
    names_of: dict[int, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {}
    for path, step in steps:
        name = step.get("name")
        if not isinstance(name, str) or not name or name in paths:
            continue
        paths[name] = path
        if step.get("finally") is True:
            final.add(name)
        if step.get("memoize") is not None:
            memoized.add(name)
        if (declared := step.get("outputs")) is not None:  # most have none: no entry (readers use .get)
            if (names := names_of.get(id(declared))) is None:
                names = names_of[id(declared)] = (
                    *_artifact_names(declared, stores_all),
                    _parameter_names(declared),
                )
            if names[0]:
                outputs[name], stored[name] = names[0], names[1]
            if names[2]:
                parameters[name] = names[2]
        deps = step.get("dependencies")
        edges.append((name, [] if deps is None else _dependency_names(deps)))
    for group, items in (groups or {}).items():
        # What a dependent reads of a matrix step: its items' output parameters, as JSON arrays.
        if (declared_by_item := parameters.get(items[0])) is not None:
            parameters[group] = declared_by_item
    graph = Graph.build(edges)
    bits = {name: 1 << i for i, name in enumerate(graph.nodes)}
    ancestors: dict[str, int] | None = None
    found: tuple[str, ...] | None = None
    try:
        ancestors = _ancestors(graph, bits, _declared_order(graph) or graph.topological_order())
    except CycleError as err:  # topological_order looks for a cycle only if there is one
        found = err.cycle
    return StepIndex(
        paths=paths,
        output_artifacts=outputs,
        stored_artifacts=stored,
        output_parameters=parameters,
        graph=graph,
        cycle=found or None,
        _bits=bits,
        _ancestors=ancestors,
        final=frozenset(final),
        memoized=frozenset(memoized),
        groups=groups or {},
    )
