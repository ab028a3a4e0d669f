"""Verdicts remembered by spec content (validation/verdicts.py): the same answer, without the work."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import patch

from hypothesis import given, settings
from validation_samples import base_flow, step

import zen_flow.validation.flow as flow_rules
from zen_flow.validation import SpecVerdicts, validate_jobflow, validate_update
from zen_flow_dev.testing.mutations import corrupted_examples


def _checks_of_spec(flow: Any, verdicts: SpecVerdicts) -> int:
    with patch.object(flow_rules, "check_spec", wraps=flow_rules.check_spec) as check_spec:
        validate_jobflow(flow, verdicts=verdicts)
    return check_spec.call_count


@settings(max_examples=150, deadline=None)
@given(corrupted_examples())
def test_a_remembered_verdict_is_the_one_checking_again_gives(flow: Any) -> None:
    try:
        flow = json.loads(json.dumps(flow))  # as a review arrives: decoded JSON
    except (TypeError, ValueError):
        return  # not JSON: no review can carry it
    verdicts = SpecVerdicts()
    first = validate_jobflow(flow, verdicts=verdicts)
    assert validate_jobflow(flow, verdicts=verdicts) == first == validate_jobflow(flow)


def test_the_same_spec_again_is_not_checked_again_but_another_name_or_spec_is() -> None:
    verdicts = SpecVerdicts()
    flow = base_flow()
    step(flow, "c")["timeoutSeconds"] = 0
    assert _checks_of_spec(flow, verdicts) == 1
    assert _checks_of_spec(flow, verdicts) == 0  # `kubectl apply --dry-run=server`, then the apply
    renamed = base_flow()
    step(renamed, "c")["timeoutSeconds"] = 0
    renamed["metadata"]["name"] = "other"  # resource templates are checked against the flow's name
    assert _checks_of_spec(renamed, verdicts) == 1
    step(flow, "c")["timeoutSeconds"] = 1
    assert _checks_of_spec(flow, verdicts) == 1
    assert validate_jobflow(flow, verdicts=verdicts) == []


def test_a_spec_that_differs_only_in_a_type_gets_its_own_verdict() -> None:
    # 1 and 1.0, "1" and 1, null and absent: distinct encodings, distinct verdicts.
    verdicts = SpecVerdicts()
    for value in (1, 1.0, "1", None):
        flow = base_flow()
        step(flow, "c")["timeoutSeconds"] = value
        assert validate_jobflow(flow, verdicts=verdicts) == validate_jobflow(flow)
    assert len(verdicts) == 4


def test_the_oldest_verdicts_are_forgotten_first() -> None:
    verdicts = SpecVerdicts(size=2)
    flows: list[dict[str, Any]] = []
    for i in range(3):
        flow = base_flow()
        flow["metadata"]["name"] = f"flow-{i}"
        flows.append(flow)
        validate_jobflow(flow, verdicts=verdicts)
    assert len(verdicts) == 2
    assert _checks_of_spec(flows[2], verdicts) == 0
    assert _checks_of_spec(flows[0], verdicts) == 1


def test_an_update_that_changes_the_spec_uses_the_verdicts_too() -> None:
    verdicts = SpecVerdicts()
    old, new = base_flow(), base_flow()
    step(new, "c")["timeoutSeconds"] = 0
    first = validate_update(old, new, verdicts)
    assert first
    assert validate_update(old, new, verdicts) == first
    assert len(verdicts) == 1
