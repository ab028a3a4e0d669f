"""`zen-flow archive list|get`: ended flows read back from the flow archive (`--archive-s3-*`), long after
their TTL deleted them. No cluster is needed: only the store, with the controller's flags and
environment (`ZEN_FLOW_ARCHIVE_S3_*`, the keys in `ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID` and
`ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY`). Records are keyed `<prefix><namespace>/<name>/<uid>.json`
(planner/archive_records.py).

Exit status: 0 done; 1 the store refused or could not be reached, or no such record; 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from zen_flow import config
from zen_flow.api import JobFlow
from zen_flow.cli.archive_parser import STORE_FIELDS
from zen_flow.cli.colour import painter
from zen_flow.cli.render import flow_detail, table
from zen_flow.core.matrix import effective_flow
from zen_flow.planner.archive_records import (
    DEFAULT_PREFIX,
    RecordError,
    RecordRow,
    flow_of,
    list_prefix,
    parse_key,
    record_key,
    record_row,
)
from zen_flow.s3 import ObjectMissing, S3Store, StoreConfig, StoreError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Records read at once by `list` (one GET each: the table shows what only the record holds).
READS_IN_FLIGHT = 16


def store_config(args: argparse.Namespace) -> StoreConfig:
    """The store of the flags in `args` (then the environment); ValueError naming what is wrong."""
    settings = config.Settings(**_store_values(args))
    if problems := config.archive_problems(settings):
        raise ValueError("; ".join(problems))
    if not settings.archive_enabled:
        raise ValueError(
            "name the archive: --archive-s3-endpoint and --archive-s3-bucket "
            "(or $ZEN_FLOW_ARCHIVE_S3_ENDPOINT and $ZEN_FLOW_ARCHIVE_S3_BUCKET)"
        )
    return StoreConfig(
        endpoint=settings.archive_s3_endpoint.rstrip("/"),
        bucket=settings.archive_s3_bucket,
        credentials=config.archive_keys(),
        region=settings.archive_s3_region,
        ca_file=settings.archive_s3_ca_file,
        timeout=settings.archive_s3_timeout,
    )


def _store_values(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in STORE_FIELDS:
        raw = getattr(args, name, None)
        if raw is None:
            raw = os.environ.get(config.ENV_PREFIX + name.upper())
        if raw is not None:
            try:
                values[name] = float(raw) if name == "archive_s3_timeout" else raw
            except ValueError:
                raise ValueError(f"--{name.replace('_', '-')}: not a number: {raw!r}") from None
    return values


def run(args: argparse.Namespace) -> int:
    prog = f"zen-flow archive {args.archive_command}"
    try:
        store = store_config(args)
    except ValueError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_USAGE
    prefix = getattr(args, "archive_s3_prefix", None) or _env_prefix()
    try:
        if args.archive_command == "list":
            return asyncio.run(list_records(store, prefix, args))
        return asyncio.run(get_record(store, prefix, args))
    except ObjectMissing as err:
        # Only `get --uid` reads a key it did not list: no such record (a missing bucket is not this).
        print(f"{prog}: no archived flow {_namespace(args)}/{args.name} with uid {args.uid} ({err.cause})",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    except StoreError as err:
        print(f"{prog}: the archive store {store.where} failed: {err.cause}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _env_prefix() -> str:
    return os.environ.get(config.ENV_PREFIX + "ARCHIVE_S3_PREFIX", DEFAULT_PREFIX)


def _namespace(args: argparse.Namespace) -> str:
    return str(args.namespace or "default")


async def _read_all(store: S3Store, keys: Sequence[str]) -> list[tuple[str, object]]:
    """(key, parsed record or the RecordError) of every key, READS_IN_FLIGHT at a time."""
    slots = asyncio.Semaphore(READS_IN_FLIGHT)

    async def one(key: str) -> tuple[str, object]:
        async with slots:
            body = await store.get(key)
        try:
            return key, json.loads(body)
        except ValueError as err:
            return key, RecordError(f"not JSON: {err}")

    return list(await asyncio.gather(*(one(k) for k in keys)))


async def _records(store: S3Store, prefix: str, namespace: str | None, name: str | None) -> list[str]:
    keys = []
    async for page in store.pages(list_prefix(prefix, namespace, name)):
        for item in page:
            found = parse_key(prefix, item.key)
            if found is not None and (name is None or found.name == name):
                keys.append(item.key)
    return keys


def rows_of(read: Sequence[tuple[str, object]]) -> tuple[list[RecordRow], list[str]]:
    """The rows of the records read, and one line for each object that is not a record."""
    rows, problems = [], []
    for key, record in read:
        try:
            if isinstance(record, RecordError):
                raise record
            rows.append(record_row(record))
        except RecordError as err:
            problems.append(f"{key}: {err}")
    return rows, problems


def archive_table(rows: Sequence[RecordRow]) -> str:
    """`zen-flow archive list`: oldest finished first, as a history reads."""
    ordered = sorted(rows, key=lambda r: (r.finished, r.namespace, r.name, r.uid))
    return table(
        ["NAMESPACE", "NAME", "UID", "PHASE", "STARTED", "FINISHED"],
        [[r.namespace, r.name, r.uid, r.phase or "-", r.started or "-", r.finished or "-"] for r in ordered],
    )


async def list_records(config_: StoreConfig, prefix: str, args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else _namespace(args)
    async with S3Store(config_, connections=READS_IN_FLIGHT) as store:
        read = await _read_all(store, await _records(store, prefix, namespace, args.name))
    rows, problems = rows_of(read)
    for line in problems:
        print(f"zen-flow archive list: skipped {line}", file=sys.stderr)
    if not rows:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No archived flows found in {where}.", file=sys.stderr)
        return EXIT_OK
    sys.stdout.write(archive_table(rows))
    return EXIT_OK


async def get_record(config_: StoreConfig, prefix: str, args: argparse.Namespace) -> int:
    namespace = _namespace(args)
    async with S3Store(config_) as store:
        if args.uid:
            key = record_key(prefix, namespace, args.name, args.uid)
            read = await _read_all(store, [key])
        else:
            read = await _read_all(store, await _records(store, prefix, namespace, args.name))
    rows, problems = rows_of(read)
    if not rows:
        why = f" ({problems[0]})" if problems else ""
        print(f"zen-flow archive get: no archived flow {namespace}/{args.name}{why}", file=sys.stderr)
        return EXIT_FAILED
    latest = max(rows, key=lambda r: r.finished)
    if len(rows) > 1:
        print(
            f"{len(rows)} runs of {namespace}/{args.name} are archived; showing uid {latest.uid}, the last "
            "to finish (choose one with --uid; `zen-flow archive list --name` lists them)",
            file=sys.stderr,
        )
    record = next(
        r for k, r in read if isinstance(r, dict) and flow_of(r)["metadata"].get("uid") == latest.uid
    )
    view = record_view(record, args.output, datetime.now(UTC))
    if args.output in ("json", "yaml"):
        sys.stdout.write(view)
    else:
        painter(sys.stdout)(view)  # coloured on a terminal, as `zen-flow get`
    return EXIT_OK


def record_view(record: dict[str, Any], output: str | None, now: datetime) -> str:
    """The record as `-o` asks: json or yaml whole; else the flow as `zen-flow get` shows it, then when
    it was archived and its Jobs."""
    if output == "json":
        return json.dumps(record, indent=2) + "\n"
    if output == "yaml":
        return str(yaml.safe_dump(record, sort_keys=False))
    flow = effective_flow(JobFlow.model_validate(flow_of(record)))
    shown = flow_detail(flow, now, wide=output == "wide")
    jobs = [j for j in record.get("jobs") or [] if isinstance(j, dict)]
    head = (
        f"Archived:   {record.get('archivedAt', '-')} (controller {record.get('controllerVersion', '?')})\n"
    )
    rows = [
        [str(j.get(k) or "-") for k in ("name", "step", "phase", "startTime", "completionTime")] for j in jobs
    ]
    tail = "\n" + table(["JOB", "STEP", "PHASE", "STARTED", "FINISHED"], rows) if rows else ""
    return head + shown + tail
