"""`make dev` (`zen-flow dev`): the README's first command works and narrates the run."""

from __future__ import annotations

import subprocess
import sys


def test_zen_flow_dev_runs_the_examples_to_success() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zen_flow", "dev", "--exit-when-done", "--timeout", "120"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for phase in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert phase in out
    # every step of both examples is reported as it succeeds, then the summary
    for step in (
        "extract-a",
        "extract-b",
        "transform-a",
        "transform-b",
        "merge",
        "load",
        "step1",
        "step2",
        "step3",
    ):
        assert any(step in line and line.rstrip().endswith("Succeeded") for line in out.splitlines()), step
    assert "All flows succeeded." in out
