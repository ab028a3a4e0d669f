"""JSON nested deeper than the decoders go (core/nesting.py): measured without recursion, cut, reported."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from zen_flow.core.nesting import cut_deep, deepest_path, describe_depth, loads

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab"\\[]{}', max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text("xy[]", max_size=2), inner, max_size=3)
    ),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def nested(levels: int) -> bytes:
    return b'{"keep": 1, "deep": ' + b"[" * levels + b'"]}"' + b"]" * levels + b"}"


@given(JSON, st.integers(1, 6))
def test_cutting_keeps_what_is_shallow_and_leaves_what_was_deep_too_deep(value: Any, limit: int) -> None:
    raw = json.dumps(value).encode()
    cut = json.loads(cut_deep(raw, limit))
    if depth(value) <= limit:
        assert cut == value
    else:
        assert depth(cut) == limit + 1
    found = deepest_path(value, limit)
    assert (found is None) == (depth(value) <= limit)


def test_json_deeper_than_python_decodes_is_read_with_the_deep_part_cut() -> None:
    with_strings = nested(5_000)  # the `"]}"` string inside must not count as brackets
    value = loads(with_strings)
    assert value["keep"] == 1
    assert depth(value) == 133  # cut 132 levels down: still deeper than any object may be


def test_the_path_names_where_it_went_too_deep() -> None:
    value = {"spec": {"steps": [{"template": {"z": [[[[]]]]}}]}}
    found = deepest_path(value, 6)
    assert found == ("spec", "steps", 0, "template", "z", 0)
    assert describe_depth(found, 6) == "nested more than 6 levels deep (at spec.steps[0].template.z[0]...)"
