"""`zen-flow artifact upload|download` as the pod runs them: real processes, a real S3-compatible server
(versitygw) and a real HTTP server, on loopback. What one step uploads, the next downloads intact; every
failure is one clear line that names the artifact and never shows a credential."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from zen_flow.api.transfer import (
    PLAN_ENV,
    Download,
    HttpLocation,
    S3Location,
    TransferPlan,
    Upload,
    UploadReport,
)
from zen_flow_dev.testing.storage import FileServer, S3Server

ACCESS, SECRET = "ZF_S3_ACCESS_KEY_0", "ZF_S3_SECRET_KEY_0"


def location(s3: S3Server, bucket: str, key: str) -> S3Location:
    return S3Location(
        endpoint=s3.endpoint,
        bucket=bucket,
        key=key,
        region=s3.region,
        access_key_env=ACCESS,
        secret_key_env=SECRET,
    )


def environment(
    s3: S3Server, plan: TransferPlan, *, secret: str | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        PLAN_ENV: plan.model_dump_json(exclude_defaults=True),
        ACCESS: s3.access_key,
        SECRET: secret if secret is not None else s3.secret_key,
        **(extra or {}),
    }


def command(direction: str, tmp: Path, *extra: str) -> list[str]:
    for leftover in (tmp / "message", tmp / "ready"):  # each run starts like a fresh container
        leftover.unlink(missing_ok=True)
    return [
        sys.executable,
        "-m",
        "zen_flow",
        "artifact",
        direction,
        "--message-file",
        str(tmp / "message"),
        *extra,
    ]


def upload(s3: S3Server, tmp: Path, *items: Upload, secret: str | None = None) -> tuple[UploadReport, str]:
    """Run the uploader like the kubelet does: start it, wait until it listens, stop it with SIGTERM."""
    ready = tmp / "ready"
    proc = subprocess.Popen(
        command("upload", tmp, "--scratch", str(tmp / "scratch"), "--ready-file", str(ready)),
        env=environment(s3, TransferPlan(uploads=items), secret=secret),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not ready.exists():  # the startup probe's condition
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the uploader never became ready"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err  # whatever happened: the report says it, not the exit code
    report = UploadReport.model_validate_json((tmp / "message").read_text())
    return report, err


def download(
    s3: S3Server, tmp: Path, *items: Download, secret: str | None = None, extra: dict[str, str] | None = None
) -> tuple[int, str, str]:
    done = subprocess.run(
        command("download", tmp),
        env=environment(s3, TransferPlan(downloads=items), secret=secret, extra=extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    message = (tmp / "message").read_text() if (tmp / "message").exists() else ""
    return done.returncode, message, done.stderr


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_file_and_a_directory_go_up_and_come_back_intact(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.bucket("roundtrip")
    out = tmp_path / "producer"
    (out / "site" / "css").mkdir(parents=True)
    (out / "site" / "index.html").write_bytes(b"<h1>hello</h1>")
    (out / "site" / "css" / "a.css").write_bytes(os.urandom(300_000))
    big = os.urandom(12 * 1024 * 1024)  # above the client's part size: a multipart upload
    (out / "app.bin").write_bytes(big)
    report, log = upload(
        s3,
        tmp_path,
        Upload(name="bin", source=str(out / "app.bin"), s3=location(s3, bucket, "f/app.bin")),
        Upload(name="site", source=str(out / "site"), s3=location(s3, bucket, "f/site")),
        Upload(
            name="zipped",
            source=str(out / "site"),
            s3=location(s3, bucket, "f/site.zip"),
            archive="zip+deflate",
        ),
    )
    assert report.errors == {}
    assert report.stored["bin"].model_dump() == {"size": len(big), "digest": sha256(big), "archive": "none"}
    assert report.stored["site"].archive == "tar+gzip"  # a directory without `archive`
    assert s3.object_bytes(bucket, "f/app.bin") == big
    assert sha256(s3.object_bytes(bucket, "f/site")) == report.stored["site"].digest
    assert "output artifact bin: " in log
    assert s3.secret_key not in log

    consumer = tmp_path / "consumer"
    code, message, log = download(
        s3,
        tmp_path,
        *(
            Download(
                name=name,
                dest=str(consumer / name),
                s3=location(s3, bucket, key),
                archive=report.stored[name].archive,
                digest=report.stored[name].digest,
            )
            for name, key in (("bin", "f/app.bin"), ("site", "f/site"), ("zipped", "f/site.zip"))
        ),
    )
    assert (code, message) == (0, ""), log
    assert (consumer / "bin").read_bytes() == big
    assert tree(consumer / "site") == tree(out / "site")
    assert tree(consumer / "zipped") == tree(out / "site")
    # The step's containers may run as any user: what was downloaded is theirs to change.
    assert (consumer / "site" / "index.html").stat().st_mode & 0o666 == 0o666


def test_missing_outputs_a_wrong_secret_and_a_missing_bucket_are_reported_by_name(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.bucket("reports")
    (tmp_path / "a.txt").write_text("a")
    items = (
        Upload(name="gone", source=str(tmp_path / "nope"), s3=location(s3, bucket, "gone")),
        Upload(name="maybe", source=str(tmp_path / "nope"), s3=location(s3, bucket, "maybe"), optional=True),
        Upload(name="nobucket", source=str(tmp_path / "a.txt"), s3=location(s3, "no-such-bucket", "a")),
    )
    report, _ = upload(s3, tmp_path, *items)
    assert report.stored == {}
    assert report.missing == ("maybe",)
    assert report.errors["gone"].endswith("does not exist: the step did not write it")
    assert "s3://no-such-bucket/a at http://127.0.0.1" in report.errors["nobucket"]
    assert "NoSuchBucket" in report.errors["nobucket"]

    wrong = "not-the-secret-" + "x" * 20
    report, log = upload(
        s3,
        tmp_path,
        Upload(name="a", source=str(tmp_path / "a.txt"), s3=location(s3, bucket, "a")),
        secret=wrong,
    )
    assert "SignatureDoesNotMatch" in report.errors["a"]
    text = (tmp_path / "message").read_text() + log
    assert wrong not in text
    assert s3.access_key not in text  # errors name the endpoint, bucket and key, never the keys


def test_the_report_always_fits_a_termination_message(s3: S3Server, tmp_path: Path) -> None:
    items = [
        Upload(
            name=f"artifact-{i:02d}",
            source=str(tmp_path / ("missing-" + "d" * 200) / str(i)),
            s3=location(s3, "b", "k"),
        )
        for i in range(40)
    ]
    report, _ = upload(s3, tmp_path, *items)
    assert len((tmp_path / "message").read_bytes()) <= 4096
    assert set(report.errors) == {item.name for item in items}


def test_a_changed_object_is_refused_and_the_step_fails_with_one_line(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.bucket("digests")
    s3.client().put_object(bucket, "x", io.BytesIO(b"tampered"), 8)
    code, message, _ = download(
        s3,
        tmp_path,
        Download(
            name="x", dest=str(tmp_path / "x"), s3=location(s3, bucket, "x"), digest=sha256(b"original")
        ),
    )
    assert code == 1
    assert message.startswith(
        f"input artifact x: s3://{bucket}/x changed since it was stored: {sha256(b'tampered')}"
    )
    assert not (tmp_path / "x").exists()


def test_http_inputs_with_headers_and_their_failures(s3: S3Server, web: FileServer, tmp_path: Path) -> None:
    web.files = {"/data/seed.csv": b"a,b\n1,2\n", "/private/model.bin": b"\x00\x01"}
    base = f"http://127.0.0.1:{web.server_address[1]}"
    code, message, log = download(
        s3,
        tmp_path,
        Download(
            name="seed", dest=str(tmp_path / "in" / "seed"), http=HttpLocation(url=base + "/data/seed.csv")
        ),
        Download(
            name="model",
            dest=str(tmp_path / "in" / "model"),
            http=HttpLocation(url=base + "/private/model.bin", headers={"Authorization": "Bearer let-me-in"}),
        ),
    )
    assert (code, message) == (0, ""), log
    assert (tmp_path / "in" / "seed").read_bytes() == b"a,b\n1,2\n"
    assert (tmp_path / "in" / "model").read_bytes() == b"\x00\x01"
    assert web.seen_headers[0]["User-Agent"] == "zen-flow-artifact"

    code, message, _ = download(
        s3,
        tmp_path,
        Download(
            name="secret",
            dest=str(tmp_path / "s"),
            http=HttpLocation(url=base + "/private/model.bin?token=abc123"),
        ),
    )
    assert code == 1
    assert (
        message == f"input artifact secret: {base}/private/model.bin: HTTP 401 Unauthorized"
    )  # no query: no token
    code, message, _ = download(
        s3, tmp_path, Download(name="gone", dest=str(tmp_path / "g"), http=HttpLocation(url=base + "/nope"))
    )
    assert (code, message) == (1, f"input artifact gone: {base}/nope: HTTP 404 Not Found")


def test_headers_go_only_to_the_origin_they_were_written_for(
    s3: S3Server, web: FileServer, other_web: FileServer, tmp_path: Path
) -> None:
    # urllib copies every header to wherever a redirect points: a token meant for one server reached
    # another. A redirect on the same origin keeps them; one to another origin drops the flow's headers.
    private = {"/private/model.bin": b"\x00\x01"}
    web.files = other_web.files = private
    web.redirects = {
        "/private/moved": web.base + "/private/model.bin",
        "/private/away": other_web.base + "/private/model.bin",
    }
    token = {"Authorization": "Bearer let-me-in"}
    code, message, log = download(
        s3,
        tmp_path,
        Download(
            name="same",
            dest=str(tmp_path / "same"),
            http=HttpLocation(url=web.base + "/private/moved", headers=token),
        ),
    )
    assert (code, message) == (0, ""), log
    assert (tmp_path / "same").read_bytes() == b"\x00\x01"
    code, message, _ = download(
        s3,
        tmp_path,
        Download(
            name="away",
            dest=str(tmp_path / "away"),
            http=HttpLocation(url=web.base + "/private/away", headers=token),
        ),
    )
    assert (code, message) == (1, f"input artifact away: {web.base}/private/away: HTTP 401 Unauthorized")
    assert other_web.seen_headers
    assert all("Authorization" not in seen for seen in other_web.seen_headers)
    assert other_web.seen_headers[-1]["User-Agent"] == "zen-flow-artifact"


def test_a_header_from_a_secret_is_read_from_its_env_var(
    s3: S3Server, web: FileServer, tmp_path: Path
) -> None:
    # `http.headersFrom`: the kubelet puts the Secret's key in the container's env; the plan names the
    # variable only.
    web.files = {"/private/model.bin": b"\x00\x01"}
    location = HttpLocation(
        url=web.base + "/private/model.bin", header_env={"Authorization": "ZF_HTTP_HEADER_0"}
    )
    item = Download(name="model", dest=str(tmp_path / "model"), http=location)
    code, message, log = download(s3, tmp_path, item, extra={"ZF_HTTP_HEADER_0": "Bearer let-me-in"})
    assert (code, message) == (0, ""), log
    assert (tmp_path / "model").read_bytes() == b"\x00\x01"
    assert "let-me-in" not in TransferPlan(downloads=(item,)).model_dump_json()
    code, message, _ = download(s3, tmp_path, item.model_copy(update={"dest": str(tmp_path / "again")}))
    assert (code, message) == (
        1,
        "input artifact model: Authorization: no value in ZF_HTTP_HEADER_0 (http.headersFrom)",
    )


def test_an_unreadable_plan_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        command("download", tmp_path),
        env={"PATH": os.environ["PATH"], PLAN_ENV: '{"downloads": [{"name": 1}]}'},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "is not a transfer plan" in (tmp_path / "message").read_text()
    assert "Traceback" not in done.stderr


def test_the_uploader_survives_a_stop_right_after_it_became_ready(s3: S3Server, tmp_path: Path) -> None:
    """A step that exits at once: the kubelet stops the uploader as soon as the step's containers are
    done, which is right after the startup probe saw the ready file. The report must still be written."""
    bucket = s3.bucket("quick")
    (tmp_path / "f").write_bytes(b"fast")
    report, _ = upload(
        s3, tmp_path, Upload(name="f", source=str(tmp_path / "f"), s3=location(s3, bucket, "f"))
    )
    assert report.stored["f"].size == 4
