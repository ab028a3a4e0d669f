"""The unit tier's FakeApiServer answers writes as the real apiserver does: the same script of status
patches (with a current, a stale or no resourceVersion), metadata changes and Job creates, run against
both, gets the same answers. The controller's conflict tests (tests/unit/test_controller_conflicts.py)
rely on exactly these answers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from zen_flow.api import JobFlow
from zen_flow.kube.errors import AlreadyExists, ApiError, Conflict
from zen_flow.kube.jobflows import JOBFLOWS, JSON_PATCH, JobFlowClient
from zen_flow.kube.jobs import JobClient
from zen_flow.kube.transport import METADATA_ONLY
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template


class Server(Protocol):
    async def create_flow(self, manifest: dict[str, Any]) -> str: ...  # returns its resourceVersion
    async def patch_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str: ...
    async def relabel(self, namespace: str, name: str) -> str: ...
    async def create_job(self, namespace: str, body: dict[str, Any]) -> None: ...


class Real:
    def __init__(self, driver: FlowDriver) -> None:
        self.driver = driver
        self.flows = JobFlowClient(driver.kube)

    async def create_flow(self, manifest: dict[str, Any]) -> str:
        created = await self.driver.create(manifest)
        return str(created["metadata"]["resourceVersion"])

    async def patch_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        return await self.flows.patch_status(namespace, name, ops)

    async def relabel(self, namespace: str, name: str) -> str:
        patched = await self.driver.patch(namespace, name, {"metadata": {"labels": {"owner": "data-team"}}})
        return str(patched["metadata"]["resourceVersion"])

    async def create_job(self, namespace: str, body: dict[str, Any]) -> None:
        await self.driver.kube.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body=body)


class Fake:
    def __init__(self) -> None:
        self.api = FakeApiServer(FakeClock())

    async def create_flow(self, manifest: dict[str, Any]) -> str:
        return self.api.create_flow(JobFlow.model_validate(manifest)).metadata.resource_version

    async def patch_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        return await self.api.patch_flow_status(namespace, name, ops)

    async def relabel(self, namespace: str, name: str) -> str:
        def label(flow: JobFlow) -> JobFlow:
            meta = flow.metadata.model_copy(update={"labels": {**flow.metadata.labels, "owner": "data-team"}})
            return flow.model_copy(update={"metadata": meta})

        return self.api.update_flow(f"{namespace}/{name}", label).metadata.resource_version

    async def create_job(self, namespace: str, body: dict[str, Any]) -> None:
        await self.api.create_job(namespace, body)


async def _answer(call: Callable[[], Awaitable[Any]]) -> str:
    try:
        result = await call()
    except AlreadyExists:
        return "409 AlreadyExists"
    except Conflict:
        return "409 Conflict"
    except ApiError as err:
        return f"{err.status} {err.reason}"
    return f"ok, {result}" if result else "ok"


async def _script(server: Server, namespace: str) -> list[str]:
    name = "contract"
    versions = [await server.create_flow(flow_manifest(name, namespace, [job_step("a")]))]

    def version(new: str) -> str:
        """How a write's resourceVersion relates to the one before: a no-op write keeps it."""
        seen = "same version" if new == versions[-1] else "new version"
        versions.append(new)
        return seen

    async def write(rv: str | None, *ops: dict[str, Any]) -> str:
        """A JSON patch as the controller sends it, conditional on `rv` (the controller's always are)."""
        meta = [{"op": "replace", "path": "/metadata/resourceVersion", "value": rv}] if rv is not None else []
        return version(await server.patch_status(namespace, name, [*meta, *ops]))

    def status(phase: str, step_phase: str) -> dict[str, Any]:
        return {"op": "add", "path": "/status", "value": {"phase": phase, "steps": [step(step_phase)]}}

    def step(phase: str) -> dict[str, Any]:
        return {"name": "a", "phase": phase, "retryCount": 0}

    entry = {"op": "replace", "path": "/status/steps/0", "value": step("Succeeded")}

    async def relabel() -> str:
        return version(await server.relabel(namespace, name))

    first = versions[0]
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "contract-a"}, **job_template()}
    return [
        await _answer(lambda: write(first, status("Running", "Running"))),  # the current version: written
        await _answer(lambda: write(first, status("Failed", "Failed"))),  # a stale one: refused
        await _answer(lambda: write(None, status("Running", "Running"))),  # unconditional, changes nothing
        await _answer(relabel),  # another writer changes the metadata
        await _answer(lambda: write(versions[-2], entry)),  # the version before that: refused
        await _answer(lambda: write(versions[-1], entry)),  # the newest: one step entry written
        await _answer(lambda: write(versions[-1], {**entry, "path": "/status/steps/1"})),  # no such entry
        await _answer(lambda: write(versions[-1], {"op": "remove", "path": "/status/message"})),  # no member
        await _answer(lambda: server.create_job(namespace, job)),
        await _answer(lambda: server.create_job(namespace, job)),  # the name is taken
    ]


async def test_the_fake_answers_writes_like_the_apiserver(
    driver: FlowDriver, namespace: str, jobflow_crd: Any
) -> None:
    real = await _script(Real(driver), namespace)
    assert real == [
        "ok, new version", "409 Conflict", "ok, same version", "ok, new version", "409 Conflict",
        "ok, new version", "422 Invalid", "422 Invalid", "ok", "409 AlreadyExists",
    ]  # fmt: skip
    assert await _script(Fake(), namespace) == real


async def test_writes_are_answered_with_the_metadata_only(
    driver: FlowDriver, namespace: str, jobflow_crd: Any
) -> None:
    """The controller asks for the answers to its status writes and Job creates as PartialObjectMetadata
    (`METADATA_ONLY`): the apiserver then encodes no spec or status for an answer read for its
    metadata."""
    created = await driver.create(flow_manifest("answered", namespace, [job_step("a")]))
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": created["metadata"]["resourceVersion"]},
        {"op": "add", "path": "/status", "value": {"phase": "Running"}},
    ]
    raw = await driver.kube.request_raw(
        "PATCH",
        JOBFLOWS.path(namespace, "answered", "status"),
        body=ops,
        content_type=JSON_PATCH,
        accept=METADATA_ONLY,
    )
    answer = json.loads(raw)
    assert answer["kind"] == "PartialObjectMetadata"
    assert set(answer) == {"kind", "apiVersion", "metadata"}
    stored = await driver.get(namespace, "answered")
    assert stored is not None
    assert stored["status"]["phase"] == "Running"
    assert answer["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    # ... and what the controller's client makes of it: the new version.
    ops[0]["value"] = stored["metadata"]["resourceVersion"]
    ops[1]["value"] = {"phase": "Succeeded"}
    written = await JobFlowClient(driver.kube).patch_status(namespace, "answered", ops)
    again = await driver.get(namespace, "answered")
    assert again is not None
    assert written == again["metadata"]["resourceVersion"]

    job = await JobClient(driver.kube).create(
        namespace, {"metadata": {"name": "answered-a"}, **job_template()}
    )
    stored_job = await driver.kube.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/answered-a")
    assert job.metadata.uid == stored_job["metadata"]["uid"]
    assert job.metadata.name == "answered-a"
