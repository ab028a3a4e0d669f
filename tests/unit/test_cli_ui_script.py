"""The web UI's page script (cli/ui_pages.py's SCRIPT) as a browser runs it: under node, with a mock of the
DOM parts it uses and time driven by hand (tests/fixtures/page-script/harness.js). A hidden or left tab
gives back its connection; text typed while the page fetches itself is never thrown away; the page
fetches itself at most once a second. Skipped where node is not installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from zen_flow.cli.ui_pages import SCRIPT

HARNESS = Path(__file__).parents[1] / "fixtures" / "page-script" / "harness.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed: the page script is not run")

Log = list[tuple[int, str, Any]]


def run(*actions: Any, latency: int | None = None) -> Log:
    """What the page did (time in ms, what, detail) for `actions` (harness.js lists them)."""
    assert NODE is not None
    given = json.dumps({"script": SCRIPT, "latency": latency, "actions": [list(a) for a in actions]})
    done = subprocess.run(
        [NODE, str(HARNESS)], input=given, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return [tuple(json.loads(line)) for line in done.stdout.splitlines() if line]  # type: ignore[misc]


def what(log: Log) -> list[str]:
    return [f"{w} {d}" if d is not None else w for _, w, d in log]


def test_a_hidden_or_left_page_closes_its_stream_and_shown_again_reopens_it_from_what_it_shows() -> None:
    log = run(
        ("notice",),
        ("respond",),  # the page now shows version 2
        ("hide",),
        ("advance", 60_000),
        ("show",),
        ("pagehide",),
        ("pageshow",),
    )
    assert what(log) == [
        "open /events?rv=1",
        "fetch",
        "swap 2",
        "close /events?rv=1",  # hidden: its connection is free for the other tabs
        # Shown: the stream starts from the version shown, so the server tells of any change meanwhile,
        # and nothing is fetched until it does.
        "open /events?rv=2",
        "close /events?rv=2",
        "open /events?rv=2",
    ]


def test_a_change_not_fetched_yet_when_the_page_is_hidden_is_fetched_once_it_is_shown() -> None:
    log = run(
        ("advance", 2_000), ("focus",), ("notice",), ("blur",), ("hide",), ("advance", 5_000), ("show",)
    )
    assert what(log) == ["open /events?rv=1", "close /events?rv=1", "open /events?rv=1", "fetch"]


def test_text_typed_while_the_page_fetches_itself_is_kept_and_the_page_updates_once_it_is_undone() -> None:
    log = run(
        ("notice",),
        ("focus",),
        ("type", "half-typed approval message"),
        ("respond",),  # the fetch comes back while the user types: no swap
        ("blur",),
        ("advance", 10_000),  # out of the field, but its text is still there: still no swap
        ("undo",),
        ("advance", 1_000),
        ("respond",),
    )
    assert "lost half-typed approval message" not in what(log)
    assert [(t, w) for t, w, _ in log] == [
        (0, "open"),
        (0, "fetch"),
        (11_000, "fetch"),  # within a second of the field being back as it was
        (11_000, "swap"),
    ]


def test_a_page_hidden_while_it_fetches_itself_swaps_nothing_until_shown() -> None:
    log = run(("notice",), ("hide",), ("respond",), ("advance", 5_000), ("show",), ("respond",))
    assert what(log) == [
        "open /events?rv=1",
        "fetch",
        "close /events?rv=1",
        "open /events?rv=1",  # from the version still shown: the answer fetched while hidden was dropped
        "fetch",
        "swap 3",
    ]


def test_the_page_fetches_itself_at_most_once_a_second_however_fast_the_notices_come() -> None:
    notices = [a for _ in range(15) for a in (("notice",), ("advance", 200))]  # 3 s of a notice every 200 ms
    log = run(*notices, ("advance", 2_000), latency=50)
    fetches = [t for t, w, _ in log if w == "fetch"]
    assert fetches == [0, 1_000, 2_000, 3_000]  # a second after the last one started, each time
    assert len([w for _, w, _ in log if w == "swap"]) == 4


def test_a_stream_that_fails_gives_way_to_a_reload_every_five_seconds_and_is_not_reopened() -> None:
    log = run(("error",), ("hide",), ("show",), ("advance", 5_000))
    assert what(log) == ["open /events?rv=1", "close /events?rv=1", "reload"]
