"""Fuzzing the admission webhook over HTTP: generated reviews, broken flows, random bodies.

`make test` runs a few hundred cases, derandomized under CI; `make fuzz` runs 20,000
(ZENFLOW_HYPOTHESIS_PROFILE=fuzz). Whatever arrives, the server answers 200 with a well-formed
AdmissionResponse for the request's uid, or 400 saying why; never a 500. An allowed CREATE is a flow
the validator accepts, and the mutating webhook's patch applies to the object it came with.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zen_flow.validation import validate_jobflow
from zen_flow.webhook.patch import apply_patch
from zen_flow.webhook.server import MUTATE_PATH, VALIDATE_PATH, create_webhook_app
from zen_flow_dev.testing.mutations import corrupted_examples, json_like

OPERATIONS = st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "", None, 7])
USERS = st.one_of(st.just("alice@example.com"), st.text(max_size=20), st.none())


@st.composite
def reviews(draw: st.DrawFn) -> Any:
    """An AdmissionReview, most often well-formed around a broken flow, sometimes broken itself."""
    obj = draw(corrupted_examples())
    request: dict[str, Any] = {
        "uid": draw(st.one_of(st.uuids().map(str), st.text(max_size=8), st.integers())),
        "operation": draw(OPERATIONS),
        "userInfo": {"username": draw(USERS)},
        "object": obj,
        "oldObject": draw(st.one_of(st.none(), corrupted_examples(), json_like)),
        "name": "flow",
        "namespace": "default",
    }
    if draw(st.integers(0, 9)) == 0:  # break the envelope itself
        key = draw(st.sampled_from(sorted(request)))
        request[key] = draw(json_like)
    review: Any = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    if draw(st.integers(0, 19)) == 0:
        review = draw(json_like)
    return review


async def _post(client: TestClient[Any, Any], path: str, body: bytes) -> tuple[int, Any]:
    async with client.post(path, data=body, headers={"Content-Type": "application/json"}) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if resp.status == 200 else text


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(review=reviews(), raw=st.one_of(st.none(), st.binary(max_size=64)))
async def test_the_webhook_answers_every_review_sensibly(review: Any, raw: bytes | None) -> None:
    async with TestClient(TestServer(create_webhook_app())) as client:
        body = raw if raw is not None else json.dumps(review).encode()
        for path in (VALIDATE_PATH, MUTATE_PATH):
            status, answer = await _post(client, path, body)
            assert status in (200, 400), (status, answer)
            if status != 200:
                continue
            response = answer["response"]
            assert answer["kind"] == "AdmissionReview"
            assert response["uid"] == review["request"]["uid"]
            assert isinstance(response["allowed"], bool)
            request = review["request"]
            if path == VALIDATE_PATH and response["allowed"] and request.get("operation") == "CREATE":
                assert validate_jobflow(request["object"]) == []  # nothing invalid gets in
            if path == MUTATE_PATH and "patch" in response:
                ops = json.loads(base64.b64decode(response["patch"]))
                apply_patch(request["object"], ops)  # the patch fits the object it was made for
