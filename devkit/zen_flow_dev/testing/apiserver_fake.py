"""An in-memory stand-in for the apiserver and the controller's informer caches, for unit tests of the
controller (the integration tier runs against the real apiserver; tests/integration/test_fake_contract.py
checks that this fake answers like it).

What it keeps from the apiserver, because the controller's correctness depends on it:
- optimistic concurrency: every write that changes an object bumps one resourceVersion counter (a
  no-op write keeps the version); a status JSON patch that sets `metadata.resourceVersion` is refused
  with 409 Conflict unless that is the object's current version, and one whose operation does not
  apply (an index or member that is not there) with 422 Invalid;
- names are unique: creating a Job whose name exists answers 409 AlreadyExists;
- timestamps in whole seconds (creationTimestamp, conditions), as metav1.Time serialises them.
And from informers: the controller reads caches that lag behind the truth until `sync()` delivers the
changes (with the controller's event handlers, as watch events would: informer_fake.py).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from zen_flow.api import Job, JobFlow, JobFlowSpec, JobFlowStatus
from zen_flow.api.constants import (
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    ANNOTATION_SUSPENDED_BY_PARENT,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    STOP_RUN_FINALLY,
)
from zen_flow.api.job import JOB, JobMeta, LabelledJob, LabelledMeta
from zen_flow.api.meta import Condition, ObjectMeta
from zen_flow.api.pod import Pod
from zen_flow.core import jsonpatch
from zen_flow.kube.errors import ApiError, from_status
from zen_flow.kube.memo_caches import ConfigMapData
from zen_flow.machinery.clock import Clock
from zen_flow_dev.testing.informer_fake import FakeInformerCaches


def _refusal(reason: str, message: str) -> ApiError:
    """A 409 as the apiserver words it."""
    return from_status(409, {"kind": "Status", "code": 409, "reason": reason, "message": message})


def with_labels(job: Job, labels: Mapping[str, str]) -> LabelledJob:
    """`job` as a GET of it answers, with its labels (`JobClient.get`)."""
    meta = {f.name: getattr(job.metadata, f.name) for f in dataclasses.fields(JobMeta)}
    return LabelledJob(metadata=LabelledMeta(**meta, labels=dict(labels)), status=job.status)


def conflict(name: str) -> ApiError:
    return _refusal(
        "Conflict",
        f'Operation cannot be fulfilled on jobflows.workflow.kube-zen.io "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
    )


def already_exists(name: str) -> ApiError:
    return _refusal("AlreadyExists", f'jobs.batch "{name}" already exists')


class FakeApiServer(FakeInformerCaches):
    """Implements the controller's FlowCache, JobCache (its informer caches: informer_fake.py),
    ClusterApi and EventSink."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._clock = clock
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)
        self.flows: dict[str, JobFlow] = {}  # the truth, by namespace/name
        self.jobs: dict[tuple[str, str], Job] = {}  # the truth, by (namespace, name)
        # The pods `pods_of` answers, by (namespace, Job name), and the reads it answered.
        self.pods: dict[tuple[str, str], list[Pod]] = {}
        self.pod_reads: list[tuple[str, str]] = []
        self.cached_pod_reads: list[tuple[str, str]] = []
        self.job_creates: list[str] = []  # every Job create that succeeded, in order
        self.refused: list[str] = []  # "409 Conflict" / "409 AlreadyExists", in order
        self.suspends: list[tuple[str, bool, str]] = []  # child suspend patches: (name, suspend, uid)
        self.stops: list[tuple[str, str, str]] = []  # child stop patches: (name, uid, stopped-by)
        self.events: list[tuple[str, str, str]] = []
        self.children_refused: list[tuple[str, str, str]] = []  # `child_refused`: (parent uid, name, why)
        # Raised by the next status patches, in order, before anything is applied (a 503, a timeout).
        self.status_errors: list[Exception] = []
        # ConfigMaps (memoize caches, resourceTemplates' ConfigMaps): (namespace, name) ->
        # {"labels": {...}, "data": {...}}.
        self.config_maps: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        # The next requests' answers by verb: an error, or None (answered as usual).
        self.config_map_errors: dict[str, list[Exception | None]] = {}
        self.config_map_limit = 1_048_576  # bytes of data, as the apiserver's
        self.config_map_requests: list[str] = []  # "get NAME", "patch NAME", "create NAME", in order
        # JobFlowTemplates, raw, by (namespace, name): what the controller expands a flow naming one from.
        self.templates: dict[tuple[str, str], dict[str, Any]] = {}
        # ClusterJobFlowTemplates, raw, by name; `cluster_template_error` answers every read of one (a
        # 403 where the controller is bound by RoleBindings only).
        self.cluster_templates: dict[str, dict[str, Any]] = {}
        self.cluster_template_error: Exception | None = None
        # Jobs whose labels a user changed (`relabel`): what a GET of them answers.
        self.job_labels: dict[tuple[str, str], dict[str, str]] = {}

    # --- writes that happen outside the controller (users, the Job controller) -------------------------

    def create_flow(self, flow: JobFlow) -> JobFlow:
        meta = flow.metadata.model_copy(
            update={"uid": f"uid-{next(self._uids)}", "creation_timestamp": self._now(), "generation": 1}
        )
        return self._store_flow(flow.model_copy(update={"metadata": meta}))

    def update_flow(self, key: str, change: Callable[[JobFlow], JobFlow]) -> JobFlow:
        """Another writer (a user's kubectl, another replica) changes the flow: a new resourceVersion,
        unless the change changes nothing."""
        old = self.flows[key]
        new = change(old)
        return old if new == old else self._store_flow(new)

    def remove_flow(self, key: str) -> JobFlow:
        """A user deletes the flow (no finalizer: gone at once); the cache sees it at the next `sync`."""
        return self.flows.pop(key)

    def finish_job(self, namespace: str, name: str, *, succeeded: bool = True, reason: str = "") -> Job:
        """What the Job controller writes when the Job's pod ends (`reason` of a failure, e.g.
        DeadlineExceeded for its activeDeadlineSeconds)."""
        job = self.jobs[(namespace, name)]
        now = self._now()
        kind, reason = (
            ("Complete", "Completed") if succeeded else ("Failed", reason or "BackoffLimitExceeded")
        )
        cond = Condition(type=kind, status="True", reason=reason, last_transition_time=now)
        counts = {"succeeded": 1} if succeeded else {"failed": 1}
        status = replace(
            job.status, conditions=(*job.status.conditions, cond), start_time=job.status.start_time or now,
            completion_time=now if succeeded else None, active=0, **counts,
        )  # fmt: skip
        return self._store_job(replace(job, status=status))

    def relabel(self, namespace: str, name: str, labels: Mapping[str, str]) -> None:
        """A user sets the Job's labels: one no longer labelled managed-by zen-flow leaves the Job
        informer, which is label-selected (its next `sync` drops it, as the watch's DELETED event)."""
        key = (namespace, name)
        self.job_labels[key] = dict(labels)
        if labels.get(LABEL_MANAGED_BY) == MANAGED_BY:
            self.unwatched.discard(key)
        else:
            self.unwatched.add(key)
        self._store_job(self.jobs[key])

    def report_pods(self, namespace: str, name: str, *, ready: int, active: int = 1) -> Job:
        """What the Job controller writes as the Job's pods come and go: `active` pods, `ready` of them
        ready (the pods a read finds are the test's: `pods`)."""
        job = self.jobs[(namespace, name)]
        return self._store_job(replace(job, status=replace(job.status, active=active, ready=ready)))

    # --- ClusterApi ------------------------------------------------------------------------------------

    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job:
        name = body["metadata"]["name"]
        if (namespace, name) in self.jobs:
            self.refused.append("409 AlreadyExists")
            raise already_exists(name)
        meta = {**body["metadata"], "namespace": namespace, "uid": f"uid-{next(self._uids)}"}
        meta["creationTimestamp"] = self._now().isoformat()
        job = JOB.validate_python({"metadata": meta, "spec": body.get("spec", {})})
        self.job_creates.append(name)
        return self._store_job(job)

    async def get_job(self, namespace: str, name: str) -> Job:
        if (namespace, name) not in self.jobs:
            raise from_status(404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": name})
        job = self.jobs[(namespace, name)]
        labels = self.job_labels.get((namespace, name))
        return job if labels is None else with_labels(job, labels)

    async def label_job(self, namespace: str, name: str, labels: Mapping[str, str], uid: str) -> None:
        job = self.jobs.get((namespace, name))
        if job is None or job.metadata.uid != uid:
            raise conflict(name)  # the apiserver's uid precondition (a 404 when none: the same to callers)
        self.relabel(namespace, name, {**self.job_labels.get((namespace, name), {}), **labels})

    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None:
        job = self.jobs.get((namespace, name))
        if job is not None and uid and job.metadata.uid != uid:
            raise conflict(name)  # the apiserver's uid precondition
        self.jobs.pop((namespace, name), None)

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        if self.status_errors:
            raise self.status_errors.pop(0)
        key = f"{namespace}/{name}"
        flow = self.flows.get(key)
        if flow is None:  # deleted since the cache showed it
            raise from_status(404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": name})
        current = {"metadata": {"resourceVersion": flow.metadata.resource_version}}
        current["status"] = flow.status.to_wire()
        try:
            patched = jsonpatch.apply(current, ops)
        except jsonpatch.PatchError as err:
            self.refused.append("422 Invalid")
            raise from_status(
                422, {"kind": "Status", "code": 422, "reason": "Invalid", "message": str(err)}
            ) from err
        # The apiserver's rule: a patch that sets a resourceVersion other than the object's is refused.
        if patched["metadata"]["resourceVersion"] != flow.metadata.resource_version:
            self.refused.append("409 Conflict")
            raise conflict(name)
        status = JobFlowStatus.model_validate(patched.get("status") or {})
        if status == flow.status:
            return flow.metadata.resource_version  # a write that changes nothing keeps the version
        stored = self._store_flow(flow.model_copy(update={"status": status}))
        return stored.metadata.resource_version

    async def delete_flow(self, namespace: str, name: str, uid: str) -> None:
        flow = self.flows.get(f"{namespace}/{name}")
        if flow is not None and uid and flow.metadata.uid != uid:
            raise conflict(name)  # the apiserver's uid precondition
        self.flows.pop(f"{namespace}/{name}", None)

    async def create_child_flow(self, namespace: str, body: dict[str, Any]) -> str:
        """A child flow (a Flow step's): stored as written (no webhook expands it here)."""
        name = body["metadata"]["name"]
        if f"{namespace}/{name}" in self.flows:
            self.refused.append("409 AlreadyExists")
            raise already_exists(name)
        flow = JobFlow.model_validate({**body, "metadata": {**body["metadata"], "namespace": namespace}})
        return self.create_flow(flow).metadata.uid

    async def suspend_flow(self, namespace: str, name: str, suspend: bool, uid: str) -> None:
        """The merge patch of `JobFlowClient.set_suspend`: spec.suspend and the parent's mark, under its
        UID precondition."""
        key = f"{namespace}/{name}"
        self.suspends.append((name, suspend, uid))
        flow = self.flows.get(key)
        if flow is not None and flow.metadata.uid != uid:
            raise conflict(name)

        def patch(f: JobFlow) -> JobFlow:
            annotations = {
                k: v for k, v in f.metadata.annotations.items() if k != ANNOTATION_SUSPENDED_BY_PARENT
            }
            if suspend:
                annotations[ANNOTATION_SUSPENDED_BY_PARENT] = "true"
            meta = f.metadata.model_copy(update={"annotations": annotations})
            return f.model_copy(
                update={"metadata": meta, "spec": f.spec.model_copy(update={"suspend": suspend})}
            )

        self.update_flow(key, patch)

    async def stop_flow(
        self, namespace: str, name: str, uid: str, by: str, resource_version: str = ""
    ) -> None:
        """The merge patch of `Cluster.stop_flow` (no webhook: stopped-by as sent), under its UID and,
        when given, its resourceVersion (a 409 Conflict in `refused` if the flow changed since)."""
        self.stops.append((name, uid, by))
        key, stop = f"{namespace}/{name}", {ANNOTATION_STOP: STOP_RUN_FINALLY, ANNOTATION_STOPPED_BY: by}
        if (flow := self.flows.get(key)) is not None and flow.metadata.uid != uid:
            raise conflict(name)
        if flow is not None and resource_version and flow.metadata.resource_version != resource_version:
            self.refused.append("409 Conflict")
            raise conflict(name)
        self.update_flow(key, lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(
            update={"annotations": {**f.metadata.annotations, **stop}})}))  # fmt: skip

    def child_refused(self, owner_uid: str, namespace: str, name: str, why: str) -> None:
        self.children_refused.append((owner_uid, name, why))

    async def create_resource(self, namespace: str, kind: str, body: dict[str, Any]) -> ObjectMeta:
        """spec.resourceTemplates' ConfigMaps, kept where memoize caches are read (their labels and data);
        other kinds are not in this fake."""
        if kind != "ConfigMap":
            raise NotImplementedError(f"spec.resourceTemplates' {kind}s: not in this fake")
        meta = body["metadata"]
        await self.create_memo_cache(namespace, meta["name"], meta.get("labels", {}), body.get("data", {}))
        return ObjectMeta(name=meta["name"], namespace=namespace, uid=f"uid-configmap-{next(self._uids)}")

    async def get_resource(self, namespace: str, kind: str, name: str) -> ObjectMeta:
        raise NotImplementedError("spec.resourceTemplates: reading one back is not in this fake")

    async def termination_messages(
        self, namespace: str, job: str, *, job_uid: str, succeeded: bool
    ) -> dict[str, str] | None:
        return None

    async def pods_of(self, namespace: str, job: str, *, cached: bool = False) -> Sequence[Pod]:
        """The pods a test put in `pods` for the Job (none: a Job of this fake runs no pod); the reads
        made from the apiserver's cache are also in `cached_pod_reads`."""
        self.pod_reads.append((namespace, job))
        if cached:
            self.cached_pod_reads.append((namespace, job))
        return tuple(self.pods.get((namespace, job), ()))

    async def read_memo_cache(self, namespace: str, name: str) -> ConfigMapData:
        found = self._config_map("get", namespace, name)
        return ConfigMapData(dict(found["labels"]), dict(found["data"]))

    async def store_memo(self, namespace: str, name: str, changes: Mapping[str, str | None]) -> None:
        """A JSON merge patch of `data`: None removes a key. Refused (422) as the apiserver does when
        the ConfigMap's values would pass `config_map_limit` bytes."""
        data = self._config_map("patch", namespace, name)["data"]
        patched = {**data, **changes}
        self._fits({k: v for k, v in patched.items() if v is not None}, name)
        data.clear()
        data.update({k: v for k, v in patched.items() if v is not None})

    async def create_memo_cache(
        self, namespace: str, name: str, labels: Mapping[str, str], data: Mapping[str, str]
    ) -> None:
        self._config_map_request("create", name)
        if (namespace, name) in self.config_maps:
            raise from_status(
                409, {"reason": "AlreadyExists", "message": f'configmaps "{name}" already exists'}
            )
        self._fits(data, name)
        self.config_maps[(namespace, name)] = {"labels": dict(labels), "data": dict(data)}

    def _fits(self, data: Mapping[str, str], name: str) -> None:
        if sum(len(v.encode()) for v in data.values()) > self.config_map_limit:  # the values, as its
            message = f'ConfigMap "{name}" is invalid: []: Too long: must have at most 1048576 bytes'
            raise from_status(422, {"reason": "Invalid", "message": message})

    def _config_map(self, verb: str, namespace: str, name: str) -> dict[str, dict[str, str]]:
        self._config_map_request(verb, name)
        found = self.config_maps.get((namespace, name))
        if found is None:
            raise from_status(404, {"reason": "NotFound", "message": f'configmaps "{name}" not found'})
        return found

    def _config_map_request(self, verb: str, name: str) -> None:
        self.config_map_requests.append(f"{verb} {name}")
        if (errors := self.config_map_errors.get(verb)) and (error := errors.pop(0)) is not None:
            raise error

    # --- EventSink -------------------------------------------------------------------------------------

    async def get_flow(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The flow as written: the fields its model was given (not the model's defaults)."""
        flow = self.flows.get(f"{namespace}/{name}")
        if flow is None:
            return None
        raw: dict[str, Any] = flow.model_dump(
            by_alias=True, exclude_unset=True, exclude_none=True, mode="json"
        )
        raw["metadata"] = flow.metadata.to_wire()
        return raw

    async def get_flow_template(
        self, namespace: str, name: str, *, cluster: bool = False
    ) -> Mapping[str, Any] | None:
        if not cluster:
            return self.templates.get((namespace, name))
        if self.cluster_template_error is not None:
            raise self.cluster_template_error
        return self.cluster_templates.get(name)

    async def expand_flow(
        self,
        namespace: str,
        name: str,
        resource_version: str,
        spec: Mapping[str, Any],
        labels: Mapping[str, str | None],
    ) -> None:
        """A merge patch (RFC 7386) of the flow's spec and labels (null: removed),
        conditional on `resource_version`: a new generation."""
        key = f"{namespace}/{name}"
        old = self.flows[key]
        if old.metadata.resource_version != resource_version:
            self.refused.append("409 Conflict")
            raise conflict(name)
        wire = merged(old.spec.to_wire(), spec)
        meta = old.metadata.model_copy(
            update={
                "labels": {k: v for k, v in merged(old.metadata.labels, labels).items() if v is not None},
                "generation": (old.metadata.generation or 1) + 1,
            }
        )
        self._store_flow(old.model_copy(update={"metadata": meta, "spec": JobFlowSpec.model_validate(wire)}))

    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    # --- internals -------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self._clock.now().replace(microsecond=0)

    def _store_flow(self, flow: JobFlow) -> JobFlow:
        meta = flow.metadata.model_copy(update={"resource_version": str(next(self._versions))})
        stored = flow.model_copy(update={"metadata": meta})
        self.flows[stored.key] = stored
        return stored

    def _store_job(self, job: Job) -> Job:
        meta = replace(job.metadata, resource_version=str(next(self._versions)))
        stored = replace(job, metadata=meta)
        self.jobs[(meta.namespace, meta.name)] = stored
        return stored


def merged(doc: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`doc` with the RFC 7386 merge patch `patch` applied (a null removes a member)."""
    out = dict(doc)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
