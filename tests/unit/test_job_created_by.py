"""Every Job (and its pod template) names the user who created its flow, `workflow.kube-zen.io/created-by`:
the Job's requester is the controller's ServiceAccount, so an admission policy on Jobs or pods can tell
tenants apart only by this. It is the flow's own annotation, written by the mutating webhook from the
request's user; a step, its templates or `stepDefaults` cannot set it on the Job."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_CREATED_BY
from zen_flow.api.jobflow import StepDefaults
from zen_flow.planner import CreateJob
from zen_flow.webhook.patch import apply_patch
from zen_flow.webhook.server import create_webhook_app
from zen_flow_dev.testing.flows import flow_manifest, job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def first_job(flow: JobFlow) -> dict[str, Any]:
    plan = Simulator(flow, T0).reconcile()
    body: dict[str, Any] = next(a.body for a in plan.actions if isinstance(a, CreateJob))
    return body


def created_by(job: dict[str, Any]) -> tuple[str | None, str | None]:
    """The annotation on the Job and on its pod template."""
    pod = job["spec"]["template"]["metadata"]
    return (
        job["metadata"].get("annotations", {}).get(ANNOTATION_CREATED_BY),
        pod.get("annotations", {}).get(ANNOTATION_CREATED_BY),
    )


def forging_step() -> dict[str, Any]:
    """A step that writes the key everywhere a step may write Job or pod annotations."""
    forged = {ANNOTATION_CREATED_BY: "admin", "team": "a"}
    step = job_step("deploy", metadata={"annotations": forged})
    step["template"]["metadata"] = {"annotations": forged}
    step["template"]["spec"]["template"]["metadata"] = {"annotations": forged}
    step["template"]["spec"]["template"]["spec"]["serviceAccountName"] = "cluster-deployer"
    return step


def test_the_job_and_its_pods_name_the_user_who_created_the_flow() -> None:
    flow = make_flow([job_step("deploy")], namespace="team-a", annotations={ANNOTATION_CREATED_BY: "mallory"})
    assert created_by(first_job(flow)) == ("mallory", "mallory")


def test_a_step_cannot_name_another_user() -> None:
    defaults = {"metadata": {"annotations": {ANNOTATION_CREATED_BY: "admin"}}}
    flow = make_flow([forging_step()], annotations={ANNOTATION_CREATED_BY: "mallory"})
    flow = flow.model_copy(
        update={"spec": flow.spec.model_copy(update={"step_defaults": StepDefaults.model_validate(defaults)})}
    )
    job = first_job(flow)
    assert created_by(job) == ("mallory", "mallory")
    assert job["metadata"]["annotations"]["team"] == "a"  # the step's other annotations are kept


def test_without_a_recorded_creator_the_job_names_none() -> None:
    # No webhook ran: nothing names the user, and a step's own value is not passed off as the record.
    assert created_by(first_job(make_flow([forging_step()]))) == (None, None)


async def test_a_value_forged_at_create_is_replaced_by_the_requesting_user(aiohttp_client: Any) -> None:
    doc = flow_manifest("release", "team-a", [forging_step()], annotations={ANNOTATION_CREATED_BY: "admin"})
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "c0a3d0a8-0000-4000-8000-000000000009",
            "kind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": "JobFlow"},
            "operation": "CREATE",
            "name": "release",
            "namespace": "team-a",
            "userInfo": {"username": "mallory", "groups": ["system:authenticated"]},
            "object": doc,
        },
    }
    client = await aiohttp_client(create_webhook_app())
    answer = (await (await client.post("/mutate-jobflow", json=review)).json())["response"]
    assert answer["allowed"]
    stored = apply_patch(doc, json.loads(base64.b64decode(answer["patch"])))
    stored["metadata"]["uid"] = "uid-release"
    assert created_by(first_job(JobFlow.model_validate(stored))) == ("mallory", "mallory")
