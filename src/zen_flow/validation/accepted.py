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

The values of `spec.arguments` stay out of the digest too: `zen-flow submit flow.yaml -p env=prod`
sends one spec with other values every time, and no rule but the arguments' own reads a value (a step
names an argument, `valueFrom.argument`, and reads its value when its Job is created), but for a
`matrix`'s (core/matrix.py): an argument's values may decide the flow's steps, so a spec with a matrix
is keyed with its argument values (webhook/review.py). So what a digest
stands for is "every rule passes, except perhaps those of `spec.arguments` and the size", and a spec
found by it still has both checked (`KnownSpec`, validate_jobflow): the arguments as sent, and the
spec's own size against the largest status its steps can write, which is remembered with the digest.

Keyed by the spec's JSON bytes as the apiserver sent them (zen_flow.webhook.envelope): Go's encoder
writes map keys sorted, so equal specs arrive as equal bytes, and equal bytes are equal specs. The CLI
never uses this (a YAML document is not those bytes). The digest is SHA-256 (0.2 ms for a 340 KB spec):
no one can make a spec that collides with a valid one to be admitted in its place.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_SIZE = 512
# The spec's fields whose checks read the flow's name: a resource template is created as
# `<flow>-<template>`, which must still be a valid object name (resources.py).
NAME_READERS = frozenset({"resourceTemplates"})


@dataclass(frozen=True)
class KnownSpec:
    """A spec whose digest was found: all that is left to check of it."""

    size: int  # its JSON's bytes as sent (argument values included)
    status_bound: int  # the largest status its steps can write (size.status_bound), as remembered
    warnings: tuple[str, ...] = ()  # its admission warnings (validation/warnings.py), as remembered


class AcceptedSpecs:
    """A bounded LRU of digests of valid specs, each with the spec's status bound and warnings; safe to
    share between threads (the webhook decides in a thread pool)."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._digests: OrderedDict[bytes, tuple[int, tuple[str, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(flow_name: str | None, spec: Iterable[bytes]) -> bytes:
        """The digest of a spec given as pieces of JSON: the spec's bytes, or its members with the
        argument values left out (webhook/review.py). `flow_name`: None when the spec has none of
        `NAME_READERS` (its validity does not depend on it)."""
        digest = hashlib.sha256(b"-" if flow_name is None else b"n" + flow_name.encode() + b"\0")
        for piece in spec:
            digest.update(piece)
        return digest.digest()

    def recall(self, key: bytes, size: int) -> KnownSpec | None:
        """What is left to check of a spec of `size` bytes with this digest, None when it is unknown."""
        with self._lock:
            found = self._digests.get(key)
            if found is None:
                return None
            self._digests.move_to_end(key)
        return KnownSpec(size, *found)

    def add(self, key: bytes, status_bound: int, warnings: tuple[str, ...] = ()) -> None:
        with self._lock:
            self._digests[key] = (status_bound, warnings)
            self._digests.move_to_end(key)
            while len(self._digests) > self._size:
                self._digests.popitem(last=False)

    def __len__(self) -> int:
        return len(self._digests)
