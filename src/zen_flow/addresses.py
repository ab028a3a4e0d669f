"""Addresses given in settings: listen addresses parsed, and URLs shown without what may be a secret."""

from __future__ import annotations

import re

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_AUTHORITY_END = re.compile(r"[/?#]")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]*)(:[0-9]*)?")


def shown_url(url: str) -> str:
    """What a message or the log may show of `url`: its scheme, host and port. The rest may hold a token:
    the user info, the query, and the path too (a Slack-style webhook URL carries its secret in its path,
    https://hooks.example/services/T0/B0/SECRET). A part that is no scheme or no host[:port] (a password
    with a "/" leaves one after the "//") shows as "..."."""
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return "..."
    authority = _AUTHORITY_END.split(rest, maxsplit=1)[0].rpartition("@")[2]
    return f"{scheme}://{authority if _HOST_PORT.fullmatch(authority) else '...'}"


def split_addr(addr: str) -> tuple[str, int]:
    """`host:port`, `:port` (all interfaces) or `[v6]:port` -> (host, port); the one parser for every
    listen address (metrics and webhooks alike)."""
    host, sep, port = addr.rpartition(":")
    # isascii(): str.isdigit() takes a superscript (int() refuses it) and other scripts' digits.
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"{addr!r} is not host:port (e.g. :8080, 127.0.0.1:8080, [::1]:8080)")
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        raise ValueError(f"{addr!r}: write an IPv6 host in brackets, e.g. [::1]:8080")
    return host.strip("[]") or "0.0.0.0", int(port)
