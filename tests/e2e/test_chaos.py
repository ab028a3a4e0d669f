"""A small chaos run in every `make test`: random SIGKILLs of two leader-electing replicas while flows run
must lose no flow and never run a step twice (`make test-chaos` runs 100 flows of 10 steps)."""

from __future__ import annotations

from pathlib import Path

from zen_flow_dev.chaos import run_chaos


async def test_random_sigkills_lose_no_flow_and_duplicate_no_job(
    kubeconfig: Path, namespace: str, tmp_path: Path, jobflow_crd: object
) -> None:
    result = await run_chaos(kubeconfig, namespace, tmp_path, flows=10, steps=5, kill_every=2.0, timeout=240)
    assert result.kills >= 2, result  # it was chaos, not a quiet run
    assert (result.stuck, result.duplicate_jobs) == (0, 0), result
    assert result.succeeded == result.flows
