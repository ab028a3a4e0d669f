"""`python -m zen_flow_dev.bench.instructions` (docs/BENCHMARKS.md) runs as documented and counts what a
review asks of the CPU; no timing is asserted (instruction counts do not depend on the machine's load)."""

from __future__ import annotations

import shutil

import pytest

from zen_flow_dev.bench import instructions

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed"),
]


def test_a_spec_never_seen_costs_more_instructions_than_one_remembered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--steps", "20", "--reviews", "1", "--kind", "new spec", "--kind", "same spec"]
    assert instructions.main(args) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()]
    figures = {row[1].strip(): float(row[2]) for row in rows[2:]}
    assert set(figures) == {"new spec", "same spec"}
    # Checking 20 steps is work; recognising the digest of a spec accepted before is almost none.
    assert figures["new spec"] > 2 * figures["same spec"] > 0
