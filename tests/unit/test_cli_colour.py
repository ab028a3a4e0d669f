"""Phases coloured for a person at a terminal; the very same bytes as render.py for pipes and NO_COLOR."""

from __future__ import annotations

import io
import re

import pytest

from zen_flow.api.constants import FlowPhase, StepPhase
from zen_flow.cli.colour import PHASE_STYLES, painter

ANSI = re.compile(r"\x1b\[[0-9;]*m")
VIEW = (
    "STEP    PHASE               JOB\n"
    "build   Succeeded           release-build-1\n"
    "gate    PendingApproval     -\n"
    "ship    Failed              release-ship-1   PodFailed: exit code 3\n"
    + "note    Pending             "
    + "x" * 300
    + "\n"
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_each_phase_coloured_and_the_text_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = Terminal()
    painter(out)(VIEW)
    shown = out.getvalue()
    assert ANSI.sub("", shown) == VIEW  # columns, long lines and the words around phases as they were
    assert "\x1b[32mSucceeded\x1b[0m" in shown
    assert "\x1b[1;31mFailed\x1b[0m" in shown
    assert "\x1b[1;33mPendingApproval\x1b[0m" in shown
    assert "PodFailed" in shown  # a phase inside another word is left alone


def test_no_color_and_pipes_get_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    painter(out)(VIEW)
    assert out.getvalue() == VIEW
    monkeypatch.delenv("NO_COLOR")
    piped = io.StringIO()
    painter(piped)(VIEW)
    assert piped.getvalue() == VIEW


def test_every_phase_has_a_colour() -> None:
    assert set(PHASE_STYLES) == {*FlowPhase, *StepPhase}
