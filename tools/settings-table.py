#!/usr/bin/env python3
"""Regenerate the settings table of docs/OPERATOR_GUIDE.md from zen_flow.config.Settings (in place)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from zen_flow.config import Settings

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "OPERATOR_GUIDE.md"
START = (
    "<!-- settings-table: generated from zen_flow.config.Settings; "
    "tests/unit/test_operator_docs.py checks it -->"
)
END = "<!-- end settings-table -->"


def table() -> str:
    rows = ["| flag | environment variable | default | meaning |", "|---|---|---|---|"]
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        meaning = f.metadata["help"].replace("|", "\\|")
        rows.append(f"| `{flag}` | `ZEN_FLOW_{f.name.upper()}` | `{f.default!r}` | {meaning} |")
    return "\n".join(rows)


def main() -> None:
    text = GUIDE.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    GUIDE.write_text(pattern.sub(lambda _: f"{START}\n{table()}\n{END}", text))


if __name__ == "__main__":
    main()
