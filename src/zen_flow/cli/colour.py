"""Colour for people, plain text for programs: on a terminal the phases in `get`, `list` and `watch` are
coloured (rich); piped, or under NO_COLOR, the bytes are exactly what render.py produced.

rich is imported only when a terminal will show colour (its import costs ~70 ms; scripts pay nothing).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from zen_flow.api.constants import FlowPhase, StepPhase

if TYPE_CHECKING:
    from rich.text import Text

# What a phase means to the reader: done well, done badly, under way, waiting on a person, not run.
PHASE_STYLES: dict[str, str] = {
    StepPhase.SUCCEEDED: "green",
    StepPhase.FAILED: "bold red",
    StepPhase.RUNNING: "cyan",
    StepPhase.RETRYING: "magenta",
    StepPhase.PENDING_APPROVAL: "bold yellow",
    FlowPhase.PAUSED: "bold yellow",
    FlowPhase.SUSPENDED: "yellow",
    StepPhase.PENDING: "dim",
    StepPhase.SKIPPED: "dim",
}


def painter(out: TextIO) -> Callable[[str], object]:
    """How to write rendered text to `out`: coloured when it is a terminal and NO_COLOR is unset."""
    if not out.isatty() or os.environ.get("NO_COLOR"):
        return out.write
    from rich.console import Console
    from rich.highlighter import Highlighter

    class Phases(Highlighter):
        def highlight(self, text: Text) -> None:
            for phase, style in PHASE_STYLES.items():
                text.highlight_regex(rf"\b{phase}\b", style)

    console = Console(file=out, highlighter=Phases(), soft_wrap=True, markup=False, emoji=False)

    def write(text: str) -> None:
        console.print(text, end="")  # soft_wrap: long lines as they are, never cut

    return write
