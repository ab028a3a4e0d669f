"""The step logs in the flow archive (`--archive-logs`; the I/O is controller/log_archiver.py). Pure.

With the archive on and `--archive-logs` not off (`on`: every flow; `opt-in`: the flows annotated
`workflow.kube-zen.io/archive-logs: "true"`; `opt-out`: every flow but those annotated "false";
`logs_wanted`), each finished attempt of a step (its Job) has its pods' container logs written to the
archive, one object a container:

    <prefix>~logs/<namespace>/<name>/<uid>/<step>/<attempt>/<pod>/<container>.log

`<attempt>` counts from 1 as `zen-flow logs --attempt` does. The names are Kubernetes names (DNS labels
and subdomains: no `/`), so they need no escaping. The logs are a tree of their own (`LOGS_TREE`), beside
the records' `<prefix><namespace>/`: no namespace is named `~logs` (a namespace name has no `~`), so
listing a namespace's records (`zen-flow archive list -n`, `get`) meets no log, and `~` sorts after every
character a namespace name has, so listing every namespace's (`-A`) stops where the logs begin. At most
`--archive-log-limit-bytes` of a container's log is kept (its beginning, as the apiserver's `limitBytes`
cuts it); a cut log ends with `TRUNCATED_MARK` and the limit. The flow's record lists every attempt's
logs (`LogEntry.to_wire`): written, cut, or unavailable and why (no pod left, a container that never
started, reads that failed for --archive-max-delay-seconds).

What waits for the logs: the flow's record is written after them, so everything that waits for the
record (the TTL, a CronJobFlow's history, a parent's deletes of its child flows, a rerun) waits for
them too, bounded alike by `--archive-max-delay-seconds`. A plan's delete of a finished attempt's Job
(`jobRetention: LastAttempt` or `FailedOnly`: a superseded attempt's, a Succeeded step's) waits for its
logs (`logs_hold`), bounded alike: once the writes of its logs have failed for `max_delay`, the Job goes
with a Warning event NotArchived.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from zen_flow.api.constants import ANNOTATION_ARCHIVE_LOGS
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.naming import short_hash
from zen_flow.planner.actions import Action, DeleteJob, EventSpec, Plan
from zen_flow.planner.archiving import PENDING_RECHECK_SECONDS, REASON_NOT_ARCHIVED
from zen_flow.planner.events import WARNING
from zen_flow.planner.lifecycle import step_attempt
from zen_flow.planner.status import cut
from zen_flow.planner.timing import after, normalize, until

DEFAULT_LIMIT_BYTES = 1024 * 1024
TRUNCATED_MARK = "[zen-flow: log truncated: only its first"


# --archive-logs: the operator's choice of which flows' logs are archived (`logs_wanted`).
LOG_MODES = ("off", "on", "opt-in", "opt-out")


def logs_wanted(flow: JobFlow, mode: str) -> bool:
    """Are `flow`'s step logs archived under --archive-logs `mode`: never (off) or always (on), whatever
    its annotation says (a tenant neither writes into the operator's bucket nor evades a compliance
    archive); opt-in: only when annotated "true"; opt-out: unless annotated "false" (any case)."""
    value = flow.metadata.annotations.get(ANNOTATION_ARCHIVE_LOGS, "").strip().lower()
    if mode == "opt-in":
        return value == "true"
    if mode == "opt-out":
        return value != "false"
    return mode == "on"


# The logs' tree under the archive's prefix (the module's docstring: why `~`).
LOGS_TREE = "~logs/"


def logs_prefix(prefix: str, namespace: str, name: str, uid: str, step: str = "", attempt: int = 0) -> str:
    """The key prefix of the logs of flow `uid` (of one `step`, of one `attempt` of it when given)."""
    out = f"{prefix}{LOGS_TREE}{namespace}/{name}/{uid}/"
    if step:
        out += f"{step}/"
        if attempt:
            out += f"{attempt}/"
    return out


def log_key(
    prefix: str, namespace: str, name: str, uid: str, step: str, attempt: int, pod: str, container: str
) -> str:
    """The key of one container's log of one attempt (1 = the first) of a step."""
    return f"{logs_prefix(prefix, namespace, name, uid, step, attempt)}{pod}/{container}.log"


@dataclass(frozen=True)
class LogKey:
    step: str
    attempt: int
    pod: str
    container: str


def parse_log_key(prefix: str, namespace: str, name: str, uid: str, key: str) -> LogKey | None:
    """What a log's key names (under the flow's `logs_prefix`); None for any other object."""
    base = logs_prefix(prefix, namespace, name, uid)
    if not key.startswith(base) or not key.endswith(".log"):
        return None
    parts = key[len(base) : -len(".log")].split("/")
    # isascii(): str.isdigit() takes a superscript (int() refuses it) and other scripts' digits.
    if len(parts) != 4 or not all(parts) or not (parts[1].isascii() and parts[1].isdigit()):
        return None
    return LogKey(parts[0], int(parts[1]), parts[2], parts[3])


def capped(body: bytes, limit: int) -> tuple[bytes, bool]:
    """The log as kept: `body` (read with limitBytes=limit+1) cut to `limit` bytes, with a last line
    saying so when it was longer; and whether it was cut."""
    if len(body) <= limit:
        return body, False
    kept = body[:limit]
    newline = b"" if kept.endswith(b"\n") or not kept else b"\n"
    return kept + newline + f"{TRUNCATED_MARK} {limit} bytes are kept]\n".encode(), True


