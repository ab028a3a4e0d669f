"""Step logs in the flow archive (`--archive-logs`) with real containers: what a step's pod printed, read
by the controller through the apiserver and the kubelet, is in the store after the flow's TTL deleted the
flow, its Jobs and pods, cut at `--archive-log-limit-bytes` when longer, and `zen-flow archive logs` prints
it. The store is a versitygw on the host's 127.0.0.1: only the controller (a host process) talks to it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from zen_flow.planner.archive_logs import TRUNCATED_MARK
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.storage import MISSING, S3Server, versitygw_binary

pytestmark = pytest.mark.node

BUCKET = "flow-archive"
LONG = 3000  # bytes the second step prints ("x\n" lines); the limit keeps 1024 of them


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


def _job(command: str) -> dict[str, Any]:
    container = {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", command]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


async def test_a_steps_real_log_outlives_its_pod_in_the_archive(
    namespace: str, driver: FlowDriver, start_controller: StartController, s3: S3Server
) -> None:
    env = {**store_env(s3), "ZEN_FLOW_ARCHIVE_LOGS": "on", "ZEN_FLOW_ARCHIVE_LOG_LIMIT_BYTES": "1024"}
    controller = start_controller(env=env)
    steps = [
        job_step("hello", template=_job("echo 'hello from step hello'; echo second line")),
        job_step("chatty", "hello", template=_job(f"yes x | head -c {LONG}")),
    ]
    manifest = flow_manifest("kept", namespace, steps, executionPolicy={"ttlSecondsAfterFinished": 1})
    created = await driver.create(manifest)
    uid = created["metadata"]["uid"]
    await driver.wait_gone(namespace, "kept", timeout=180)  # ran, archived with its logs, then deleted
    keys = sorted(
        o.object_name
        for o in s3.client().list_objects(BUCKET, prefix=f"jobflows/{namespace}/kept/", recursive=True)
    )
    (record_key,) = [k for k in keys if k.endswith(".json")]
    record = json.loads(await asyncio.to_thread(s3.object_bytes, BUCKET, record_key))
    entries = {e["step"]: e for e in record["logs"]}
    assert set(entries) == {"hello", "chatty"}
    hello = await asyncio.to_thread(s3.object_bytes, BUCKET, entries["hello"]["key"])
    assert hello == b"hello from step hello\nsecond line\n"
    assert entries["hello"]["key"].startswith(f"jobflows/~logs/{namespace}/kept/{uid}/hello/1/")
    chatty = await asyncio.to_thread(s3.object_bytes, BUCKET, entries["chatty"]["key"])
    assert chatty == b"x\n" * 512 + f"{TRUNCATED_MARK} 1024 bytes are kept]\n".encode()
    assert entries["chatty"]["truncated"] is True
    assert controller.metric("zen_flow_archive_log_writes_total", result="truncated") == 1
    shown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "zen_flow", "archive", "logs", "kept", "-n", namespace],
        env={**os.environ, **store_env(s3)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[:2] == ["[hello] hello from step hello", "[hello] second line"]
    assert "from the archive" in shown.stderr
