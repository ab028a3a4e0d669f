"""The AdmissionReview envelope: one-pass parsing and the shared decoding of a spec's steps."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from zen_flow.validation import STEP_WIRING
from zen_flow.webhook.envelope import ReviewError, _parse_by_members, parse_review
from zen_flow_dev.testing.mutations import corrupted_examples, json_like

FIELDS = ("uid", "operation", "userInfo", "object", "oldObject", "subResource", "name", "namespace", "dryRun")


@st.composite
def review_bodies(draw: st.DrawFn) -> bytes:
    """Reviews as the apiserver sends them, with any field of the envelope sometimes of another type."""
    request: dict[str, Any] = {
        "uid": "u-1",
        "operation": draw(st.sampled_from(["CREATE", "UPDATE", "DELETE"])),
        "userInfo": {"username": "alice"},
        "object": draw(corrupted_examples()),
        "oldObject": draw(st.one_of(st.none(), corrupted_examples())),
        "name": "flow",
        "namespace": "default",
        "dryRun": False,
    }
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):
        request[key] = draw(json_like)
    review: Any = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    if draw(st.integers(0, 9)) == 0:
        review[draw(st.sampled_from(["apiVersion", "kind", "request"]))] = draw(json_like)
    try:
        return json.dumps(review, allow_nan=False).encode()
    except ValueError:  # a corrupted example with NaN: not what an apiserver sends
        assume(False)
        raise


def _outcome(parse: Any, body: bytes) -> Any:
    try:
        return parse(body)
    except ReviewError as err:
        return str(err)


@settings(max_examples=300, deadline=None)
@given(review_bodies())
def test_a_review_parses_the_same_in_one_pass_as_member_by_member(body: bytes) -> None:
    assert _outcome(parse_review, body) == _outcome(_parse_by_members, body)


def _spec_object(spec: Any) -> Any:
    body = json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u", "operation": "CREATE", "object": {"spec": spec}},
        },
        allow_nan=False,
    ).encode()
    return parse_review(body).object


@settings(max_examples=300, deadline=None)
@given(corrupted_examples())
def test_a_decoded_spec_is_its_json_with_equal_step_members_shared(flow: Any) -> None:
    spec = flow.get("spec") if isinstance(flow, dict) else flow
    try:
        obj = _spec_object(spec)
    except ValueError:
        assume(False)
        raise
    decoded = obj.decode_spec()
    assert decoded == json.loads(json.dumps(spec))
    steps = decoded.get("steps") if isinstance(decoded, dict) else None
    if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
        return  # shared only in a list of objects; anything else the validator refuses anyway
    # A step's wiring is its own (decoded in place: nothing there to share); the rest is shared.
    members = [(key, value) for step in steps for key, value in step.items() if key not in STEP_WIRING]
    for i, (key, value) in enumerate(members):
        for other_key, other in members[i + 1 :]:
            if type(value) is type(other) and msgspec.json.encode(value) == msgspec.json.encode(other):
                assert value is other, (key, other_key)


def test_steps_with_one_template_share_it_and_their_own_fields_stay_their_own() -> None:
    template = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}}
    spec = {"steps": [{"name": name, "template": template} for name in ("a", "b", "c")]}
    steps = _spec_object(spec).decode_spec()["steps"]
    assert steps[0]["template"] is steps[1]["template"] is steps[2]["template"]
    assert [step["name"] for step in steps] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "spec", [None, [1, 2], "text", {"steps": "not a list"}, {"steps": [1, {"name": "a"}]}]
)
def test_a_spec_of_another_shape_decodes_as_it_is(spec: Any) -> None:
    assert _spec_object(spec).decode_spec() == spec
