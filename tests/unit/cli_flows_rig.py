"""The in-memory apiserver the `zen-flow` flow command tests run against (FakeCluster: JobFlows, pods and
logs, and every write the CLI sends), its `cluster` fixture, and the gated flow several of them decide."""

from __future__ import annotations

import copy
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from zen_flow.cli import main, session
from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.flows import flow_manifest, job_step, manual_step

NS = "default"


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            _merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


class FakeCluster:
    """The JobFlows, pods and logs the CLI reads; every write it sends."""

    def __init__(self) -> None:
        self.flows: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, list[dict[str, Any]]] = {}  # by Job name
        self.jobs: set[str] = set()
        self.writes: list[tuple[str, str, Any]] = []
        self.reads_until_done: dict[str, list[dict[str, Any]]] = {}  # successive statuses of a flow

    def add(self, flow: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        flow = copy.deepcopy(flow)
        flow["status"] = status or {}
        self.flows[flow["metadata"]["name"]] = flow

    async def request(
        self, method: str, path: str, body: Any = None, query: Any = (), content_type: str | None = None
    ) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        if method != "GET":
            self.writes.append((method, path, copy.deepcopy(body)))
        if parts[-1] == "pods":
            job = dict(query)["labelSelector"].split("=", 1)[1]
            return {"items": self.pods.get(job, [])}
        if parts[-2:-1] == ["jobs"]:
            if parts[-1] not in self.jobs:
                raise from_status(
                    404, {"reason": "NotFound", "message": f'jobs.batch "{parts[-1]}" not found'}
                )
            return {}
        if method == "POST":
            made = copy.deepcopy(body)
            made["metadata"].setdefault("name", made["metadata"].get("generateName", "") + "x7k2p")
            made["status"] = {}
            self.flows[made["metadata"]["name"]] = made
            return made
        flow = self.flows.get(parts[-1])
        if flow is None:
            raise from_status(404, {"reason": "NotFound", "message": f"{parts[-1]} not found"})
        if method == "PATCH":
            _merge(flow, body)
        if method == "GET" and self.reads_until_done.get(parts[-1]):
            flow["status"] = self.reads_until_done[parts[-1]].pop(0)
        return copy.deepcopy(flow)

    async def request_raw(self, method: str, path: str, query: Any = ()) -> bytes:
        return b"hello\n"


@pytest.fixture(name="cluster")
def cluster_fixture(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()

    @asynccontextmanager
    async def open_session(args: Any, out: Any = None) -> AsyncIterator[session.Session]:
        yield session.Session(fake, args.namespace or NS, sys.stdout)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "open_session", open_session)
    return fake


def zen_flow(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    said = capsys.readouterr()
    return code, said.out, said.err


def annotation_writes(cluster: FakeCluster) -> list[Any]:
    return [body for method, _, body in cluster.writes if method == "PATCH"]


def gate_flow() -> dict[str, Any]:
    return flow_manifest(
        "gate", NS, [job_step("build"), manual_step("approve", "build"), job_step("ship", "approve")]
    )
