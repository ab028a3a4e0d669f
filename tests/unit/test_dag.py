"""dag.Graph: deterministic topological order, cycle detection, no recursion on deep chains."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.core.dag import CycleError, Graph


def test_order_puts_dependencies_first_and_breaks_ties_by_declaration() -> None:
    graph = Graph.build([("load", ["merge"]), ("b", []), ("merge", ["a", "b"]), ("a", [])])
    assert graph.topological_order() == ("b", "a", "merge", "load")


def test_order_is_the_same_whatever_the_dependency_order() -> None:
    one = Graph.build([("a", []), ("b", []), ("c", ["a", "b"])])
    two = Graph.build([("a", []), ("b", []), ("c", ["b", "a"])])
    assert one.topological_order() == two.topological_order() == ("a", "b", "c")


def test_unknown_empty_and_duplicate_dependencies_are_dropped() -> None:
    graph = Graph.build([("a", ["", "ghost"]), ("b", ["a", "a"]), ("a", ["b"])])
    assert graph.nodes == ("a", "b")
    assert graph.deps == {"a": (), "b": ("a",)}


@pytest.mark.parametrize(
    "edges",
    [
        [("a", ["a"])],
        [("a", ["b"]), ("b", ["a"])],
        [("x", []), ("a", ["c"]), ("b", ["a"]), ("c", ["b"]), ("d", ["c"])],
    ],
)
def test_cycles_are_found_and_named(edges: list[tuple[str, list[str]]]) -> None:
    graph = Graph.build(edges)
    cycle = graph.find_cycle()
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    for node, nxt in itertools.pairwise(cycle):
        assert nxt in graph.deps[node]
    with pytest.raises(CycleError, match="dependency cycle"):
        graph.topological_order()


def test_acyclic_graph_has_no_cycle() -> None:
    assert Graph.build([("a", []), ("b", ["a"]), ("c", ["a", "b"])]).find_cycle() is None


def test_deep_chains_do_not_recurse() -> None:
    n = 10_000
    forward = Graph.build([(f"s{i}", [f"s{i - 1}"] if i else []) for i in range(n)])
    assert forward.topological_order()[-1] == f"s{n - 1}"
    assert forward.find_cycle() is None
    backward = Graph.build([(f"s{i}", [f"s{i + 1}"] if i < n - 1 else []) for i in range(n)])
    assert backward.topological_order()[0] == f"s{n - 1}"
    assert len(backward.ancestors("s0")) == n - 1
    ring = Graph.build([(f"s{i}", [f"s{(i + 1) % n}"]) for i in range(n)])
    cycle = ring.find_cycle()
    assert cycle is not None
    assert len(cycle) == n + 1


@given(st.integers(1, 40), st.integers(0, 2**32))
def test_random_dags_order_respects_every_edge(size: int, seed: int) -> None:
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(size)]
    edges = [(name, rng.sample(names[:i], k=min(i, rng.randint(0, 3)))) for i, name in enumerate(names)]
    rng.shuffle(edges)
    graph = Graph.build(edges)
    order = graph.topological_order()
    position = {n: i for i, n in enumerate(order)}
    assert sorted(order) == sorted(names)
    for node, deps in edges:
        assert all(position[d] < position[node] for d in deps)
    assert Graph.build(edges).topological_order() == order


def test_a_node_named_empty_is_never_a_dependency() -> None:
    graph = Graph.build([("", []), ("a", ["", "b"]), ("b", [])])
    assert graph.deps["a"] == ("b",)
    assert graph.topological_order() == ("", "b", "a")


def test_a_graph_whose_first_node_reaches_the_others_has_no_cycle() -> None:
    # The later roots were all seen from the first one: the search skips them.
    assert Graph.build([("c", ["a", "b"]), ("a", []), ("b", ["a"])]).find_cycle() is None


def test_ancestors_of_a_diamond_are_each_counted_once() -> None:
    graph = Graph.build([("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])])
    assert graph.ancestors("d") == {"a", "b", "c"}
    assert graph.ancestors("a") == set()


@given(st.integers(1, 12), st.integers(0, 2**32))
def test_random_graphs_cycles_and_ancestors_agree_with_brute_force(size: int, seed: int) -> None:
    # Any graph, cycles allowed: a cycle is found exactly when no order exists, and a node's ancestors
    # are what its dependencies reach (a node on a cycle is its own).
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(size)]
    edges = [(name, rng.sample(names, k=rng.randint(0, min(3, size)))) for name in names]
    graph = Graph.build(edges)

    def reach(node: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph.deps[node])
        while todo:
            cur = todo.pop()
            if cur not in seen:
                seen.add(cur)
                todo += graph.deps[cur]
        return seen

    reached = {n: reach(n) for n in names}
    cyclic = any(n in reached[n] for n in names)
    assert (graph.find_cycle() is not None) == cyclic
    if not cyclic:
        graph.topological_order()
    for name in names:
        assert graph.ancestors(name) == reached[name]
