"""Child flows against a real kube-apiserver and controller: a parent's `type: Flow` step creates a child
JobFlow from a JobFlowTemplate (the shipped example, examples/child-flows/), owned by the parent; this
tier runs no webhook, so the controller expands the child as any flow naming a template. The test plays
the Job controller. The child's two Jobs complete, the child Succeeds, the parent's step mirrors it and
its next step reads the child's output; a child that fails fails its step, naming the child's step; and
the child carries the controller ownerReference the garbage collector deletes it by (none runs in this
tier: the e2e tier has one)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_steps import WAIT, job_of, wait_steps

from zen_flow.api.constants import LABEL_DEPTH, LABEL_PARENT, LABEL_PARENT_STEP
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, wait_until
from zen_flow_dev.testing.jobstatus import complete_job, fail_job

pytestmark = pytest.mark.integration

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "child-flows"


def example(kind: str) -> dict[str, Any]:
    for path in sorted(FOLDER.glob("*.yaml")):
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
        if doc["kind"] == kind:
            return doc
    raise AssertionError(f"no {kind} in {FOLDER}")


async def child_name(driver: FlowDriver, namespace: str, parent: str, step: str) -> str:
    flow = await wait_steps(driver, namespace, parent, {step: "Running"})
    ref = next(s["jobRef"] for s in flow["status"]["steps"] if s["name"] == step)
    assert ref["kind"] == "JobFlow"
    return str(ref["name"])


async def setup(namespace: str, kubectl: Any, driver: FlowDriver, start: StartController) -> dict[str, Any]:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(example("JobFlowTemplate")))
    parent = example("JobFlow")
    parent["metadata"]["namespace"] = namespace
    created = await driver.create(parent)
    start()
    return created


async def test_a_flow_step_runs_its_child_to_success_and_the_next_step_reads_its_output(
    namespace: str, kubectl: Any, driver: FlowDriver, start_controller: StartController
) -> None:
    parent = await setup(namespace, kubectl, driver, start_controller)
    child = await child_name(driver, namespace, "release", "package")
    stored = await driver.get(namespace, child)
    assert stored is not None
    labels = stored["metadata"]["labels"]
    assert (labels[LABEL_PARENT], labels[LABEL_PARENT_STEP], labels[LABEL_DEPTH]) == (
        "release",
        "package",
        "1",
    )
    [owner] = stored["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("JobFlow", "release", parent["metadata"]["uid"])
    assert owner["controller"] is True
    assert owner["blockOwnerDeletion"] is True  # the garbage collector deletes it with its parent

    # Expanded from the template (by the controller: no webhook here), with the parent's argument.
    await wait_steps(driver, namespace, child, {"compile": "Running", "archive": "Pending"})
    expanded = await driver.get(namespace, child)
    assert expanded is not None
    assert [(p["name"], p["value"]) for p in expanded["spec"]["arguments"]["parameters"]] == [
        ("version", "1.4.0")
    ]
    compile_job = await job_of(driver, namespace, "compile", flow=child)
    await complete_job(driver.kube, namespace, compile_job["metadata"]["name"])
    await wait_steps(driver, namespace, child, {"compile": "Succeeded", "archive": "Running"})
    archive = await job_of(driver, namespace, "archive", flow=child)
    await complete_job(driver.kube, namespace, archive["metadata"]["name"], message="sha256:feed")
    done = await driver.wait_phase(namespace, child, ("Succeeded",), timeout=WAIT)
    assert done["status"]["phase"] == "Succeeded"

    # The parent's step mirrors the child, keeps its output, and the next step reads it.
    after = await wait_steps(driver, namespace, "release", {"package": "Succeeded", "publish": "Running"})
    package = next(s for s in after["status"]["steps"] if s["name"] == "package")
    assert package["outputs"]["parameters"] == [{"name": "digest", "value": "sha256:feed"}]
    publish = await job_of(driver, namespace, "publish", flow="release")
    env = publish["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "ZF_PARAM_DIGEST", "value": "sha256:feed"} in env
    await complete_job(driver.kube, namespace, publish["metadata"]["name"])
    ended = await driver.wait_phase(namespace, "release", ("Succeeded",), timeout=WAIT)
    assert ended["status"]["progressSummary"] == "2/2"


async def test_a_failing_child_fails_its_step_naming_the_childs_failed_step(
    namespace: str, kubectl: Any, driver: FlowDriver, start_controller: StartController
) -> None:
    await setup(namespace, kubectl, driver, start_controller)
    child = await child_name(driver, namespace, "release", "package")
    await wait_steps(driver, namespace, child, {"compile": "Running"})
    compile_job = await job_of(driver, namespace, "compile", flow=child)
    await fail_job(driver.kube, namespace, compile_job["metadata"]["name"])
    failed = await driver.wait_phase(namespace, "release", ("Failed",), timeout=WAIT)
    steps = {s["name"]: s for s in failed["status"]["steps"]}
    assert steps["package"]["phase"] == "Failed"
    assert steps["package"]["message"].startswith(
        f"child flow {child} failed: step compile failed: Job failed"
    )
    assert steps["publish"]["phase"] == "Skipped"


async def test_a_flow_step_naming_a_missing_template_fails_naming_it(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    parent = example("JobFlow")
    parent["metadata"]["namespace"] = namespace
    await driver.create(parent)  # no template applied
    start_controller()
    failed = await driver.wait_phase(namespace, "release", ("Failed",), timeout=WAIT)
    package = next(s for s in failed["status"]["steps"] if s["name"] == "package")
    assert package["phase"] == "Failed"
    assert 'spec.templateRef.name: Not found: "package"' in package["message"]


async def test_stopping_the_parent_deletes_its_running_child(
    namespace: str, kubectl: Any, driver: FlowDriver, start_controller: StartController
) -> None:
    await setup(namespace, kubectl, driver, start_controller)
    child = await child_name(driver, namespace, "release", "package")
    kubectl("annotate", "jf", "release", "-n", namespace, "workflow.kube-zen.io/stop=true")
    await driver.wait_phase(namespace, "release", ("Failed",), timeout=WAIT)

    async def gone() -> bool | None:
        found = await driver.get(namespace, child)
        return True if found is None or found["metadata"].get("deletionTimestamp") else None

    await wait_until(gone, WAIT, what=f"child {child} deleted")


async def test_at_the_parents_finally_grace_the_child_runs_its_own_finally_step(
    namespace: str, kubectl: Any, driver: FlowDriver, start_controller: StartController
) -> None:
    # The parent keeps the last 100 s of its 120 s for its finally steps: 20 s in, its Flow step's child
    # is not deleted but patched `stop: RunFinally` (a merge patch under its UID), so it stops compile
    # and runs its own finally step; then the parent's step ends for the grace and its cleanup runs.
    template = example("JobFlowTemplate")
    tidy = copy.deepcopy(template["spec"]["steps"][0]["template"])
    tidy["spec"]["template"]["spec"]["containers"][0]["command"] = ["sh", "-c", "echo tidying"]
    template["spec"]["steps"].append({"name": "tidy", "finally": True, "template": tidy})
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(template))
    parent = example("JobFlow")
    parent["metadata"]["namespace"] = namespace
    publish = parent["spec"]["steps"][1]
    parent["spec"]["steps"].append({"name": "cleanup", "finally": True, "template": publish["template"]})
    parent["spec"]["executionPolicy"] = {"activeDeadlineSeconds": 120, "finallyGraceSeconds": 100}
    await driver.create(parent)
    start_controller()
    child = await child_name(driver, namespace, "release", "package")
    await wait_steps(driver, namespace, child, {"compile": "Running"})

    async def asked() -> dict[str, Any] | None:
        found = await driver.get(namespace, child)
        stop = found["metadata"].get("annotations", {}).get("workflow.kube-zen.io/stop") if found else None
        return found if stop == "RunFinally" else None

    await wait_until(asked, WAIT + 20, what=f"child {child} asked to stop with RunFinally")
    stopping = await wait_steps(driver, namespace, child, {"compile": "Failed", "tidy": "Running"})
    assert stopping["metadata"].get("deletionTimestamp") is None
    tidy_job = await job_of(driver, namespace, "tidy", flow=child)
    await complete_job(driver.kube, namespace, tidy_job["metadata"]["name"])
    ended = await driver.wait_phase(namespace, child, ("Failed",), timeout=WAIT)
    assert next(s for s in ended["status"]["steps"] if s["name"] == "tidy")["phase"] == "Succeeded"
    after = await wait_steps(driver, namespace, "release", {"package": "Failed", "cleanup": "Running"})
    package = next(s for s in after["status"]["steps"] if s["name"] == "package")
    assert package["message"].startswith("flow deadline: the last 100s of activeDeadlineSeconds (120s)")
    cleanup = await job_of(driver, namespace, "cleanup", flow="release")
    await complete_job(driver.kube, namespace, cleanup["metadata"]["name"])
    done = await driver.wait_phase(namespace, "release", ("Failed",), timeout=WAIT)
    failed = next(c for c in done["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DeadlineExceeded"
    assert await driver.get(namespace, child) is not None  # it ran its cleanup; never deleted
