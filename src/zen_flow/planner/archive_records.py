"""The flow archive's records (`--archive-s3-*`): where a finished flow's record is kept, what it holds,
and how `zen-flow archive` reads one back. Pure: the controller (controller/archiver.py) and the CLI
(cli/archive.py) do the I/O.

One JSON object per end of a flow's run, at `<prefix><namespace>/<name>/<uid>/<finished>[-<run>].json`,
`<finished>` the run's completionTime as `20260301T120500Z`, `-<run>` on a rerun's end only (`run_tag`):

    {"recordVersion": 1, "archivedAt": "...", "controllerVersion": "...",
     "flow": {apiVersion, kind, metadata (without managedFields), spec, status},
     "jobs": [{"name", "step", "uid", "phase", "startTime", "completionTime"}, ...],
     "logs": [{"job", "step", "attempt", "pod", "container", "key", "bytes", "truncated",
               "unavailable"}, ...],   (with --archive-logs only: planner/archive_logs.py)
     "children": [{"step", "attempt", "name", "uid"}, ...]}   (a flow with Flow steps only)

`children` names the child flow each attempt of a Flow step ran (`ChildRun`): the child is archived as
a flow of its own, under its own name and UID, and once both flows are deleted this is how its record
and logs are found from the parent's (`zen-flow archive logs PARENT --step STEP`). A record without it
(written before it was added, or by a controller restarted after a superseded child was deleted) still
names the latest attempt's child in `status.steps[].jobRef` (name and UID); an earlier attempt's child
is then found by its name (`core.naming.job_name`) and its record's owner reference to the parent.

The key is the flow's UID and the run's end (and which run), so writing it again (a retry whose first
answer was lost, a restart) replaces the same object, and a flow rerun (`zen-flow retry`) after it was
archived is archived again when it ends, beside the earlier run's record: each end has its own.
`zen-flow archive list` builds its rows from the keys alone (and the LIST answer's LastModified and
Size), reading no record.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import format_time
from zen_flow.core.naming import short_hash
from zen_flow.planner.archive_logs import LogEntry, job_step
from zen_flow.planner.child_job import ChildFlowJob

RECORD_VERSION = 1
DEFAULT_PREFIX = "jobflows/"
_JOB_NAME_END = re.compile(r"-([0-9a-f]{8})(?:-r[0-9]+)?\Z")  # \Z: `$` also matches before a final "\n"


_STAMP = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z(?:-([0-9a-f]{8}))?")


def record_key(prefix: str, namespace: str, name: str, uid: str, finished: str, run: str = "") -> str:
    """The key of the record of the run of flow `uid` that ended at `finished` (its completionTime,
    RFC 3339 as the apiserver writes it); `run`: `run_tag` (a rerun's, "" for the first run)."""
    stamp = finished.replace("-", "").replace(":", "")
    return f"{prefix}{namespace}/{name}/{uid}/{stamp}{'-' + run if run else ''}.json"


def run_tag(rerun_ids: Iterable[str]) -> str:
    """Which run of a flow an end is: "" for its first run, a rerun's 8 hex digits of its request's id
    (the newest rerun the status records: `status.audit.retries[]` with steps). The completionTime alone
    has seconds only: a rerun that ends within the second its run ended would share its key."""
    last = ""
    for rid in rerun_ids:
        last = rid
    return hashlib.sha256(last.encode("utf-8", "surrogatepass")).hexdigest()[:8] if last else ""


def reruns_in(status: Mapping[str, Any]) -> list[str]:
    """The ids of the reruns a stored status (the wire form) records, oldest first (ignored requests,
    recorded with no steps, ran nothing)."""
    retries = (status.get("audit") or {}).get("retries") or []
    return [str(r.get("id", "")) for r in retries if isinstance(r, Mapping) and r.get("steps")]


def list_prefix(
    prefix: str, namespace: str | None = None, name: str | None = None, uid: str | None = None
) -> str:
    """The key prefix under which the records of `namespace` (None: every namespace), of flows named
    `name` (None: every name), of the flow `uid` (None: every one) are. A name alone (no namespace)
    cannot be a prefix: filter the keys."""
    if namespace is None:
        return prefix
    if not name:
        return f"{prefix}{namespace}/"
    return f"{prefix}{namespace}/{name}/{uid}/" if uid else f"{prefix}{namespace}/{name}/"


@dataclass(frozen=True)
class RecordKey:
    namespace: str
    name: str
    uid: str
    finished: str  # RFC 3339: 2026-03-01T12:05:00Z
    run: str = ""  # run_tag: "" for the flow's first run


def parse_key(prefix: str, key: str) -> RecordKey | None:
    """What a record's key names; None for any other object under the prefix."""
    if not key.startswith(prefix) or not key.endswith(".json"):
        return None
    parts = key[len(prefix) : -len(".json")].split("/")
    if len(parts) != 4 or not all(parts) or not (found := _STAMP.fullmatch(parts[3])):
        return None
    year, month, day, hour, minute, second, run = found.groups()
    namespace, name, uid = parts[:3]
    return RecordKey(namespace, name, uid, f"{year}-{month}-{day}T{hour}:{minute}:{second}Z", run or "")


def job_phase(job: Job) -> str:
    if job.complete:
        return "Succeeded"
    if job.failed:
        return "Failed"
    return "Deleting" if job.deleting else "Running"


def job_summaries(flow: Mapping[str, Any], jobs: Iterable[Job]) -> list[dict[str, str]]:
    """One short entry per Job of the flow (every attempt the cache still holds), in name order: its
    step (by the hash its name ends in, `core.naming.job_name`), phase, and times."""
    meta = flow.get("metadata") or {}
    steps = (flow.get("spec") or {}).get("steps") or []
    by_hash = {
        short_hash(str(meta.get("name", "")), str(s.get("name", ""))): str(s.get("name", ""))
        for s in steps
        if isinstance(s, Mapping)
    }
    out: list[dict[str, str]] = []
    for job in sorted(jobs, key=lambda j: j.metadata.name):
        found = _JOB_NAME_END.search(job.metadata.name)
        entry = {
            "name": job.metadata.name,
            "step": by_hash.get(found[1], "") if found else "",
            "uid": job.metadata.uid,
            "phase": job_phase(job),
        }
        if job.status.start_time is not None:
            entry["startTime"] = format_time(job.status.start_time)
        if job.status.completion_time is not None:
            entry["completionTime"] = format_time(job.status.completion_time)
        out.append(entry)
    return out


@dataclass(frozen=True)
class ChildRun:
    """The child flow one attempt of a Flow step ran, as its parent's record lists it (`children`)."""

    step: str
    attempt: int  # 1 = the first, as `zen-flow logs --attempt` counts
    name: str
    uid: str

    def to_wire(self) -> dict[str, object]:
        return {"step": self.step, "attempt": self.attempt, "name": self.name, "uid": self.uid}


def child_runs(flow: JobFlow, jobs: Iterable[Job]) -> list[ChildRun]:
    """The child flows among `jobs` (a Flow step's attempts, `ChildFlowJob`s: one the apiserver refused
    is no flow, and has no UID), each with the step and attempt its name says, of `flow` (the effective
    flow: a matrix item's child is filed under the item's step)."""
    out: list[ChildRun] = []
    for job in jobs:
        if isinstance(job, ChildFlowJob) and job.flow is not None and job.metadata.uid:
            step, attempt = job_step(flow, job.metadata.name)
            out.append(ChildRun(step, attempt, job.metadata.name, job.metadata.uid))
    return out


def children_in(record: Mapping[str, Any]) -> list[ChildRun]:
    """The child flows a record lists (`children`); malformed entries are left out (a record is data
    from a store: read, never trusted), and a record from before the list has none."""
    out: list[ChildRun] = []
    for raw in record.get("children") or []:
        if not isinstance(raw, Mapping):
            continue
        step, attempt, name, uid = (raw.get(k) for k in ("step", "attempt", "name", "uid"))
        number = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0
        if number and isinstance(step, str) and isinstance(name, str) and isinstance(uid, str) and uid:
            out.append(ChildRun(step, number, name, uid))
    return out


def logs_in(record: Mapping[str, Any]) -> list[LogEntry] | None:
    """The step logs a record lists (`logs`); None when it has no such list (its flow's logs were not
    archived: --archive-logs off for it)."""
    raw = record.get("logs")
    if not isinstance(raw, list):
        return None
    return [entry for item in raw if (entry := LogEntry.from_wire(item)) is not None]


def build_record(
    flow: Mapping[str, Any],
    jobs: Iterable[Job],
    archived_at: datetime,
    version: str,
    *,
    logs: Iterable[LogEntry] | None = None,
    children: Iterable[ChildRun] = (),
) -> dict[str, Any]:
    """The record of `flow` (the object as the apiserver stored it) and its `jobs`; with `logs` (its step
    logs archived: planner/archive_logs.py), where each attempt's logs are, or why not; with `children`,
    the child flow each attempt of its Flow steps ran."""
    meta = {k: v for k, v in (flow.get("metadata") or {}).items() if k != "managedFields"}
    kept = {k: flow[k] for k in ("apiVersion", "kind", "spec", "status") if k in flow}
    ran = sorted(children, key=lambda c: (c.step, c.attempt, c.name))
    return {
        "recordVersion": RECORD_VERSION,
        "archivedAt": format_time(archived_at),
        "controllerVersion": version,
        "flow": {**kept, "metadata": meta},
        "jobs": job_summaries(flow, jobs),
        **({"logs": [entry.to_wire() for entry in logs]} if logs is not None else {}),
        **({"children": [run.to_wire() for run in ran]} if ran else {}),
    }


@dataclass(frozen=True)
class RecordRow:
    """What `zen-flow archive list` shows of one record."""

    namespace: str
    name: str
    uid: str
    phase: str
    started: str
    finished: str


class RecordError(ValueError):
    """An object under the prefix that is not a record this version reads."""


def flow_of(record: object) -> dict[str, Any]:
    """The flow a record holds; RecordError (naming what is wrong) for anything else."""
    if not isinstance(record, dict):
        raise RecordError("not a JSON object")
    version = record.get("recordVersion")
    if not isinstance(version, int) or version > RECORD_VERSION:
        raise RecordError(f"recordVersion {version!r} is not one this zen-flow reads (1..{RECORD_VERSION})")
    flow = record.get("flow")
    if not isinstance(flow, dict) or not isinstance(flow.get("metadata"), dict):
        raise RecordError("no flow with metadata in the record")
    return flow


def record_row(record: object) -> RecordRow:
    flow = flow_of(record)
    meta, status = flow["metadata"], flow.get("status") or {}
    return RecordRow(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        phase=str(status.get("phase", "")),
        started=str(status.get("startTime", "")),
        finished=str(status.get("completionTime", "")),
    )
