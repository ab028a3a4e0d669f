"""Bounded YAML reading for files a user hands us (`zen-flow validate`, kubeconfigs).

PyYAML's safe loader is safe from code execution, not from cost: a 759-byte file of nested aliases
("billion laughs") expands to billions of nodes in anything that walks the result, a self-referencing
alias builds a cyclic object, and deep nesting overflows the recursion limit. Here every input is
bounded before or while it is parsed, and every failure is a `DocumentError` with a one-line message:

- the size is checked before parsing (`max_bytes`);
- aliases are allowed (anchors that share a Job template are legitimate), but the document is measured
  as if every alias were expanded, and refused past `max_nodes`; a recursive alias is refused;
- nesting deeper than `max_depth` is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 8 * 1024 * 1024  # a 500-step flow is ~1 MiB; a folder of manifests is many files
MAX_NODES = 1_000_000  # expanded YAML nodes per file
MAX_DEPTH = 100  # a Job template inside a flow is about 15 levels deep


class DocumentError(ValueError):
    """The input cannot be read as bounded YAML; the message is one line."""


def read_bounded(path: Path, max_bytes: int = MAX_BYTES) -> str:
    """A regular file's text, refused when larger than `max_bytes` or not UTF-8."""
    try:
        if not path.exists():
            raise DocumentError("no such file")
        if not path.is_file():
            raise DocumentError("not a regular file")
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as err:
        raise DocumentError(f"cannot read: {err.strerror or err}") from err
    if len(data) > max_bytes:
        raise DocumentError(f"larger than {max_bytes // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DocumentError(f"not UTF-8 text (byte {err.start})") from err


def load_all(text: str, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> list[Any]:
    """Every document of `text`, parsed safely within the bounds above."""
    loader = yaml.SafeLoader(text)
    documents: list[Any] = []
    budget = _Budget(max_nodes, max_depth)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # an empty document
                documents.append(None)
                continue
            budget.measure(node)
            documents.append(loader.construct_document(node))
    except yaml.YAMLError as err:
        raise DocumentError(f"not valid YAML: {' '.join(str(err).split())}") from err
    except RecursionError as err:
        # PyYAML composes recursively, several frames per level: Python's limit (1,000 frames) is hit
        # at a few hundred levels, which is past max_depth anyway.
        raise DocumentError(f"nested more than {max_depth} levels deep") from err
    finally:
        loader.dispose()
    return documents


def load_one(text: str) -> Any:
    """The single document of `text` (None for an empty text); more than one is an error."""
    documents = load_all(text)
    if len(documents) > 1:
        raise DocumentError(f"expected one YAML document, found {len(documents)}")
    return documents[0] if documents else None


class _Budget:
    """Counts nodes as if aliases were expanded: each node's expanded size is computed once (memoized
    by identity), so measuring costs time linear in the parsed graph, not in the expansion."""

    def __init__(self, max_nodes: int, max_depth: int) -> None:
        self._max_nodes = max_nodes
        self._max_depth = max_depth
        self._total = 0

    def measure(self, root: yaml.Node) -> None:
        sizes: dict[int, int] = {}
        depths: dict[int, int] = {}
        self._total += self._size(root, sizes, depths)
        if self._total > self._max_nodes:
            raise DocumentError(f"expands to more than {self._max_nodes:,} YAML nodes (aliases included)")

    def _size(self, root: yaml.Node, sizes: dict[int, int], depths: dict[int, int]) -> int:
        # Iterative post-order: a deliberately deep document must not overflow our own stack either.
        on_path: set[int] = set()
        stack: list[tuple[yaml.Node, bool]] = [(root, False)]
        while stack:
            node, children_done = stack.pop()
            key = id(node)
            if key in sizes:
                continue
            children = _children(node)
            if children_done:
                on_path.discard(key)
                size = 1 + sum(sizes[id(c)] for c in children)
                depth = 1 + max((depths[id(c)] for c in children), default=0)
                if depth > self._max_depth:
                    raise DocumentError(f"nested more than {self._max_depth} levels deep")
                if size > self._max_nodes:
                    raise DocumentError(
                        f"expands to more than {self._max_nodes:,} YAML nodes (aliases included)"
                    )
                sizes[key], depths[key] = size, depth
                continue
            if key in on_path:
                raise DocumentError("an alias refers to a node that contains it (recursive alias)")
            on_path.add(key)
            stack.append((node, True))
            for child in children:
                if id(child) in on_path:
                    raise DocumentError("an alias refers to a node that contains it (recursive alias)")
                if id(child) not in sizes:
                    stack.append((child, False))
        return sizes[id(root)]


def _children(node: yaml.Node) -> Iterator[yaml.Node] | list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
