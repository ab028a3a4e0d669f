"""Measure the local cluster: start-up time per phase, stop time, RSS per component.

    python -m zen_flow_dev.cluster.measurement --profile full --runs 5

Prints a table (the figures in docs/TESTING.md come from here). RSS is read from /proc/<pid>/status
(VmRSS) right after start-up, i.e. after the smoke Job of the full profile completed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

from zen_flow_dev.cluster.cluster import PROFILES, LocalCluster


def rss_mib(pid: int) -> float | None:
    """Resident set size of `pid` in MiB, None if the process is gone or /proc is unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(
    profile: str, runs: int, smoke_job: bool
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Start and stop `runs` clusters; returns (seconds per phase, RSS MiB per component)."""
    seconds: dict[str, list[float]] = defaultdict(list)
    rss: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        cluster = LocalCluster("full" if profile == "full" else "apiserver", smoke_job=smoke_job)
        cluster.start()
        try:
            for phase, value in cluster.startup_seconds.items():
                seconds[phase].append(value)
            for name, pid in cluster.pids().items():
                resident = rss_mib(pid)
                if resident is not None:
                    rss[name].append(resident)
        finally:
            began = time.monotonic()
            cluster.stop()
            seconds["stop"].append(round(time.monotonic() - began, 2))
    return seconds, rss


def _row(name: str, values: list[float], unit: str) -> str:
    return (
        f"  {name:<26} min {min(values):7.2f}{unit}  median {statistics.median(values):7.2f}{unit}"
        f"  max {max(values):7.2f}{unit}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=PROFILES, default="full")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-smoke-job", action="store_true", help="skip the smoke Job (full profile)")
    args = parser.parse_args(argv)
    seconds, rss = measure(args.profile, args.runs, smoke_job=not args.no_smoke_job)
    print(f"profile {args.profile}, {args.runs} runs")
    print("seconds:")
    for phase, values in seconds.items():
        print(_row(phase, values, "s"))
    print("RSS after start-up:")
    for name, values in rss.items():
        print(_row(name, values, "MiB"))
    medians = [statistics.median(values) for values in rss.values()]
    print(f"  {'sum of medians':<26} {sum(medians):.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
