"""The webhook's serving certificate, read from a directory and swapped in place when it changes.

cert-manager renews the certificate into a Secret; the kubelet updates the mounted directory (never
mount it with subPath: those mounts are not updated) by an atomic symlink swap, so inotify is unreliable
and we poll: the pair's content hash every `interval` seconds. A new pair is loaded into a fresh
SSLContext and installed only if it loads (a half-written pair, a key that does not match, an unreadable
file: the old context keeps serving and the failure is counted). The listening socket's context has an
`sni_callback` that hands every new handshake the current context, so rotation needs no restart and
drops no connection; established connections keep the certificate they negotiated.

With a client CA (mutual TLS, webhook/client_auth.py) the CA file is part of the pair: its content is in
the hash, it is loaded into each new context (a handshake verifies the client against the store of the
context the callback hands it), and the listening context requires a client certificate (the verify
mode stays the listening context's). A CA that does not load is a pair that does not load: the old
context keeps serving; with none loaded yet, every handshake is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509

from zen_flow.logging import get_logger

log = get_logger(__name__)


class CertMetrics(Protocol):
    def cert_reloaded(self, ok: bool, not_after: float | None) -> None:
        """A reload attempt: ok, and the new certificate's notAfter (Unix seconds) when it loaded."""


@dataclass(frozen=True)
class ServingCert:
    context: ssl.SSLContext
    digest: str
    not_after: float
    serial: int
    subject: str


class CertReloader:
    """Holds the current serving context; `check()` reloads it when the files changed."""

    def __init__(
        self,
        cert_dir: str | Path,
        *,
        cert_file: str = "tls.crt",
        key_file: str = "tls.key",
        client_ca: str | Path | None = None,
        metrics: CertMetrics | None = None,
    ) -> None:
        self.cert_path = Path(cert_dir) / cert_file
        self.key_path = Path(cert_dir) / key_file
        self.client_ca = Path(client_ca) if client_ca else None
        self._metrics = metrics
        self._current: ServingCert | None = None
        self._failed_digest: str | None = None  # do not retry (and re-count) the same broken pair
        self.last_error: str | None = None
        self._listening: ssl.SSLContext | None = None

    @property
    def current(self) -> ServingCert | None:
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None

    def _digest(self) -> str:
        h = hashlib.sha256()
        h.update(self.cert_path.read_bytes())
        h.update(b"\0")
        h.update(self.key_path.read_bytes())
        if self.client_ca is not None:
            h.update(b"\0")
            h.update(self.client_ca.read_bytes())
        return h.hexdigest()

    def _files(self) -> str:
        files = f"{self.cert_path} / {self.key_path}"
        return files if self.client_ca is None else f"{files} / client CA {self.client_ca}"

    def check(self) -> bool:
        """Load the pair if its content changed; True when a new certificate was installed."""
        try:
            digest = self._digest()
        except OSError as exc:
            return self._fail(
                None, f"cannot read {exc.filename or self.cert_path.parent}: {exc.strerror or exc}"
            )
        if self._current is not None and digest == self._current.digest:
            return False
        if digest == self._failed_digest:
            return False
        try:
            cert_bytes = self.cert_path.read_bytes()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(self.cert_path, self.key_path)
            if self.client_ca is not None:
                _require_client_certificates(context)  # getpeercert() reads this context's mode
                context.load_verify_locations(cafile=self.client_ca)
            cert = x509.load_pem_x509_certificate(cert_bytes)
            # The files may have changed between hashing and loading (a rotation mid-read): only
            # install what matches the digest, and pick up the rest on the next check.
            if self._digest() != digest:
                return False
        except (OSError, ssl.SSLError, ValueError) as exc:
            return self._fail(digest, f"cannot load {self._files()}: {exc}")
        not_after = cert.not_valid_after_utc.timestamp()
        self._current = ServingCert(
            context, digest, not_after, cert.serial_number, cert.subject.rfc4514_string()
        )
        self._failed_digest = None
        self.last_error = None
        if self._metrics is not None:
            self._metrics.cert_reloaded(True, not_after)
        log.info(
            "webhook certificate loaded",
            subject=self._current.subject,
            serial=hex(cert.serial_number),
            client_ca=str(self.client_ca) if self.client_ca is not None else None,
        )
        return True

    def _fail(self, digest: str | None, message: str) -> bool:
        if digest is not None and digest == self._failed_digest:
            return False
        if message != self.last_error:
            log.warning("webhook certificate not reloaded; keeping the current one", error=message)
            if self._metrics is not None:
                self._metrics.cert_reloaded(False, None)
        self._failed_digest = digest
        self.last_error = message
        return False

    def listening_context(self) -> ssl.SSLContext:
        """The context for the listening socket: each handshake is handed the current certificate."""
        if self._listening is None:
            listening = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            listening.minimum_version = ssl.TLSVersion.TLSv1_2
            listening.sni_callback = self._select
            if self.client_ca is not None:
                _require_client_certificates(listening)  # the mode of every handshake it starts
            self._listening = listening
        return self._listening

    def _select(
        self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        # Called for every ClientHello, with or without SNI (the apiserver sends none for an IP URL).
        current = self._current
        if current is None:
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR  # no certificate yet: refuse, do not crash
        conn.context = current.context
        return None

    async def watch(self, interval: float) -> None:
        """Poll forever; cancel to stop."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.check()
            except Exception as exc:  # a reload is best effort: the current certificate keeps serving
                self._fail(None, f"unexpected error: {type(exc).__name__}: {exc}")


def _require_client_certificates(context: ssl.SSLContext) -> None:
    """Mutual TLS: a client certificate in every handshake, and no handshake that skips it. A resumed
    session is not verified again (a client holding one would outlive its CA's removal from the file),
    so no session is ever resumed: TLS 1.3 only (every apiserver speaks it), which resumes only with
    the tickets this context does not issue (TLS 1.2 also resumes from the server's session cache)."""
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.num_tickets = 0
