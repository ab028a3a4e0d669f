"""The unit tier's guards (hermetic.py) refuse what would make it depend on this machine."""

from __future__ import annotations

import asyncio
import socket
import subprocess

import pytest
from hermetic import HermeticError


@pytest.mark.parametrize(
    "argv", [["kubectl", "version"], ["/usr/local/bin/helm", "template"], "promtool check"]
)
def test_cluster_tools_are_refused(argv: list[str] | str) -> None:
    with pytest.raises(HermeticError, match="move this test to tests/tools"):
        subprocess.run(argv, shell=isinstance(argv, str), check=False)


def test_other_programs_run() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0


def test_only_loopback_is_dialled() -> None:
    with socket.socket() as sock, pytest.raises(HermeticError, match="loopback only"):
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed, and never tried
    with pytest.raises(HermeticError, match="resolve no names"):
        socket.getaddrinfo("example.com", 443)


async def test_asyncio_connections_are_guarded_too() -> None:
    with pytest.raises(HermeticError):
        await asyncio.open_connection("192.0.2.1", 443)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
