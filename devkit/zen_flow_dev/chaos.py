"""Chaos: SIGKILL the controller at random while flows run, then count what went wrong.

`make test-chaos` (`zen-flow-dev chaos`) runs 100 flows of 10 steps on a local full cluster with two
leader-electing replicas, kills a random replica (SIGKILL: no lease release, no clean-up) every few
seconds and starts it again, until every flow has finished. It prints, and returns, the figures that
matter: flows that finished, flows stuck, duplicate Jobs (two Jobs for one attempt of one step, which
the deterministic names and expectations must make impossible), and how many kills it took.
tests/e2e/test_chaos.py runs a small version in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow_dev.testing.controller import ControllerProcess
from zen_flow_dev.testing.driver import TERMINAL, FlowDriver
from zen_flow_dev.testing.flows import chain

# Fast failover: a killed leader's lease expires in 4 s (the defaults' 15 s would make runs long).
FAST_LEASE = ["--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "1"]
ATTEMPT_LABEL = "workflow.kube-zen.io/attempt"
STEP_LABEL = "workflow.kube-zen.io/step"
FLOW_LABEL = "workflow.kube-zen.io/flow"


@dataclass(frozen=True)
class ChaosResult:
    flows: int
    succeeded: int
    stuck: int
    duplicate_jobs: int
    kills: int
    seconds: float

    def lines(self) -> list[str]:
        return [
            f"flows: {self.flows}, succeeded: {self.succeeded}, stuck: {self.stuck}",
            f"duplicate Jobs: {self.duplicate_jobs}",
            f"controller SIGKILLs: {self.kills} in {self.seconds:.0f} s",
        ]


async def run_chaos(
    kubeconfig: Path,
    namespace: str,
    workdir: Path,
    *,
    flows: int = 100,
    steps: int = 10,
    kill_every: float = 3.0,
    timeout: float = 600.0,
    seed: int = 1,
    replicas: int = 2,
    say: Any = None,
) -> ChaosResult:
    rng = random.Random(seed)
    started = time.monotonic()
    procs = [
        ControllerProcess(
            kubeconfig,
            workdir / f"controller-{n}.log",
            namespaces=[namespace],
            leader_elect=True,
            lease_namespace=namespace,
            identity=f"chaos-{n}",
            extra_args=FAST_LEASE,
        ).start()
        for n in range(replicas)
    ]
    driver = await FlowDriver.connect(kubeconfig)
    kills = 0
    try:
        for proc in procs:
            await asyncio.to_thread(proc.wait_ready)
        names = [f"chaos-{i}" for i in range(flows)]
        await asyncio.gather(*(driver.create(chain(name, namespace, steps)) for name in names))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            phases = await _phases(driver, namespace)
            if sum(1 for n in names if phases.get(n) in TERMINAL) == flows:
                break
            victim = rng.choice(procs)
            victim.kill()
            kills += 1
            if say is not None:
                done = sum(p in TERMINAL for p in phases.values())
                say(f"  kill #{kills}: {victim.log_path.stem}; {done}/{flows} flows done")
            victim.start()
            await asyncio.sleep(kill_every * (0.5 + rng.random()))  # chaos pacing, not a wait
        phases = await _phases(driver, namespace)
        jobs = await driver.jobs(namespace)
    finally:
        await driver.close()
        for proc in procs:
            proc.stop()
    attempts = Counter(
        tuple(j["metadata"]["labels"].get(label) for label in (FLOW_LABEL, STEP_LABEL, ATTEMPT_LABEL))
        for j in jobs
    )
    return ChaosResult(
        flows=flows,
        succeeded=sum(1 for n in names if phases.get(n) == "Succeeded"),
        stuck=sum(1 for n in names if phases.get(n) not in TERMINAL),
        duplicate_jobs=sum(count - 1 for count in attempts.values() if count > 1),
        kills=kills,
        seconds=time.monotonic() - started,
    )


async def _phases(driver: FlowDriver, namespace: str) -> dict[str, str]:
    listed = await driver.kube.request("GET", JOBFLOWS.path(namespace))
    return {f["metadata"]["name"]: (f.get("status") or {}).get("phase") or "Pending" for f in listed["items"]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zen-flow-dev chaos", description=__doc__)
    parser.add_argument("--flows", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between SIGKILLs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)

    from zen_flow_dev.cluster import LocalCluster, find_kubectl
    from zen_flow_dev.testing.crd import install_crd

    cluster = LocalCluster("full", smoke_job=False)
    print("starting a local cluster ...", flush=True)
    cluster.start()
    try:
        install_crd(find_kubectl(cluster.bin_dir), cluster.kubeconfig)
        print(
            f"running {args.flows} flows x {args.steps} steps, SIGKILL every ~{args.kill_every}s", flush=True
        )
        result = asyncio.run(
            run_chaos(
                cluster.kubeconfig,
                "default",
                cluster.workdir,
                flows=args.flows,
                steps=args.steps,
                kill_every=args.kill_every,
                timeout=args.timeout,
                seed=args.seed,
                say=lambda line: print(line, flush=True),
            )
        )
    finally:
        cluster.stop()
    for line in result.lines():
        print(line)
    ok = result.stuck == 0 and result.duplicate_jobs == 0 and result.succeeded == result.flows
    print("OK" if ok else "FAILED", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
