"""What reconcile reads (the informers' caches) and writes (the apiserver), as protocols:
`zen_flow.informer` and `zen_flow.kube` implement them, `FakeApiServer` fakes them in tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from zen_flow.api import Job, JobFlow
from zen_flow.api.meta import ObjectMeta
from zen_flow.api.pod import Pod
from zen_flow.controller.memo_cache import MemoApi
from zen_flow.controller.templates import TemplateApi
from zen_flow.planner import Lineage


class FlowCache(Protocol):
    def get(self, key: str) -> JobFlow | None: ...
    def parse_error(self, key: str) -> str | None: ...
    def concurrency_group(self, group: str) -> Sequence[JobFlow]: ...
    def expect_status(self, flow: JobFlow, resource_version: str, ops: list[dict[str, Any]]) -> None:
        """Our status patch `ops` of `flow` made `resource_version`: the cache may take its watch event
        as known instead of decoding it."""
        ...


class JobCache(Protocol):
    def jobs_for(self, owner_uid: str) -> Sequence[Job]: ...
    def deleted_stray(self, key: str) -> None:
        """We delete this Job (`namespace/name`) as a stray of an ended flow: its final state is no
        outcome to keep (`JobInformer.jobs_for` returns recently deleted finished Jobs)."""
        ...


@runtime_checkable
class ChildFlowCache(Protocol):
    """A JobCache that shows Flow steps' child flows (controller/child_flows.py) knows which flows are
    verified children (planner/lineage.py)."""

    def is_child(self, flow: JobFlow) -> bool: ...
    def children(self, parent: JobFlow) -> Sequence[JobFlow]: ...
    def lineage(self, flow: JobFlow) -> Lineage: ...


@runtime_checkable
class ChildRefusals(Protocol):
    """A JobCache that shows Flow steps' child flows also keeps the children the apiserver refused."""

    def child_refused(self, owner_uid: str, namespace: str, name: str, why: str) -> None:
        """The apiserver refused the child flow `name` of the flow `owner_uid` for good: from now on
        `jobs_for` shows it failed, so its step fails saying why."""
        ...


class ClusterApi(MemoApi, TemplateApi, Protocol):
    """The writes reconcile makes; `zen_flow.kube` implements it, tests may fake it."""

    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job: ...
    async def get_job(self, namespace: str, name: str) -> Job: ...
    async def label_job(self, namespace: str, name: str, labels: Mapping[str, str], uid: str) -> None:
        """Merge `labels` into the Job's; `Conflict` if the Job of that name is not `uid`."""
        ...

    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None:
        """With `uid`, `Conflict` if the Job of that name is another one."""
        ...

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        """Applies a JSON patch (`zen_flow.core.jsonpatch`) to /status; returns the new resourceVersion."""
        ...

    async def delete_flow(self, namespace: str, name: str, uid: str) -> None: ...
    async def create_child_flow(self, namespace: str, body: dict[str, Any]) -> str:
        """Create a JobFlow (a Flow step's child); its uid. `AlreadyExists` if the name is taken."""
        ...

    async def suspend_flow(self, namespace: str, name: str, suspend: bool, uid: str) -> None:
        """Set a child flow's spec.suspend (a merge patch). `NotFound` if it is gone, `Conflict` if the
        name now belongs to another JobFlow than `uid`'s."""
        ...

    async def stop_flow(
        self, namespace: str, name: str, uid: str, by: str, resource_version: str = ""
    ) -> None:
        """Ask a child flow to stop and run its finally steps (`workflow.kube-zen.io/stop: RunFinally`,
        stopped-by `by`: the mutating webhook writes the controller's user instead). `NotFound` if it is
        gone, `Conflict` if the name now belongs to another JobFlow than `uid`'s, or (`resource_version`
        given) if it changed since."""
        ...

    async def create_resource(self, namespace: str, kind: str, body: dict[str, Any]) -> ObjectMeta: ...
    async def termination_messages(
        self, namespace: str, job: str, *, job_uid: str, succeeded: bool
    ) -> dict[str, str] | None: ...
    async def pods_of(self, namespace: str, job: str, *, cached: bool = False) -> Sequence[Pod]:
        """The pods that wear the Job's name label (planner.pod_wait keeps those the Job controls);
        `cached`: from the apiserver's cache."""
        ...

    async def get_resource(self, namespace: str, kind: str, name: str) -> ObjectMeta: ...
