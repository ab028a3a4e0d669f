"""The unit tier is hermetic: no cluster tools and no network, so it runs anywhere `make venv` ran.

Tests that need kubectl, helm or promtool belong to tests/tools; tests that need an apiserver to the
integration tier. These guards make a stray dependency fail here, with the reason, instead of passing on a
developer's machine that happens to have the tool and failing (or being skipped) elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from pathlib import PurePath
from typing import Any

import pytest

# Binaries that need a cluster, a cache built by tools/ or the network to be useful.
CLUSTER_TOOLS = frozenset(
    {"kubectl", "helm", "promtool", "prometheus", "go", "kube-apiserver", "etcd", "kwok", "versitygw"}
)


class HermeticError(AssertionError):
    """A unit test reached outside the process's machine or ran a cluster tool."""


def _program(args: Any) -> str:
    first = args if isinstance(args, str | bytes | PurePath) else args[0]
    text = first.decode() if isinstance(first, bytes) else str(first)
    return PurePath(text.split()[0] if isinstance(args, str) else text).name


def _loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if not isinstance(host, str):
        return True  # AF_UNIX paths (str) are handled by the family check; abstract names are bytes
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse cluster tools and non-loopback addresses for the rest of the test."""
    popen_init = subprocess.Popen.__init__
    connect = socket.socket.connect
    connect_ex = socket.socket.connect_ex
    getaddrinfo = socket.getaddrinfo

    def guarded_popen(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        if (program := _program(args)) in CLUSTER_TOOLS:
            raise HermeticError(
                f"unit tests run no {program}: move this test to tests/tools or a cluster tier"
            )
        popen_init(self, args, *rest, **kwargs)

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address):
            raise HermeticError(f"unit tests dial loopback only, not {address!r}")

    def guarded_connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _loopback(host.decode() if isinstance(host, bytes) else host):
            raise HermeticError(f"unit tests resolve no names but localhost, not {host!r}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded_popen)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
