"""CPU seconds and memory of a process, read from /proc (Linux): the controller's and the cluster's."""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")
_MB = 1024 * 1024


@dataclass(frozen=True)
class ProcSample:
    cpu_seconds: float
    """utime + stime since the process started."""
    rss_mb: float
    peak_rss_mb: float
    """VmHWM: the high-water mark since start, or since the last `reset_peak`."""


def sample(pid: int) -> ProcSample | None:
    """None when the process is gone (or /proc is unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            stat = fh.read()
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            status = fh.read()
    except OSError:
        return None
    # The command name (field 2) is parenthesised and may contain spaces: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    kb = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            kb[key] = int(value.split()[0])
    return ProcSample(
        cpu_seconds=(utime + stime) / _TICKS,
        rss_mb=kb.get("VmRSS", 0) / 1024,
        peak_rss_mb=kb.get("VmHWM", 0) / 1024,
    )


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (`echo 5 > /proc/<pid>/clear_refs`, Linux >= 4.0); False if refused.

    Lets each scenario report its own peak instead of the process's lifetime peak.
    """
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_by_name(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds of each named process that is still alive."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        got = sample(pid)
        if got is not None:
            out[name] = got.cpu_seconds
    return out


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before[name], 2) for name in after if name in before}
