"""The userinfo of URLs a flow names (an http input's `url`, an S3 `endpoint`): `user:password@host`.

The artifact downloader cannot send userinfo (urllib reads `user:password@host` as a host with the port
`password@host` and says so in an error), so admission refuses it (validation/io.py) and every message
that quotes such a URL leaves it out (transfer/): a flow stored before admission refused it must not
show the password in the step's message, its events and the logs. The authority is found as urllib and
RFC 3986 find it: after `scheme://`, up to the first `/`, `?` or `#`; its userinfo ends at its last `@`.
Pure text work, nothing that can raise (urlsplit raises on a malformed IPv6 host). `scrubbed` does the
same to free text that may quote a URL (an HTTP library's error, a redirect's Location): what its author
wrote is not ours to trust.
"""

from __future__ import annotations

import re

# A URL's `scheme://` and then its userinfo: everything up to an `@` before any `/`, `?`, `#` or blank.
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def _authority(url: str) -> tuple[int, int] | None:
    """Where the authority (`user:password@host:port`) starts and ends in `url`; None without `//`."""
    start = url.find("://")
    if start < 0:
        return None
    start += 3
    end = len(url)
    for mark in "/?#":
        found = url.find(mark, start, end)
        if found >= 0:
            end = found
    return start, end


def has_userinfo(url: str) -> bool:
    """Does `url` name a user (and perhaps a password) before its host?"""
    span = _authority(url)
    return span is not None and url.find("@", *span) >= 0


def without_userinfo(url: str) -> str:
    """`url` without its userinfo: `https://user:password@host/x` -> `https://host/x`."""
    span = _authority(url)
    if span is None:
        return url
    at = url.rfind("@", *span)
    return url if at < 0 else url[: span[0]] + url[at + 1 :]


def scrubbed(text: str) -> str:
    """`text` with the userinfo of every URL it quotes left out (`... to url 'ftp://u:p@h/x' ...` ->
    `... to url 'ftp://h/x' ...`)."""
    return _USERINFO_IN_TEXT.sub(r"\1", text)
