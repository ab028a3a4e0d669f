"""`--log-format json`: every line on stderr is one JSON object with the same keys, whoever logged it:
zen-flow, a library through stdlib logging (aiohttp's access log, asyncio), or a Python warning."""

from __future__ import annotations

import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from zen_flow import logging as zf_logging


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """stderr as the controller's logging sees it, configured for JSON; everything restored afterwards."""
    sink = io.StringIO()
    monkeypatch.setattr(sys, "stderr", sink)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    zf_logging.configure("json", "info")
    try:
        yield sink
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


def lines(sink: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink.getvalue().splitlines()]  # each line alone must parse


def test_every_source_writes_one_json_object_per_line_with_the_same_keys(stderr: io.StringIO) -> None:
    zf_logging.get_logger("zen_flow.controller.reconciler").info("created job", job="a-1")
    logging.getLogger("aiohttp.access").warning('127.0.0.1 "GET /metrics HTTP/1.1" 200')
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("an old API", DeprecationWarning, stacklevel=1)
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")

    ours, access, warning, crash = lines(stderr)
    for entry in (ours, access, warning, crash):
        assert {"timestamp", "level", "logger", "event"} <= set(entry), entry
    assert (ours["logger"], ours["level"], ours["event"], ours["job"]) == (
        "zen_flow.controller.reconciler",
        "info",
        "created job",
        "a-1",
    )
    assert (access["logger"], access["level"]) == ("aiohttp.access", "warning")
    assert warning["logger"] == "py.warnings"
    assert "DeprecationWarning: an old API" in warning["event"]
    assert crash["logger"] == "asyncio"
    assert crash["level"] == "error"
    assert "ValueError: boom" in crash["exception"]  # the traceback, inside the one JSON line


def test_a_reconciles_context_is_on_library_lines_too(stderr: io.StringIO) -> None:
    with structlog.contextvars.bound_contextvars(flow="team-a/nightly", reconcile_id="2a"):
        zf_logging.get_logger("zen_flow.kube.client").warning("slow request")
        logging.getLogger("aiohttp.client").warning("connection reset")
    zf_logging.get_logger("zen_flow.controller.app").info("after")
    inside_ours, inside_library, after = lines(stderr)
    for entry in (inside_ours, inside_library):
        assert (entry["flow"], entry["reconcile_id"]) == ("team-a/nightly", "2a")
    assert "flow" not in after


def test_library_info_lines_stay_quiet_unless_debugging(stderr: io.StringIO) -> None:
    logging.getLogger("aiohttp.access").info("GET /healthz 200")  # every probe would log a line
    assert stderr.getvalue() == ""
