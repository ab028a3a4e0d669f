"""The downloader never shows the credentials a URL's userinfo holds (`https://user:password@host/`):
admission refuses such URLs, but a flow stored before it did may still hold one."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api.transfer import Download, HttpLocation, S3Location, TransferPlan
from zen_flow.core.urls import scrubbed
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


class _Redirecting(http.server.BaseHTTPRequestHandler):
    """Answers every GET with `code`, its Location the `location` the test sets on the server."""

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        self.send_response(server.code)
        self.send_header("Location", server.location.replace("PORT", str(server.server_address[1])))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:  # quiet
        pass


class _Server(http.server.ThreadingHTTPServer):
    code = 302
    location = ""


@pytest.fixture(scope="module")
def redirector() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        # urllib read "hunter2@127.0.0.1" as a port, and said so: "nonnumeric port: 'hunter2@127.0.0.1'"
        ("http://user:hunter2@127.0.0.1/x", "http://127.0.0.1/x"),
        ("http://user:hunter2@127.0.0.1:PORT/x", "http://127.0.0.1:PORT/x"),
        ("//hunter2@127.0.0.1:PORT/x", "http://127.0.0.1:PORT/x"),  # the scheme of the URL redirected
        # urllib quoted the Location it refuses: "Redirection to url 'gopher://user:hunter2@...'"
        ("gopher://user:hunter2@127.0.0.1/x", "gopher://127.0.0.1/x"),
        ("ftp://user:hunter2@127.0.0.1:PORT/x?k=hunter2", "ftp://127.0.0.1:PORT/x"),
    ],
)
@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_to_a_url_with_userinfo_fails_without_showing_it(
    tmp_path: Path, redirector: _Server, location: str, shown: str, code: int
) -> None:
    redirector.code, redirector.location = code, location
    port = str(redirector.server_address[1])
    url = f"http://127.0.0.1:{port}/seed.csv"
    code_, message, log = downloaded(
        tmp_path, Download(name="seed", dest=str(tmp_path / "seed"), http=HttpLocation(url=url))
    )
    assert code_ == 1
    assert "hunter2" not in message + log
    assert message.startswith(
        f"input artifact seed: {url} redirected ({code}) to {shown.replace('PORT', port)}"
    )
    assert not (tmp_path / "seed").exists()


def test_a_redirect_to_another_scheme_is_refused_naming_it(tmp_path: Path, redirector: _Server) -> None:
    # urllib follows ftp:// (logging in with the URL's user): only http and https are followed.
    redirector.code, redirector.location = 302, "ftp://127.0.0.1:PORT/x"
    port = str(redirector.server_address[1])
    url = f"http://127.0.0.1:{port}/seed.csv"
    code, message, _ = downloaded(
        tmp_path, Download(name="seed", dest=str(tmp_path / "seed"), http=HttpLocation(url=url))
    )
    assert code == 1
    assert message == (
        f"input artifact seed: {url} redirected (302) to ftp://127.0.0.1:{port}/x: only http and https "
        "redirects are followed"
    )


@given(
    user=st.text(alphabet="abcdefghij:%-._~!$&'()*+,;=", min_size=1, max_size=20),
    scheme=st.sampled_from(["http", "https", "ftp", "s3", "git+ssh"]),
)
def test_scrubbed_text_quotes_no_userinfo(user: str, scheme: str) -> None:
    text = f"Redirection to url '{scheme}://{user}@host.example:1/p?q' is not allowed"
    assert scrubbed(text) == f"Redirection to url '{scheme}://host.example:1/p?q' is not allowed"
