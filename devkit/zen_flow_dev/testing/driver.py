"""Drive JobFlows on a real cluster from tests and benchmarks: create, read, wait, inspect Jobs."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

from zen_flow.kube.client import KubeClient
from zen_flow.kube.config import load_config
from zen_flow.kube.errors import NotFound
from zen_flow.kube.jobflows import JOBFLOWS, JobFlowClient
from zen_flow.kube.jobs import JobClient
from zen_flow.kube.transport import ClientOptions
from zen_flow.machinery.clock import Clock, SystemClock

T = TypeVar("T")
TERMINAL = ("Succeeded", "Failed")


async def wait_until(
    probe: Callable[[], Awaitable[T | None]],
    timeout: float,
    *,
    interval: float = 0.1,
    what: str = "condition",
    clock: Clock | None = None,
) -> T:
    """Poll `probe` until it returns something truthy (returned), or raise TimeoutError after `timeout`."""
    clock = clock or SystemClock()
    deadline = clock.monotonic() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if last:
            return last
        if clock.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f}s (last: {last!r})")
        await clock.sleep(interval)


class FlowDriver:
    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self.flows = JobFlowClient(kube)
        self.jobs_api = JobClient(kube, label_selector="")

    @classmethod
    async def connect(cls, kubeconfig: Path, *, qps: float = 200, burst: int = 400) -> FlowDriver:
        config = await load_config(str(kubeconfig))
        # The test side must never be the bottleneck, nor look like the controller in the apiserver's metrics.
        return cls(KubeClient(config, ClientOptions(qps=qps, burst=burst, user_agent="zen-flow-tests")))

    async def close(self) -> None:
        await self.kube.close()

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        ns = manifest["metadata"].get("namespace", "default")
        return await self.kube.request("POST", JOBFLOWS.path(ns), body=manifest)

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.flows.get(namespace, name)
        except NotFound:
            return None

    async def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.request(
            "PATCH", JOBFLOWS.path(namespace, name), body=patch, content_type="application/merge-patch+json"
        )

    async def delete(self, namespace: str, name: str) -> None:
        with contextlib.suppress(NotFound):
            await self.flows.delete(namespace, name)

    async def jobs(self, namespace: str) -> list[dict[str, Any]]:
        return list((await self.jobs_api.list(namespace)).items)

    async def wait_phase(
        self, namespace: str, name: str, phases: Collection[str] = TERMINAL, timeout: float = 60.0
    ) -> dict[str, Any]:
        """The flow once its status.phase is one of `phases`."""

        async def probe() -> dict[str, Any] | None:
            obj = await self.get(namespace, name)
            phase = ((obj or {}).get("status") or {}).get("phase")
            return obj if phase in phases else None

        return await wait_until(probe, timeout, what=f"{namespace}/{name} phase in {sorted(phases)}")

    async def wait_gone(self, namespace: str, name: str, timeout: float = 60.0) -> None:
        async def probe() -> bool:
            return await self.get(namespace, name) is None

        await wait_until(probe, timeout, what=f"{namespace}/{name} deleted")


def step_phases(flow: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s.get("phase", "") for s in (flow.get("status") or {}).get("steps", [])}


def jobs_by_step(jobs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The names of `jobs` (as `FlowDriver.jobs` lists them) by the step their label names."""
    out: dict[str, list[str]] = {}
    for job in jobs:
        labels = job["metadata"].get("labels", {})
        out.setdefault(labels.get("workflow.kube-zen.io/step", "?"), []).append(job["metadata"]["name"])
    return out
