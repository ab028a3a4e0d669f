"""Controller: executing CreateResource (create, adopt our own on 409, wait for one on its way out, fail on
someone else's)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from scripted_controller_rig import Fake as ScriptedFake
from scripted_controller_rig import controller as controller_of

from zen_flow.api import Job, JobFlow, JobFlowStatus
from zen_flow.api.constants import ANNOTATION_RETRIED_BY, ANNOTATION_RETRY, API_VERSION
from zen_flow.api.jobflow import ResourceTemplates
from zen_flow.api.meta import ObjectMeta
from zen_flow.controller.reconciler import Controller
from zen_flow.core import jsonpatch
from zen_flow.kube.errors import AlreadyExists, ApiError, BadRequest, Invalid, RequestTooLarge
from zen_flow.machinery.expectations import Expectations
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

CLAIM: dict[str, Any] = {
    "metadata": {"name": "data"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
}
CONFIG: dict[str, Any] = {"metadata": {"name": "settings"}, "data": {"mode": "fast"}}


class Fake(ScriptedFake):
    """The rig's caches and API (its Job cache empty, the steps it created in `created`), with an
    apiserver that keeps the flow's status writes and the objects of its resourceTemplates."""

    def __init__(self, flow: JobFlow) -> None:
        super().__init__(flow)
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.rv = 1
        self.invalid: set[str] = set()
        self.refusals: dict[str, ApiError] = {}  # object name -> what the apiserver answers its create

    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None:
        raise AssertionError("no Job is deleted here")

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        document = {"metadata": {"resourceVersion": str(self.rv)}, "status": self.flow.status.to_wire()}
        status = JobFlowStatus.model_validate(jsonpatch.apply(document, ops)["status"])
        self.rv += 1
        meta = self.flow.metadata.model_copy(update={"resource_version": str(self.rv)})
        self.flow = self.flow.model_copy(update={"status": status, "metadata": meta})
        return str(self.rv)

    async def delete_flow(self, namespace: str, name: str, uid: str) -> None:
        raise AssertionError("the flow is not deleted here")

    async def create_resource(self, namespace: str, kind: str, body: dict[str, Any]) -> ObjectMeta:
        name = body["metadata"]["name"]
        if name in self.refusals:
            raise self.refusals[name]
        if name in self.invalid:
            raise Invalid(422, "Invalid", f"{kind} {name} is invalid: spec.accessModes: Required value")
        if (kind, name) in self.objects:
            raise AlreadyExists(409, "AlreadyExists", f"{name} already exists")
        meta = {**body["metadata"], "uid": f"{kind}-{name}-uid"}
        self.objects[(kind, name)] = {**body, "metadata": meta}
        return ObjectMeta.model_validate(meta)

    async def get_resource(self, namespace: str, kind: str, name: str) -> ObjectMeta:
        return ObjectMeta.model_validate(self.objects[(kind, name)]["metadata"])


def flow_with_resources() -> JobFlow:
    flow = make_flow([job_step("a")], name="etl")
    templates = ResourceTemplates(volume_claim_templates=(CLAIM,), config_map_templates=(CONFIG,))
    meta = flow.metadata.model_copy(update={"resource_version": "1"})
    spec = flow.spec.model_copy(update={"resource_templates": templates})
    return flow.model_copy(update={"spec": spec, "metadata": meta})


@pytest.fixture
def fake() -> Fake:
    return Fake(flow_with_resources())


@pytest.fixture
def controller(fake: Fake) -> Controller:
    return controller_of(fake, FakeClock())


def refs(fake: Fake) -> list[tuple[str | None, str, str | None]]:
    return [(r.kind, r.name, r.uid) for r in fake.flow.status.resource_refs]


