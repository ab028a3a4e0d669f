"""How much the cluster's store holds at the end of a measured part: what `jobRetention` is for.

Three views, each cheap and each optional (a figure that cannot be read is left out, never an error):

- the part's namespace: its Jobs and pods now, counted with a one-item LIST (`remainingItemCount`),
  taken after the part's closing snapshot so the requests do not count in its figures. The A/B figure:
  zen-flow's and the baseline's namespaces ran the same pods;
- the apiserver's object counts, `apiserver_resource_objects` (`apiserver_storage_objects` before 1.34;
  every namespace; the apiserver refreshes them from etcd once per `--etcd-count-metric-poll-period`, a
  minute by default, and reads 0 before the first refresh and -1 after a failed one: in the JSON, not in
  the report's table);
- etcd's own /metrics (our LocalCluster only: it knows etcd's client URL): its live keys and database
  size now, and what they grew by during the part. A deleted key leaves the key count at once; only the
  in-use size keeps its old revisions until the apiserver compacts (every 5 minutes), so a part a
  compaction fell in shows a smaller `MB added` (`etcd_compacted`). The database file never shrinks
  without a defragmentation.
"""

from __future__ import annotations

import asyncio
import http.client
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

from zen_flow.api.constants import GROUP, PLURAL
from zen_flow.kube import KubeClient
from zen_flow.kube.errors import KubeError
from zen_flow_dev.bench.apicost import metric_value

Figures = dict[str, float]

_APISERVER_OBJECTS = {
    "apiserver_jobs": ("batch", "jobs"),
    "apiserver_pods": ("", "pods"),
    "apiserver_jobflows": (GROUP, PLURAL),
}
_ETCD = {
    "etcd_keys": "etcd_debugging_mvcc_keys_total",
    "etcd_db_bytes": "etcd_mvcc_db_total_size_in_bytes",
    "etcd_db_in_use_bytes": "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_compact_revision": "etcd_debugging_mvcc_compact_revision",
}
_GROWTH = ("etcd_keys", "etcd_db_bytes", "etcd_db_in_use_bytes")

# No proxy: etcd listens on loopback, and an http_proxy without no_proxy must not carry the scrape away.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _objects(text: str, group: str, resource: str) -> float | None:
    """The apiserver's count of stored `resource` objects, or None (absent, or -1: a failed refresh)."""
    value = metric_value(text, "apiserver_resource_objects", group=group, resource=resource)
    if value is None:  # before 1.34, and kept while deprecated
        name = f"{resource}.{group}" if group else resource
        value = metric_value(text, "apiserver_storage_objects", resource=name)
    return value if value is not None and value >= 0 else None


def from_metrics(apiserver: str | None, etcd: str | None) -> Figures:
    """The store's figures found on the apiserver's and etcd's /metrics pages (either may be None)."""
    out: Figures = {}
    for key, (group, resource) in _APISERVER_OBJECTS.items():
        if apiserver and (value := _objects(apiserver, group, resource)) is not None:
            out[key] = int(value)
    for key, name in _ETCD.items():
        if etcd and (value := metric_value(etcd, name)) is not None:
            out[key] = int(value)
    return out


def scrape_etcd(url: str | None, timeout: float = 10.0) -> str | None:
    """etcd's /metrics page (plain HTTP on loopback), or None when there is no etcd to ask or it did
    not answer in full."""
    if url is None:
        return None
    try:
        with _OPENER.open(f"{url}/metrics", timeout=timeout) as response:  # our etcd's loopback URL
            text: str = response.read().decode()
            return text
    # OSError covers URLError and timeouts; HTTPException a connection dropped mid-page (IncompleteRead).
    except (OSError, http.client.HTTPException, ValueError):
        return None


async def count(kube: KubeClient, collection: str) -> int | None:
    """How many objects `collection` holds, from a one-item page; None when the apiserver did not say."""
    try:
        page = await kube.request("GET", collection, query=(("limit", "1"),))
    except KubeError:
        return None
    items = page.get("items")
    if not isinstance(items, list):
        return None
    metadata = page.get("metadata") or {}
    remaining = metadata.get("remainingItemCount")
    if remaining is None:
        # More pages but no count (the field is optional): unknown, not one.
        return None if metadata.get("continue") else len(items)
    return len(items) + remaining if isinstance(remaining, int) else None


async def namespace_counts(kube: KubeClient, namespace: str) -> dict[str, int | None]:
    return {
        "namespace_jobs": await count(kube, f"/apis/batch/v1/namespaces/{namespace}/jobs"),
        "namespace_pods": await count(kube, f"/api/v1/namespaces/{namespace}/pods"),
    }


async def wait_gc(kube: KubeClient, namespace: str, limit: float = 60.0) -> tuple[float, bool]:
    """Until `namespace` holds no pod whose Job is gone (every bench Job runs one pod: no more pods than
    Jobs), at most `limit` seconds: after jobRetention deleted Jobs, the garbage collector deletes their
    pods (background propagation) and kwok finishes them, work that belongs to the part. (seconds waited,
    whether it settled); an unknown count ends the wait (nothing to tell)."""
    started = time.monotonic()
    while True:
        counts = await namespace_counts(kube, namespace)
        jobs, pods = counts["namespace_jobs"], counts["namespace_pods"]
        waited = round(time.monotonic() - started, 2)
        if jobs is None or pods is None or pods <= jobs:
            return waited, True
        if waited >= limit:
            return waited, False
        await asyncio.sleep(0.5)  # counting: the harness has no pod watch to wait on


def part(before: Figures, after: Figures, counts: Mapping[str, int | None]) -> dict[str, Any]:
    """A part's `store` figures: its namespace's counts, the store at its end, etcd's growth over it,
    and whether the apiserver compacted etcd during it (the in-use size then fell by old revisions)."""
    out: dict[str, Any] = {key: value for key, value in counts.items() if value is not None}
    out.update(after)
    for key in _GROWTH:
        if key in before and key in after:
            out[f"{key}_added"] = after[key] - before[key]
    if "etcd_compact_revision" in before and "etcd_compact_revision" in after:
        out["etcd_compacted"] = after["etcd_compact_revision"] != before["etcd_compact_revision"]
    return out
