"""hypothesis strategies that break flows: random JSON, and the project's example flows with a random
subtree replaced. Shared by the unit tier (validator vs models) and the integration tier (vs the CRD)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from zen_flow_dev.testing.examples import load, original_forms, project_examples

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
_SOURCES = [load(p) for p in project_examples() + original_forms()]


@st.composite
def corrupted_examples(draw: st.DrawFn, sources: list[dict[str, Any]] | None = None) -> Any:
    """An example flow with a random subtree replaced by random JSON."""
    flow = copy.deepcopy(draw(st.sampled_from(sources or _SOURCES)))
    node: Any = flow
    for _ in range(draw(st.integers(0, 8))):
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node)))
        elif isinstance(node, list) and node:
            key = draw(st.integers(0, len(node) - 1))
        else:
            break
        if not isinstance(node[key], dict | list) or draw(st.booleans()):
            node[key] = draw(json_like)
            break
        node = node[key]
    return flow


def without_nulls(value: Any, *, keep: bool = False) -> Any:
    """What the apiserver stores of `value`: a structural schema's nulls pruned, except inside a step's
    template (whose unknown fields are preserved as sent)."""
    if keep:
        return value
    if isinstance(value, dict):
        return {k: without_nulls(v, keep=k == "template") for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value
