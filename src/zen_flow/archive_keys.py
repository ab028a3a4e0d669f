"""The flow archive store's keys (`--archive-s3-*`): from the environment, or from files the environment
names (a mounted Secret), read again while the controller runs.

Each key is `$NAME` or `$NAME_FILE` (a path whose content, trailing whitespace dropped, is the key):
ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID, ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY and, for temporary credentials,
ZEN_FLOW_ARCHIVE_SESSION_TOKEN. Values in the environment are read once: a session token given that way
expires with the process's keys, so temporary credentials need files. Files are read again every
REREAD_SECONDS and before the request that follows a 403 (the keys were rotated, the token expired): a
Secret mounted as a volume is updated in place by the kubelet, so rotated keys are used without a
restart. A file that cannot be read then (a Secret being rewritten) leaves the keys last read, with a
warning in the log once per cause (naming the path, never its content).

Never flags (a flag shows in `ps`), never logged: `Credentials` hides the secret and the token in repr.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from zen_flow.core.sigv4 import Credentials

# Stdlib logging (zen_flow.logging formats it as its own lines): this module is below zen_flow.logging.
log = logging.getLogger(__name__)

ACCESS_KEY_ENV = "ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID"
SECRET_KEY_ENV = "ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY"
SESSION_TOKEN_ENV = "ZEN_FLOW_ARCHIVE_SESSION_TOKEN"
FILE_SUFFIX = "_FILE"
REREAD_SECONDS = 300.0


class ArchiveKeys:
    """The keys of the environment `env` (default: the process's); ValueError naming the variable when one
    is missing, set twice, or names a file that cannot be read."""

    def __init__(
        self, env: Mapping[str, str] | None = None, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._env = dict(os.environ if env is None else env)
        self._monotonic = monotonic
        self.from_files = any(self._env.get(n + FILE_SUFFIX) for n in _NAMES)
        self._keys = self._load()
        self._read_at = monotonic()
        self._stale = False
        self._told = ""  # the read failure last logged

    def current(self) -> Credentials:
        if self.from_files and (self._stale or self._monotonic() - self._read_at >= REREAD_SECONDS):
            self._stale = False
            self._read_at = self._monotonic()
            # A Secret being rewritten: the keys last read until the next read. Said once per cause (the
            # variable, the path and why: never what a file holds), and once when the files read again.
            try:
                self._keys = self._load()
            except ValueError as err:
                if str(err) != self._told:
                    self._told = str(err)
                    log.warning("cannot read the archive store's keys, using the keys last read: %s", err)
            else:
                if self._told:
                    self._told = ""
                    log.info("the archive store's keys read again")
        return self._keys

    def refused(self) -> None:
        self._stale = True

    def _load(self) -> Credentials:
        access, secret = self._value(ACCESS_KEY_ENV), self._value(SECRET_KEY_ENV)
        if not access or not secret:
            raise ValueError(
                f"the archive store needs ${ACCESS_KEY_ENV} and ${SECRET_KEY_ENV} (or ${ACCESS_KEY_ENV}"
                f"{FILE_SUFFIX} and ${SECRET_KEY_ENV}{FILE_SUFFIX} naming files; environment only: never "
                "flags)"
            )
        return Credentials(access, secret, self._value(SESSION_TOKEN_ENV))

    def _value(self, name: str) -> str:
        value, path = self._env.get(name, ""), self._env.get(name + FILE_SUFFIX, "")
        if value and path:
            raise ValueError(f"set ${name} or ${name}{FILE_SUFFIX}, not both")
        if not path:
            return value
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            why = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
            raise ValueError(f"${name}{FILE_SUFFIX}: cannot read {path!r}: {why}") from None


_NAMES = (ACCESS_KEY_ENV, SECRET_KEY_ENV, SESSION_TOKEN_ENV)
