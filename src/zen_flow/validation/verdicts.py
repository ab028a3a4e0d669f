"""Verdicts on flow specs already checked, remembered by their content.

An admission webhook sees the same spec many times: `kubectl apply --dry-run=server` and then the apply,
a client retrying a create, a pipeline that creates flows of one spec with `generateName`. Checking a
500-step spec takes tens of milliseconds; its verdict depends only on the spec and the flow's name
(`check_spec` reads nothing else), so it is kept under a digest of the two.

Only for input decoded from JSON (str keys; str, int, float, bool, null): there the compact JSON
encoding is one-to-one (NaN and Infinity are written as such, a lone surrogate does not encode at all),
so equal encodings are equal specs. A YAML document can differ from another and encode alike (a date
and its string), so the CLI never uses this. The digest is SHA-256 (0.2 ms for a 340 KB spec): no one
can make a spec that collides with another to borrow its verdict.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from zen_flow.validation.errors import FieldError

DEFAULT_SIZE = 512


class SpecVerdicts:
    """A bounded LRU of digest -> the spec's errors; safe to share between threads (the webhook decides
    in a thread pool)."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._verdicts: OrderedDict[bytes, tuple[FieldError, ...]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(flow_name: str, encoded_spec: bytes) -> bytes:
        digest = hashlib.sha256(flow_name.encode())
        digest.update(b"\0")
        digest.update(encoded_spec)
        return digest.digest()

    def get(self, key: bytes) -> tuple[FieldError, ...] | None:
        with self._lock:
            found = self._verdicts.get(key)
            if found is not None:
                self._verdicts.move_to_end(key)
            return found

    def put(self, key: bytes, errors: tuple[FieldError, ...]) -> None:
        with self._lock:
            self._verdicts[key] = errors
            self._verdicts.move_to_end(key)
            while len(self._verdicts) > self._size:
                self._verdicts.popitem(last=False)

    def __len__(self) -> int:
        return len(self._verdicts)
