"""`zen-flow archive`: its settings (as the controller's, refused by name), the list table and the view of
one record (the flow as `zen-flow get` shows it, then its Jobs)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from zen_flow import config
from zen_flow.archive_keys import ArchiveKeys
from zen_flow.cli import build_parser
from zen_flow.cli.archive import record_view, store_config
from zen_flow.planner.archive_logs import log_key
from zen_flow.planner.archive_records import parse_key, record_key
from zen_flow_dev.testing.s3_fake import (
    ACCESS_KEY,
    MISSING_BUCKET,
    NOT_S3_BUCKET,
    SECRET_KEY,
    FakeS3,
    fake_s3,
)

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
    assert "secret" not in repr(ArchiveKeys(KEYS).current())


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


# --- list and get: rows from the keys, one record per run's end --------------------------------------


def record(namespace: str, name: str, uid: str, phase: str, finished: str) -> bytes:
    status = {"phase": phase, "startTime": "2026-03-01T00:00:00Z", "completionTime": finished}
    flow = {"metadata": {"name": name, "namespace": namespace, "uid": uid}, "status": status}
    return json.dumps({"recordVersion": 1, "archivedAt": finished, "flow": flow, "jobs": []}).encode()


RUNS = [  # (namespace, name, uid, phase, finished, LastModified)
    ("team", "nightly", "u-1", "Succeeded", "2026-03-01T01:00:00Z", "2026-03-01T01:00:02.000Z"),
    ("team", "nightly", "u-1", "Failed", "2026-03-02T01:00:00Z", "2026-03-02T01:00:02.000Z"),  # its rerun
    ("team", "nightly", "u-2", "Succeeded", "2026-03-03T01:00:00Z", "2026-03-03T01:00:02.000Z"),
    ("team", "other", "u-3", "Succeeded", "2026-02-01T01:00:00Z", "2026-02-01T01:00:02.000Z"),
]


def filled() -> FakeS3:
    s3 = FakeS3()
    for ns, name, uid, phase, finished, modified in RUNS:
        s3.put(
            record_key("jobflows/", ns, name, uid, finished), record(ns, name, uid, phase, finished), modified
        )
    s3.put("jobflows/team/README.txt", b"not a record")
    return s3


async def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], s3: FakeS3, *argv: str
) -> tuple[str, str, str]:
    monkeypatch.setenv("ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY", SECRET_KEY)
    async with fake_s3(s3) as (_, endpoint):
        _, rc = await asyncio.to_thread(archive_cli, endpoint, s3.bucket, *argv)
    out, err = capsys.readouterr()
    return rc, out, err


async def test_list_shows_each_runs_end_from_the_keys_alone_oldest_first(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = filled()
    rc, out, err = await run_cli(monkeypatch, capsys, s3, "list", "-n", "team")
    assert (rc, err) == ("0", "")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["NAMESPACE", "NAME", "UID", "FINISHED", "SIZE"]
    assert [(r[1], r[2], r[3]) for r in lines[1:]] == [
        ("other", "u-3", "2026-02-01T01:00:00Z"),
        ("nightly", "u-1", "2026-03-01T01:00:00Z"),
        ("nightly", "u-1", "2026-03-02T01:00:00Z"),
        ("nightly", "u-2", "2026-03-03T01:00:00Z"),
    ]
    assert [m for m, _ in s3.requests] == ["GET"]  # one page of the list, no record read


async def test_list_as_data_and_wide_with_each_runs_phase(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = await run_cli(
        monkeypatch, capsys, filled(), "list", "-n", "team", "--name", "nightly", "-o", "json"
    )
    assert rc == "0"
    data = json.loads(out)
    assert [(d["uid"], d["finished"]) for d in data][:2] == [
        ("u-1", "2026-03-01T01:00:00Z"),
        ("u-1", "2026-03-02T01:00:00Z"),
    ]
    assert data[0]["key"] == "jobflows/team/nightly/u-1/20260301T010000Z.json"
    assert data[0]["lastModified"] == "2026-03-01T01:00:02.000Z"
    assert data[0]["size"] > 0
    rc, out, _ = await run_cli(
        monkeypatch, capsys, filled(), "list", "-n", "team", "--name", "nightly", "-o", "wide"
    )
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][3:5] == ["PHASE", "STARTED"]
    assert [r[3] for r in rows[1:]] == ["Succeeded", "Failed", "Succeeded"]


async def test_a_list_past_its_limit_says_so_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = filled()
    s3.page_size = 2  # the rows stream in, page by page
    rc, out, err = await run_cli(monkeypatch, capsys, s3, "list", "-A", "--limit", "2")
    assert rc == "0"
    rows = [line.split() for line in out.splitlines()[1:]]
    # The newest two by finished, though u-1's keys come first in the LIST (UID order).
    assert [(r[2], r[3]) for r in rows] == [("u-1", "2026-03-02T01:00:00Z"), ("u-2", "2026-03-03T01:00:00Z")]
    assert "showing the newest 2 records" in err
    assert [m for m, _ in s3.requests] == ["GET"] * 3  # the pages of the list, no record read


async def test_get_shows_the_newest_record_and_says_which_or_the_run_asked_for(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = await run_cli(monkeypatch, capsys, filled(), "get", "nightly", "-n", "team", "-o", "json")
    assert rc == "0"
    assert json.loads(out)["flow"]["metadata"]["uid"] == "u-2"
    assert (
        "3 runs of team/nightly are archived; showing the newest (uid u-2, finished 2026-03-03T01:00:00Z)"
        in err
    )
    rc, out, _ = await run_cli(
        monkeypatch, capsys, filled(), "get", "nightly", "-n", "team", "--uid", "u-1", "-o", "json"
    )
    assert json.loads(out)["flow"]["status"]["phase"] == "Failed"  # u-1's newest: its rerun
    argv = (
        "get",
        "nightly",
        "-n",
        "team",
        "--uid",
        "u-1",
        "--finished",
        "2026-03-01T01:00:00Z",
        "-o",
        "json",
    )
    rc, out, _ = await run_cli(monkeypatch, capsys, filled(), *argv)
    assert json.loads(out)["flow"]["status"]["phase"] == "Succeeded"
    rc, _, err = await run_cli(monkeypatch, capsys, filled(), "get", "nightly", "-n", "team", "--uid", "u-9")
    assert rc == "1"
    assert "no archived flow team/nightly with uid u-9" in err


async def test_get_picks_the_newest_end_by_finished_then_the_rerun_within_that_second(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    # u-a ended later but its record was written (LastModified) before u-b's: finished decides.
    for uid, finished, modified in (
        ("u-a", "2026-03-02T00:00:00Z", "2026-03-02T00:00:01.000Z"),
        ("u-b", "2026-03-01T00:00:00Z", "2026-03-05T00:00:00.000Z"),
    ):
        s3.put(
            record_key("jobflows/", "t", "f", uid, finished),
            record("t", "f", uid, "Succeeded", finished),
            modified,
        )
    rc, out, _ = await run_cli(monkeypatch, capsys, s3, "get", "f", "-n", "t", "-o", "json")
    assert rc == "0"
    assert json.loads(out)["flow"]["metadata"]["uid"] == "u-a"
    # A rerun that ended within the second its run ended: its own key; --finished gets the newer.
    s3.put(record_key("jobflows/", "t", "f", "u-a", "2026-03-02T00:00:00Z", "0a1b2c3d"),
           record("t", "f", "u-a", "Failed", "2026-03-02T00:00:00Z"), "2026-03-02T00:00:02.000Z")  # fmt: skip
    argv = ("get", "f", "-n", "t", "--uid", "u-a", "--finished", "2026-03-02T00:00:00Z", "-o", "json")
    rc, out, _ = await run_cli(monkeypatch, capsys, s3, *argv)
    assert rc == "0"
    assert json.loads(out)["flow"]["status"]["phase"] == "Failed"


@pytest.mark.parametrize("finished", ["2026-03-02", "2026-03-02T00:00:00.000Z", "2026-03-02T00:00:00+00:00"])
async def test_get_finished_in_another_format_is_refused_naming_the_expected_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], finished: str
) -> None:
    rc, _, err = await run_cli(
        monkeypatch, capsys, filled(), "get", "nightly", "-n", "team", "--uid", "u-1", "--finished", finished
    )
    assert rc == "2"
    assert f"--finished {finished!r}: expected" in err
    assert "YYYY-MM-DDTHH:MM:SSZ" in err


async def test_a_list_of_every_namespace_does_not_page_through_the_step_logs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = filled()
    others = len(s3.objects)
    records = sum(parse_key("jobflows/", key) is not None for key in s3.objects)
    for n in range(50):  # the logs of many attempts: their own tree, after every namespace's records
        s3.put(log_key("jobflows/", "team", "nightly", "u-1", f"s{n}", 1, f"p{n}", "main"), b"hello\n")
    s3.page_size = 5
    rc, out, _ = await run_cli(monkeypatch, capsys, s3, "list", "-A")
    assert rc == "0"
    assert len(out.splitlines()) == 1 + records
    assert len(s3.requests) <= others // 5 + 1  # the records' pages and the one where the logs begin


async def test_get_of_a_record_whose_flow_does_not_decode_names_the_key_and_field_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    flow = {"metadata": {"name": "n", "namespace": "team", "uid": "u"}, "spec": {"steps": "oops"}}
    key = record_key("jobflows/", "team", "n", "u", "2026-03-01T01:00:00Z")
    s3.put(key, json.dumps({"recordVersion": 1, "flow": flow}).encode(), "2026-03-01T01:00:02.000Z")
    rc, out, err = await run_cli(monkeypatch, capsys, s3, "get", "n", "-n", "team")
    assert (rc, out) == ("1", "")
    assert err == (
        f"zen-flow archive get: {key} is not a record this zen-flow reads: flow.spec.steps: "
        "Input should be a valid tuple\n"
    )
