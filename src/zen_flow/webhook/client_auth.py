"""Who may call the webhook server: mutual TLS (--webhook-client-ca, --webhook-client-names).

Without it the webhook port answers whoever reaches it, and its answers say things the caller may not
know: the mutating webhook expands a `templateRef` with the template of any namespace it names (read
with the controller's cluster-wide rights), and the validating webhook asks the apiserver, on behalf of
whatever `userInfo` the review carries, who may decide Manual steps. The apiserver can present a client
certificate to a webhook (its AdmissionConfiguration's kubeconfig, docs/WEBHOOKS.md); with a client CA
the server then completes a TLS handshake only with a certificate that CA signed (the verification is
OpenSSL's, in the handshake: webhook/tls.py loads the CA into each serving context), so nobody else gets
a byte of HTTP.

A CA may sign more than the apiserver's certificate (a cluster's client CA signs every user's), so
`names` narrows it: a connection whose certificate carries none of them as its subject's CN or as a DNS
or URI subjectAltName is closed right after the handshake, before any request is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zen_flow.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class ClientAuth:
    """`ca_file`: the PEM bundle of the CA(s) a client certificate must chain to; `names`: if not empty,
    the certificate must also carry one of them."""

    ca_file: Path
    names: frozenset[str] = field(default_factory=frozenset)


def client_auth(ca_file: str, names: Iterable[str]) -> ClientAuth | None:
    """The settings' client authentication; None when no CA is set (any client is served)."""
    if not ca_file:
        return None
    return ClientAuth(Path(ca_file), frozenset(names))


def certificate_names(peercert: Mapping[str, Any] | None) -> set[str]:
    """The subject's CN and the DNS and URI subjectAltNames of a verified peer certificate (the dict of
    `SSLObject.getpeercert()`)."""
    if not peercert:
        return set()
    found = {value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"}
    found.update(value for kind, value in peercert.get("subjectAltName", ()) if kind in ("DNS", "URI"))
    return found


class ClientNames:
    """Admits only connections whose client certificate carries one of `names`; counts the others."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.refused = 0

    def refusal(self, peercert: Mapping[str, Any] | None) -> str | None:
        presented = certificate_names(peercert)
        if presented & self.names:
            return None
        return f"client certificate names {sorted(presented)} are none of --webhook-client-names"

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Checked(factory(), self)


class _Checked(asyncio.Protocol):
    """One connection: checked once its handshake is done (asyncio calls `connection_made` then), and
    handed to the inner protocol only if admitted."""

    def __init__(self, inner: asyncio.Protocol, names: ClientNames) -> None:
        self._inner = inner
        self._names = names
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        why = self._names.refusal(transport.get_extra_info("peercert"))
        if why is not None:
            self._names.refused += 1
            log.warning("webhook client refused", reason=why, peer=str(transport.get_extra_info("peername")))
            transport.abort()  # type: ignore[attr-defined]
            return
        self._admitted = True
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self._inner.connection_lost(exc)
