"""`zen-flow-dev dev` (`make dev`): a local cluster, the CRD, the controller and example flows, live.

It is the first thing a newcomer runs, so it narrates: each phase with its duration, then every step
transition of the example flows as the controller makes it, then how to reach the cluster with kubectl.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

import yaml

from zen_flow.api.constants import FlowPhase
from zen_flow.cli.validate import validate_paths
from zen_flow.kube.client import KubeClient
from zen_flow.kube.config import load_config
from zen_flow.kube.jobflows import JobFlowClient
from zen_flow.kube.transport import ClientOptions
from zen_flow_dev.cluster import LocalCluster, find_bin_dir, find_kubectl
from zen_flow_dev.testing.controller import ControllerProcess
from zen_flow_dev.testing.crd import install_crd
from zen_flow_dev.testing.examples import DEV_DEFAULTS


class _Narrator:
    def __init__(self, out: TextIO, total: int) -> None:
        self._out, self._total, self._n = out, total, 0

    @contextlib.contextmanager
    def phase(self, text: str) -> Iterator[None]:
        self._n += 1
        print(f"[{self._n}/{self._total}] {text} ...", file=self._out, flush=True)
        started = time.monotonic()
        yield
        print(f"      done in {time.monotonic() - started:.1f}s", file=self._out, flush=True)

    def say(self, text: str) -> None:
        print(text, file=self._out, flush=True)


async def _follow(kubeconfig: Path, names: set[tuple[str, str]], timeout: float, say: _Narrator) -> bool:
    """Print each step transition until every flow is terminal; True when all Succeeded."""
    config = await load_config(str(kubeconfig))
    seen: dict[tuple[str, str, str], str] = {}
    async with KubeClient(config, ClientOptions(qps=20, burst=20)) as client:
        flows = JobFlowClient(client)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            phases: dict[tuple[str, str], str] = {}
            for ns, name in sorted(names):
                try:
                    obj = await flows.get(ns, name)
                except Exception:  # not created yet, or a passing API error: look again
                    continue
                status = obj.get("status") or {}
                phases[(ns, name)] = status.get("phase") or "Pending"
                for step in status.get("steps") or []:
                    key = (ns, name, step.get("name", ""))
                    if seen.get(key, "Pending") != step.get("phase", "Pending"):
                        seen[key] = step.get("phase", "")
                        stamp = datetime.now().strftime("%H:%M:%S")
                        line = f"  {stamp}  {name:<24} {step.get('name', ''):<20} {step.get('phase', '')}"
                        if step.get("message") and step.get("phase") in ("Failed", "Skipped", "Retrying"):
                            line += f"  ({step['message']})"
                        say.say(line)
            if len(phases) == len(names) and all(FlowPhase(p).terminal for p in phases.values()):
                return all(p == FlowPhase.SUCCEEDED for p in phases.values())
            await asyncio.sleep(0.25)  # a terminal UI refresh, not a test wait
    raise TimeoutError(f"flows did not finish within {timeout:.0f}s")


def _apply(kubectl: Sequence[str], files: Sequence[Path]) -> set[tuple[str, str]]:
    """Apply (or, for flows with only a generateName, create) every file; the flows' (namespace, name)."""
    names: set[tuple[str, str]] = set()
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        verb = "create" if any(not (d.get("metadata") or {}).get("name") for d in docs) else "apply"
        done = subprocess.run(
            [*kubectl, verb, "-o", "json", "-f", str(path)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise DevError(f"kubectl {verb} -f {path}: {done.stderr.strip()}")
        answer = json.loads(done.stdout)
        for obj in answer.get("items", [answer]):
            if obj.get("kind") == "JobFlow":
                names.add((obj["metadata"]["namespace"], obj["metadata"]["name"]))
    return names


class DevError(Exception):
    """A problem `make dev` reports in one line (bad input file, a failed apply)."""


def _check_files(files: Sequence[Path]) -> None:
    """Refuse missing or invalid flow files before a cluster is started for them."""
    for path in files:
        if not path.is_file():
            raise DevError(f"{path}: no such file")
    problems = io.StringIO()
    if validate_paths([str(p) for p in files], problems, io.StringIO()) != 0:
        raise DevError("invalid flows (nothing was started):\n" + problems.getvalue().rstrip())


def run_dev(examples: Sequence[str] = (), *, exit_when_done: bool = False, timeout: float = 600.0) -> int:
    files = [Path(p) for p in examples] or list(DEV_DEFAULTS)
    try:
        _check_files(files)
    except DevError as error:
        print(f"zen-flow-dev dev: {error}", file=sys.stderr)
        return 2
    say = _Narrator(sys.stdout, 5)
    bin_dir = find_bin_dir()
    cluster = LocalCluster("full", bin_dir=bin_dir, smoke_job=False)
    controller: ControllerProcess | None = None
    try:
        with say.phase(
            "starting a local Kubernetes: etcd, kube-apiserver, controller-manager, scheduler, kwok"
        ):
            cluster.start()
        kubectl = [str(find_kubectl(bin_dir)), "--kubeconfig", str(cluster.kubeconfig)]
        with say.phase("installing the JobFlow CRD"):
            # Waits for Established by polling: `kubectl wait` fails at once (exit 1) while a new CRD has
            # no status.conditions yet, which made this phase fail now and then.
            install_crd(kubectl[0], cluster.kubeconfig)
        log = cluster.workdir / "controller.log"
        controller = ControllerProcess(cluster.kubeconfig, log)
        with say.phase(f"starting the zen-flow controller (logs: {log})"):
            controller.start().wait_ready()
        with say.phase("applying " + ", ".join(f.name for f in files)):
            names = _apply(kubectl, files)
        say.say(
            f"[5/5] following {len(names)} flow(s); each line is a step transition made by the controller:"
        )
        ok = asyncio.run(_follow(cluster.kubeconfig, names, timeout, say))
        subprocess.run([*kubectl, "get", "jobflows", "-A"], check=False)
        say.say("")
        say.say("All flows succeeded." if ok else "Some flows failed; `kubectl describe jf NAME` says why.")
        if exit_when_done:
            return 0 if ok else 1
        say.say("Point kubectl at this cluster:")
        say.say(f"  export KUBECONFIG={cluster.kubeconfig}")
        say.say(
            f"  export PATH={bin_dir}:$PATH   # kubectl {bin_dir.name.split('_')[0]} built with the cluster"
        )
        say.say("  kubectl get jf")
        say.say("  kubectl get jobs -l app.kubernetes.io/managed-by=zen-flow")
        say.say(f"  kubectl describe jf {sorted(names)[0][1]}")
        say.say(f"  controller metrics: {controller.url}/metrics   logs: {log}")
        say.say("The cluster and the controller keep running; press Ctrl-C to stop them.")
        _wait_for_signal()
        return 0
    except DevError as error:
        print(f"zen-flow-dev dev: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if controller is not None:
            controller.stop()
        cluster.stop()


def _wait_for_signal() -> None:
    received = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    while not received:
        signal.pause()
