"""The flow archive (`--archive-s3-*`) with a real controller process, a real apiserver and a real S3 server
(versitygw on 127.0.0.1): an ended flow's record lands in the bucket and `zen-flow archive get` shows it;
with the store down the flow says Archived=False (and an event why), and its TTL does not delete it; once
the store is back the record is written and the TTL deletes the flow (docs/OPERATOR_GUIDE.md, "The flow
archive")."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from controller_steps import WAIT, finish, job_of, wait_steps

from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.jobstatus import complete_job
from zen_flow_dev.testing.storage import MISSING, S3Server, versitygw_binary

pytestmark = pytest.mark.integration

BUCKET = "flow-archive"


@pytest.fixture
def s3() -> Iterator[S3Server]:
    binary = versitygw_binary()
    if binary is None:
        pytest.skip(MISSING)
    server = S3Server(binary).start()
    server.bucket(BUCKET)
    yield server
    server.stop()


def store_env(s3: S3Server) -> dict[str, str]:
    return {
        "ZEN_FLOW_ARCHIVE_S3_ENDPOINT": s3.endpoint,
        "ZEN_FLOW_ARCHIVE_S3_BUCKET": BUCKET,
        "ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID": s3.access_key,
        "ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY": s3.secret_key,
    }


def archive_cli(s3: S3Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zen_flow", "archive", *args],
        env={**os.environ, **store_env(s3)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def condition(flow: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    if flow is None:
        return None
    return next((c for c in flow.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def stop_store(s3: S3Server) -> None:
    """Stop the server, keeping its data and port (stop() would remove them)."""
    assert s3.process is not None
    s3.process.terminate()
    s3.process.wait(timeout=10)
    if s3.process.stderr is not None:
        s3.process.stderr.close()


async def test_an_ended_flow_is_archived_and_archive_get_shows_it(
    namespace: str, driver: FlowDriver, start_controller: StartController, s3: S3Server
) -> None:
    controller = start_controller(env=store_env(s3))
    await driver.create(flow_manifest("nightly", namespace, [job_step("load"), job_step("report", "load")]))
    await wait_steps(driver, namespace, "nightly", {"load": "Running"})
    await finish(driver, namespace, "load")
    await wait_steps(driver, namespace, "nightly", {"report": "Running"})
    await finish(driver, namespace, "report")

    async def archived() -> dict[str, Any] | None:
        flow = await driver.get(namespace, "nightly")
        cond = condition(flow, "Archived")
        return flow if cond is not None and cond["status"] == "True" else None

    flow = await wait_until(archived, WAIT, what="condition Archived=True")
    uid, finished = flow["metadata"]["uid"], flow["status"]["completionTime"]
    stamp = finished.replace("-", "").replace(":", "")
    key = f"jobflows/{namespace}/nightly/{uid}/{stamp}.json"
    assert condition(flow, "Archived")["message"] == f"s3://{BUCKET}/{key}"  # type: ignore[index]
    record = json.loads(await asyncio.to_thread(s3.object_bytes, BUCKET, key))
    assert record["flow"]["status"]["phase"] == "Succeeded"
    assert record["flow"]["spec"]["steps"][1]["dependencies"] == ["load"]
    assert "managedFields" not in record["flow"]["metadata"]
    assert sorted((j["step"], j["phase"]) for j in record["jobs"]) == [
        ("load", "Succeeded"),
        ("report", "Succeeded"),
    ]
    assert controller.metric("zen_flow_archive_writes_total", result="written") == 1

    shown = await asyncio.to_thread(archive_cli, s3, "get", "nightly", "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    assert f"Name:       {namespace}/nightly" in shown.stdout
    assert "Phase:      Succeeded" in shown.stdout
    assert "report" in shown.stdout
    assert "Archived:" in shown.stdout
    listed = await asyncio.to_thread(archive_cli, s3, "list", "-A")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line.split() for line in listed.stdout.splitlines()[1:] if uid in line]
    assert row[:4] == [namespace, "nightly", uid, finished]
    wide = await asyncio.to_thread(archive_cli, s3, "list", "-n", namespace, "-o", "wide")
    (row,) = [line.split() for line in wide.stdout.splitlines()[1:] if uid in line]
    assert row[:4] == [namespace, "nightly", uid, "Succeeded"]


async def test_with_the_store_down_the_ttl_waits_for_the_record(
    namespace: str, driver: FlowDriver, start_controller: StartController, s3: S3Server, kubectl: Any
) -> None:
    start_controller(env=store_env(s3))
    await asyncio.to_thread(stop_store, s3)
    ttl = {"ttlSecondsAfterFinished": 1}
    await driver.create(flow_manifest("brief", namespace, [job_step("only")], executionPolicy=ttl))
    await wait_steps(driver, namespace, "brief", {"only": "Running"})
    await finish(driver, namespace, "only")

    async def failed() -> dict[str, Any] | None:
        cond = condition(await driver.get(namespace, "brief"), "Archived")
        return cond if cond is not None and cond["status"] == "False" else None

    cond = await wait_until(failed, WAIT, what="condition Archived=False")
    assert cond["reason"] == "ArchiveFailed"
    assert "cannot connect" in cond["message"]

    async def told() -> list[str] | None:
        items = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
        found = [e["message"] for e in items if e["reason"] == "ArchiveFailed"]
        return found or None

    (said,) = await wait_until(told, WAIT, what="a Warning event ArchiveFailed")
    assert "cannot connect" in said
    # Its TTL (1 s) expired long ago; it waits for the record.
    assert await driver.get(namespace, "brief") is not None

    await asyncio.to_thread(s3.start)
    await driver.wait_gone(namespace, "brief", timeout=WAIT + 30)  # the retry backs off up to 20 s here
    keys = [
        o.object_name
        for o in s3.client().list_objects(BUCKET, prefix=f"jobflows/{namespace}/brief/", recursive=True)
    ]
    assert len(keys) == 1


def job_pod(job: dict[str, Any], node: str) -> dict[str, Any]:
    """A pod the Job controls, as the Job controller would make it (no controller-manager here)."""
    name = job["metadata"]["name"]
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": name,
        "uid": job["metadata"]["uid"],
        "controller": True,
    }
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-abcde",
            "namespace": job["metadata"]["namespace"],
            "labels": {"batch.kubernetes.io/job-name": name},
            "ownerReferences": [owner],
        },
        "spec": spec,
    }


async def test_step_logs_are_archived_or_recorded_unavailable_and_hold_nothing_back(
    namespace: str, driver: FlowDriver, start_controller: StartController, s3: S3Server, kubectl: Any
) -> None:
    """No kubelet here. A pod on a node that does not exist: the apiserver cannot fetch its log. A pod on
    no node: its log is empty (the apiserver answers it itself), and archived. A Job with no pod left:
    none to read. The flow's record says so for each, `zen-flow archive logs` reads the archived one, and
    the TTL waits for nothing more."""
    controller = start_controller(env={**store_env(s3), "ZEN_FLOW_ARCHIVE_LOGS": "on"})
    ttl = {"ttlSecondsAfterFinished": 1}
    steps = [job_step("load"), job_step("report", "load"), job_step("publish", "report")]
    await driver.create(flow_manifest("logged", namespace, steps, executionPolicy=ttl))
    pods: dict[str, dict[str, Any]] = {}
    for step, node in (("load", "gone-node"), ("report", ""), ("publish", None)):
        await wait_steps(driver, namespace, "logged", {step: "Running"})
        job = await job_of(driver, namespace, step)
        if node is not None:
            pods[step] = job_pod(job, node)
            await asyncio.to_thread(kubectl, "create", "-f", "-", input=json.dumps(pods[step]))
        await finish(driver, namespace, step)
    uid = job["metadata"]["ownerReferences"][0]["uid"]
    await driver.wait_gone(namespace, "logged", timeout=WAIT)  # its TTL (1 s) waited for nothing more
    keys = [
        o.object_name
        for prefix in (f"jobflows/{namespace}/logged/{uid}/", f"jobflows/~logs/{namespace}/logged/{uid}/")
        for o in s3.client().list_objects(BUCKET, prefix=prefix, recursive=True)
    ]
    log = f"jobflows/~logs/{namespace}/logged/{uid}/report/1/{pods['report']['metadata']['name']}/main.log"
    assert sorted(k for k in keys if not k.endswith(".json")) == [log]
    (key,) = [k for k in keys if k.endswith(".json")]
    record = json.loads(await asyncio.to_thread(s3.object_bytes, BUCKET, key))
    entries = {e["step"]: e for e in record["logs"]}
    assert entries["load"]["pod"] == pods["load"]["metadata"]["name"]
    assert entries["load"]["container"] == "main"
    assert entries["load"]["unavailable"].startswith("the apiserver could not read it: ")
    assert (entries["report"]["key"], entries["report"]["bytes"]) == (log, 0)
    assert entries["publish"]["unavailable"] == "no pod of the Job is left to read"
    assert controller.metric("zen_flow_archive_log_writes_total", result="unavailable") == 2
    assert controller.metric("zen_flow_archive_log_writes_total", result="written") == 1
    shown = await asyncio.to_thread(archive_cli, s3, "logs", "logged", "-n", namespace, "--step", "report")
    assert (shown.returncode, shown.stdout) == (0, ""), shown.stderr
    assert f"logs of jobflow {namespace}/logged (uid {uid}) from the archive s3://{BUCKET}" in shown.stderr
    shown = await asyncio.to_thread(archive_cli, s3, "logs", "logged", "-n", namespace, "--step", "load")
    assert shown.returncode == 1
    assert "no archived logs of step load" in shown.stderr
    pod = pods["load"]["metadata"]["name"]
    said = (
        f"step load attempt 1, container main of pod {pod}: no log archived: the apiserver could not read it"
    )
    assert said in shown.stderr  # the record's reason


async def test_a_flow_steps_archived_logs_are_its_child_flows_once_both_are_deleted(
    namespace: str, driver: FlowDriver, start_controller: StartController, s3: S3Server, kubectl: Any
) -> None:
    """A parent whose Flow step ran a child: the parent's record names the child (name and UID), and once
    both are deleted (the parent by its TTL, the child as the garbage collector would, which this tier
    does not run) `zen-flow archive logs PARENT --step STEP` shows the child's steps, from the child's
    own record: one archived log (empty: no kubelet), one said unavailable with why."""
    start_controller(env={**store_env(s3), "ZEN_FLOW_ARCHIVE_LOGS": "on"})
    template = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlowTemplate",
        "metadata": {"name": "build", "namespace": namespace},
        "spec": {"steps": [job_step("compile"), job_step("check", "compile")]},
    }
    await asyncio.to_thread(kubectl, "apply", "-n", namespace, "-f", "-", input=json.dumps(template))
    sub = {"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "build"}}}
    ttl = {"ttlSecondsAfterFinished": 1}
    created = await driver.create(flow_manifest("fam", namespace, [sub], executionPolicy=ttl))
    flow = await wait_steps(driver, namespace, "fam", {"sub": "Running"})
    ref = next(s["jobRef"] for s in flow["status"]["steps"] if s["name"] == "sub")
    child, child_uid = ref["name"], ref["uid"]
    await wait_steps(driver, namespace, child, {"compile": "Running"})
    compile_job = await job_of(driver, namespace, "compile", flow=child)
    pod = job_pod(compile_job, "")  # on no node: its log is empty, and archived
    await asyncio.to_thread(kubectl, "create", "-f", "-", input=json.dumps(pod))
    await complete_job(driver.kube, namespace, compile_job["metadata"]["name"])
    await wait_steps(driver, namespace, child, {"check": "Running"})
    check_job = await job_of(driver, namespace, "check", flow=child)
    await complete_job(driver.kube, namespace, check_job["metadata"]["name"])  # no pod: none to read
    await driver.wait_gone(namespace, "fam", timeout=WAIT)  # its TTL waited for its child's record
    await asyncio.to_thread(kubectl, "delete", "jobflow", child, "-n", namespace)
    await driver.wait_gone(namespace, child, timeout=WAIT)

    uid = created["metadata"]["uid"]
    (key,) = [
        o.object_name
        for o in s3.client().list_objects(BUCKET, prefix=f"jobflows/{namespace}/fam/", recursive=True)
    ]
    record = json.loads(await asyncio.to_thread(s3.object_bytes, BUCKET, key))
    assert record["children"] == [{"step": "sub", "attempt": 1, "name": child, "uid": child_uid}]
    shown = await asyncio.to_thread(archive_cli, s3, "logs", "fam", "-n", namespace, "--step", "sub")
    assert (shown.returncode, shown.stdout) == (0, ""), shown.stderr  # compile's log: archived, empty
    assert f"logs of jobflow {namespace}/fam (uid {uid}) from the archive s3://{BUCKET}" in shown.stderr
    assert "step sub/check attempt 1: no log archived: no pod of the Job is left to read" in shown.stderr
    assert "sub/compile" not in shown.stderr  # its log is there: nothing to say
