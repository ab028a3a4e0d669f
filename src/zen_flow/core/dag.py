"""The step graph of a JobFlow: deterministic topological order and cycle detection.

Order is Kahn's algorithm with ties broken by the steps' position in `spec.steps`, so the same flow
always yields the same order (the original used Go map iteration, which is random).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class CycleError(ValueError):
    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__("dependency cycle: " + " -> ".join(self.cycle))


@dataclass(frozen=True)
class Graph:
    """Nodes in declaration order; `deps[n]` are the nodes `n` waits for (unknown names dropped)."""

    nodes: tuple[str, ...]
    deps: Mapping[str, tuple[str, ...]]

    @classmethod
    def build(cls, edges: Sequence[tuple[str, Sequence[str]]]) -> Graph:
        """`edges` is `[(node, its dependencies), ...]`; duplicates keep the first; empty deps skipped."""
        nodes: list[str] = []
        deps: dict[str, tuple[str, ...]] = {}
        for name, needs in edges:
            if name in deps:
                continue
            nodes.append(name)
            deps[name] = tuple(dict.fromkeys(needs))
        # Filtered only where a name is unknown (or empty): a 500-step flow usually has none, and a
        # generator per step was a fifth of building its graph.
        unknown = set().union(*deps.values()).difference(deps)
        if "" in deps:
            unknown.add("")  # never a dependency, even where a caller named a node so
        if unknown:
            for n, ds in deps.items():
                if not unknown.isdisjoint(ds):
                    deps[n] = tuple(d for d in ds if d not in unknown)
        return cls(tuple(nodes), deps)

    def dependents(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {n: [] for n in self.nodes}
        for node in self.nodes:
            for dep in self.deps[node]:
                out[dep].append(node)
        return {n: tuple(v) for n, v in out.items()}

    def topological_order(self, dependents: Mapping[str, Sequence[str]] | None = None) -> tuple[str, ...]:
        """Dependencies before dependents; raises `CycleError` naming one cycle. `dependents`: this
        graph's `dependents()`, when the caller has them already."""
        position = {n: i for i, n in enumerate(self.nodes)}
        indegree = {n: len(self.deps[n]) for n in self.nodes}
        if dependents is None:
            dependents = self.dependents()
        ready = [(position[n], n) for n in self.nodes if indegree[n] == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            _, node = heapq.heappop(ready)
            order.append(node)
            for nxt in dependents[node]:
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    heapq.heappush(ready, (position[nxt], nxt))
        if len(order) != len(self.nodes):
            cycle = self.find_cycle()
            raise CycleError(cycle or [n for n in self.nodes if indegree[n] > 0])
        return tuple(order)

    def find_cycle(self) -> list[str] | None:
        """One cycle as `[a, b, ..., a]`, or None. Iterative DFS: deep chains must not recurse."""
        white, grey, black = 0, 1, 2
        color = dict.fromkeys(self.nodes, white)
        for root in self.nodes:
            if color[root] != white:
                continue
            stack: list[tuple[str, int]] = [(root, 0)]
            path: list[str] = [root]
            color[root] = grey
            while stack:
                node, idx = stack[-1]
                deps = self.deps[node]
                if idx < len(deps):
                    stack[-1] = (node, idx + 1)
                    nxt = deps[idx]
                    if color[nxt] == grey:
                        start = path.index(nxt)
                        return [*path[start:], nxt]
                    if color[nxt] == white:
                        color[nxt] = grey
                        stack.append((nxt, 0))
                        path.append(nxt)
                else:
                    color[node] = black
                    stack.pop()
                    path.pop()
        return None

    def ancestors(self, node: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.deps[node])
        while todo:
            cur = todo.pop()
            if cur not in seen:
                seen.add(cur)
                todo.extend(self.deps[cur])
        return seen
