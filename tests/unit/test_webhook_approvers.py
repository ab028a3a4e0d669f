"""Who may decide a Manual step: the validating webhook asks the apiserver (a LocalSubjectAccessReview)
whether the requesting user may `approve` the flow, and denies the request when not, or when it cannot
ask (fail closed). Requests that decide nothing never ask."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from validation_samples import base_flow

from zen_flow.kube import access_reviews
from zen_flow.kube.access_reviews import AccessReviews
from zen_flow.kube.errors import TransportError, from_status
from zen_flow.webhook.approvers import ApprovalAuthorizer
from zen_flow.webhook.review import validate_review_decisions
from zen_flow.webhook.server import create_webhook_app

UID = "b0a3d0a8-0000-4000-8000-000000000002"
APPROVE = "approve.workflow.kube-zen.io/"
REJECT = "reject.workflow.kube-zen.io/"
BOB = {
    "username": "bob",
    "uid": "u-2",
    "groups": ["team-a", "system:authenticated"],
    "extra": {"scopes": ["x"]},
}


def review(obj: Any, operation: str = "CREATE", old: Any = None, name: str = "release") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "operation": operation,
            "name": name,
            "namespace": "team-a",
            "userInfo": BOB,
            "object": obj,
            "oldObject": old,
        },
    }


def decided(annotations: dict[str, str]) -> dict[str, Any]:
    flow = base_flow()
    flow["metadata"]["annotations"] = annotations
    return flow


class Apiserver:
    """Answers LocalSubjectAccessReviews: allowed, denied, or an error; records what it was asked."""

    def __init__(self, answer: bool | Exception) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str, dict[str, Any]]] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        retry: bool = True,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        self.asked.append((method, path, body))
        if isinstance(self.answer, Exception):
            raise self.answer
        return {**body, "status": {"allowed": self.answer}}


def test_a_request_reports_the_decisions_it_takes() -> None:
    old = decided({})
    new = decided({APPROVE + "gate": "true"})
    _, decisions = validate_review_decisions(_bytes(review(new, "UPDATE", old)))
    assert decisions is not None
    assert (decisions.namespace, decisions.name, decisions.steps) == ("team-a", "release", ("gate",))
    assert decisions.user == BOB
    # Pre-approval at creation is a decision too; a label, or a decision left as it was, is none; an
    # invalid flow is refused for that, before anyone is asked.
    assert validate_review_decisions(_bytes(review(new)))[1] is not None
    relabelled = copy.deepcopy(new)
    relabelled["metadata"]["labels"] = {"x": "y"}
    assert validate_review_decisions(_bytes(review(relabelled, "UPDATE", new)))[1] is None
    typo = decided({APPROVE + "gaet": "true"})
    answer, decisions = validate_review_decisions(_bytes(review(typo)))
    assert (answer["response"]["allowed"], decisions) == (False, None)


async def test_the_apiserver_is_asked_about_the_user_the_verb_and_the_flow() -> None:
    api = Apiserver(True)
    _, decisions = validate_review_decisions(
        _bytes(review(decided({REJECT + "gate": "no"}), "UPDATE", decided({})))
    )
    assert decisions is not None
    assert await ApprovalAuthorizer(AccessReviews(api))(decisions) is None
    ((method, path, body),) = api.asked
    assert (method, path) == (
        "POST",
        "/apis/authorization.k8s.io/v1/namespaces/team-a/localsubjectaccessreviews",
    )
    assert body["kind"] == "LocalSubjectAccessReview"
    assert body["spec"] == {
        "user": "bob",
        "uid": "u-2",
        "groups": ["team-a", "system:authenticated"],
        "extra": {"scopes": ["x"]},
        "resourceAttributes": {
            "namespace": "team-a",
            "verb": "approve",
            "group": "workflow.kube-zen.io",
            "resource": "jobflows",
            "name": "release",
        },
    }


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (False, 'needs the verb "approve" on jobflows.workflow.kube-zen.io'),
        (from_status(403, {"message": "cannot create localsubjectaccessreviews"}), "could not check"),
        (TransportError("connection refused"), "could not check"),
    ],
    ids=["denied", "forbidden", "unreachable"],
)
async def test_a_user_who_may_not_decide_is_refused_and_so_is_an_unanswered_question(
    aiohttp_client: Any, answer: bool | Exception, said: str
) -> None:
    api = Apiserver(answer)
    client: TestClient[Any, Any] = await aiohttp_client(
        create_webhook_app(authorize=ApprovalAuthorizer(AccessReviews(api)))
    )
    resp = await client.post("/validate-jobflow", json=review(decided({APPROVE + "gate": "true"})))
    assert resp.status == 200
    response = (await resp.json())["response"]
    assert (response["uid"], response["allowed"], response["status"]["code"]) == (UID, False, 403)
    assert said in response["status"]["message"]
    assert "step gate of jobflow team-a/release" in response["status"]["message"]


async def test_an_allowed_decider_passes_and_others_are_never_asked(aiohttp_client: Any) -> None:
    api = Apiserver(True)
    client: TestClient[Any, Any] = await aiohttp_client(
        create_webhook_app(authorize=ApprovalAuthorizer(AccessReviews(api)))
    )
    resp = await client.post("/validate-jobflow", json=review(decided({APPROVE + "gate": "true"})))
    response = (await resp.json())["response"]
    assert response["allowed"] is True
    assert len(api.asked) == 1
    # The mutating webhook never asks (it records the decider; the validating one, which sees the object
    # after every mutation and with its generated name, decides whether the decider may).
    resp = await client.post("/mutate-jobflow", json=review(decided({APPROVE + "gate": "true"})))
    assert (await resp.json())["response"]["allowed"] is True
    assert len(api.asked) == 1
    resp = await client.post("/validate-jobflow", json=review(decided({"team": "a"})))
    assert (await resp.json())["response"]["allowed"] is True
    assert len(api.asked) == 1  # no decision, no question


def _bytes(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def test_a_generated_name_is_taken_from_the_object_when_the_request_has_none() -> None:
    flow = decided({APPROVE + "gate": "true"})
    flow["metadata"]["name"] = "release-x7k2p"
    _, decisions = validate_review_decisions(_bytes(review(flow, name="")))
    assert decisions is not None
    assert decisions.name == "release-x7k2p"


def test_taking_a_decision_back_is_a_decision() -> None:
    # A reject set to block a release, removed by someone who may only patch: the gate reopens.
    old = decided({REJECT + "gate": "true"})
    _, decisions = validate_review_decisions(_bytes(review(decided({}), "UPDATE", old)))
    assert decisions is not None
    assert decisions.steps == ("gate",)


async def test_an_apiserver_that_does_not_answer_in_time_is_a_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The client's queue counts too: the webhook must answer before the apiserver's own 5 s run out.
    monkeypatch.setattr(access_reviews, "REVIEW_TIMEOUT_SECONDS", 0.05)

    class Stuck(Apiserver):
        async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    _, decisions = validate_review_decisions(_bytes(review(decided({APPROVE + "gate": "true"}))))
    assert decisions is not None
    said = await ApprovalAuthorizer(AccessReviews(Stuck(True)))(decisions)  # type: ignore[arg-type]
    assert said is not None
    assert "could not check that 'bob' may decide step gate" in said
    assert "no answer within 0.05s" in said
