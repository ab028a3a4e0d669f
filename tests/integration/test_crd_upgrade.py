"""Upgrading the JobFlow CRD under running flows.

`status.steps` and then `spec.steps` were list-maps keyed by `name`, `status.conditions` one keyed by
`type`; all three are atomic lists now (their managedFields and key checks were ~30 % of every status write
for each list of steps, ~15 % for the conditions). A flow started under the old CRD holds managedFields
that name each entry (`k:{"name":"a"}`, `k:{"type":"Ready"}`, in its creator's and in the controller's);
the controller's status writes must keep working on it after the CRD is replaced, or an upgrade would
stall every running flow.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from controller_steps import WAIT, finish, wait_steps

from zen_flow.api.constants import FIELD_MANAGER
from zen_flow_dev.cluster import find_kubectl
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.crd import JOBFLOW_CRD_PATH, install_crd
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.kubectl import Kubectl

pytestmark = pytest.mark.integration


def list_map_crd() -> str:
    """The shipped CRD with `spec.steps`, `status.steps` and `status.conditions` as the list-maps they were
    before."""
    crd = yaml.safe_load(JOBFLOW_CRD_PATH.read_text())
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    lists = [(root[part]["properties"]["steps"], "name") for part in ("spec", "status")]
    lists.append((root["status"]["properties"]["conditions"], "type"))
    for schema, key in lists:
        assert schema["x-kubernetes-list-type"] == "atomic", "the test's premise changed"
        schema["x-kubernetes-list-type"] = "map"
        schema["x-kubernetes-list-map-keys"] = [key]
    return yaml.safe_dump(crd)


def install_shipped_crd(cluster: Any) -> None:
    install_crd(find_kubectl(getattr(cluster, "bin_dir", None)), cluster.kubeconfig)


@pytest.fixture
def old_crd(kubectl: Kubectl, cluster: Any, jobflow_crd: Any) -> Iterator[None]:
    """The list-map CRD in force for the test; the shipped one again afterwards, whatever happened."""
    kubectl(
        "apply", "--server-side", "--field-manager=zen-flow-tests", "--force-conflicts", "-f", "-",
        input=list_map_crd(),
    )  # fmt: skip
    try:
        yield
    finally:
        install_shipped_crd(cluster)


async def duplicate_entries_refused(kubectl: Kubectl, namespace: str, name: str) -> bool:
    """Does the apiserver refuse two status entries of one step (only a list-map does)? A server-side
    dry run: nothing is written."""
    body = json.dumps({"status": {"steps": [{"name": "a"}, {"name": "a"}]}})
    done: subprocess.CompletedProcess[str] = kubectl(
        "patch", "jobflow", name, "-n", namespace, "--subresource=status", "--type=merge",
        "--dry-run=server", "-p", body, check=False,
    )  # fmt: skip
    return "Duplicate value" in done.stderr


def entry_keys(flow: dict[str, Any], part: str, member: str = "steps") -> set[str]:
    """The `k:{...}` members under `<part>.<member>` in the flow's managedFields (the creator's for spec,
    the controller's for status)."""
    keys: set[str] = set()
    for entry in flow["metadata"].get("managedFields", []):
        if (part == "status") == (entry["manager"] == FIELD_MANAGER and entry.get("subresource") == "status"):
            listed = entry["fieldsV1"].get(f"f:{part}", {}).get(f"f:{member}", {})
            keys |= {key for key in listed if key.startswith("k:")}
    return keys


async def test_a_flow_started_under_the_list_map_crd_finishes_after_the_upgrade(
    namespace: str,
    driver: FlowDriver,
    start_controller: StartController,
    kubectl: Kubectl,
    cluster: Any,
    old_crd: None,
) -> None:
    # The CRD handler takes the old schema asynchronously: wait until the list-map is what refuses, on a
    # probe, before the flow is created (created under the atomic schema, its spec names no entries).
    await driver.create(flow_manifest("probe", namespace, [job_step("a")]))
    await wait_until(
        lambda: duplicate_entries_refused(kubectl, namespace, "probe"),
        timeout=WAIT,
        what="list-map in force",
    )
    await driver.delete(namespace, "probe")
    await driver.create(flow_manifest("upgraded", namespace, [job_step("a"), job_step("b", "a")]))
    start_controller()
    await wait_steps(driver, namespace, "upgraded", {"a": "Running", "b": "Pending"})
    await finish(driver, namespace, "a")
    await wait_steps(driver, namespace, "upgraded", {"a": "Succeeded", "b": "Running"})
    before = await driver.get(namespace, "upgraded")
    assert before is not None
    for part in ("spec", "status"):
        assert entry_keys(before, part) == {'k:{"name":"a"}', 'k:{"name":"b"}'}, part
    assert 'k:{"type":"Complete"}' in entry_keys(before, "status", "conditions")

    install_shipped_crd(cluster)

    async def atomic_in_force() -> bool:
        return not await duplicate_entries_refused(kubectl, namespace, "upgraded")

    await wait_until(atomic_in_force, timeout=WAIT, what="atomic list in force")
    await finish(driver, namespace, "b")
    done = await driver.wait_phase(namespace, "upgraded", timeout=WAIT)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert step_phases(done) == {"a": "Succeeded", "b": "Succeeded"}

    # A flow created now is tracked without per-step members: what makes each of its writes cheaper.
    await driver.create(flow_manifest("fresh", namespace, [job_step("a")]))
    await wait_steps(driver, namespace, "fresh", {"a": "Running"})
    fresh = await driver.get(namespace, "fresh")
    assert fresh is not None
    assert entry_keys(fresh, "spec") == entry_keys(fresh, "status") == set()
    assert entry_keys(fresh, "status", "conditions") == set()
