"""JobFlow objects and API calls shared by the integration tests of the CRD."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client

from zen_flow.api import constants
from zen_flow_dev.testing.flows import flow_manifest
from zen_flow_dev.testing.kubectl import Kubectl

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "config" / "crd" / f"{constants.CRD_NAME}.yaml"
DEFAULT_POLICY = {
    "concurrencyPolicy": constants.DEFAULT_CONCURRENCY_POLICY.value,
    "ttlSecondsAfterFinished": constants.DEFAULT_TTL_SECONDS_AFTER_FINISHED,
    "backoffLimit": constants.DEFAULT_BACKOFF_LIMIT,
}


def job(command: str = "true") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", command]}],
                }
            }
        },
    }


def flow(name: str, namespace: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """The tests' one flow builder (zen_flow_dev.testing.flows), under this tier's short name."""
    return flow_manifest(name, namespace, steps, **spec)


def with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` as the apiserver stores it: the CRD defaults executionPolicy and fills in its fields."""
    expected = copy.deepcopy(spec)
    expected["executionPolicy"] = {**DEFAULT_POLICY, **spec.get("executionPolicy", {})}
    return expected


def leaf_paths(schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Schema paths of every scalar, map and free-form object (`[]` marks array items)."""
    if "properties" in schema:
        for name, prop in schema["properties"].items():
            yield from leaf_paths(prop, f"{path}.{name}")
    elif "items" in schema:
        yield from leaf_paths(schema["items"], f"{path}[]")
    else:
        yield path


def covered_paths(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """The leaf_paths() that `value` sets (an empty list or object covers nothing below it)."""
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            yield from covered_paths(item, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            yield from covered_paths(item, schema["items"], f"{path}[]")
    else:
        yield path


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


async def create(api: client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    # Strict: the apiserver fails the request instead of silently dropping a field it does not know.
    created: dict[str, Any] = await api.create_namespaced_custom_object(
        constants.GROUP,
        constants.VERSION,
        body["metadata"]["namespace"],
        constants.PLURAL,
        body,
        field_validation="Strict",
    )
    return created


async def get(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    got: dict[str, Any] = await api.get_namespaced_custom_object(
        constants.GROUP, constants.VERSION, namespace, constants.PLURAL, name
    )
    return got


async def patch_status(
    api: client.CustomObjectsApi, namespace: str, name: str, status: Any
) -> dict[str, Any]:
    # A dict body would otherwise go out as a JSON patch (craft.md 2.3).
    patched: dict[str, Any] = await api.patch_namespaced_custom_object_status(  # type: ignore[call-arg]
        constants.GROUP,
        constants.VERSION,
        namespace,
        constants.PLURAL,
        name,
        {"status": status},
        field_validation="Strict",
        _content_type="application/merge-patch+json",
    )
    return patched


def kubectl_create(kubectl: Kubectl, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl("create", "-f", "-", input=json.dumps(body), check=False)