async def test_objects_are_created_and_recorded_with_uids_before_any_job(
    fake: Fake, controller: Controller
) -> None:
    await controller.reconcile(fake.flow.key)
    assert set(fake.objects) == {("PersistentVolumeClaim", "etl-data"), ("ConfigMap", "etl-settings")}
    assert refs(fake) == [
        ("PersistentVolumeClaim", "etl-data", "PersistentVolumeClaim-etl-data-uid"),
        ("ConfigMap", "etl-settings", "ConfigMap-etl-settings-uid"),
    ]
    assert fake.created == []
    await controller.reconcile(fake.flow.key)
    assert fake.created == ["a"]


async def test_our_own_object_is_adopted_after_a_lost_status_write(
    fake: Fake, controller: Controller
) -> None:
    before = fake.flow
    await controller.reconcile(fake.flow.key)
    fake.flow = before  # the status write was lost: the objects exist, the status does not know them
    await controller.reconcile(fake.flow.key)
    assert fake.flow.status.phase == "Pending"
    assert [uid for _, _, uid in refs(fake)] == [
        "PersistentVolumeClaim-etl-data-uid",
        "ConfigMap-etl-settings-uid",
    ]


def owned_by(kind: str, name: str, uid: str, api_version: str = API_VERSION) -> list[dict[str, Any]]:
    return [{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True}]


@pytest.mark.parametrize(
    ("api_version", "kind", "name"),
    [
        ("apps/v1", "Deployment", "web"),
        (API_VERSION, "JobFlow", "other"),  # a flow of another name is not going away for us
        # Another project's JobFlow kind named like this flow is no deleted flow of ours: it would be
        # waited for without end.
        ("batch.example.com/v1", "JobFlow", "etl"),
    ],
)
async def test_someone_elses_object_fails_the_flow(
    fake: Fake, controller: Controller, api_version: str, kind: str, name: str
) -> None:
    owners = owned_by(kind, name, "d1", api_version)
    fake.objects[("ConfigMap", "etl-settings")] = {
        "metadata": {"name": "etl-settings", "uid": "other", "ownerReferences": owners}
    }
    await controller.reconcile(fake.flow.key)
    status = fake.flow.status
    assert status.phase == "Failed"
    failed = next(c for c in status.conditions if c.type == "Failed")
    assert failed.reason == "ResourceConflict"
    assert "ConfigMap etl-settings already exists and was not created by this flow" in failed.message
    assert f"it belongs to {kind} {name} ({api_version})" in failed.message
    # The claim this flow did create is its own and listed; no Job ever ran.
    assert refs(fake) == [("PersistentVolumeClaim", "etl-data", "PersistentVolumeClaim-etl-data-uid")]
    assert fake.created == []
    assert ("Warning", "FlowFailed") in [(t, r) for t, r, _ in fake.events]
    await controller.reconcile(fake.flow.key)  # terminal: nothing more happens
    assert fake.created == []


async def test_a_manifest_the_apiserver_refuses_fails_the_flow(fake: Fake, controller: Controller) -> None:
    fake.invalid.add("etl-data")
    await controller.reconcile(fake.flow.key)
    assert fake.flow.status.phase == "Failed"
    assert "spec.accessModes: Required value" in (fake.flow.status.message or "")


@pytest.mark.parametrize(
    "refusal",
    [
        # The CRD keeps template fields as written: only the apiserver finds what it cannot decode.
        BadRequest(400, "BadRequest", "ConfigMap in version v1 cannot be handled: illegal base64 data"),
        RequestTooLarge(413, "RequestEntityTooLarge", "the request is too large"),
    ],
)
async def test_a_template_the_apiserver_can_never_take_fails_the_flow_naming_it(
    fake: Fake, controller: Controller, refusal: ApiError
) -> None:
    fake.refusals["etl-settings"] = refusal
    await controller.reconcile(fake.flow.key)  # not raised: retrying would never help
    assert fake.flow.status.phase == "Failed"
    assert f"ConfigMap etl-settings: {refusal.status} {refusal.message}" in (fake.flow.status.message or "")


