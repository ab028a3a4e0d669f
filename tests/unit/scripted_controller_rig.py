"""The controller with one flow in its caches and a cluster API whose answers each test scripts (Fake)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from zen_flow.api import Job, JobFlow
from zen_flow.api.job import JOB
from zen_flow.api.meta import ObjectMeta
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.core import jsonpatch
from zen_flow.kube.errors import ApiError, from_status
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.clock import FakeClock

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class Fake:
    """One flow in the caches, a cluster API whose answers the test scripts, an event sink."""

    def __init__(self, flow: JobFlow, jobs: Sequence[Job] = ()) -> None:
        self.jobs = tuple(jobs)
        self.flow = flow.model_copy(
            update={"metadata": flow.metadata.model_copy(update={"resource_version": "1"})}
        )
        self.patches: list[dict[str, Any]] = []
        self.ops: list[list[dict[str, Any]]] = []  # each write as sent
        self.patch_errors: list[ApiError] = []
        self.create_errors: dict[str, ApiError] = {}
        self.delete_errors: list[ApiError] = []
        self.existing: dict[str, Job] = {}  # what a GET of a Job finds (after a create's 409)
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.events: list[tuple[str, str, str]] = []

    def get(self, key: str) -> JobFlow | None:
        return self.flow if key == self.flow.key else None

    def parse_error(self, key: str) -> str | None:
        return None

    def concurrency_group(self, group: str) -> Sequence[JobFlow]:
        return ()

    def expect_status(self, flow: JobFlow, resource_version: str, ops: list[dict[str, Any]]) -> None:
        pass  # this cache takes every version from the fake apiserver

    def deleted_stray(self, key: str) -> None:
        pass

    def jobs_for(self, owner_uid: str) -> Sequence[Job]:
        return self.jobs

    async def termination_messages(
        self, namespace: str, job: str, *, job_uid: str, succeeded: bool
    ) -> dict[str, str] | None:
        return None  # the pod is gone

    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job:
        step = body["metadata"]["labels"]["workflow.kube-zen.io/step"]
        if step in self.create_errors:
            raise self.create_errors[step]
        self.created.append(step)
        return JOB.validate_python({"metadata": {**body["metadata"], "uid": f"uid-{step}"}})

    async def get_job(self, namespace: str, name: str) -> Job:
        if name not in self.existing:
            raise from_status(404, {"reason": "NotFound", "message": name})
        return self.existing[name]

    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None:
        if self.delete_errors:
            raise self.delete_errors.pop(0)
        self.deleted.append(name)

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        self.ops.append(ops)
        # What the write touched, as {"status": {member: its new value}} (a whole list for an entry).
        document = {"metadata": {"resourceVersion": "1"}, "status": self.flow.status.to_wire()}
        written = jsonpatch.apply(document, ops)["status"]
        touched = {op["path"].split("/")[2] for op in ops if op["path"].startswith("/status/")}
        whole = any(op["path"] == "/status" for op in ops)
        self.patches.append(
            {"status": written if whole else {k: written[k] for k in touched if k in written}}
        )
        if self.patch_errors:
            raise self.patch_errors.pop(0)
        return str(len(self.patches) + 1)

    async def delete_flow(self, namespace: str, name: str, uid: str) -> None:
        pass

    async def create_resource(self, namespace: str, kind: str, body: dict[str, Any]) -> ObjectMeta:
        raise AssertionError("no resourceTemplates here")

    async def get_resource(self, namespace: str, kind: str, name: str) -> ObjectMeta:
        raise AssertionError("no resourceTemplates here")

    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def controller(
    fake: Fake,
    clock: FakeClock,
    *,
    queue: WorkQueue[str] | None = None,
    expectations: Expectations | None = None,
    metrics: Metrics | None = None,
    **kwargs: Any,
) -> Controller:
    return Controller(
        flows=fake,
        jobs=fake,
        api=fake,
        queue=queue if queue is not None else WorkQueue(clock=clock),
        expectations=expectations if expectations is not None else Expectations(clock),
        events=fake,
        clock=clock,
        metrics=metrics if metrics is not None else Metrics(),
        **kwargs,
    )
