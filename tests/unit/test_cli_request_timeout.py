"""`--request-timeout` (kubectl's flag): each request the CLI sends gives up after it, and an apiserver
that accepts the connection but never answers is said in one line naming the server and the timeout."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from zen_flow.cli import main
from zen_flow.cli.session import parse_request_timeout


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A listening socket nobody accepts from: the kernel completes the handshake, no answer ever comes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener


@pytest.fixture
def silent_server(silent_listener: socket.socket) -> str:
    return f"http://127.0.0.1:{silent_listener.getsockname()[1]}"


def kubeconfig(path: Path, server: str) -> str:
    doc = {
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_a_silent_apiserver_is_named_with_the_timeout_in_one_line(
    silent_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["list", "--kubeconfig", kubeconfig(tmp_path / "kc", silent_server), "--request-timeout", "300ms"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err == f"zen-flow list: no answer from {silent_server} within 0.3s (--request-timeout)\n"


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        ("10", 10.0),
        ("10s", 10.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("250ms", 0.25),
        ("0", None),
    ],
)
def test_request_timeouts_are_read_as_kubectl_reads_them(given: str, seconds: float | None) -> None:
    assert parse_request_timeout(given) == seconds


@pytest.mark.parametrize("given", ["", "ten", "-1s", "5x", "1.5.2s"])
def test_a_request_timeout_that_is_no_duration_is_bad_usage(
    given: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["list", "--kubeconfig", str(tmp_path / "none"), "--request-timeout", given])
    assert exit_.value.code == 2
    assert "--request-timeout" in capsys.readouterr().err


def test_a_timed_out_request_is_not_sent_again(
    silent_listener: socket.socket, silent_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As kubectl: the timeout bounds the request, not each of several attempts (a GET was sent three
    times, for up to 5 s more)."""
    code = main(
        ["list", "--kubeconfig", kubeconfig(tmp_path / "kc", silent_server), "--request-timeout", "200ms"]
    )
    assert code == 1
    assert connections_made(silent_listener) == 1


def connections_made(listener: socket.socket) -> int:
    """The connections the kernel completed on `listener` (none accepted before): one per request sent."""
    listener.setblocking(False)
    made = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return made
        conn.close()
        made += 1
