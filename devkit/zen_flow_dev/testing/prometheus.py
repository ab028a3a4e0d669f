"""A real Prometheus for the tests: Debian's package, unpacked by tools/fetch-prometheus.sh into the tool
cache (`make test` passes its directory as ZENFLOW_PROMETHEUS_BIN)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

FETCH_HINT = "run `tools/fetch-prometheus.sh` once (seconds; cached afterwards)"


def prometheus_tool(name: str) -> Path | None:
    """`prometheus` or `promtool`: ZENFLOW_PROMTOOL (promtool only), ZENFLOW_PROMETHEUS_BIN, the cache,
    then PATH; None when none has it."""
    if name == "promtool" and (override := os.environ.get("ZENFLOW_PROMTOOL")):
        return Path(override)
    if directory := os.environ.get("ZENFLOW_PROMETHEUS_BIN"):
        return Path(directory) / name
    cache = Path(
        os.environ.get("ZENFLOW_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zen-flow"
    )
    fetched = sorted(cache.glob(f"tools/prometheus-*/bin/{name}"))
    if fetched:
        return fetched[-1]
    found = shutil.which(name)
    return Path(found) if found else None
