"""Artifacts with real containers: examples/build-and-check.yaml builds a file, its pod's uploader stores
it in a real S3-compatible server (versitygw, in the node's network namespace), the next step's pod
downloads it and checks it against the values the first container wrote. Everything moves between pods
and storage: the storage credentials are nowhere in the controller (not in its memory, its log, the
Jobs or the flow)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from zen_flow.api.transfer import UPLOADER
from zen_flow_dev.testing.controller import ControllerProcess, StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases
from zen_flow_dev.testing.examples import EXAMPLES, load
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.storage import S3Server


def _with_storage(manifest: dict[str, Any], storage: S3Server, bucket: str) -> dict[str, Any]:
    """What the example asks its reader to do: point its s3 blocks at their storage."""
    for step in manifest["spec"]["steps"]:
        for artifact in (step.get("outputs") or {}).get("artifacts", []):
            artifact["s3"].update(endpoint=storage.endpoint, bucket=bucket)
    return manifest


async def _secret(driver: FlowDriver, namespace: str, storage: S3Server) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "artifact-storage"},
        "stringData": {"accessKeyID": storage.access_key, "secretAccessKey": storage.secret_key},
    }
    await driver.kube.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body=body)


def _memory(pid: int) -> bytes:
    """Every readable mapping of a live process (root reads /proc/<pid>/mem)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except (OSError, ValueError, OverflowError):
                continue  # [vvar] and the like cannot be read
    return b"".join(chunks)


def _assert_never_seen(controller: ControllerProcess, storage: S3Server, *documents: Any) -> None:
    secrets = [storage.access_key, storage.secret_key]
    assert controller.proc is not None
    memory = _memory(controller.proc.pid)
    assert len(memory) > 10_000_000  # really the process's heap, not an empty read
    log = Path(controller.log_path).read_text()
    for value in secrets:
        assert value.encode() not in memory
        assert value not in log
        for document in documents:
            assert value not in json.dumps(document)


async def test_a_file_goes_from_one_real_pod_through_storage_to_the_next(
    namespace: str,
    driver: FlowDriver,
    start_controller: StartController,
    image: str,
    storage: S3Server,
    kubectl: Any,
) -> None:
    bucket = storage.bucket("builds")
    await _secret(driver, namespace, storage)
    manifest = _with_storage(load(EXAMPLES / "build-and-check.yaml"), storage, bucket)
    manifest["metadata"]["namespace"] = namespace
    controller = start_controller()
    await driver.create(manifest)
    flow = await driver.wait_phase(namespace, "build-and-check", timeout=240)

    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    app = b"app 1.4.2\n"
    digest = "sha256:" + hashlib.sha256(app).hexdigest()
    build = next(s for s in flow["status"]["steps"] if s["name"] == "build")
    (artifact,) = build["outputs"]["artifacts"]
    key = artifact["url"].removeprefix(f"s3://{bucket}/")
    assert (artifact["size"], artifact["digest"]) == (len(app), digest)
    assert storage.object_bytes(bucket, key) == app  # the pod stored it; the controller only reported
    check_job = next(s for s in flow["status"]["steps"] if s["name"] == "check")["jobRef"]["name"]
    said = kubectl("logs", "-n", namespace, f"job/{check_job}", "-c", "main").stdout
    assert said == f"checked app 1.4.2: {digest}, {len(app)} bytes, for staging\n"
    fetched = kubectl("logs", "-n", namespace, f"job/{check_job}", "-c", "zf-artifacts-in").stdout
    assert f"input artifact app: s3://{bucket}/{key} -> /zf-artifacts/in/app ({digest})" in fetched
    _assert_never_seen(controller, storage, flow, await driver.jobs(namespace))


async def test_a_failed_upload_and_a_missing_output_fail_the_step_with_the_reason(
    namespace: str,
    driver: FlowDriver,
    start_controller: StartController,
    image: str,
    storage: S3Server,
) -> None:
    storage.bucket("present")
    await _secret(driver, namespace, storage)
    s3 = {
        "endpoint": storage.endpoint,
        "accessKeyIDSecretRef": {"name": "artifact-storage"},
        "secretAccessKeySecretRef": {"name": "artifact-storage"},
    }

    def writer(name: str, artifact: dict[str, Any]) -> dict[str, Any]:
        step = job_step(name, outputs={"artifacts": [artifact]})
        step["template"]["spec"]["template"]["spec"]["containers"][0].update(
            image="busybox:1.36", command=["sh", "-c", "echo data > /out/written"]
        )
        return step

    steps = [
        writer("no-bucket", {"name": "x", "path": "/out/written", "s3": {**s3, "bucket": "absent"}}),
        writer("not-written", {"name": "y", "path": "/out/other", "s3": {**s3, "bucket": "present"}}),
    ]
    manifest = flow_manifest("uploads", namespace, steps)
    for step in manifest["spec"]["steps"]:
        step["continueOnFailure"] = True
    start_controller()
    await driver.create(manifest)
    flow = await driver.wait_phase(namespace, "uploads", timeout=240)

    assert step_phases(flow) == {"no-bucket": "Failed", "not-written": "Failed"}
    messages = {s["name"]: s["message"] for s in flow["status"]["steps"]}
    assert re.search(
        r"output artifact x: s3://absent/\S+ at http://[0-9.:]+: NoSuchBucket", messages["no-bucket"]
    )
    assert messages["not-written"].endswith(
        "output artifact y: /out/other does not exist: the step did not write it"
    )
    assert UPLOADER not in json.dumps(messages)  # the reason, not our plumbing
