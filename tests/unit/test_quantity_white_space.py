"""A quantity with white space other than a space at its ends: the apiserver refuses it in the step's
Job, so admission does, and the user can read which character it was. A no-break or ideographic space
looks like a space in the answer, and becomes one where the controller squeezes a failure into its
condition and event; the refusal names its code point."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_webhook_review import review
from validation_samples import base_flow, container

from zen_flow.api import JobFlow
from zen_flow.controller.validity import Validity
from zen_flow.planner import fail_invalid
from zen_flow.validation.formats import parse_quantity, quantity_problem
from zen_flow.webhook.review import validate_review

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FIELD = "spec.steps[0].template.spec.template.spec.containers[0].resources.limits[memory]"

CASES = [
    ("\u00a01Gi", "U+00A0"),  # no-break space
    ("1Gi\u3000", "U+3000"),  # ideographic space
    ("\u20031Gi", "U+2003"),  # em space
    ("\t1Gi", "U+0009"),
    ("1Gi\n", "U+000A"),
    ("1Gi\x1c", "U+001C"),  # Python's str.isspace() says white space; Go's TrimSpace does not
    ("\u200b1Gi", "U+200B"),  # zero-width space: invisible, trimmed by neither
]


def flow_with(memory: str) -> dict[str, Any]:
    flow = base_flow()
    container(flow, "a")["resources"] = {"limits": {"memory": memory}}
    return flow


def refusal(memory: str) -> str:
    """The webhook's line for the field."""
    status = validate_review(review(flow_with(memory)))["response"]["status"]
    return next(line for line in status["message"].splitlines() if line.startswith(FIELD))


@pytest.mark.parametrize(("memory", "point"), CASES)
def test_the_webhook_names_the_character_around_the_quantity(memory: str, point: str) -> None:
    line = refusal(memory)
    assert f"Invalid value: {json.dumps(memory, ensure_ascii=False)}: " in line
    assert point in line
    assert "only spaces" in line


@pytest.mark.parametrize(("memory", "point"), CASES)
async def test_a_stored_flow_fails_invalid_spec_naming_the_character(memory: str, point: str) -> None:
    stored = JobFlow.model_validate(
        {**flow_with(memory), "metadata": {"name": "f", "namespace": "d", "uid": "1"}}
    )
    plan = fail_invalid(stored, await Validity(lambda key: None).checked(stored), T0)
    valid = next(c for c in plan.status.conditions if c.type == "Valid")
    (event,) = (e for e in plan.events if e.reason == "FlowFailed")
    for said in (valid.message, event.message, plan.status.message or ""):
        assert FIELD in said
        assert point in said  # what tells " 1Gi" (accepted) from "\u00a01Gi" once squeezed into spaces


def test_a_quantity_wrong_inside_too_says_both() -> None:
    line = refusal("\u00a0lots")
    assert "U+00A0" in line
    assert "quantities must match the regular expression" in line


@pytest.mark.parametrize("memory", [" 1Gi", "lots", "1.2.3"])
def test_no_character_is_named_when_only_spaces_are_around_it(memory: str) -> None:
    flow = flow_with(memory)
    container(flow, "a")["resources"]["limits"]["cpu"] = "1.2.3"  # the flow is refused either way
    status = validate_review(review(flow))["response"]["status"]
    assert "U+" not in status["message"]


UNSEEN = st.characters(categories=["Zs", "Zl", "Zp", "Cc", "Cf"], exclude_characters=" ", codec="utf-8")


@given(
    before=st.text(UNSEEN | st.just(" "), max_size=4),
    amount=st.sampled_from(["1Gi", "500m", "2", "1e3", "0.5Ki"]),
    after=st.text(UNSEEN | st.just(" "), max_size=4),
)
def test_every_character_but_a_space_around_a_quantity_is_refused_by_name(
    before: str, amount: str, after: str
) -> None:
    value = before + amount + after
    named = {c for c in before + after if c != " "}
    assert (parse_quantity(value) is None) == bool(named)
    if named:
        problem = quantity_problem(value)
        assert all(f"U+{ord(c):04X}" in problem for c in named)
        assert "regular expression" not in problem  # the amount itself is fine: only the characters are said
