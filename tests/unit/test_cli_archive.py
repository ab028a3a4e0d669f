"""`zen-flow archive`: its settings (as the controller's, refused by name), the list table and the view of
one record (the flow as `zen-flow get` shows it, then its Jobs)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from zen_flow import config
from zen_flow.cli import build_parser
from zen_flow.cli.archive import archive_table, record_view, rows_of, store_config
from zen_flow.planner.archive_records import RecordError, RecordRow
from zen_flow_dev.testing.s3_fake import ACCESS_KEY, MISSING_BUCKET, NOT_S3_BUCKET, SECRET_KEY, fake_s3

NOW = datetime(2026, 3, 2, tzinfo=UTC)
KEYS = {"ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID": "id", "ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY": "secret"}
RECORD = {
    "recordVersion": 1,
    "archivedAt": "2026-03-01T12:06:00Z",
    "controllerVersion": "1.2.3",
    "flow": {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {"name": "nightly", "namespace": "team-a", "uid": "u-1"},
        "spec": {
            "steps": [{"name": "load", "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}]
        },
        "status": {
            "phase": "Succeeded",
            "startTime": "2026-03-01T12:00:00Z",
            "completionTime": "2026-03-01T12:05:00Z",
            "steps": [{"name": "load", "phase": "Succeeded", "jobRef": {"name": "nightly-load-1a2b3c4d"}}],
        },
    },
    "jobs": [{"name": "nightly-load-1a2b3c4d", "step": "load", "phase": "Succeeded", "startTime": "x"}],
}


def test_the_list_is_a_history_oldest_finished_first() -> None:
    rows = [
        RecordRow("b", "later", "u-2", "Failed", "2026-03-02T00:00:00Z", "2026-03-02T01:00:00Z"),
        RecordRow("a", "first", "u-1", "Succeeded", "2026-03-01T00:00:00Z", "2026-03-01T01:00:00Z"),
    ]
    lines = archive_table(rows).splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "UID", "PHASE", "STARTED", "FINISHED"]
    assert [line.split()[1] for line in lines[1:]] == ["first", "later"]


def test_an_object_that_is_no_record_is_named_and_skipped() -> None:
    rows, problems = rows_of(
        [("k1", RECORD), ("k2", RecordError("not JSON: x")), ("k3", {"recordVersion": 7})]
    )
    assert [r.uid for r in rows] == ["u-1"]
    assert problems[0] == "k2: not JSON: x"
    assert problems[1].startswith("k3: recordVersion 7")


def test_get_shows_the_flow_as_zen_flow_get_does_then_its_jobs() -> None:
    view = record_view(RECORD, None, NOW)
    assert view.startswith("Archived:   2026-03-01T12:06:00Z (controller 1.2.3)\n")
    assert "Name:       team-a/nightly" in view
    assert "Phase:      Succeeded" in view
    assert "Duration:   5m" in view
    job_lines = view.split("JOB")[-1].splitlines()
    assert job_lines[1].split()[:3] == ["nightly-load-1a2b3c4d", "load", "Succeeded"]
    assert '"recordVersion": 1' in record_view(RECORD, "json", NOW)


def test_the_store_comes_from_flags_then_the_environment_and_bad_values_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in KEYS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ZEN_FLOW_ARCHIVE_S3_BUCKET", "team-flows")
    args = build_parser().parse_args(["archive", "list", "--archive-s3-endpoint", "http://minio:9000/"])
    store = store_config(args)
    assert (store.endpoint, store.bucket, store.credentials.current().access_key) == (
        "http://minio:9000",
        "team-flows",
        "id",
    )
    bad = build_parser().parse_args(["archive", "list", "--archive-s3-endpoint", "ftp://minio/x"])
    with pytest.raises(ValueError, match="must be http"):
        store_config(bad)
    monkeypatch.delenv("ZEN_FLOW_ARCHIVE_S3_BUCKET")
    with pytest.raises(ValueError, match="name the archive"):
        store_config(build_parser().parse_args(["archive", "list"]))


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--archive-s3-endpoint", "http://minio:9000"], "go together"),
        (["--archive-s3-endpoint", "http://minio:9000", "--archive-s3-bucket", "B_ad"], "not a bucket name"),
        (["--archive-s3-endpoint", "http://u:p@minio:9000", "--archive-s3-bucket", "b-1"], "holds user info"),
        (["--archive-max-delay-seconds", "-1"], "--archive-max-delay-seconds"),
    ],
)
def test_the_controller_refuses_a_half_or_bad_archive_by_name(flags: list[str], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        config.load(build_parser().parse_args(["run", *flags]), env=KEYS)


def test_the_controller_refuses_an_archive_without_keys_and_never_shows_them() -> None:
    flags = ["run", "--archive-s3-endpoint", "http://minio:9000", "--archive-s3-bucket", "flows"]
    with pytest.raises(ValueError, match="ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID"):
        config.load(build_parser().parse_args(flags), env={})
    assert config.load(build_parser().parse_args(flags), env=KEYS).archive_enabled
    assert "secret" not in repr(config.archive_keys(KEYS).current())


# --- against a store (devkit s3_fake): what goes wrong is said, by name ---------------------------------


def archive_cli(endpoint: str, bucket: str, *argv: str) -> list[str]:
    args = build_parser().parse_args(
        ["archive", *argv, "--archive-s3-endpoint", endpoint, "--archive-s3-bucket", bucket]
    )
    return [*argv[:1], str(args.func(args))]


@pytest.mark.parametrize(
    ("argv", "bucket", "said"),
    [
        (
            ["list", "-n", "team"],
            MISSING_BUCKET,
            "HTTP 404 NoSuchBucket: The specified bucket does not exist",
        ),
        (["get", "f", "-n", "team", "--uid", "u1"], MISSING_BUCKET, "HTTP 404 NoSuchBucket"),
        (["list", "-n", "team"], NOT_S3_BUCKET, "not an S3 answer from 127.0.0.1:"),
        (["get", "f", "-n", "team"], NOT_S3_BUCKET, "not an S3 answer from 127.0.0.1:"),
    ],
)
async def test_a_store_that_fails_is_named_with_what_it_said_and_never_the_keys(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    bucket: str,
    said: str,
) -> None:
    monkeypatch.setenv("ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY", SECRET_KEY)
    async with fake_s3() as (_, endpoint):
        ran = await asyncio.to_thread(archive_cli, endpoint, bucket, *argv)
    assert ran == [argv[0], "1"]
    err = capsys.readouterr().err
    assert f"zen-flow archive {argv[0]}: the archive store s3://{bucket} at {endpoint} failed: " in err
    assert said in err
    assert "no archived flow" not in err
    assert SECRET_KEY not in err
