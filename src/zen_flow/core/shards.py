"""Which shard a flow belongs to, and how many shards each replica holds (`--shards N`).

With N > 1 every replica reconciles the flows and CronJobFlows of the shards whose Leases it holds
(machinery/shard_plan.py decides which, controller/shard_keeper.py holds them). Two rules make that safe:

* The shard of an object is a pure function of what every replica's cache shows: a stable hash (FNV-1a,
  32 bits; never Python's `hash`, which is salted per process) of `namespace/<concurrency key>` for a
  flow in a concurrency group, else of `namespace/name`. A concurrency group lives on one replica, since
  Forbid and Replace decide from the whole group (planner/concurrency.py).
* The quotas: members sorted by identity, N shards spread so that quotas differ by at most one and sum to
  N, the first `N mod M` members taking one more. Every replica computes the same quotas from the same
  member set; while their views differ (a member just came or went) they converge within a lease period.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Collection, Mapping

from zen_flow.api.constants import LABEL_CONCURRENCY_KEY

MAX_SHARDS = 64
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


# Cached: a grant hashes every cached flow again (controller/shard_gate.py `queue_shard`), 4-13 us a key
# in Python; the cache holds the keys of 128k flows (a key and an int each, ~20 MB at most).
@functools.lru_cache(maxsize=1 << 17)
def fnv1a_32(text: str) -> int:
    """FNV-1a over the UTF-8 bytes of `text`: the same number in every process, on every machine."""
    value = _FNV_OFFSET
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value


def shard_of(key: str, shards: int) -> int:
    """The shard (0 .. shards-1) of `key`."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    return fnv1a_32(key) % shards


def flow_shard_key(namespace: str, name: str, labels: Mapping[str, str] | None) -> str:
    """What a flow's shard is hashed from: its concurrency group (`namespace/key`, as `group_of` names it:
    an empty label value is no group), else `namespace/name`."""
    group = (labels or {}).get(LABEL_CONCURRENCY_KEY)
    return f"{namespace}/{group}" if group else f"{namespace}/{name}"


def quotas(members: Collection[str], shards: int) -> dict[str, int]:
    """How many shards each member holds: sorted by identity, the first `shards mod len(members)` take
    `shards // len(members) + 1`, the others one fewer (none when there are more members than shards)."""
    ordered = sorted(set(members))
    if not ordered:
        return {}
    base, extra = divmod(shards, len(ordered))
    return {member: base + (1 if n < extra else 0) for n, member in enumerate(ordered)}


def member_suffix(identity: str) -> str:
    """A short, stable, name-safe tag of a replica's identity, for its member Lease's name (an identity
    holds '_' and capitals, which a Lease's name may not)."""
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:10]


def member_lease_name(lease_name: str, identity: str) -> str:
    return f"{lease_name}-member-{member_suffix(identity)}"


def shard_lease_name(lease_name: str, shard: int) -> str:
    return f"{lease_name}-shard-{shard}"


def shard_of_lease(lease_name: str, name: str, shards: int) -> int | None:
    """The shard a Lease named `name` stands for, or None if it is none of `lease_name`'s shard Leases."""
    prefix = f"{lease_name}-shard-"
    if not name.startswith(prefix):
        return None
    number = name[len(prefix) :]
    # isascii(): str.isdigit() takes a superscript (int() refuses it); str(int()) != number drops the rest.
    if not (number.isascii() and number.isdigit()) or str(int(number)) != number or int(number) >= shards:
        return None
    return int(number)


# On every member and shard Lease, valued with the `--leader-election-name` they belong to, so one LIST
# finds them all (`kubectl get leases -l workflow.kube-zen.io/sharded-lease=zen-flow-controller`).
LABEL_SHARDED_LEASE = "workflow.kube-zen.io/sharded-lease"
# On every Lease a sharded replica creates: its `--shards`. Two shard counts split the flows differently,
# so a replica never takes a shard while a live member counts differently (a rollout changing N).
LABEL_SHARD_COUNT = "workflow.kube-zen.io/shards"