async def test_a_template_refused_by_a_quota_is_retried_and_says_why(
    fake: Fake, controller: Controller
) -> None:
    quota = 'persistentvolumeclaims "etl-data" is forbidden: exceeded quota: storage'
    fake.refusals["etl-data"] = ApiError(403, "Forbidden", quota)
    with pytest.raises(ApiError):
        await controller.reconcile(fake.flow.key)  # the work queue retries it with backoff
    assert fake.flow.status.phase is None
    assert fake.events == [("Warning", "CreateForbidden", f"{quota} (retried with backoff)")]
    del fake.refusals["etl-data"]  # the quota was raised
    await controller.reconcile(fake.flow.key)
    assert ("PersistentVolumeClaim", "etl-data", "PersistentVolumeClaim-etl-data-uid") in refs(fake)
    assert fake.flow.status.phase != "Failed"


class Running(Fake):
    """Also a Job cache of the Jobs it created (each Running), and a Job API that records deletes."""

    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job:
        job = await super().create_job(namespace, body)
        self.jobs = (*self.jobs, job)
        return job

    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None:
        self.deleted.append(name)


async def test_a_template_refused_on_a_running_flow_stops_its_jobs() -> None:
    # A template added while step a runs, which the apiserver refuses: the flow fails, and a's Job must
    # not run on behind it (a rerun would start a second attempt beside it, on the same volume).
    flow = make_flow([job_step("a"), job_step("b", "a")], name="etl")
    fake = Running(
        flow.model_copy(update={"metadata": flow.metadata.model_copy(update={"resource_version": "1"})})
    )
    expectations = Expectations(FakeClock())
    controller = controller_of(fake, FakeClock(), expectations=expectations)
    await controller.reconcile(fake.flow.key)
    (job_a,) = [job.metadata.name for job in fake.jobs]
    expectations.creation_observed(fake.flow.metadata.uid, job_a)
    spec = fake.flow.spec.model_copy(
        update={"resource_templates": ResourceTemplates(volume_claim_templates=(CLAIM,))}
    )
    fake.flow = fake.flow.model_copy(
        update={"spec": spec, "metadata": fake.flow.metadata.model_copy(update={"generation": 2})}
    )
    fake.invalid.add("etl-data")
    await controller.reconcile(fake.flow.key)
    assert fake.flow.status.phase == "Failed"
    assert fake.deleted == [job_a]


@pytest.mark.parametrize(
    "held_by",
    [
        # e.g. the PVC of a deleted flow, kept by kubernetes.io/pvc-protection while a pod uses it
        {"deletionTimestamp": "2025-01-01T00:00:00Z"},
        # `kubectl delete jf etl && kubectl apply -f etl.yaml`, or a restore: the deleted flow's object,
        # which the garbage collector has not even marked yet
        {"ownerReferences": owned_by("JobFlow", "etl", "the-deleted-flow")},
        # The flow's own, made by a create whose status write was lost, and deleted by a user since: not
        # adopted (it would vanish under the steps), but made again once it is gone
        {
            "deletionTimestamp": "2025-01-01T00:00:00Z",
            "ownerReferences": owned_by("JobFlow", "etl", "uid-etl"),
        },
    ],
)
async def test_a_name_held_by_an_object_on_its_way_out_is_waited_for(
    fake: Fake, controller: Controller, held_by: dict[str, Any]
) -> None:
    fake.objects[("ConfigMap", "etl-settings")] = {
        "metadata": {"name": "etl-settings", "uid": "old", **held_by}
    }
    requeue = await controller.reconcile(fake.flow.key)
    assert requeue is not None
    assert requeue <= 5.0
    assert fake.flow.status.phase == "Pending"
    assert refs(fake) == [("PersistentVolumeClaim", "etl-data", "PersistentVolumeClaim-etl-data-uid")]
    # What `kubectl describe` shows of why the flow waits (its status says only Pending).
    [(kind, message)] = [(t, m) for t, r, m in fake.events if r == "ResourceNameTaken"]
    assert kind == "Warning"
    assert message.startswith("ConfigMap etl-settings already exists and is on its way out")
    del fake.objects[("ConfigMap", "etl-settings")]  # the garbage collector finished
    await controller.reconcile(fake.flow.key)
    assert [(name, uid) for _, name, uid in refs(fake)] == [
        ("etl-data", "PersistentVolumeClaim-etl-data-uid"),
        ("etl-settings", "ConfigMap-etl-settings-uid"),  # a new object, not the one that went
    ]
    assert fake.created == []
    await controller.reconcile(fake.flow.key)
    assert len(fake.created) == 1


