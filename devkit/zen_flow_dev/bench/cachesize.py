"""What one cached object costs: Jobs and 20-step JobFlows decoded and compacted as the informers do,
measured with `tracemalloc` (no cluster; a few seconds). The cache workload's RSS says what the whole
controller holds; this says what each object adds, so a change to the models can be judged alone.

The objects are what a 1.36 apiserver sends for the cache workload: suspended Jobs with their labels,
annotations, managedFields and pod template; flows of 20 parallel steps stamped from one manifest, their
status written by the planner (every step Running), each with its own name, uid and Job names.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
import uuid
from datetime import UTC, datetime
from typing import Any

from zen_flow.api import JobFlow
from zen_flow.informer import JobFlowInformer, JobInformer
from zen_flow.machinery.clock import SystemClock
from zen_flow_dev.bench.workloads import Workload, flow_manifest_for, parallel
from zen_flow_dev.testing.simulator import Simulator

FLOW_STEPS = 20
T0 = datetime(2026, 12, 2, 10, 0, 5, tzinfo=UTC)


def job_json(i: int) -> dict[str, Any]:
    """Job `i`: step `i % 20` of flow `i // 20`."""
    flow, step = divmod(i, FLOW_STEPS)
    flow_name, uid = f"cache-{flow:05d}", str(uuid.uuid4())
    name = f"{flow_name}-s{step}-{uid[:8]}"
    labels = {
        "app.kubernetes.io/managed-by": "zen-flow",
        "workflow.kube-zen.io/flow": flow_name,
        "workflow.kube-zen.io/step": f"s{step}",
        "workflow.kube-zen.io/attempt": "1",
    }
    owner = {"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow", "name": flow_name,
             "uid": str(uuid.UUID(int=flow + 1)), "controller": True, "blockOwnerDeletion": True}  # fmt: skip
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name, "namespace": "bench", "uid": uid, "resourceVersion": str(100_000 + i),
            # A flow's Jobs are created by one reconcile, within a second.
            "generation": 1, "creationTimestamp": f"2026-12-02T10:{flow // 60 % 60:02d}:{flow % 60:02d}Z",
            "labels": labels, "annotations": {"batch.kubernetes.io/job-tracking": ""},
            "ownerReferences": [owner],
            "managedFields": [{"manager": "zen-flow", "operation": "Update", "apiVersion": "batch/v1",
                               "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {}}}}],
        },
        "spec": {
            "parallelism": 1, "completions": 1, "backoffLimit": 0, "suspend": True,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}},
            "template": {
                "metadata": {"labels": {**labels, "controller-uid": uid, "job-name": name}},
                "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                         "restartPolicy": "Never"},
            },
        },
        "status": {"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended",
                                   "lastTransitionTime": "2026-12-02T10:00:00Z"}]},
    }  # fmt: skip


def flow_json_maker() -> Any:
    """A function of `i` returning flow `i` as the apiserver sends it (the planner wrote its status)."""
    workload = Workload("cache", "", "cache", parallel(FLOW_STEPS), 1, suspend_jobs=True)
    manifest = flow_manifest_for(workload, "cache-00000", "bench")
    manifest["metadata"].update(
        uid="u", resourceVersion="1", generation=1, creationTimestamp="2026-12-02T10:00:00Z"
    )
    sim = Simulator(JobFlow.model_validate(manifest), now=T0)
    sim.reconcile()
    text = json.dumps(sim.flow.model_dump(by_alias=True, exclude_none=True, mode="json"))

    def flow_json(i: int) -> dict[str, Any]:
        flow: dict[str, Any] = json.loads(text.replace("cache-00000", f"cache-{i:05d}"))
        flow["metadata"].update(uid=str(uuid.uuid4()), resourceVersion=str(1_000 + i))
        for step in flow["status"]["steps"]:
            step["jobRef"]["uid"] = str(uuid.uuid4())
        return flow

    return flow_json


def _bytes_per_object(decoder: Any, objects: list[dict[str, Any]], page_size: int) -> float:
    pages = [
        json.dumps({"metadata": {"resourceVersion": "1"}, "items": objects[i : i + page_size]}).encode()
        for i in range(0, len(objects), page_size)
    ]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [obj for raw in pages for obj in decoder.page(raw).items]
        del pages
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # The list holding them is not the cache's (the store's dict costs about as much): left in.
    return (after - before) / len(kept)


def measure(jobs: int = 5_000, flows: int = 250) -> dict[str, Any]:
    """Bytes per cached Job and per cached 20-step flow (each informer fresh, so sharing is as a cold
    controller's: one manifest's steps and a flow's ownerReference are shared, as in a real cache)."""
    clock = SystemClock()
    job_bytes = _bytes_per_object(
        JobInformer(None, clock=clock).decoder,  # type: ignore[arg-type]  # decoding only: no source
        [job_json(i) for i in range(jobs)],
        500,
    )
    make_flow = flow_json_maker()
    flow_bytes = _bytes_per_object(
        JobFlowInformer(None, clock=clock).decoder,  # type: ignore[arg-type]
        [make_flow(i) for i in range(flows)],
        100,
    )
    return {
        "jobs": jobs,
        "bytes_per_job": round(job_bytes),
        "flows": flows,
        "flow_steps": FLOW_STEPS,
        "bytes_per_flow": round(flow_bytes),
        "job_json_bytes": len(json.dumps(job_json(0))),
        "flow_json_bytes": len(json.dumps(make_flow(0))),
    }
