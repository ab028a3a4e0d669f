"""Specs already accepted, remembered by their content.

An admission webhook sees the same spec many times: `kubectl apply --dry-run=server` and then the apply,
a client retrying a create, a pipeline that creates flows of one spec with `generateName`. Checking a
500-step spec takes tens of milliseconds; whether it is valid depends only on the spec and, when it has
resource templates, on the flow's name (`check_spec` reads nothing else), so a digest of the two is kept
for each spec found valid. The name stays out of the digest when the spec does not read it: a flow
created with `generateName` reaches the validating webhook with the name the apiserver generated for it,
a new one every time, and the pipeline that creates flows from one manifest must still find its spec
known.

Only valid specs: a denial's errors hold the offending values (parts of the spec, up to megabytes), and
a tenant sending distinct invalid specs must not grow this process. A spec that was denied is checked
again, and by then it has usually changed anyway.

Keyed by the spec's JSON bytes as the apiserver sent them (zen_flow.webhook.envelope): Go's encoder
writes map keys sorted, so equal specs arrive as equal bytes, and equal bytes are equal specs. The CLI
never uses this (a YAML document is not those bytes). The digest is SHA-256 (0.2 ms for a 340 KB spec):
no one can make a spec that collides with a valid one to be admitted in its place.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

DEFAULT_SIZE = 512
# The spec's fields whose checks read the flow's name: a resource template is created as
# `<flow>-<template>`, which must still be a valid object name (resources.py).
NAME_READERS = frozenset({"resourceTemplates"})


class AcceptedSpecs:
    """A bounded LRU of digests of valid specs; safe to share between threads (the webhook decides in
    a thread pool)."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._digests: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(flow_name: str | None, encoded_spec: bytes) -> bytes:
        """`flow_name`: None when the spec has none of `NAME_READERS` (its validity does not depend on it)."""
        digest = hashlib.sha256(b"-" if flow_name is None else b"n" + flow_name.encode() + b"\0")
        digest.update(encoded_spec)
        return digest.digest()

    def knows(self, key: bytes) -> bool:
        with self._lock:
            if key not in self._digests:
                return False
            self._digests.move_to_end(key)
            return True

    def add(self, key: bytes) -> None:
        with self._lock:
            self._digests[key] = None
            self._digests.move_to_end(key)
            while len(self._digests) > self._size:
                self._digests.popitem(last=False)

    def __len__(self) -> int:
        return len(self._digests)
