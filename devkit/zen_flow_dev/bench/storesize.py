"""How much the cluster's store holds at the end of a measured part: what `jobRetention` is for.

Three views, each cheap and each optional (a figure that cannot be read is left out, never an error):

- the part's namespace: its Jobs and pods now, counted with a one-item LIST (`remainingItemCount`),
  taken after the part's closing snapshot so the requests do not count in its figures. The A/B figure:
  zen-flow's and the baseline's namespaces ran the same pods;
- the apiserver's `apiserver_storage_objects` (every namespace; the apiserver refreshes it from etcd
  once per `--etcd-count-metric-poll-period`, a minute by default, and reads 0 before the first
  refresh: in the JSON, not in the report's table);
- etcd's own /metrics (our LocalCluster only: it knows etcd's client URL): its key count and database
  size now, and what they grew by during the part. Deleted keys stay until the apiserver compacts
  (every 5 minutes), so a part that deletes its Jobs still adds their keys; the database file never
  shrinks without a defragmentation, its in-use share does.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from zen_flow.api.constants import CRD_NAME
from zen_flow.kube import KubeClient
from zen_flow.kube.errors import KubeError

Figures = dict[str, float]

_APISERVER_OBJECTS = {
    "apiserver_jobs": "jobs.batch",
    "apiserver_pods": "pods",
    "apiserver_jobflows": CRD_NAME,
}
_ETCD = {
    "etcd_keys": "etcd_debugging_mvcc_keys_total",
    "etcd_db_bytes": "etcd_mvcc_db_total_size_in_bytes",
    "etcd_db_in_use_bytes": "etcd_mvcc_db_total_size_in_use_in_bytes",
}
_GROWTH = ("etcd_keys", "etcd_db_bytes", "etcd_db_in_use_bytes")


def _sample(text: str, name: str, labels: str = "") -> float | None:
    """The value of the sample `name{labels}` (labels exactly as the page writes them), or None."""
    selector = re.escape(f"{{{labels}}}") if labels else r"(?:\{\})?"
    match = re.search(rf"^{re.escape(name)}{selector} (\S+)$", text, re.MULTILINE)
    if match is None:
        return None
    try:
        return float(match[1])
    except ValueError:
        return None


def from_metrics(apiserver: str | None, etcd: str | None) -> Figures:
    """The store's figures found on the apiserver's and etcd's /metrics pages (either may be None)."""
    out: Figures = {}
    for key, resource in _APISERVER_OBJECTS.items():
        value = (
            _sample(apiserver, "apiserver_storage_objects", f'resource="{resource}"') if apiserver else None
        )
        if value is not None:
            out[key] = int(value)
    for key, name in _ETCD.items():
        if etcd and (value := _sample(etcd, name)) is not None:
            out[key] = int(value)
    return out


def scrape_etcd(url: str | None, timeout: float = 10.0) -> str | None:
    """etcd's /metrics page (plain HTTP on loopback), or None when there is no etcd to ask or it did
    not answer."""
    if url is None:
        return None
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=timeout) as response:  # our etcd's loopback URL
            text: str = response.read().decode()
            return text
    except (OSError, urllib.error.URLError, ValueError):
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
    remaining = page.get("metadata", {}).get("remainingItemCount", 0)
    return len(items) + int(remaining) if isinstance(remaining, int) else None


async def namespace_counts(kube: KubeClient, namespace: str) -> dict[str, int | None]:
    return {
        "namespace_jobs": await count(kube, f"/apis/batch/v1/namespaces/{namespace}/jobs"),
        "namespace_pods": await count(kube, f"/api/v1/namespaces/{namespace}/pods"),
    }


def part(before: Figures, after: Figures, counts: Mapping[str, int | None]) -> dict[str, Any]:
    """A part's `store` figures: its namespace's counts, the store at its end, etcd's growth over it."""
    out: dict[str, Any] = {key: value for key, value in counts.items() if value is not None}
    out.update(after)
    for key in _GROWTH:
        if key in before and key in after:
            out[f"{key}_added"] = after[key] - before[key]
    return out
