"""What the controller process imports: nothing it never uses (every module costs resident memory)."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys
from zen_flow.cli import main
code = main(["run", "--kubeconfig", "/nonexistent"])  # fails at once: no cluster to reach
from zen_flow.logging import configure, get_logger
configure(fmt="console", level="info")
try:
    raise ValueError("boom")
except ValueError:
    get_logger("t").exception("failed")
print(code, sys.modules.get("rich") is not None, "pygments" in sys.modules)
"""


def test_the_controller_runs_without_rich_and_still_logs_tracebacks() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "1 False False"
    assert "ValueError: boom" in done.stdout + done.stderr
