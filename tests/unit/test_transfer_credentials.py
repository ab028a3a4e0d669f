"""The downloader never shows the credentials a URL's userinfo holds (`https://user:password@host/`):
admission refuses such URLs, but a flow stored before it did may still hold one."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api.transfer import Download, HttpLocation, S3Location, TransferPlan
from zen_flow.transfer.archive import TransferError
from zen_flow.transfer.runner import run_download
from zen_flow.transfer.stores import get_s3, shown_url


def downloaded(tmp_path: Path, item: Download) -> tuple[int, str, str]:
    log = io.StringIO()
    message = tmp_path / "message"
    code = run_download(TransferPlan(downloads=(item,)), message, log)
    return code, message.read_text(), log.getvalue()


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@127.0.0.1:9/seed.csv",  # urllib read the port as "hunter2@127.0.0.1:9"
        "https://hunter2@127.0.0.1:9/seed.csv?token=t",
    ],
)
def test_a_url_with_userinfo_fails_the_download_without_showing_it(tmp_path: Path, url: str) -> None:
    item = Download(name="seed", dest=str(tmp_path / "seed"), http=HttpLocation(url=url))
    code, message, log = downloaded(tmp_path, item)
    assert code == 1
    assert "hunter2" not in message + log
    scheme = url.split(":", 1)[0]
    assert message == (
        f"input artifact seed: {scheme}://127.0.0.1:9/seed.csv: the URL holds a user name or password, "
        "which the downloader never sends: give the credential as a header from a Secret (http.headersFrom)"
    )
    assert not (tmp_path / "seed").exists()


def test_an_s3_endpoint_with_userinfo_is_not_shown(tmp_path: Path) -> None:
    location = S3Location(endpoint="ftp://ak:hunter2@s3.example.com", bucket="b", key="k")
    with pytest.raises(TransferError) as caught:
        get_s3(location, tmp_path / "object")
    assert "hunter2" not in str(caught.value)
    assert "ftp://s3.example.com" in str(caught.value)


SAFE = st.text(st.characters(codec="ascii", exclude_characters="/?#@"), max_size=10)


@given(
    st.sampled_from(["http", "https"]),
    SAFE,
    SAFE,
    st.sampled_from(["example.com", "10.0.0.1:8080", "[::1]:443"]),
    st.text(st.characters(codec="ascii", exclude_characters="?#"), max_size=20),
    st.text(st.characters(codec="ascii"), max_size=20),
)
def test_a_shown_url_keeps_the_host_and_path_and_drops_credentials_query_and_fragment(
    scheme: str, user: str, secret: str, host: str, path: str, query: str
) -> None:
    userinfo = f"{user}:{secret}@" if user or secret else ""
    shown = shown_url(f"{scheme}://{userinfo}{host}/{path}?{query}")
    assert shown == f"{scheme}://{host}/{path}"