@dataclass(frozen=True)
class LogEntry:
    """One container's log of one attempt, as the flow's record lists it; `pod` and `container` empty,
    with `unavailable`, when the attempt has no pod left to read."""

    job: str
    step: str
    attempt: int
    pod: str = ""
    container: str = ""
    key: str = ""  # where it was written ("" when unavailable)
    size: int = 0  # bytes of the log kept
    truncated: bool = False
    unavailable: str = ""  # why it could not be read

    def to_wire(self) -> dict[str, object]:
        out: dict[str, object] = {"job": self.job, "step": self.step, "attempt": self.attempt}
        if self.pod:
            out["pod"] = self.pod
        if self.container:
            out["container"] = self.container
        if self.key:
            out["key"] = self.key
            out["bytes"] = self.size
        if self.truncated:
            out["truncated"] = True
        if self.unavailable:
            out["unavailable"] = self.unavailable
        return out

    @classmethod
    def from_wire(cls, raw: object) -> LogEntry | None:
        """An entry of a record's `logs` (`to_wire`); None for anything else (a record is data from a
        store: read, never trusted)."""
        if not isinstance(raw, Mapping):
            return None
        step, attempt = raw.get("step"), raw.get("attempt")
        if not isinstance(step, str) or not isinstance(attempt, int) or isinstance(attempt, bool):
            return None
        text = {k: v if isinstance(v := raw.get(k), str) else "" for k in ("job", "pod", "container", "key")}
        size = raw.get("bytes")
        why = raw.get("unavailable")
        return cls(
            text["job"],
            step,
            attempt,
            text["pod"],
            text["container"],
            text["key"],
            size if isinstance(size, int) and not isinstance(size, bool) else 0,
            raw.get("truncated") is True,
            why if isinstance(why, str) else "",
        )


@dataclass(frozen=True)
class UnloggedJob:
    """A finished Job whose logs are not written yet."""

    failed_since: datetime | None = None  # its writes fail since then (None: untried or in flight)
    cause: str = ""


@dataclass(frozen=True)
class LogsVerdict:
    plan: Plan
    unlogged_deletes: tuple[str, ...] = ()  # the Jobs it deletes without their logs (overdue)


def logs_hold(
    plan: Plan, unlogged: Mapping[str, UnloggedJob], now: datetime, *, max_delay: float
) -> LogsVerdict:
    """`plan` with its deletes of finished Jobs whose logs are not written (`unlogged`, by Job name) held
    back, until the logs are written or their writes have failed for `max_delay`; an overdue delete goes,
    with a Warning event NotArchived naming the Jobs."""
    if not unlogged or not any(isinstance(a, DeleteJob) and a.name in unlogged for a in plan.actions):
        return LogsVerdict(plan)
    now = normalize(now)
    kept: list[Action] = []
    gone: list[str] = []
    wake: list[float] = []
    for action in plan.actions:
        if isinstance(action, DeleteJob) and (record := unlogged.get(action.name)) is not None:
            if record.failed_since is None:  # being written: the writer wakes the flow when done
                wake.append(PENDING_RECHECK_SECONDS)
                continue
            due = after(record.failed_since, max_delay)
            if now < due:
                wake.append(min(until(now, due), PENDING_RECHECK_SECONDS))
                continue
            gone.append(action.name)
        kept.append(action)
    events = plan.events
    if gone:
        said = (
            f"Job(s) {', '.join(sorted(gone))} deleted without their logs in the archive: they could not "
            f"be written for --archive-max-delay-seconds={max_delay:g}s"
        )
        events = (*events, EventSpec(WARNING, REASON_NOT_ARCHIVED, cut(said, 1024), acted=True))
    requeue = min([*wake, *([plan.requeue_after] if plan.requeue_after is not None else [])], default=None)
    out = replace(plan, actions=tuple(kept), events=events, requeue_after=requeue)
    return LogsVerdict(out, unlogged_deletes=tuple(sorted(gone)))


def job_step(flow: JobFlow, job: str) -> tuple[str, int]:
    """(step, attempt counted from 1) of the flow's Job named `job`; (the Job's name, 1) when no step of
    the flow has the hash it ends in (its logs are kept under its own name, not lost)."""
    steps = {short_hash(flow.metadata.name, s.name): s.name for s in flow.spec.steps}
    step, attempt = step_attempt(job, steps)
    return (step, attempt + 1) if step else (job, 1)


def step_containers(flow: JobFlow, step: str) -> tuple[str, ...]:
    """The containers the step's Job template names (not its init containers, nor the transfer containers
    zen-flow adds): what an attempt's pod is known to have had once the pod is gone; none when the flow
    has no such step or its template does not say."""
    spec = next((s for s in flow.spec.steps if s.name == step), None)
    pod = ((spec.template or {}).get("spec") or {}).get("template") or {} if spec is not None else {}
    containers = (pod.get("spec") or {}).get("containers") or []
    return tuple(c["name"] for c in containers if isinstance(c, dict) and isinstance(c.get("name"), str))
