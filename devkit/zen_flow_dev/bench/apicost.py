"""Counting API requests three ways, as (verb, resource) -> count deltas over a window.

1. The apiserver's audit log (our LocalCluster only): every request the controller's own identity made,
   as the apiserver recorded it. The authoritative per-controller figure.
2. The controller's `zen_flow_api_requests_total` (its KubeClient hook): the cross-check, and the only
   per-controller figure on a cluster without our audit policy.
3. The apiserver's `apiserver_request_total`: every client's requests (Job controller, scheduler, kwok,
   the harness, zen-flow). It has no user or user-agent label, so it is the whole cluster's cost per
   step, comparable between zen-flow and the baseline, not zen-flow's share.

Verbs are the audit log's (create, get, list, watch, update, patch, delete, deletecollection); resources
are `<plural>[/<subresource>]`.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from zen_flow_dev.bench.stats import percentile

Tally = Counter[tuple[str, str]]

AUDIT_USER = "zen-flow-bench-controller"
"""The client-certificate identity the benchmark's controller runs as on our LocalCluster."""

AUDIT_POLICY = f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: ["{AUDIT_USER}"]
- level: None
"""
"""Metadata of the controller's requests only: the log costs the apiserver nothing for anyone else."""

_APISERVER_VERBS = {
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "APPLY": "apply",
    "GET": "get",
    "LIST": "list",
    "WATCH": "watch",
    "WATCHLIST": "watch",
    "DELETE": "delete",
    "DELETECOLLECTION": "deletecollection",
    "CONNECT": "connect",
}
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_CONTROLLER_SAMPLE = re.compile(
    r"^zen_flow_api_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE
)


def delta(before: Tally, after: Tally) -> Tally:
    out: Tally = Counter()
    for key, value in after.items():
        diff = value - before.get(key, 0)
        if diff:
            out[key] = diff
    return out


def per_step(tally: Tally, steps: int) -> dict[str, float]:
    """{"verb resource": requests per step}, largest first."""
    return {f"{verb} {res}": round(n / steps, 3) for (verb, res), n in tally.most_common()} if steps else {}


def writes(tally: Tally) -> int:
    return sum(
        n for (verb, _), n in tally.items() if verb in ("create", "update", "patch", "apply", "delete")
    )


def total(tally: Tally) -> int:
    return sum(tally.values())


def as_json(tally: Tally) -> dict[str, int]:
    return {f"{verb} {res}": n for (verb, res), n in tally.most_common()}


# --- 2. the controller's own counter ---------------------------------------------------------------------


def controller_requests(metrics_text: str) -> Tally:
    """zen_flow_api_requests_total summed over codes, from the controller's /metrics text."""
    out: Tally = Counter()
    for match in _CONTROLLER_SAMPLE.finditer(metrics_text):
        labels = dict(_LABEL.findall(match["labels"]))
        out[(labels.get("verb", ""), labels.get("resource", ""))] += int(float(match["value"]))
    return out


