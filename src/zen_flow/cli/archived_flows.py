"""A flow's archived step logs with its Flow steps followed into their child flows, as `zen-flow logs`
follows them live: what `zen-flow archive logs` prints, and what `zen-flow logs` falls back to.

A Flow step runs a child JobFlow, archived as a flow of its own, under its own name and UID
(planner/archive_records.py). The parent's record names the child each attempt ran (`children`; an
older record only the latest attempt's, in its step's `jobRef`; an earlier attempt's child is then found
by its name and its record's owner reference to the parent). The child's steps are shown in its own
record's dependency order, each its latest attempt, prefixed `[step/child-step]` (and theirs in turn, down
to the flows' nesting limit), as the live path prefixes them. What cannot be shown is said, not left
out: a log its record says could not be read (and why), a child whose record is not in the archive, a
child whose logs were not archived, a latest attempt that made no child (an earlier attempt's is not
shown in its place), a child past the nesting limit or already walked (a record the controller would
not write: each child is followed once).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from zen_flow.api import JobFlow
from zen_flow.api.constants import MAX_FLOW_DEPTH
from zen_flow.api.flow_status import StepStatus
from zen_flow.api.transfer import TRANSFER_NAMES
from zen_flow.cli.archive_list import Archived, listed, newness
from zen_flow.cli.archived_logs import ArchivedLog, find_logs
from zen_flow.cli.render import dependency_order
from zen_flow.core.matrix import effective_flow
from zen_flow.core.naming import job_name
from zen_flow.planner.archive_logs import LogEntry
from zen_flow.planner.archive_records import ChildRun, RecordError, children_in, flow_of, logs_in
from zen_flow.s3 import S3Store, StoreError

# The runs of one flow name read from (a daily flow's ten years).
MAX_RUNS = 10_000
# Why a child's record may be missing, as the archive's rules make it (docs/OPERATOR_GUIDE.md).
NO_RECORD = (
    "not archived yet (a child is archived when it ends), or deleted without a record after the store "
    "kept failing for --archive-max-delay-seconds (a Warning event NotArchived said so)"
)
NO_LOGS = (
    "its step logs were not archived (--archive-logs was off, or opt-in/opt-out and its "
    "workflow.kube-zen.io/archive-logs annotation left it out)"
)


@dataclass(frozen=True)
class Recorded:
    """What a flow's newest record says: its effective flow (matrix steps expanded into their items),
    the child flows its Flow steps ran, its step logs (None: they were not archived). `live`: `flow` is
    the flow in the cluster, not the record's: its status says each step's latest attempt and the child
    it runs, and the record (of the run that ended last: an earlier run's while the flow is rerun) only
    which children and logs were archived."""

    flow: JobFlow
    children: tuple[ChildRun, ...] = ()
    logs: tuple[LogEntry, ...] | None = None
    live: bool = False


@dataclass(frozen=True)
class Note:
    """What cannot be shown. `archived`: the archive holds what it says (a record saying a log could not
    be read, or was not archived); else it says what the archive lacks (a child not archived yet, an
    attempt that made no child), which of a live flow the cluster says better."""

    text: str
    archived: bool


@dataclass
class Gathered:
    """The logs to print, each with the step as shown (`step`, `flow-step/child-step`), and the notes on
    what cannot be shown."""

    logs: list[tuple[str, ArchivedLog]] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class _Where:
    """The flow a walk is in: its name and UID, how its steps are shown (`head`), how deep its children
    nest, and the flows walked so far."""

    namespace: str
    name: str
    uid: str
    head: str
    depth: int
    walked: set[str]


async def read_recorded(store: S3Store, runs: Sequence[Archived]) -> Recorded | None:
    """The newest of `runs`' records; None when there is none, or it cannot be read."""
    if not runs:
        return None
    try:
        record = json.loads(await store.get(max(runs, key=newness).key))
        flow = effective_flow(JobFlow.model_validate(flow_of(record)))
    except (StoreError, RecordError, ValueError):
        return None
    logs = logs_in(record)
    return Recorded(flow, tuple(children_in(record)), tuple(logs) if logs is not None else None)


def step_order(flow: JobFlow | None) -> list[str]:
    """The recorded flow's steps in dependency order, as `zen-flow logs` shows them; none without a
    record (the logs are then in name order)."""
    return [name for name, _ in dependency_order(flow)] if flow is not None else []


def step_items(flow: JobFlow | None, step: str) -> list[str]:
    """The steps whose logs `step` names: a matrix step's items (its logs are filed under build-0, ...),
    as `zen-flow logs` takes a live flow's; else the step itself."""
    items = flow.spec.matrix_groups.get(step) if flow is not None else None
    return list(items) if items else [step]


def no_such_attempt(step: str, status: StepStatus, attempt: int) -> str | None:
    """What `--attempt N` past the step's attempts (retryCount + 1) gets told; None for one it had."""
    attempts = status.retry_count + 1
    if 1 <= attempt <= attempts:
        return None
    which = "attempt 1" if attempts == 1 else f"attempts 1-{attempts}"
    return f"step {step} has {which} (--attempt {attempt})"


async def gather(
    store: S3Store,
    prefix: str,
    namespace: str,
    name: str,
    uid: str,
    recorded: Recorded | None,
    steps: Sequence[str] | None = None,
    attempt: int | None = None,
    head: str = "",
    depth: int = 1,
    walked: set[str] | None = None,
) -> Gathered:
    """The archived logs of flow `uid`'s `steps` (None: every step, in the dependency order of its
    record), each step's `attempt` (None: its latest), a Flow step's being its child flow's (every step
    of it, their latest attempts), shown as `head` + step. `depth`: how deep `uid`'s children nest
    (1: `uid` is not a child); `walked`: the flows followed so far (each is followed once)."""
    walked = walked if walked is not None else set()
    walked.add(uid)
    flow = recorded.flow if recorded is not None else None
    flow_steps = {s.name for s in flow.spec.steps if s.is_flow} if flow is not None else set()
    order = list(steps) if steps is not None else step_order(flow)
    plain = [s for s in steps if s not in flow_steps] if steps is not None else None
    entries = recorded.logs if recorded is not None and recorded.logs is not None else ()
    latest: dict[str, int] = {}
    for entry in entries:
        latest[entry.step] = max(latest.get(entry.step, 0), entry.attempt)
    if recorded is not None and recorded.live:
        # The flow in the cluster says each step's latest attempt: a rerun's, which its record (of an
        # earlier run) does not have, is not shown an earlier attempt's logs in its place.
        for status in recorded.flow.status.steps:
            latest[status.name] = max(latest.get(status.name, 0), status.retry_count + 1)
    found = (
        await find_logs(store, prefix, namespace, name, uid, plain, attempt, order, latest)
        if plain != []
        else []
    )
    by_step: dict[str, list[ArchivedLog]] = {}
    for log in found:
        by_step.setdefault(log.step, []).append(log)
        latest[log.step] = max(latest.get(log.step, 0), log.attempt)
    out = Gathered()
    shown = [*order, *(s for s in by_step if s not in order)]
    if steps is None:  # a step the record lists logs of, though not a step of its flow
        shown += sorted({e.step for e in entries} - set(shown))
    for step in shown:
        if step in flow_steps:
            if depth <= MAX_FLOW_DEPTH:
                where = _Where(namespace, name, uid, head, depth, walked)
                await _child(store, prefix, where, recorded, step, attempt, out)
            else:  # the planner makes no child this deep: a record that says one ran is not followed
                deep = f"child flows nest at most {MAX_FLOW_DEPTH} deep: its child is not shown"
                out.notes.append(Note(f"step {head}{step}: {deep}", archived=True))
            continue
        out.logs.extend((f"{head}{step}", log) for log in by_step.get(step, []))
        which = attempt if attempt is not None else latest.get(step)
        out.notes.extend(
            Note(_unavailable(f"{head}{step}", e), archived=True)
            for e in entries
            if (e.step, e.attempt) == (step, which) and e.unavailable and e.container not in TRANSFER_NAMES
        )
    return out


def _unavailable(step: str, entry: LogEntry) -> str:
    where = f", container {entry.container} of pod {entry.pod}" if entry.container else ""
    return f"step {step} attempt {entry.attempt}{where}: no log archived: {entry.unavailable}"


async def _child(
    store: S3Store,
    prefix: str,
    where: _Where,
    recorded: Recorded | None,
    step: str,
    attempt: int | None,
    out: Gathered,
) -> None:
    """Gather into `out` the logs of the child flow the Flow step `step` ran (at `attempt`, else its
    latest), or say why they cannot be shown."""
    namespace, head = where.namespace, where.head
    ran = await child_run(store, prefix, namespace, where.name, where.uid, recorded, step, attempt)
    if isinstance(ran, Note):
        out.notes.append(ran)
        return
    said = f"step {head}{step} attempt {ran.attempt} ran child flow {ran.name} (uid {ran.uid})"
    if ran.uid in where.walked:
        # A record naming a flow above it, or one already shown, as a child (not what the controller
        # writes): followed once, so a record naming itself does not multiply the walk.
        out.notes.append(Note(f"{said}: a flow this walk already shows: not followed again", archived=True))
        return
    runs, _ = await listed(store, prefix, namespace, ran.name, ran.uid, MAX_RUNS)
    child = await read_recorded(store, runs)
    if child is not None and child.logs is None:
        out.notes.append(Note(f"{said}: {NO_LOGS}", archived=True))
        return
    sub = await gather(
        store,
        prefix,
        namespace,
        ran.name,
        ran.uid,
        child,
        None,
        None,
        f"{head}{step}/",
        where.depth + 1,
        where.walked,
    )
    if child is None:
        # Its logs may be there though its record is not (written first): shown in name order.
        out.notes.append(Note(f"{said}: its record is not in the archive: {NO_RECORD}", archived=False))
    out.logs.extend(sub.logs)
    out.notes.extend(sub.notes)


async def child_run(
    store: S3Store,
    prefix: str,
    namespace: str,
    parent: str,
    parent_uid: str,
    recorded: Recorded | None,
    step: str,
    attempt: int | None,
) -> ChildRun | Note:
    """The child flow the Flow step `step` of flow `parent_uid` ran at `attempt` (None: its latest, as
    its status counts attempts), or why none can be named."""
    flow = recorded.flow if recorded is not None else None
    status = flow.status.step(step) if flow is not None else None
    listed_runs = [c for c in recorded.children if c.step == step] if recorded is not None else []
    ref = status.job_ref if status is not None else None
    if status is None:  # a record without the step's status: the newest child it lists
        if attempt is None:
            if listed_runs:
                return max(listed_runs, key=lambda c: c.attempt)
            said = f"step {step} of jobflow {parent} made no child flow (its archived record names none)"
            return Note(said, archived=False)
        if (match := next((c for c in listed_runs if c.attempt == attempt), None)) is not None:
            return match
        return await _named(store, prefix, namespace, parent, parent_uid, step, attempt, "")
    latest = status.retry_count + 1
    if attempt is not None and (out_of := no_such_attempt(step, status, attempt)) is not None:
        return Note(out_of, archived=False)
    wanted = attempt if attempt is not None else latest
    if (match := next((c for c in listed_runs if c.attempt == wanted), None)) is not None:
        return match
    # The step's jobRef names its latest attempt's child (a record written before `children` has only
    # that; a live flow's is the child it runs now), unless it still names an earlier attempt's.
    earlier = {c.name for c in listed_runs if c.attempt < latest}
    earlier |= {job_name(parent, step, n) for n in range(latest - 1)}
    if wanted == latest and ref is not None and ref.name and ref.name not in earlier:
        return await _named(
            store, prefix, namespace, parent, parent_uid, step, wanted, ref.name, ref.uid or ""
        )
    name = job_name(parent, step, wanted - 1)
    uid = (ref.uid or "") if ref is not None and ref.name == name else ""
    found = await _named(store, prefix, namespace, parent, parent_uid, step, wanted, name, uid)
    if attempt is None and isinstance(found, Note):
        # Its latest attempt named no child (its creation refused, or not made yet): an earlier
        # attempt's is not shown in its place.
        why = f": {status.message}" if status.message else ""
        others = sorted({c.attempt for c in listed_runs if c.attempt < latest})
        hint = f"; an earlier attempt's: --attempt {others[-1]}" if others else ""
        said = f"step {step} attempt {latest} of jobflow {parent} names no child flow{why}{hint}"
        return Note(said, archived=False)
    return found


async def _named(
    store: S3Store,
    prefix: str,
    namespace: str,
    parent: str,
    parent_uid: str,
    step: str,
    attempt: int,
    name: str,
    uid: str = "",
) -> ChildRun | Note:
    """The child `name` (job_name's for that attempt when "") with `uid`, or else the UID of its record
    that names `parent_uid` as its owner; why not when there is none."""
    name = name or job_name(parent, step, attempt - 1)
    if not uid:
        uid = await _owned(store, prefix, namespace, name, parent_uid)
    if not uid:
        said = (
            f"step {step} attempt {attempt} ran child flow {name}: no archived record of it names jobflow "
            f"{parent} (uid {parent_uid}) as its parent: {NO_RECORD}"
        )
        return Note(said, archived=False)
    return ChildRun(step, attempt, name, uid)


async def _owned(store: S3Store, prefix: str, namespace: str, name: str, parent_uid: str) -> str:
    """The UID of the archived flow `name` whose record says flow `parent_uid` owns it; "" for none (a
    flow of that name made by another flow of the parent's name, deleted and created again, is not it)."""
    runs, _ = await listed(store, prefix, namespace, name, None, MAX_RUNS)
    for uid in sorted({r.uid for r in runs}):
        child = await read_recorded(store, [r for r in runs if r.uid == uid])
        if child is not None and any(o.uid == parent_uid for o in child.flow.metadata.owner_references):
            return uid
    return ""
