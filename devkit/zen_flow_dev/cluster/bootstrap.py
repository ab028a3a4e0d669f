"""Objects the full profile creates at start-up: the fake Node, and a smoke Job proving the whole chain."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from zen_flow_dev.cluster.adminclient import AdminClient, wait_until
from zen_flow_dev.cluster.stages import NODE_NAME, node_manifest

SMOKE_NAMESPACE = "default"


def register_node(client: AdminClient, name: str = NODE_NAME) -> None:
    """Create the fake Node (kwok fills in its status); an existing one is kept."""
    response = client.request("POST", "/api/v1/nodes", node_manifest(name))
    if response.status not in (200, 201, 409):
        raise RuntimeError(f"creating Node {name}: HTTP {response.status}: {response.body[:500]}")


def node_ready(client: AdminClient, name: str = NODE_NAME) -> bool:
    response = client.request("GET", f"/api/v1/nodes/{name}")
    if response.status == 404:
        return False  # a kubelet registers its Node itself, a moment after it starts
    node = client.get(f"/api/v1/nodes/{name}")
    return _condition(node, "Ready") == "True"


def wait_node_ready(
    client: AdminClient, timeout: float, abort: Callable[[], str | None] | None = None, name: str = NODE_NAME
) -> None:
    wait_until(lambda: node_ready(client, name), timeout, f"Node {name} to become Ready", abort=abort)


def smoke_job_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "zenflow-devcluster"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    # Nothing is pulled: kwok only pretends to run containers.
                    "containers": [{"name": "smoke", "image": "busybox", "command": ["true"]}],
                }
            },
        },
    }


def run_smoke_job(client: AdminClient, timeout: float, abort: Callable[[], str | None] | None = None) -> str:
    """Create a Job and wait for its Complete condition: scheduler, Job controller, kwok and the Job's
    finalizer handling all had to work. The Job is deleted afterwards (without waiting). Returns its name."""
    name = f"zenflow-smoke-{secrets.token_hex(4)}"
    base = f"/apis/batch/v1/namespaces/{SMOKE_NAMESPACE}/jobs"
    client.create(base, smoke_job_manifest(name))

    def finished() -> str | None:
        job = client.get(f"{base}/{name}")
        if _condition(job, "Failed") == "True":
            raise RuntimeError(f"smoke Job {name} failed: {job.get('status')}")
        return "Complete" if _condition(job, "Complete") == "True" else None

    wait_until(
        finished, timeout, f"smoke Job {SMOKE_NAMESPACE}/{name} to complete", interval=0.2, abort=abort
    )
    client.delete(
        f"{base}/{name}", {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
    )
    return name


def _condition(obj: Any, condition_type: str) -> str | None:
    for condition in (obj or {}).get("status", {}).get("conditions") or []:
        if condition.get("type") == condition_type:
            status = condition.get("status")
            return str(status) if status is not None else None
    return None
