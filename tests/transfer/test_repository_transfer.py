"""spec.artifactRepository end to end: the plans the planner writes for a producer's uploader and a
consumer's downloader, run as the pod runs them (`zen-flow artifact upload|download`) against a real
S3-compatible server (versitygw), the Secrets' values in the env vars the plans name."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from test_commands import command

from zen_flow.api.transfer import DOWNLOADER, PLAN_ENV, UPLOADER, S3Location, TransferPlan, UploadReport
from zen_flow.core.naming import job_name
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator
from zen_flow_dev.testing.storage import S3Server
from zen_flow_dev.testing.transfer_plans import container, created, transfer_plan


def test_an_output_without_s3_goes_to_the_flows_repository_and_the_next_step_fetches_it(
    s3: S3Server, tmp_path: Path
) -> None:
    """spec.artifactRepository end to end: the plans the planner writes for the producer's uploader and
    the consumer's downloader, run as the pod runs them, the Secrets' values in the env vars they name."""
    bucket = s3.bucket("repository")
    secret = {"name": "storage"}
    repository = {
        "s3": {
            "endpoint": s3.endpoint,
            "bucket": bucket,
            "keyPrefix": "team-a",
            "region": s3.region,
            "accessKeyIDSecretRef": secret,
            "secretAccessKeySecretRef": secret,
        }
    }
    steps = [
        job_step("a", outputs={"artifacts": [{"name": "app", "path": "/out/app.bin"}]}),
        job_step("b", "a", inputs={"artifacts": [{"name": "app", "from": "a/app", "path": "/in/app"}]}),
    ]
    sim = Simulator(make_flow(steps, artifact_repository=repository), datetime(2025, 1, 1, tzinfo=UTC))
    sim.reconcile()
    data = os.urandom(4096)
    (tmp_path / "app.bin").write_bytes(data)
    plan = planned(sim, "a", UPLOADER)
    (item,) = plan.uploads
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        command("upload", tmp_path, "--scratch", str(tmp_path / "scratch"), "--ready-file", str(ready)),
        env=secrets(
            s3,
            item.s3,
            TransferPlan(uploads=(item.model_copy(update={"source": str(tmp_path / "app.bin")}),)),
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None, "the uploader exited before it became ready"
        assert time.monotonic() < deadline, "the uploader never became ready"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    report = (tmp_path / "message").read_text()
    assert UploadReport.model_validate_json(report).errors == {}, err
    assert s3.object_bytes(bucket, "team-a/default/flow/uid-flow/a/app") == data

    sim.complete(job_name("flow", "a", 0), messages={"main": "", UPLOADER: report})
    for _ in range(3):
        sim.reconcile()
    (fetch,) = planned(sim, "b", DOWNLOADER).downloads
    assert fetch.s3 is not None
    done = subprocess.run(
        command("download", tmp_path),
        env=secrets(
            s3, fetch.s3, TransferPlan(downloads=(fetch.model_copy(update={"dest": str(tmp_path / "got")}),))
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "got").read_bytes() == data


def planned(sim: Simulator, step: str, name: str) -> TransferPlan:
    """The transfer plan of container `name` in the last Job the planner created for `step`."""
    body = created(sim, step)
    assert body is not None
    return transfer_plan(container(body, name))


def secrets(s3: S3Server, where: S3Location, plan: TransferPlan) -> dict[str, str]:
    """The env the kubelet gives a transfer container: the plan, and the Secret's values in its vars."""
    assert where.access_key_env is not None
    assert where.secret_key_env is not None
    return {
        "PATH": os.environ["PATH"],
        PLAN_ENV: plan.model_dump_json(exclude_defaults=True),
        where.access_key_env: s3.access_key,
        where.secret_key_env: s3.secret_key,
    }