def metric_sum(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when there is none)."""
    found = metric_value(metrics_text, name, **labels)
    return 0.0 if found is None else found


def metric_value(metrics_text: str, name: str, **labels: str) -> float | None:
    """Sum of the samples of `name` whose labels include `labels`; None when the page has none (a gauge
    that is absent is not a gauge at 0)."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)$", re.MULTILINE)
    found: float | None = None
    for match in pattern.finditer(metrics_text):
        have = dict(_LABEL.findall(match["labels"] or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            try:
                found = (found or 0.0) + float(match["value"])
            except ValueError:
                continue
    return found


# --- 3. the apiserver's counter (everyone) ----------------------------------------------------------------


def apiserver_requests(metrics_text: str) -> Tally:
    """apiserver_request_total summed over codes, scopes and groups."""
    out: Tally = Counter()
    for match in _SAMPLE.finditer(metrics_text):
        labels = dict(_LABEL.findall(match["labels"]))
        verb = _APISERVER_VERBS.get(labels.get("verb", ""), labels.get("verb", "").lower())
        res = labels.get("resource", "")
        if labels.get("subresource"):
            res = f"{res}/{labels['subresource']}"
        out[(verb, res)] += int(float(match["value"]))
    return out


def scrape_apiserver(kubectl: Path, kubeconfig: Path) -> str | None:
    """The apiserver's /metrics text, or None if we may not read it."""
    done = subprocess.run(
        [str(kubectl), f"--kubeconfig={kubeconfig}", "get", "--raw", "/metrics"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


# --- 1. the audit log ---------------------------------------------------------------------------------


class AuditLog:
    """The JSON-lines audit log the apiserver writes for `AUDIT_POLICY` (blocking mode: an event is in the
    file before the response is sent, so a window's requests are all there when the window closes)."""

    def __init__(self, path: Path, user: str = AUDIT_USER) -> None:
        self.path = path
        self.user = user

    def mark(self) -> int:
        """The current end of the log: count from here."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def count(self, since: int, start: float, end: float) -> Tally:
        """Requests the user made whose requestReceivedTimestamp is in [start, end] (epoch seconds),
        reading from byte offset `since`. A watch counts once, when it started streaming."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(since)
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return Counter()
        return tally_events((json.loads(line) for line in lines if line.strip()), self.user, start, end)

    def rate(self, since: int, start: float, end: float, qps: float) -> dict[str, float]:
        """The user's request rate per wall-clock second (watches excluded): the busiest second, and how
        many seconds ran at >= 90 % of the client-side limit `qps` (the limiter was then the bound; none
        with `qps` 0, no limit). Events are left out: they have a budget of their own (`--event-qps`)."""
        if not self.path.exists():
            return {}
        per_second: Counter[int] = Counter(int(received) for received, _ in self._requests(since, start, end))
        if not per_second:
            return {"active_seconds": 0, "busiest_second": 0, "seconds_at_limit": 0}
        return {
            "active_seconds": len(per_second),
            "busiest_second": max(per_second.values()),
            "mean_per_active_second": round(sum(per_second.values()) / len(per_second), 1),
            "seconds_at_limit": sum(1 for n in per_second.values() if n >= 0.9 * qps) if qps > 0 else 0,
        }

    def latency_timeline(self, since: int, start: float, end: float) -> list[list[float]]:
        """Per second of the run (from `start`): [second, requests, p50, p90, max] of how long the apiserver
        took to answer the user's requests (requestReceived to ResponseComplete, ms; watches and Events
        left out). It tells a slow apiserver from a slow controller when transitions are slow."""
        per_second: dict[int, list[float]] = {}
        for received, took_ms in self._requests(since, start, end):
            per_second.setdefault(int(received - start), []).append(took_ms)
        rows = []
        for second, took in sorted(per_second.items()):
            took.sort()
            p50, p90 = percentile(took, 0.5), percentile(took, 0.9)
            rows.append([second, len(took), round(p50, 1), round(p90, 1), round(took[-1], 1)])
        return rows

    def _requests(self, since: int, start: float, end: float) -> Iterator[tuple[float, float]]:
        """(received, milliseconds to answer) of the user's completed requests received in [start, end],
        watches and Events left out."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(since)
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            event = json.loads(line)
            if event.get("stage") != "ResponseComplete" or event.get("verb") == "watch":
                continue
            if (event.get("objectRef") or {}).get("resource") == "events":
                continue
            if (event.get("user") or {}).get("username") != self.user:
                continue
            received = _epoch(str(event.get("requestReceivedTimestamp", "")))
            completed = _epoch(str(event.get("stageTimestamp", "")))
            if received is not None and completed is not None and start <= received <= end:
                yield received, (completed - received) * 1000


def tally_events(events: Iterable[Mapping[str, object]], user: str, start: float, end: float) -> Tally:
    out: Tally = Counter()
    for event in events:
        verb = str(event.get("verb", ""))
        stage = event.get("stage")
        if stage != ("ResponseStarted" if verb == "watch" else "ResponseComplete"):
            continue
        who = event.get("user")
        if not isinstance(who, Mapping) or who.get("username") != user:
            continue
        received = _epoch(str(event.get("requestReceivedTimestamp", "")))
        if received is None or not start <= received <= end:
            continue
        ref = event.get("objectRef")
        res = ""
        if isinstance(ref, Mapping):
            res = str(ref.get("resource", ""))
            if ref.get("subresource"):
                res = f"{res}/{ref['subresource']}"
        out[(verb, res)] += 1
    return out


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
