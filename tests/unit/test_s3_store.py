"""The flow archive's S3 client against a fake store on loopback (devkit s3_fake): bodies read whole
however they arrive, the Host sent as signed, S3's errors told apart and named, and keys read again from
files when the store refuses them (rotated keys, an expired session token)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from zen_flow.archive_keys import ArchiveKeys
from zen_flow.core.sigv4 import Credentials
from zen_flow.s3 import ObjectMissing, S3Store, StoreConfig, StoreError, host_header
from zen_flow_dev.testing.s3_fake import (
    ACCESS_KEY,
    MISSING_BUCKET,
    NOT_S3_BUCKET,
    SECRET_KEY,
    FakeS3,
    fake_s3,
)


@dataclass(frozen=True)
class FixedKeys:
    """Keys that never change (the controller's come from archive_keys.ArchiveKeys)."""

    credentials: Credentials

    def current(self) -> Credentials:
        return self.credentials

    def refused(self) -> None:
        return None


KEYS = FixedKeys(Credentials(ACCESS_KEY, SECRET_KEY))


def config(endpoint: str, bucket: str = "flows", keys: object = KEYS) -> StoreConfig:
    return StoreConfig(endpoint=endpoint, bucket=bucket, credentials=keys)  # type: ignore[arg-type]


async def test_a_large_record_and_a_large_list_page_are_read_whole() -> None:
    big = json.dumps({"recordVersion": 1, "pad": "x" * 2_000_000}).encode()
    async with fake_s3() as (s3, endpoint):
        s3.put("jobflows/team/big/u1.json", big)
        long_name = "n" * 200  # a 1,000-key page of ~300 KB
        for i in range(2500):
            s3.put(f"jobflows/team/{long_name}/u{i:05d}.json", b"{}")
        async with S3Store(config(endpoint)) as store:
            assert await store.get("jobflows/team/big/u1.json") == big
            keys = [item.key async for page in store.pages("jobflows/team/") for item in page]
    assert len(keys) == 2501
    assert keys[-1] == f"jobflows/team/{long_name}/u02499.json"


async def test_an_object_past_the_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("zen_flow.s3.MAX_OBJECT_BYTES", 100_000)
    async with fake_s3() as (s3, endpoint), S3Store(config(endpoint)) as store:
        s3.put("k", b"x" * 200_000)
        with pytest.raises(StoreError, match="larger than"):
            await store.get("k")


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        ("http://127.0.0.1:80", "127.0.0.1"),
        ("https://S3.example.com:443", "s3.example.com"),
        ("http://minio:9000", "minio:9000"),
        ("https://minio:80", "minio:80"),
        ("http://[::1]:80", "[::1]"),
    ],
)
def test_the_host_is_signed_as_a_client_sends_it_without_a_default_port(endpoint: str, host: str) -> None:
    assert host_header(endpoint) == host


async def test_the_host_header_sent_is_the_one_signed() -> None:
    async with fake_s3() as (s3, endpoint):
        upper = endpoint.replace("127.0.0.1", "LOCALHOST")
        async with S3Store(config(upper)) as store:
            await store.put("k", b"{}")
    assert s3.refused == 0
    assert s3.hosts == [upper.removeprefix("http://").lower()]


async def test_a_missing_bucket_is_not_a_missing_record_and_both_say_what_s3_said() -> None:
    async with fake_s3() as (_, endpoint):
        host = endpoint.removeprefix("http://")
        async with S3Store(config(endpoint)) as store:
            with pytest.raises(ObjectMissing) as missing:
                await store.get("jobflows/team/a/u.json")
        assert missing.value.cause == (f"HTTP 404 NoSuchKey: The specified key does not exist. (from {host})")
        async with S3Store(config(endpoint, MISSING_BUCKET)) as store:
            with pytest.raises(StoreError) as no_bucket:
                await store.get("jobflows/team/a/u.json")
            assert not isinstance(no_bucket.value, ObjectMissing)
            assert no_bucket.value.cause == (
                f"HTTP 404 NoSuchBucket: The specified bucket does not exist (from {host})"
            )
            with pytest.raises(StoreError, match="NoSuchBucket"):
                [p async for p in store.pages("jobflows/")]


async def test_an_answer_that_is_not_s3s_is_named_as_such() -> None:
    async with fake_s3() as (_, endpoint), S3Store(config(endpoint, NOT_S3_BUCKET)) as store:
        with pytest.raises(StoreError, match=f"not an S3 answer from {endpoint.removeprefix('http://')}"):
            [p async for p in store.pages("jobflows/")]


