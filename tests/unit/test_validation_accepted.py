"""Specs accepted before, remembered by content (validation/accepted.py): the same answer, less work."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import patch

from hypothesis import given, settings
from validation_samples import base_flow, step

import zen_flow.validation.flow as flow_rules
from zen_flow.validation import AcceptedSpecs, validate_jobflow, validate_update
from zen_flow_dev.testing.mutations import corrupted_examples


def _checks_of_spec(flow: Any, accepted: AcceptedSpecs) -> int:
    with patch.object(flow_rules, "check_spec", wraps=flow_rules.check_spec) as check_spec:
        validate_jobflow(flow, accepted=accepted)
    return check_spec.call_count


@settings(max_examples=150, deadline=None)
@given(corrupted_examples())
def test_remembering_accepted_specs_never_changes_an_answer(flow: Any) -> None:
    try:
        flow = json.loads(json.dumps(flow))  # as a review arrives: decoded JSON
    except (TypeError, ValueError):
        return  # not JSON: no review can carry it
    accepted = AcceptedSpecs()
    first = validate_jobflow(flow, accepted=accepted)
    assert validate_jobflow(flow, accepted=accepted) == first == validate_jobflow(flow)


def test_a_valid_spec_again_is_not_checked_again_but_another_name_or_spec_is() -> None:
    accepted = AcceptedSpecs()
    flow = base_flow()
    assert _checks_of_spec(flow, accepted) == 1
    assert _checks_of_spec(flow, accepted) == 0  # `kubectl apply --dry-run=server`, then the apply
    renamed = base_flow()
    renamed["metadata"]["name"] = "other"  # resource templates are checked against the flow's name
    assert _checks_of_spec(renamed, accepted) == 1
    step(flow, "c")["timeoutSeconds"] = 7
    assert _checks_of_spec(flow, accepted) == 1
    assert len(accepted) == 3


def test_an_invalid_spec_is_checked_every_time_and_not_kept() -> None:
    # A denial's errors hold parts of the spec: remembering them would let a tenant grow the webhook.
    accepted = AcceptedSpecs()
    flow = base_flow()
    step(flow, "c")["timeoutSeconds"] = 0
    assert _checks_of_spec(flow, accepted) == 1
    assert _checks_of_spec(flow, accepted) == 1
    assert validate_jobflow(flow, accepted=accepted) == validate_jobflow(flow) != []
    assert len(accepted) == 0


def test_a_spec_that_differs_only_in_a_type_is_checked_on_its_own() -> None:
    # 1 and 1.0 and "1": distinct encodings, so the invalid ones are never taken for the valid one.
    accepted = AcceptedSpecs()
    for value in (1, 1.0, "1", 1):
        flow = base_flow()
        step(flow, "c")["timeoutSeconds"] = value
        assert validate_jobflow(flow, accepted=accepted) == validate_jobflow(flow)
    assert len(accepted) == 1


def test_the_least_recently_used_specs_are_forgotten_first() -> None:
    accepted = AcceptedSpecs(size=2)
    flows: list[dict[str, Any]] = []
    for i in range(3):
        flow = base_flow()
        flow["metadata"]["name"] = f"flow-{i}"
        flows.append(flow)
        validate_jobflow(flow, accepted=accepted)
    assert len(accepted) == 2
    assert _checks_of_spec(flows[2], accepted) == 0
    assert _checks_of_spec(flows[0], accepted) == 1


def test_an_update_that_changes_the_spec_uses_them_too() -> None:
    accepted = AcceptedSpecs()
    old, new = base_flow(), base_flow()
    step(new, "c")["timeoutSeconds"] = 7
    assert validate_update(old, new, accepted) == []
    assert len(accepted) == 1
    with patch.object(flow_rules, "check_spec", wraps=flow_rules.check_spec) as check_spec:
        assert validate_update(old, new, accepted) == []
    assert check_spec.call_count == 0
