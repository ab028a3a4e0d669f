"""The set-up the `zen-flow cron backfill` tests share (on cron_cli_rig's in-memory apiserver): run
times, run names, this machine's clock, and the command itself."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cron_cli_rig import zen_flow

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