async def test_keys_from_files_are_read_again_when_the_store_refuses_them(tmp_path: Path) -> None:
    files = {"ACCESS_KEY_ID": ACCESS_KEY, "SECRET_ACCESS_KEY": SECRET_KEY, "SESSION_TOKEN": "token-1"}
    env = {}
    for name, value in files.items():
        (tmp_path / name).write_text(value + "\n")  # as `kubectl create secret --from-file` leaves it
        env[f"ZEN_FLOW_ARCHIVE_{name}_FILE"] = str(tmp_path / name)
    keys = ArchiveKeys(env)
    async with (
        fake_s3(FakeS3(session_token="token-1")) as (s3, endpoint),
        S3Store(config(endpoint, keys=keys)) as store,
    ):
        await store.put("a", b"{}")
        # The token expired; the Secret holds a new one (and new keys) before the controller knows.
        s3.session_token, s3.secret_key = "token-2", "rotated"
        (tmp_path / "SESSION_TOKEN").write_text("token-2")
        (tmp_path / "SECRET_ACCESS_KEY").write_text("rotated")
        with pytest.raises(StoreError, match="HTTP 403"):
            await store.put("b", b"{}")
        await store.put("b", b"{}")  # the refusal made it read the files again
    assert sorted(s3.objects) == ["a", "b"]


def test_keys_are_given_once_each_and_a_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    both = {
        "ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID": "id",
        "ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID_FILE": str(tmp_path / "id"),
        "ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY": "s",
    }
    with pytest.raises(
        ValueError, match=r"\$ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID or \$ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID_FILE"
    ):
        ArchiveKeys(both)
    gone = {"ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID": "id", "ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY_FILE": "/nope/secret"}
    with pytest.raises(ValueError, match=r"SECRET_ACCESS_KEY_FILE: cannot read '/nope/secret'"):
        ArchiveKeys(gone)


def test_a_key_file_that_cannot_be_read_again_is_logged_once_per_cause_never_its_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "id").write_text("AKID-SECRET-CONTENT")
    (tmp_path / "secret").write_text("s3cr3t-value")
    env = {
        "ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID_FILE": str(tmp_path / "id"),
        "ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY_FILE": str(tmp_path / "secret"),
    }
    now = [0.0]
    keys = ArchiveKeys(env, monotonic=lambda: now[0])
    (tmp_path / "secret").unlink()  # the Secret being rewritten, or gone
    with caplog.at_level(logging.INFO, logger="zen_flow.archive_keys"):
        for _ in range(3):
            keys.refused()
            assert keys.current().access_key == "AKID-SECRET-CONTENT"  # the keys last read
        (tmp_path / "secret").write_text("rotated")
        keys.refused()
        assert keys.current().secret_key == "rotated"
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert "cannot read the archive store's keys" in said[0]
    assert str(tmp_path / "secret") in said[0]
    assert "read again" in said[1]
    assert not any("AKID-SECRET-CONTENT" in m or "s3cr3t" in m or "rotated" in m for m in said)


async def test_a_put_answered_200_by_something_that_is_not_s3_is_a_failed_write() -> None:
    async with fake_s3() as (s3, endpoint):
        host = endpoint.removeprefix("http://")
        # A web server at the wrong port: 200 and its welcome page.
        async with S3Store(config(endpoint, NOT_S3_BUCKET)) as store:
            with pytest.raises(StoreError) as html:
                await store.put("jobflows/team/a/u.json", b"{}")
        assert html.value.cause == (
            f"not an S3 answer from {host}: HTTP 200 to a PUT without an ETag header, so the object is not "
            "known to be written (text/html; charset=utf-8: <html><body>Welcome to nginx!</html>)"
        )
        # A gateway that answers 200 and nothing else.
        s3.etag = False
        async with S3Store(config(endpoint)) as store:
            with pytest.raises(StoreError, match=r"without an ETag header.*no body"):
                await store.put("jobflows/team/a/u.json", b"{}")
            s3.etag = True
            await store.put("jobflows/team/a/u.json", b'{"ok": true}')


async def test_a_put_sends_the_bodys_md5_for_the_store_to_check() -> None:
    body = json.dumps({"recordVersion": 1}).encode()
    async with fake_s3() as (s3, endpoint), S3Store(config(endpoint)) as store:
        await store.put("k", body)
    assert s3.digests == [base64.b64encode(hashlib.md5(body).digest()).decode()]
    assert s3.objects["k"][0] == body
