"""`zen-flow archive list`, and the records `get` chooses from: rows built from the keys alone
(`<prefix><namespace>/<name>/<uid>/<finished>[-<run>].json`, planner/archive_records.py) and the LIST answer's
LastModified and Size, page by page, so a list of 100,000 records costs 100 requests and reads none;
`-o wide` reads each record for its phase and start (READS_IN_FLIGHT at a time). At most `--limit` rows
(the newest), with a warning on stderr when there were more."""

from __future__ import annotations

import asyncio
import heapq
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import yaml

from zen_flow.cli.render import table
from zen_flow.planner.archive_logs import LOGS_TREE
from zen_flow.planner.archive_records import RecordError, list_prefix, parse_key, record_row
from zen_flow.s3 import ObjectMissing, S3Store

READS_IN_FLIGHT = 16
DEFAULT_LIMIT = 10_000


@dataclass(frozen=True)
class Archived:
    """One record, as the list of objects shows it (and, with `-o wide`, its phase and start)."""

    namespace: str
    name: str
    uid: str
    finished: str
    key: str
    size: int
    last_modified: str
    phase: str = ""
    started: str = ""


async def listed(
    store: S3Store,
    prefix: str,
    namespace: str | None,
    name: str | None = None,
    uid: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> tuple[list[Archived], bool]:
    """The records of `namespace` (None: every one), of flows named `name`, of the flow `uid`: the
    newest `limit` of them (by finished, then LastModified: the keys come in UID order, so every key is
    collected, no record read); and whether there were more."""
    rows: list[Archived] = []
    # Every namespace's records sort before the step logs' tree: a list of them all stops there.
    logs, past = prefix + LOGS_TREE, False
    async for page in store.pages(list_prefix(prefix, namespace, name, uid)):
        for item in page:
            if past := item.key >= logs:
                break
            found = parse_key(prefix, item.key)
            if found is None or (name and found.name != name) or (uid and found.uid != uid):
                continue  # another object under the prefix; another name (a -A --name list)
            rows.append(
                Archived(
                    found.namespace,
                    found.name,
                    found.uid,
                    found.finished,
                    item.key,
                    item.size,
                    item.last_modified,
                )
            )
        if past:
            break
    if len(rows) <= limit:
        return rows, False
    return heapq.nlargest(limit, rows, key=newness), True


def newness(row: Archived) -> tuple[str, str, str]:
    """Newer records sort after older ones: by the end the key names (seconds), then by when the store
    got the object (a rerun ending within the same second), then by key."""
    return (row.finished, row.last_modified, row.key)


async def with_records(store: S3Store, rows: Sequence[Archived]) -> tuple[list[Archived], list[str]]:
    """The rows with their records' phase and start (`-o wide`), and a line for each that is no record."""
    slots = asyncio.Semaphore(READS_IN_FLIGHT)
    problems: list[str] = []

    async def one(row: Archived) -> Archived:
        try:
            async with slots:
                body = await store.get(row.key)
            found = record_row(json.loads(body))
        except ObjectMissing:
            problems.append(f"{row.key}: deleted while listed")
        except (RecordError, ValueError) as err:  # ValueError: not JSON
            problems.append(f"{row.key}: {err}")
        else:
            return replace(row, phase=found.phase, started=found.started)
        return row

    return list(await asyncio.gather(*(one(r) for r in rows))), problems


def archive_table(rows: Sequence[Archived], *, wide: bool = False) -> str:
    """Oldest finished first, as a history reads."""
    ordered = sorted(rows, key=lambda r: (r.finished, r.namespace, r.name, r.uid))
    if wide:
        return table(
            ["NAMESPACE", "NAME", "UID", "PHASE", "STARTED", "FINISHED", "SIZE"],
            [[r.namespace, r.name, r.uid, r.phase or "-", r.started or "-", r.finished, str(r.size)]
             for r in ordered],
        )  # fmt: skip
    return table(
        ["NAMESPACE", "NAME", "UID", "FINISHED", "SIZE"],
        [[r.namespace, r.name, r.uid, r.finished, str(r.size)] for r in ordered],
    )


def archive_data(rows: Sequence[Archived]) -> list[dict[str, object]]:
    """`-o json|yaml`: one object per record, oldest finished first, camelCase as the API's."""
    ordered = sorted(rows, key=lambda r: (r.finished, r.namespace, r.name, r.uid))
    return [
        {("lastModified" if k == "last_modified" else k): v for k, v in asdict(r).items() if v != ""}
        for r in ordered
    ]


def print_list(rows: Sequence[Archived], output: str | None) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(archive_data(rows), indent=2) + "\n")
    elif output == "yaml":
        sys.stdout.write(str(yaml.safe_dump(archive_data(rows), sort_keys=False)))
    else:
        sys.stdout.write(archive_table(rows, wide=output == "wide"))
