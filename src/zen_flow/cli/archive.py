"""`zen-flow archive list|get|logs`: ended flows read back from the flow archive (`--archive-s3-*`),
long after their TTL deleted them. No cluster is needed: only the store, with the controller's flags and
environment (`ZEN_FLOW_ARCHIVE_S3_*`, the keys in `ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID` and
`ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY`, or files named by their `_FILE` variables). Records are keyed
`<prefix><namespace>/<name>/<uid>/<finished>[-<run>].json` (planner/archive_records.py), one per end of
a run: `list` shows each (cli/archive_list.py), `get` the newest (by the end the key names, then
LastModified) unless told which; `logs` the step logs archived beside them (cli/archived_logs.py).

Exit status: 0 done; 1 the store refused or could not be reached, or no such record; 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

import yaml
from pydantic import ValidationError

from zen_flow import config
from zen_flow.api import JobFlow
from zen_flow.archive_keys import ArchiveKeys
from zen_flow.cli.archive_list import READS_IN_FLIGHT, listed, newness, print_list, with_records
from zen_flow.cli.archive_parser import STORE_FIELDS
from zen_flow.cli.archived_flows import MAX_RUNS, gather, read_recorded, step_items
from zen_flow.cli.archived_logs import labels, print_logs
from zen_flow.cli.colour import painter
from zen_flow.cli.render import flow_detail, table
from zen_flow.core.matrix import effective_flow
from zen_flow.planner.archive_records import DEFAULT_PREFIX, RecordError, flow_of
from zen_flow.s3 import ObjectMissing, S3Store, StoreConfig, StoreError
from zen_flow.setting_checks import archive_problems

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FINISHED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")  # a record key's end, as `list` shows it


def store_config(args: argparse.Namespace) -> StoreConfig:
    """The store of the flags in `args` (then the environment); ValueError naming what is wrong."""
    settings = config.Settings(**_store_values(args))
    if problems := archive_problems(settings):
        raise ValueError("; ".join(problems))
    if not settings.archive_enabled:
        raise ValueError(
            "name the archive: --archive-s3-endpoint and --archive-s3-bucket "
            "(or $ZEN_FLOW_ARCHIVE_S3_ENDPOINT and $ZEN_FLOW_ARCHIVE_S3_BUCKET)"
        )
    return StoreConfig(
        endpoint=settings.archive_s3_endpoint.rstrip("/"),
        bucket=settings.archive_s3_bucket,
        credentials=ArchiveKeys(),
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
        if args.archive_command == "logs" and args.attempt is not None and args.attempt < 1:
            raise ValueError(f"--attempt must be at least 1, not {args.attempt}")
        if args.archive_command == "list" and args.limit < 1:
            raise ValueError(f"--limit must be at least 1, not {args.limit}")
        if args.archive_command == "get" and args.finished and not args.uid:
            raise ValueError("--finished needs --uid (the flow whose run it names)")
        if args.archive_command == "get" and args.finished and not FINISHED.fullmatch(args.finished):
            raise ValueError(
                f"--finished {args.finished!r}: expected the FINISHED of `zen-flow archive list`, in UTC "
                "as YYYY-MM-DDTHH:MM:SSZ (e.g. 2026-03-01T12:05:00Z)"
            )
    except ValueError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_USAGE
    prefix = getattr(args, "archive_s3_prefix", None) or _env_prefix()
    try:
        if args.archive_command == "list":
            return asyncio.run(list_records(store, prefix, args))
        if args.archive_command == "logs":
            return asyncio.run(show_logs(store, prefix, args))
        return asyncio.run(get_record(store, prefix, args))
    except ObjectMissing as err:  # a record listed, then gone before it was read
        print(f"{prog}: a record was deleted while it was read ({err.cause})", file=sys.stderr)
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


async def list_records(config_: StoreConfig, prefix: str, args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else _namespace(args)
    async with S3Store(config_, connections=READS_IN_FLIGHT) as store:
        rows, more = await listed(store, prefix, namespace, args.name, None, args.limit)
        problems: list[str] = []
        if args.output == "wide":
            rows, problems = await with_records(store, rows)
    for line in problems:
        print(f"zen-flow archive list: {line}", file=sys.stderr)
    if more:
        print(
            f"zen-flow archive list: showing the newest {args.limit} records (by finished); there are "
            "more: narrow the list with -n and --name, or raise --limit",
            file=sys.stderr,
        )
    if not rows and args.output not in ("json", "yaml"):
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No archived flows found in {where}.", file=sys.stderr)
        return EXIT_OK
    print_list(rows, args.output)
    return EXIT_OK


async def get_record(config_: StoreConfig, prefix: str, args: argparse.Namespace) -> int:
    namespace = _namespace(args)
    flow = f"{namespace}/{args.name}" + (f" with uid {args.uid}" if args.uid else "")
    async with S3Store(config_) as store:
        runs, _ = await listed(store, prefix, namespace, args.name, args.uid or None, MAX_RUNS)
        if args.finished:
            # Every end of that second: a rerun that ended within the second its run ended has its own.
            runs = [r for r in runs if r.finished == args.finished]
            if not runs:
                print(f"zen-flow archive get: no archived run of {flow} that finished at {args.finished}",
                      file=sys.stderr)  # fmt: skip
                return EXIT_FAILED
            key = max(runs, key=newness).key
            body = await store.get(key)
        else:
            if not runs:
                print(f"zen-flow archive get: no archived flow {flow}", file=sys.stderr)
                return EXIT_FAILED
            newest = max(runs, key=newness)
            key = newest.key
            if len(runs) > 1:
                print(
                    f"{len(runs)} runs of {flow} are archived; showing the newest (uid {newest.uid}, "
                    f"finished {newest.finished}). `zen-flow archive list -n {namespace} --name "
                    f"{args.name}` lists them; choose one with --uid and --finished",
                    file=sys.stderr,
                )
            body = await store.get(key)
    try:
        record = json.loads(body)
        flow_of(record)
        view = record_view(record, args.output, datetime.now(UTC))  # its flow read: a ValidationError
    except (RecordError, ValueError) as err:
        print(
            f"zen-flow archive get: {key} is not a record this zen-flow reads: {_why(err)}", file=sys.stderr
        )
        return EXIT_FAILED
    if args.output in ("json", "yaml"):
        sys.stdout.write(view)
    else:
        painter(sys.stdout)(view)  # coloured on a terminal, as `zen-flow get`
    return EXIT_OK


def _why(err: ValueError) -> str:
    """One line: a record's flow that does not decode names its first wrong field, not pydantic's page."""
    if isinstance(err, ValidationError) and (errors := err.errors()):
        first = errors[0]
        where = ".".join(str(part) for part in ("flow", *first["loc"]))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"{where}: {first['msg']}{more}"
    return str(err)


async def show_logs(config_: StoreConfig, prefix: str, args: argparse.Namespace) -> int:
    """`archive logs`: the step logs of the flow `--uid`, else of the newest record's flow of that name;
    a Flow step's, its child flow's (cli/archived_flows.py). What cannot be shown is said on stderr."""
    namespace = _namespace(args)
    flow = f"{namespace}/{args.name}"
    async with S3Store(config_) as store:
        runs, _ = await listed(store, prefix, namespace, args.name, args.uid or None, MAX_RUNS)
        if not runs and not args.uid:
            print(f"zen-flow archive logs: no archived flow {flow} (a flow not archived yet: give its "
                  "--uid)", file=sys.stderr)  # fmt: skip
            return EXIT_FAILED
        uid = args.uid or max(runs, key=newness).uid
        recorded = await read_recorded(store, [r for r in runs if r.uid == uid])
        steps = step_items(recorded.flow if recorded else None, args.step) if args.step else None
        found = await gather(store, prefix, namespace, args.name, uid, recorded, steps, args.attempt)
        for note in found.notes:
            print(f"zen-flow archive logs: {note.text}", file=sys.stderr)
        if not found.logs:
            which = f" of step {args.step}" if args.step else ""
            which += f" at attempt {args.attempt}" if args.attempt else ""
            print(f"zen-flow archive logs: no archived logs{which} of {flow} (uid {uid}): the controller "
                  "archives them with --archive-logs; `zen-flow archive get -o yaml` lists the record's "
                  "logs, and why one could not be read", file=sys.stderr)  # fmt: skip
            return EXIT_FAILED
        print(f"logs of jobflow {flow} (uid {uid}) from the archive {config_.where}", file=sys.stderr)
        await print_logs(store, labels(found.logs), sys.stdout)
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