def ask_rerun(fake: Fake, rid: str) -> None:
    """`zen-flow retry`: the request annotation, and who asked (the mutating webhook's)."""
    annotations = {**fake.flow.metadata.annotations, ANNOTATION_RETRY: rid, ANNOTATION_RETRIED_BY: "alice"}
    fake.flow = fake.flow.model_copy(
        update={"metadata": fake.flow.metadata.model_copy(update={"annotations": annotations})}
    )


@pytest.mark.parametrize("cause", ["taken", "refused"])
async def test_a_rerun_of_a_flow_that_failed_creating_its_resources_creates_them_again(
    fake: Fake, cause: str
) -> None:
    clock = FakeClock()
    controller = controller_of(fake, clock)
    # Nothing else could be done but delete and re-create the flow: no step had failed, so a rerun was
    # refused ("no failed Job step to rerun").
    if cause == "taken":
        fake.objects[("ConfigMap", "etl-settings")] = {
            "metadata": {
                "name": "etl-settings",
                "uid": "theirs",
                "ownerReferences": owned_by("Deployment", "web", "d1", "apps/v1"),
            }
        }
    else:
        fake.invalid.add("etl-settings")
    await controller.reconcile(fake.flow.key)
    assert fake.flow.status.phase == "Failed"
    first_failure = fake.flow.status.completion_time
    clock.jump(3600)

    # Asked before the cause is gone: the creates are tried again, and the flow fails again, once.
    fake.events.clear()
    ask_rerun(fake, "r1")
    await controller.reconcile(fake.flow.key)
    status = fake.flow.status
    assert status.phase == "Failed"
    assert status.audit is not None
    assert [(r.id, r.user, r.steps) for r in status.audit.retries] == [("r1", "alice", ())]
    assert [(t, r) for t, r, _ in fake.events] == [("Normal", "FlowRetried"), ("Warning", "FlowFailed")]
    assert "rerun requested by alice: creating its resources again" in fake.events[0][2]
    assert "cannot create the flow's resources: ConfigMap etl-settings" in fake.events[1][2]
    # It failed anew: the TTL counts from now, not from the first failure.
    assert first_failure is not None
    assert status.completion_time == first_failure + timedelta(hours=1)
    fake.events.clear()
    await controller.reconcile(fake.flow.key)  # honoured once: not tried again on the next reconcile
    assert fake.events == []
    assert refs(fake) == [("PersistentVolumeClaim", "etl-data", "PersistentVolumeClaim-etl-data-uid")]

    # The user freed the name, or fixed the template; a new request creates what is missing, then the steps.
    if cause == "taken":
        del fake.objects[("ConfigMap", "etl-settings")]
    else:
        fake.invalid.discard("etl-settings")
    ask_rerun(fake, "r2")
    await controller.reconcile(fake.flow.key)
    assert fake.flow.status.phase == "Pending"
    assert refs(fake) == [
        ("PersistentVolumeClaim", "etl-data", "PersistentVolumeClaim-etl-data-uid"),
        ("ConfigMap", "etl-settings", "ConfigMap-etl-settings-uid"),
    ]
    failed = next(c for c in fake.flow.status.conditions if c.type == "Failed")
    assert failed.status == "False"
    assert fake.created == []
    await controller.reconcile(fake.flow.key)
    assert fake.created == ["a"]
    assert fake.flow.status.phase == "Running"
