"""`zen-flow shards`: who holds which shard of a controller run with `--shards N` (docs/OPERATOR_GUIDE.md,
"Sharding across replicas"), and which shard, and so which replica, reconciles a given flow.

It reads the controller's Leases with the user's kubeconfig: one LIST of the Leases labelled
`workflow.kube-zen.io/sharded-lease=<lease name>` (the shard and member Leases), in the controller's
namespace (`--leader-election-namespace`, default zen-flow-system) under its Lease name
(`--leader-election-name`, or as the controller makes it from `--instance-id`). N is what the Leases
announce (their `workflow.kube-zen.io/shards` label), or `--shards`. A flow's shard is computed with the
controller's own function (core/shards.py) from the flow as the apiserver holds it (its concurrency-key
label decides). Shard Leases none of which is held, with no member live, while the leader's Lease is held
are left from an earlier run with --shards N (released on shutdown, never deleted): the leader is named,
the shard Leases said to be stale.

Whether a Lease has expired is judged here from its renewTime and leaseDurationSeconds against this
machine's clock; the controller never trusts those timestamps (it waits for a Lease not to change), so a
clock that is off by seconds shows Leases expired, or alive, that the replicas see otherwise.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zen_flow.cli.render import span, table
from zen_flow.cli.session import EXIT_OK, Session, UsageError, now
from zen_flow.config import DEFAULT_LEASE_NAME
from zen_flow.core.shards import (
    LABEL_SHARD_COUNT,
    LABEL_SHARDED_LEASE,
    MAX_SHARDS,
    flow_shard_key,
    shard_of,
    shard_of_lease,
)
from zen_flow.kube.leases import LeaseClient
from zen_flow.machinery.leader import LeaseRecord

# Where the manifests and the chart install the controller (its Leases are in its own namespace).
DEFAULT_CONTROLLER_NAMESPACE = "zen-flow-system"


@dataclass(frozen=True)
class ShardRow:
    shard: int
    lease: LeaseRecord | None  # None: no Lease of that shard yet

    def holder(self) -> str:
        return self.lease.holder_identity if self.lease is not None and self.lease.holder_identity else ""

    def expired(self, at: datetime) -> bool:
        return self.lease is None or _expired(self.lease, at)


def lease_name(args: argparse.Namespace) -> str:
    """The controller's Lease name, as `zen-flow run` makes it (config.Settings.lease_name)."""
    if args.leader_election_name:
        return str(args.leader_election_name)
    return f"{DEFAULT_LEASE_NAME}-{args.instance_id}" if args.instance_id else DEFAULT_LEASE_NAME


def shard_count(leases: Sequence[LeaseRecord]) -> list[int]:
    """The shard counts the Leases announce, the most common first (two during a rollout changing N)."""
    counts = Counter(
        int(value)
        for lease in leases
        # isascii(): str.isdigit() takes a superscript (int() refuses it) and other scripts' digits.
        if (value := dict(lease.labels).get(LABEL_SHARD_COUNT, "")).isascii()
        and value.isdigit()
        and 1 <= int(value) <= MAX_SHARDS
    )
    return [n for n, _ in counts.most_common()]


def shard_rows(leases: Sequence[LeaseRecord], name: str, shards: int) -> list[ShardRow]:
    """Every shard 0 .. shards-1 with its Lease, if it has one."""
    by_shard = {
        shard: lease for lease in leases if (shard := shard_of_lease(name, lease.name, shards)) is not None
    }
    return [ShardRow(shard, by_shard.get(shard)) for shard in range(shards)]


def live_members(leases: Sequence[LeaseRecord], name: str, at: datetime) -> list[str]:
    """The identities of the member Leases not expired (by their timestamps), sorted."""
    prefix = f"{name}-member-"
    return sorted(
        lease.holder_identity
        for lease in leases
        if lease.name.startswith(prefix) and lease.holder_identity and not _expired(lease, at)
    )


def render_shards(rows: Sequence[ShardRow], at: datetime) -> str:
    lines = []
    for row in rows:
        lease = row.lease
        if lease is None:
            lines.append([str(row.shard), "<no Lease>", "-", "-", "yes"])
            continue
        renewed = f"{_age(lease.renew_time, at)} ago" if lease.renew_time is not None else "-"
        state = ("yes" if row.expired(at) else "no") if row.holder() else "free"
        lines.append(
            [str(row.shard), row.holder() or "<none>", renewed, f"{lease.lease_duration_seconds}s", state]
        )
    return table(["SHARD", "HOLDER", "RENEWED", "DURATION", "EXPIRED"], lines)


async def shards(session: Session, args: argparse.Namespace) -> int:
    name = lease_name(args)
    namespace = args.leader_election_namespace or DEFAULT_CONTROLLER_NAMESPACE
    leases = await LeaseClient(session.client, selector=f"{LABEL_SHARDED_LEASE}={name}").list(namespace)
    at = now()
    counts = shard_count(leases)
    n = args.shards or (counts[0] if counts else 0)
    flow = _flow_named(session, args)
    if n < 1 or not any(shard_of_lease(name, lease.name, n) is not None for lease in leases):
        return await _not_sharded(session, name, namespace, flow, args.shards, args.output)
    rows = shard_rows(leases, name, n)
    members = live_members(leases, name, at)
    if not members and not any(row.holder() and not row.expired(at) for row in rows):
        # Nobody is sharding: the Leases may be left from a run with --shards N (they are released on
        # shutdown, never deleted) while the controller now runs with --shards 1 and its leader leads.
        leader = await LeaseClient(session.client).get(name, namespace)
        if leader is not None and leader.holder_identity and not _expired(leader, at):
            stale = sorted(
                lease.name for lease in leases if shard_of_lease(name, lease.name, MAX_SHARDS) is not None
            )
            return _led(session, leader, namespace, flow, args.output, stale, n)
    if flow is not None:
        return await _flow_shard(session, rows, n, flow, at, args.output)
    if args.output == "json":
        session.out.write(json.dumps(_as_json(rows, name, namespace, n, leases, at), indent=2) + "\n")
        return EXIT_OK
    others = f" (the Leases also announce {', '.join(map(str, counts[1:]))}: a rollout changing --shards)"
    session.out.write(
        f"{n} shards of {namespace}/{name}, {len(members)} live member(s)"
        f"{others if len(counts) > 1 else ''}\n"
    )
    session.show(render_shards(rows, at))
    return EXIT_OK


