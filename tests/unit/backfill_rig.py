"""The set-up the `zen-flow cron backfill` tests share (on cron_cli_rig's in-memory apiserver): run
times, run names, this machine's clock, and the command itself."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from cron_cli_rig import FakeCluster, zen_flow

from zen_flow.cli import cron_backfill
from zen_flow.planner.cron import run_name


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def name_of(moment: datetime, cron: str = "nightly-report") -> str:
    return run_name(cron, moment)


def at(monkeypatch: pytest.MonkeyPatch, clock: datetime) -> None:
    """This machine's clock (what `now` means for the range) is `clock`."""
    monkeypatch.setattr(cron_backfill, "now", lambda: clock)


def backfill(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return zen_flow(capsys, "cron", "backfill", "nightly-report", *argv)


def lines(out: str) -> list[str]:
    return out.splitlines()


def record_creates(cluster: FakeCluster, seen: list[str]) -> None:
    """Each run the backfill POSTs is noted in `seen` (`created NAME`), in order with what else happens."""
    request = cluster.request

    async def recorded(method: str, path: str, body: Any = None, *args: Any, **kwargs: Any) -> Any:
        if method == "POST":
            seen.append(f"created {body['metadata']['name']}")
        return await request(method, path, body, *args, **kwargs)

    cluster.request = recorded  # type: ignore[method-assign]


# The phases of a run the backfill waits for: all but Succeeded and Failed (None: no status yet).
ACTIVE = (None, "Pending", "Running", "Suspended", "Paused")


def finish_oldest(cluster: FakeCluster, *, after: int, every: int = 1) -> list[str]:
    """A stand-in controller: the first `after` LISTs of the runs find them as they are; of the LISTs
    after those, each `every`-th (the `every`-th, the 2·`every`-th, ...) finds the oldest active run (by
    name) succeeded. Returns what happened, in order: `finished NAME` and (record_creates) `created
    NAME`. `after` 2 passes the backfill's look at the runs there are and its look before the first
    create."""
    seen: list[str] = []
    lists = itertools.count()

    def on_list() -> None:
        count = next(lists)
        if count < after or (count - after + 1) % every:
            return
        going = sorted(k for k, f in cluster.flows.items() if (f.get("status") or {}).get("phase") in ACTIVE)
        if going:
            cluster.flows[going[0]]["status"] = {"phase": "Succeeded"}
            seen.append(f"finished {going[0][1]}")

    cluster.on_list = on_list
    record_creates(cluster, seen)
    return seen
