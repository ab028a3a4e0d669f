"""The pure admission functions with AdmissionReview documents shaped like the apiserver's."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from validation_samples import base_flow, step

from zen_flow.validation import validate_update
from zen_flow.webhook.mutation import mutation_ops
from zen_flow.webhook.patch import apply_patch, pointer
from zen_flow.webhook.review import ReviewError, mutate_review, validate_review
from zen_flow_dev.testing.mutations import corrupted_examples

UID = "705ab4f5-6393-11e8-b7cc-42010a800002"
CREATED_BY = "workflow.kube-zen.io/created-by"
APPROVE = "approve.workflow.kube-zen.io/"
REJECT = "reject.workflow.kube-zen.io/"
APPROVED_BY = "approved-by.workflow.kube-zen.io/"
RETRY = "workflow.kube-zen.io/retry"
RETRY_STEPS = "workflow.kube-zen.io/retry-steps"
RETRIED_BY = "workflow.kube-zen.io/retried-by"
STOP = "workflow.kube-zen.io/stop"
STOPPED_BY = "workflow.kube-zen.io/stopped-by"
SUSPEND_BY = "workflow.kube-zen.io/suspend-requested-by"
RESUME_BY = "workflow.kube-zen.io/resume-requested-by"


def review(
    obj: Any,
    operation: str = "CREATE",
    old: Any = None,
    user: Any = "alice@example.com",
    **request: Any,
) -> bytes:
    """An admission.k8s.io/v1 AdmissionReview as kube-apiserver sends it: JSON bytes."""
    body: dict[str, Any] = {
        "uid": UID,
        "kind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": "JobFlow"},
        "resource": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "resource": "jobflows"},
        "requestKind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": "JobFlow"},
        "requestResource": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "resource": "jobflows"},
        "name": "flow",
        "namespace": "default",
        "operation": operation,
        "userInfo": {"username": user, "uid": "u-1", "groups": ["system:authenticated"]},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        **request,
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body}
    ).encode()


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    response = answer["response"]
    if "patch" not in response:
        assert "patchType" not in response
        return []
    assert response["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return ops


def mutate(obj: Any, operation: str = "CREATE", old: Any = None, user: str = "alice@example.com") -> Any:
    """Run the mutating webhook and apply its patch, as the apiserver does."""
    return apply_patch(obj, patch_of(mutate_review(review(obj, operation, old, user))))


# --- envelope ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("handler", [validate_review, mutate_review])
def test_response_echoes_uid_and_is_an_admission_review_v1(handler: Any) -> None:
    answer = handler(review(base_flow()))
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == UID
    assert answer["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        ([], "JSON object"),
        (
            {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}},
            "admission.k8s.io/v1",
        ),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}, "AdmissionReview"),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "no request"),
        (
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {"operation": "CREATE"},
            },
            "no uid",
        ),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x"}},
            "no operation",
        ),
    ],
)
@pytest.mark.parametrize("handler", [validate_review, mutate_review])
def test_malformed_reviews_raise_review_error(handler: Any, body: Any, message: str) -> None:
    with pytest.raises(ReviewError, match=message):
        handler(body if isinstance(body, bytes) else json.dumps(body).encode())


# --- validation ----------------------------------------------------------------------------------------


def test_a_valid_flow_is_allowed_without_status() -> None:
    assert validate_review(review(base_flow()))["response"] == {"uid": UID, "allowed": True}


def test_denial_lists_every_error_one_per_line_with_422_invalid() -> None:
    flow = base_flow()
    step(flow, "b")["dependencies"] = ["zzz"]
    step(flow, "c")["timeoutSeconds"] = 0
    response = validate_review(review(flow))["response"]
    assert response["allowed"] is False
    status = response["status"]
    assert status["code"] == 422
    assert status["reason"] == "Invalid"
    assert status["status"] == "Failure"
    assert status["message"].splitlines() == [
        'JobFlow "flow" is invalid:',
        'spec.steps[1].dependencies[0]: Not found: "zzz"',
        "spec.steps[3].timeoutSeconds: Invalid value: 0: must be greater than 0",
    ]
    # kubectl prints an Invalid status from its details alone: `The JobFlow "flow" is invalid: ...`
    assert {k: v for k, v in status["details"].items() if k != "causes"} == {
        "name": "flow",
        "group": "workflow.kube-zen.io",
        "kind": "JobFlow",
    }
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueNotFound",
            "message": 'Not found: "zzz"',
            "field": "spec.steps[1].dependencies[0]",
        },
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 0: must be greater than 0",
            "field": "spec.steps[3].timeoutSeconds",
        },
    ]


def test_a_denial_beyond_the_cause_limit_says_how_many_more_errors_there_are() -> None:
    # kubectl shows only the causes, so the cut must be visible there, not only in the message. The
    # validator stops looking past the listed errors: it says so instead of a count.
    stopped = (
        "Too many: more errors not listed (at most 100 are); "
        "the spec was checked no further, but for its size"
    )
    flow = base_flow()
    step(flow, "b")["dependencies"] = [f"missing-{i}" for i in range(105)]
    status = validate_review(review(flow))["response"]["status"]
    causes = status["details"]["causes"]
    assert len(causes) == 101
    assert causes[99]["field"] == "spec.steps[1].dependencies[99]"
    assert causes[100] == {
        "reason": "FieldValueTooMany",
        "message": stopped,
        "field": "",
    }
    assert 'spec.steps[1].dependencies[99]: Not found: "missing-99"' in status["message"]
    assert "dependencies[100]" not in status["message"]
    assert status["message"].endswith(stopped)


def test_create_checks_approval_annotations() -> None:
    flow = base_flow()
    flow["metadata"]["annotations"] = {APPROVE + "gat": "true"}
    response = validate_review(review(flow))["response"]
    assert response["allowed"] is False
    assert (
        'metadata.annotations[approve.workflow.kube-zen.io/gat]: Not found: "gat"'
        in response["status"]["message"]
    )


def test_update_checks_the_transition_with_the_old_object() -> None:
    old = {**base_flow(), "status": {"phase": "Running"}}
    new = copy.deepcopy(old)
    new["spec"]["steps"].pop()
    response = validate_review(review(new, "UPDATE", old))["response"]
    assert response["allowed"] is False
    assert (
        "spec.steps: Forbidden: steps cannot change after the flow started" in response["status"]["message"]
    )


def test_update_of_annotations_after_start_is_allowed() -> None:
    old = {**base_flow(), "status": {"phase": "Running"}}
    new = copy.deepcopy(old)
    new["metadata"]["annotations"] = {APPROVE + "gate": "true"}
    assert validate_review(review(new, "UPDATE", old))["response"]["allowed"] is True


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_other_operations_are_allowed(operation: str) -> None:
    assert validate_review(review(None, operation, base_flow()))["response"]["allowed"] is True


def test_subresource_requests_are_allowed() -> None:
    broken = {"spec": {"steps": []}}
    assert (
        validate_review(review(broken, "UPDATE", broken, subResource="status"))["response"]["allowed"] is True
    )


def test_dry_run_gets_the_same_decision() -> None:
    flow = base_flow()
    step(flow, "a")["timeoutSeconds"] = -1
    wet = validate_review(review(flow))
    dry = validate_review(review(flow, dryRun=True))
    assert dry == wet


def _nested_template(levels: int) -> bytes:
    """A review of a flow whose first template nests `levels` levels deep (written as text: Python's
    encoder recurses; the apiserver stores up to 10,000 levels)."""
    flow = base_flow()
    flow["spec"]["steps"][0]["template"]["z"] = "DEEP"
    # The template is level 1 and `z` level 2: `levels - 1` brackets make it `levels` deep.
    return review(flow).replace(b'"DEEP"', b"[" * (levels - 1) + b"]" * (levels - 1))


@pytest.mark.parametrize("levels", [65, 400, 5_000])
def test_a_template_nested_too_deep_is_denied_naming_it(levels: int) -> None:
    response = validate_review(_nested_template(levels))["response"]
    assert response["allowed"] is False
    assert response["status"]["message"].endswith(
        "spec.steps[0].template: Forbidden: nested more than 64 levels deep (at z[0][0][0][0][0]...): "
        "no Job needs that many"
    )
    # Mutation never writes inside a template, also when the body had to be cut to be read.
    assert {op["path"] for op in patch_of(mutate_review(_nested_template(levels)))} <= {
        "/spec/executionPolicy",
        "/metadata/annotations",
    }


def test_a_template_at_the_depth_limit_is_allowed() -> None:
    assert validate_review(_nested_template(64))["response"]["allowed"] is True


def test_a_bug_denies_with_a_message_instead_of_crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("kaput")

    monkeypatch.setattr("zen_flow.webhook.review.validate_jobflow", boom)
    response = validate_review(review(base_flow()))["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 500
    assert "kaput" in response["status"]["message"]


# --- mutation: defaults --------------------------------------------------------------------------------


def test_defaults_are_added_when_execution_policy_is_absent() -> None:
    out = mutate(base_flow())
    assert out["spec"]["executionPolicy"] == {
        "concurrencyPolicy": "Forbid",
        "ttlSecondsAfterFinished": 86400,
        "backoffLimit": 6,
    }


def test_an_unknown_dependency_policy_is_denied_naming_the_field() -> None:
    flow = base_flow()
    step(flow, "c")["dependencyPolicy"] = "AnyOf"
    response = validate_review(review(flow))["response"]
    assert response["allowed"] is False
    assert response["status"]["message"].splitlines() == [
        'JobFlow "flow" is invalid:',
        'spec.steps[3].dependencyPolicy: Unsupported value: "AnyOf": '
        'supported values: "AllSucceeded", "SucceededOrSkipped", "AnySucceeded"',
    ]


def test_no_step_field_is_defaulted_so_stored_steps_stay_as_written() -> None:
    flow = base_flow()
    step(flow, "c")["dependencyPolicy"] = "AnySucceeded"
    out = mutate(flow)
    assert out["spec"]["steps"] == flow["spec"]["steps"]  # dependencyPolicy: none added, none dropped


def test_only_missing_defaults_are_added() -> None:
    flow = base_flow()
    flow["spec"]["executionPolicy"] = {
        "concurrencyPolicy": "Allow",
        "ttlSecondsAfterFinished": 0,
        "activeDeadlineSeconds": 60,
    }
    out = mutate(flow)
    assert out["spec"]["executionPolicy"] == {
        "concurrencyPolicy": "Allow",
        "ttlSecondsAfterFinished": 0,
        "activeDeadlineSeconds": 60,
        "backoffLimit": 6,
    }


def test_nothing_else_in_the_spec_changes() -> None:
    flow = base_flow()
    out = mutate(flow)
    del out["spec"]["executionPolicy"]
    assert out["spec"] == flow["spec"]


@pytest.mark.parametrize("obj", [None, "x", {"metadata": "x", "spec": "y"}, {"spec": {"executionPolicy": 3}}])
def test_malformed_objects_are_left_to_validation(obj: Any) -> None:
    answer = mutate_review(review(obj))
    assert answer["response"]["allowed"] is True
    patch_of(answer)  # whatever it is, it is well-formed


# --- mutation: audit annotations -----------------------------------------------------------------------


def test_create_records_the_creator_even_without_annotations() -> None:
    flow = base_flow()
    assert "annotations" not in flow["metadata"]
    out = mutate(flow, user="system:serviceaccount:ci:deployer")
    assert out["metadata"]["annotations"] == {CREATED_BY: "system:serviceaccount:ci:deployer"}


def test_create_overwrites_a_forged_creator_and_forged_approvers() -> None:
    flow = base_flow()
    flow["metadata"]["annotations"] = {CREATED_BY: "mallory", APPROVED_BY + "gate": "mallory", "keep": "me"}
    out = mutate(flow, user="bob")
    assert out["metadata"]["annotations"] == {CREATED_BY: "bob", "keep": "me"}


def test_pre_approval_at_create_records_the_approver() -> None:
    flow = base_flow()
    flow["metadata"]["annotations"] = {APPROVE + "gate": "true"}
    out = mutate(flow, user="carol")
    assert out["metadata"]["annotations"][APPROVED_BY + "gate"] == "carol"


def test_approval_on_update_records_the_approver_and_keeps_the_creator() -> None:
    old = mutate(base_flow(), user="alice")
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][APPROVE + "gate"] = "true"
    out = mutate(new, "UPDATE", old, user="bob")
    annotations = out["metadata"]["annotations"]
    assert annotations[CREATED_BY] == "alice"
    assert annotations[APPROVED_BY + "gate"] == "bob"


def test_rejection_is_recorded_the_same_way() -> None:
    old = mutate(base_flow(), user="alice")
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][REJECT + "gate"] = "true"
    assert mutate(new, "UPDATE", old, user="dave")["metadata"]["annotations"][APPROVED_BY + "gate"] == "dave"


def test_an_unchanged_approval_keeps_its_approver() -> None:
    first = mutate(base_flow(), user="alice")
    approved = copy.deepcopy(first)
    approved["metadata"]["annotations"][APPROVE + "gate"] = "true"
    approved = mutate(approved, "UPDATE", first, user="bob")
    relabelled = copy.deepcopy(approved)
    relabelled["metadata"]["labels"] = {"x": "y"}
    assert patch_of(mutate_review(review(relabelled, "UPDATE", approved, user="eve"))) == []


MESSAGE = "decision-message.workflow.kube-zen.io/"


def test_a_decision_message_is_the_deciders_only_when_written_with_the_decision() -> None:
    # Planted beforehand ("CAB-1234 verified by security"), a message read as the approver's own words
    # in status.audit once someone approved without one.
    planted = base_flow()
    planted["metadata"]["annotations"] = {MESSAGE + "gate": "CAB-1234 verified by security"}
    created = mutate(planted, user="mallory")
    assert MESSAGE + "gate" not in created["metadata"]["annotations"]  # no decision: no message
    old = copy.deepcopy(created)
    old["metadata"]["annotations"][MESSAGE + "gate"] = "CAB-1234 verified by security"  # no webhook then
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["annotations"][MESSAGE + "gate"] = "edited"
    kept = mutate(relabelled, "UPDATE", old, user="mallory")["metadata"]["annotations"]
    assert kept[MESSAGE + "gate"] == "CAB-1234 verified by security"  # put back: no decision with it
    approved = copy.deepcopy(old)
    approved["metadata"]["annotations"][APPROVE + "gate"] = "true"
    removed = mutate(approved, "UPDATE", old, user="bob")
    out = removed["metadata"]["annotations"]
    assert (out[APPROVED_BY + "gate"], out.get(MESSAGE + "gate")) == ("bob", None)
    assert patch_of(mutate_review(review(removed, "UPDATE", old, user="bob"))) == []
    approved["metadata"]["annotations"][MESSAGE + "gate"] = "checked the staging run"
    out = mutate(approved, "UPDATE", old, user="bob")["metadata"]["annotations"]
    assert (out[APPROVED_BY + "gate"], out[MESSAGE + "gate"]) == ("bob", "checked the staging run")
    # The apiserver may call the webhook again on its own output: nothing more changes.
    again = mutate(approved, "UPDATE", old, user="bob")
    assert patch_of(mutate_review(review(again, "UPDATE", old, user="bob"))) == []


def test_update_puts_back_forged_audit_annotations() -> None:
    old = copy.deepcopy(base_flow())
    old["metadata"]["annotations"] = {
        CREATED_BY: "alice",
        APPROVE + "gate": "true",
        APPROVED_BY + "gate": "bob",
    }
    new = copy.deepcopy(old)
    new["metadata"]["annotations"].update(
        {CREATED_BY: "mallory", APPROVED_BY + "gate": "mallory", APPROVED_BY + "c": "m"}
    )
    out = mutate(new, "UPDATE", old, user="mallory")
    assert out["metadata"]["annotations"] == old["metadata"]["annotations"]


def test_update_removing_annotations_restores_the_audit_ones() -> None:
    old = copy.deepcopy(base_flow())
    old["metadata"]["annotations"] = {CREATED_BY: "alice"}
    new = copy.deepcopy(old)
    del new["metadata"]["annotations"]
    out = mutate(new, "UPDATE", old, user="mallory")
    assert out["metadata"]["annotations"] == {CREATED_BY: "alice"}


def test_patch_paths_escape_slashes_and_tildes() -> None:
    flow = base_flow()
    flow["metadata"]["annotations"] = {APPROVE + "gate": "true"}
    ops = patch_of(mutate_review(review(flow, user="u")))
    paths = {op["path"] for op in ops}
    assert "/metadata/annotations/workflow.kube-zen.io~1created-by" in paths
    assert "/metadata/annotations/approved-by.workflow.kube-zen.io~1gate" in paths
    assert pointer("a~b", "c/d") == "/a~0b/c~1d"


def test_mutation_is_idempotent_on_its_own_output() -> None:
    flow = base_flow()
    flow["metadata"]["annotations"] = {APPROVE + "gate": "true", CREATED_BY: "forged"}
    once = mutate(flow, user="alice")
    assert patch_of(mutate_review(review(once, user="alice"))) == []
    old = copy.deepcopy(once)
    new = copy.deepcopy(once)
    new["metadata"]["annotations"][REJECT + "gate"] = "true"
    updated = mutate(new, "UPDATE", old, user="bob")
    assert patch_of(mutate_review(review(updated, "UPDATE", old, user="bob"))) == []


@st.composite
def annotation_maps(draw: st.DrawFn) -> dict[str, str] | None:
    keys = st.sampled_from(
        [
            CREATED_BY,
            APPROVE + "gate",
            REJECT + "gate",
            APPROVED_BY + "gate",
            APPROVE + "x",
            APPROVED_BY + "y",
            SUSPEND_BY,
            RESUME_BY,
            "other",
        ]
    )
    if draw(st.booleans()):
        return None
    return draw(st.dictionaries(keys, st.sampled_from(["true", "false", "alice", "mallory"]), max_size=5))


def with_annotations(annotations: dict[str, str] | None) -> dict[str, Any]:
    flow = base_flow()
    if annotations is not None:
        flow["metadata"]["annotations"] = annotations
    return flow


@settings(max_examples=200, deadline=None)
@given(
    annotation_maps(), annotation_maps(), st.sampled_from(["CREATE", "UPDATE"]), st.sampled_from(["bob", ""])
)
def test_mutation_is_idempotent_and_audit_is_never_forged(
    old_ann: dict[str, str] | None, new_ann: dict[str, str] | None, operation: str, user: str
) -> None:
    old = with_annotations(old_ann) if operation == "UPDATE" else None
    once = mutate(with_annotations(new_ann), operation, old, user=user)
    assert patch_of(mutate_review(review(once, operation, old, user=user))) == []
    result = once["metadata"].get("annotations", {})
    previous = (old_ann or {}) if operation == "UPDATE" else {}
    for key, value in result.items():
        if key in (CREATED_BY, SUSPEND_BY, RESUME_BY) or key.startswith(APPROVED_BY):
            # every audit value is the requesting user's or was already there before this request
            assert value == user or previous.get(key) == value


# What the apiserver's JSON encoder (Go's) can write: no NaN or infinities, no lone surrogates.
json_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | json_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(json_text, children, max_size=3),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_like, json_like, st.sampled_from(["CREATE", "UPDATE", "DELETE"]), json_like)
def test_any_object_in_a_review_gets_an_answer(obj: Any, old: Any, operation: str, user: Any) -> None:
    body = review(obj, operation, old, user=user)
    for handler in (validate_review, mutate_review):
        answer = handler(body)
        assert answer["response"]["uid"] == UID
        assert answer["response"].get("status", {}).get("code") != 500, answer  # no internal error
        json.dumps(answer)  # serializable as it is sent
        patch_of(answer)


@settings(max_examples=100, deadline=None)
@given(json_like | st.binary(max_size=64))
def test_any_body_is_an_answer_or_a_review_error(body: Any) -> None:
    for handler in (validate_review, mutate_review):
        with contextlib.suppress(ReviewError):
            handler(body if isinstance(body, bytes) else json.dumps(body).encode())


def test_a_rerun_request_records_who_asked_and_cannot_be_forged() -> None:
    old = mutate(base_flow(), user="alice")
    asked = copy.deepcopy(old)
    asked["metadata"]["annotations"].update({RETRY: "r1", RETRIED_BY: "mallory"})
    asked = mutate(asked, "UPDATE", old, user="bob")
    assert asked["metadata"]["annotations"][RETRIED_BY] == "bob"
    relabelled = copy.deepcopy(asked)
    relabelled["metadata"]["labels"] = {"x": "y"}
    assert patch_of(mutate_review(review(relabelled, "UPDATE", asked, user="eve"))) == []  # still bob's
    scoped = copy.deepcopy(asked)
    scoped["metadata"]["annotations"][RETRY_STEPS] = "load"
    assert mutate(scoped, "UPDATE", asked, user="carol")["metadata"]["annotations"][RETRIED_BY] == "carol"
    dropped = copy.deepcopy(asked)
    del dropped["metadata"]["annotations"][RETRY]
    assert RETRIED_BY not in mutate(dropped, "UPDATE", asked, user="dave")["metadata"]["annotations"]


def test_a_stop_request_records_who_stopped() -> None:
    old = mutate(base_flow(), user="alice")
    stopped = copy.deepcopy(old)
    stopped["metadata"]["annotations"].update({STOP: "true", STOPPED_BY: "mallory"})
    assert mutate(stopped, "UPDATE", old, user="bob")["metadata"]["annotations"][STOPPED_BY] == "bob"


@settings(max_examples=150, deadline=None)
@given(corrupted_examples(), corrupted_examples(), st.sampled_from(["CREATE", "UPDATE"]))
def test_mutation_decides_on_what_the_webhook_decodes(obj: Any, old: Any, operation: str) -> None:
    # The webhook decodes of the spec only what mutation reads (SPEC_READ): the answer must be the one
    # mutation gives on the whole objects.
    try:
        body = review(obj, operation, old, user="bob")
        whole, whole_old = json.loads(body)["request"]["object"], json.loads(body)["request"]["oldObject"]
    except ValueError:
        return  # NaN and friends: the apiserver never sends them
    if not isinstance(whole, dict):
        return
    with contextlib.suppress(ReviewError):
        expected = mutation_ops(operation, whole, whole_old if isinstance(whole_old, dict) else None, "bob")
        assert patch_of(mutate_review(body)) == expected


@settings(max_examples=150, deadline=None)
@given(corrupted_examples(), st.sampled_from([{}, {"team": "data"}, {"bad label!": "x"}]), st.booleans())
def test_an_update_that_keeps_the_spec_is_decided_as_on_the_whole_objects(
    old: Any, labels: dict[str, str], approve: bool
) -> None:
    # The webhook decodes neither spec when their bytes are equal (and no approval needs the steps).
    new = copy.deepcopy(old)
    if isinstance(new.get("metadata"), dict):
        new["metadata"]["labels"] = labels
        if approve:
            new["metadata"]["annotations"] = {APPROVE + "gate": "true"}
    try:
        body = review(new, "UPDATE", old)
        request = json.loads(body)["request"]
    except ValueError:
        return  # NaN and friends: the apiserver never sends them
    with contextlib.suppress(ReviewError):
        response = validate_review(body)["response"]
        expected = validate_update(request["oldObject"], request["object"])
        causes = response.get("status", {}).get("details", {}).get("causes", [])
        assert [c["field"] for c in causes] == [e.path for e in expected][:100]


def suspended(flow: dict[str, Any], value: bool | None) -> dict[str, Any]:
    out = copy.deepcopy(flow)
    if value is None:
        out["spec"].pop("suspend", None)
    else:
        out["spec"]["suspend"] = value
    return out


def test_suspend_and_resume_record_who_flipped_spec_suspend() -> None:
    created = mutate(suspended(base_flow(), False), user="alice")
    assert SUSPEND_BY not in created["metadata"]["annotations"]
    held = mutate(suspended(created, True), "UPDATE", created, user="bob")
    assert held["metadata"]["annotations"][SUSPEND_BY] == "bob"
    assert RESUME_BY not in held["metadata"]["annotations"]
    relabelled = copy.deepcopy(held)
    relabelled["metadata"]["labels"] = {"x": "y"}
    assert patch_of(mutate_review(review(relabelled, "UPDATE", held, user="eve"))) == []  # still bob's
    resumed = mutate(suspended(held, None), "UPDATE", held, user="carol")  # removing the field resumes
    annotations = resumed["metadata"]["annotations"]
    assert (annotations[SUSPEND_BY], annotations[RESUME_BY]) == ("bob", "carol")  # the last of each
    again = mutate(suspended(resumed, True), "UPDATE", resumed, user="dave")
    assert (again["metadata"]["annotations"][SUSPEND_BY], again["metadata"]["annotations"][RESUME_BY]) == (
        "dave",
        "carol",
    )


def test_a_flow_created_suspended_records_its_creator_as_who_suspended_it() -> None:
    flow = suspended(base_flow(), True)
    flow["metadata"]["annotations"] = {SUSPEND_BY: "mallory", RESUME_BY: "mallory"}
    annotations = mutate(flow, user="alice")["metadata"]["annotations"]
    assert annotations.get(SUSPEND_BY) == "alice"
    assert RESUME_BY not in annotations


def test_suspend_audit_cannot_be_forged_nor_taken_for_the_parents_mark() -> None:
    old = mutate(suspended(base_flow(), True), user="alice")
    forged = copy.deepcopy(old)
    forged["metadata"]["annotations"].update(
        {SUSPEND_BY: "mallory", RESUME_BY: "mallory", "workflow.kube-zen.io/suspended-by-parent": "true"}
    )
    annotations = mutate(forged, "UPDATE", old, user="mallory")["metadata"]["annotations"]
    assert annotations[SUSPEND_BY] == "alice"
    assert RESUME_BY not in annotations
    # The parent's mark is the controller's business, not an audit record: left as written.
    assert annotations["workflow.kube-zen.io/suspended-by-parent"] == "true"
    gone = copy.deepcopy(old)
    del gone["metadata"]["annotations"][SUSPEND_BY]
    assert mutate(gone, "UPDATE", old, user="mallory")["metadata"]["annotations"][SUSPEND_BY] == "alice"