def _flow_named(session: Session, args: argparse.Namespace) -> tuple[str, str] | None:
    """The flow asked about: `--flow NS/NAME`, or NAME in the namespace of `-n` (the context's)."""
    if args.flow and args.name:
        raise UsageError("give the flow as --flow NAMESPACE/NAME or as NAME (with -n), not both")
    if args.flow:
        namespace, slash, name = str(args.flow).rpartition("/")
        if not name:
            raise UsageError(f"--flow {args.flow!r}: expected NAMESPACE/NAME")
        return (namespace if slash else session.namespace), name
    return (session.namespace, str(args.name)) if args.name else None


async def _flow_shard(
    session: Session,
    rows: Sequence[ShardRow],
    n: int,
    flow: tuple[str, str],
    at: datetime,
    output: str | None,
) -> int:
    namespace, name = flow
    raw = await session.flows.get(namespace, name)
    labels = (raw.get("metadata") or {}).get("labels") or {}
    key = flow_shard_key(namespace, name, labels)
    row = rows[shard_of(key, n)]
    if output == "json":
        found = {"flow": f"{namespace}/{name}", "key": key, **_row_json(row, at), "shards": n}
        session.out.write(json.dumps(found, indent=2) + "\n")
        return EXIT_OK
    why = "its concurrency group" if key != f"{namespace}/{name}" else "its namespace/name"
    holder = row.holder()
    if holder and not row.expired(at):
        by = f"held by {holder}"
    elif holder:
        by = f"its Lease held by {holder} has expired: the other replicas take it over"
    else:
        by = "held by no replica yet"
    session.out.write(
        f"jobflow {namespace}/{name}: shard {row.shard} of {n} (hashed from {key!r}, {why}), {by}\n"
    )
    return EXIT_OK


async def _not_sharded(
    session: Session,
    name: str,
    namespace: str,
    flow: tuple[str, str] | None,
    asked: int | None,
    output: str | None,
) -> int:
    """No shard Lease: the controller runs with --shards 1 (its leader reconciles every flow), or the
    Leases are elsewhere."""
    leader = await LeaseClient(session.client).get(name, namespace)
    if leader is None:
        hint = "--leader-election-namespace, --leader-election-name or --instance-id"
        raise UsageError(f"no Lease {name} in namespace {namespace}: is the controller there? ({hint})")
    return _led(session, leader, namespace, flow, output, [], asked)


def _led(
    session: Session,
    leader: LeaseRecord,
    namespace: str,
    flow: tuple[str, str] | None,
    output: str | None,
    stale: Sequence[str],
    shards: int | None,
) -> int:
    """The controller runs with --shards 1: its leader reconciles every flow. `stale`: shard Leases held by
    nobody and no member live, left from a run with --shards `shards`."""
    holder = leader.holder_identity or None
    subject = f"jobflow {flow[0]}/{flow[1]}" if flow is not None else "every flow"
    if output == "json":
        found: dict[str, Any] = {"lease": leader.name, "namespace": namespace, "shards": 1}
        if flow is not None:
            found["flow"] = f"{flow[0]}/{flow[1]}"
        found |= {"leader": holder, "staleShardLeases": list(stale)}
        session.out.write(json.dumps(found, indent=2) + "\n")
        return EXIT_OK
    by = holder or "no replica"
    led = f"the controller runs with --shards 1, and {subject} is reconciled by its leader, {by}"
    if stale:
        session.out.write(
            f"{led}; the {len(stale)} shard Leases of {namespace}/{leader.name} are stale (left from a run "
            f"with --shards {shards}: no replica holds one, no member Lease is live)\n"
        )
    else:
        asked = f" with --shards {shards}" if shards else ""
        session.out.write(f"no shard Leases of {namespace}/{leader.name}{asked}: {led}\n")
    return EXIT_OK


def _as_json(
    rows: Sequence[ShardRow], name: str, namespace: str, n: int, leases: Sequence[LeaseRecord], at: datetime
) -> dict[str, Any]:
    return {
        "lease": name,
        "namespace": namespace,
        "shards": n,
        "members": live_members(leases, name, at),
        "items": [_row_json(row, at) for row in rows],
    }


def _row_json(row: ShardRow, at: datetime) -> dict[str, Any]:
    lease = row.lease
    return {
        "shard": row.shard,
        "lease": lease.name if lease is not None else None,
        "holder": row.holder() or None,
        "renewTime": lease.renew_time.isoformat() if lease is not None and lease.renew_time else None,
        "leaseDurationSeconds": lease.lease_duration_seconds if lease is not None else None,
        "expired": row.expired(at),
    }


def _expired(lease: LeaseRecord, at: datetime) -> bool:
    if lease.renew_time is None:
        return True
    return (at - lease.renew_time).total_seconds() >= lease.lease_duration_seconds


def _age(moment: datetime | None, at: datetime) -> str:
    return span((at - moment).total_seconds()) if moment is not None else "-"
