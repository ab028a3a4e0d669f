"""`python -m zen_flow_dev.bench`: run the benchmark, print the tables, write every figure as JSON."""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from zen_flow import logging as zf_logging
from zen_flow.api.constants import JobRetention
from zen_flow.validation import COMPILED
from zen_flow_dev.bench import compiled
from zen_flow_dev.bench.charts import write_charts
from zen_flow_dev.bench.report import render, write_json
from zen_flow_dev.bench.runner import BenchConfig, run
from zen_flow_dev.bench.session import ControllerSettings
from zen_flow_dev.bench.workloads import PRESETS, WORKLOAD_NAMES

ADMISSION_BUDGET = {"quick": 0.2, "default": 1.0, "large": 2.0}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zen-flow-dev bench",
        description="Benchmark zen-flow against an ideal baseline on a local (kwok) or existing cluster.",
    )
    p.add_argument(
        "--preset", choices=sorted(PRESETS), default="default", help="sizes (default: %(default)s)"
    )
    p.add_argument(
        "--kubeconfig",
        type=Path,
        help="use this cluster instead of starting a local one (it needs a node that runs pods; "
        "the run-seconds pod annotation only matters with zen-flow's kwok stages)",
    )
    p.add_argument("--out", type=Path, help="JSON results file (default: bench-results/<UTC timestamp>.json)")
    p.add_argument("--only", help=f"comma-separated workloads to run, of: {', '.join(WORKLOAD_NAMES)}")
    p.add_argument(
        "--skip-crd-install",
        action="store_true",
        help="use the JobFlow CRD already installed (default: create or replace it from config/crd/)",
    )
    p.add_argument("--skip-admission", action="store_true", help="skip the admission latency timings")
    p.add_argument(
        "--admission-only", action="store_true", help="only the admission timings (no cluster is started)"
    )
    p.add_argument("--admission-budget", type=float, help="seconds of repetitions per admission case")
    p.add_argument(
        "--compiled",
        action=argparse.BooleanOptionalAction,
        help="run zen-flow as the image does, its admission rules compiled with mypyc (builds the wheel "
        "first, ~40 s; default: yes where a C compiler is found); --no-compiled: as installed",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each workload that has a baseline N times (every other run measures the baseline first); "
        "the targets table judges the median of the runs (one run's ratios move by ~20 %% on a shared VM)",
    )
    p.add_argument(
        "--wait-deletes",
        action=argparse.BooleanOptionalAction,
        help="wait until each run's namespace is deleted before the next run (default: yes, except quick)",
    )
    p.add_argument(
        "--py-spy", action="store_true", help="profile the controller with py-spy (pip install py-spy)"
    )
    p.add_argument(
        "--job-retention",
        choices=[value.value for value in JobRetention],
        help="executionPolicy.jobRetention of every flow zen-flow runs (default: left out, the API's All); "
        "the baseline has no such policy: its Jobs stay until their namespace goes",
    )
    p.add_argument("--step-timeout", type=float, default=1.0, help="timeout per step (+120 s) of each run")
    p.add_argument(
        "--apiserver-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="an extra kube-apiserver flag for the local cluster (repeatable), e.g. --apiserver-arg=--v=1: "
        "its log then says why it closed a watch",
    )
    c = p.add_argument_group("controller under test")
    defaults = ControllerSettings()
    c.add_argument("--controller-workers", type=int, default=defaults.workers)
    c.add_argument("--controller-qps", type=float, default=defaults.qps)
    c.add_argument("--controller-burst", type=int, default=defaults.burst)
    c.add_argument("--controller-event-qps", type=float, default=defaults.event_qps)
    c.add_argument("--controller-event-burst", type=int, default=defaults.event_burst)
    c.add_argument(
        "--controller-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment variable for the controller process (repeatable)",
    )
    s = p.add_argument_group("sizes (override the preset)")
    for key in PRESETS["default"]:
        s.add_argument(f"--{key.replace('_', '-')}", dest=key, type=int, metavar="N")
    return p


def _env_pair(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise SystemExit(f"--controller-env expects NAME=VALUE, got {item!r}")
    return name, value


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.compiled is not False and not COMPILED and (args.compiled or shutil.which("cc")):
        given = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--compiled"]
        return compiled.rerun([*given, "--no-compiled"])
    zf_logging.configure("console", "warning")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("bench-results") / f"{stamp}.json"
    try:
        config = config_from(args, out)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    results = run(config)
    write_json(results, out)
    print(render(results))
    print(f"\nresults: {out}")
    for chart in write_charts(results, out):
        print(f"chart: {chart}")
    if logs := results["meta"].get("logs"):  # none with --admission-only: no controller ran
        print(f"logs:    {logs}")
    failed = [
        w["workload"]
        for w in results.get("workloads", [])
        for e in ("zen-flow", "baseline")
        if w.get(e, {}).get("error")
    ]
    return 1 if failed else 0


def config_from(args: argparse.Namespace, out: Path) -> BenchConfig:
    """The run the parsed options ask for, its results written to `out`; ValueError for an `--only`
    naming no workload."""
    sizes = dict(PRESETS[args.preset])
    for key in sizes:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    only = frozenset(x.strip() for x in args.only.split(",")) if args.only else None
    if only and not only <= set(WORKLOAD_NAMES):
        raise ValueError(f"unknown workloads: {sorted(only - set(WORKLOAD_NAMES))}")
    return BenchConfig(
        preset=args.preset,
        sizes=sizes,
        only=only,
        kubeconfig=args.kubeconfig,
        out=out,
        controller=ControllerSettings(
            args.controller_workers,
            args.controller_qps,
            args.controller_burst,
            args.controller_event_qps,
            args.controller_event_burst,
            tuple(_env_pair(item) for item in args.controller_env),
        ),
        admission_budget=args.admission_budget or ADMISSION_BUDGET[args.preset],
        skip_admission=args.skip_admission and not args.admission_only,
        admission_only=args.admission_only,
        step_timeout=args.step_timeout,
        py_spy=args.py_spy,
        apiserver_args=tuple(args.apiserver_arg),
        install_crd=not args.skip_crd_install,
        wait_deletes=args.wait_deletes if args.wait_deletes is not None else args.preset != "quick",
        repeat=max(1, args.repeat),
        job_retention=args.job_retention,
    )
