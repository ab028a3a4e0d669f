"""The `zen-flow archive` command line: its subcommands, flags and help. The commands themselves
(cli.archive) are imported only when one runs, so `zen-flow --help` and completion stay quick."""

from __future__ import annotations

import argparse
from dataclasses import fields

from zen_flow import config

# The --archive-s3-* settings the commands take, as the controller does (flags, then the environment).
STORE_FIELDS = ("archive_s3_endpoint", "archive_s3_bucket", "archive_s3_prefix", "archive_s3_region",
                "archive_s3_ca_file", "archive_s3_timeout")  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    from zen_flow.cli.archive import run

    return run(args)


def add_archive_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "archive",
        help="read ended flows from the flow archive (S3), after their TTL deleted them",
        description="Read ended flows from the flow archive the controller writes (--archive-s3-*; "
        "docs/USER_GUIDE.md, 'Reading the flow archive'). Give the store as the controller's flags or "
        "environment; the keys in $ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID and $ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY.",
    )
    verbs = p.add_subparsers(dest="archive_command", required=True, metavar="COMMAND")
    ls = verbs.add_parser(
        "list",
        help="list archived runs: namespace, name, uid, finished, size (-o wide: phase, started)",
        epilog="example: zen-flow archive list -A --name nightly",
    )
    _store_arguments(ls)
    ls.add_argument("-n", "--namespace", help="namespace (default: default)")
    ls.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    ls.add_argument("--name", help="only the flows of this name (every run of it)")
    ls.add_argument(
        "-o",
        "--output",
        choices=["wide", "yaml", "json"],
        help="wide: with each run's phase and start (reads every record); yaml, json: the rows as data",
    )
    ls.add_argument(
        "--limit",
        type=int,
        default=10_000,
        help="at most this many records, the newest (a warning says when there are more; default 10000)",
    )
    ls.set_defaults(func=_run, command="archive list")
    get = verbs.add_parser(
        "get",
        help="show an archived flow and its steps, as `zen-flow get` does",
        epilog="example: zen-flow archive get nightly -n team-a --uid 6f1c...",
    )
    _store_arguments(get)
    get.add_argument("name")
    get.add_argument("-n", "--namespace", help="namespace (default: default)")
    get.add_argument("--uid", help="the flow (its UID); default: the newest record of any flow of that name")
    get.add_argument(
        "--finished",
        help="with --uid: the run that finished then (the FINISHED of `zen-flow archive list`, e.g. "
        "2026-03-01T12:05:00Z); default: that flow's newest record",
    )
    get.add_argument(
        "-o", "--output", choices=["wide", "yaml", "json"], help="wide: with outputs; yaml, json: the record"
    )
    get.set_defaults(func=_run, command="archive get")
    logs = verbs.add_parser(
        "logs",
        help="print an archived flow's step logs (the controller's --archive-logs)",
        epilog="example: zen-flow archive logs nightly -n team-a --step load",
    )
    _store_arguments(logs)
    logs.add_argument("name")
    logs.add_argument("-n", "--namespace", help="namespace (default: default)")
    logs.add_argument("--step", help="only this step's logs (default: every step's)")
    logs.add_argument(
        "--attempt", type=int, help="the attempt to show, 1 for the first (default: the latest)"
    )
    logs.add_argument("--uid", help="the flow (its UID); default: the flow of the newest record of that name")
    logs.set_defaults(func=_run, command="archive logs")


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    for f in fields(config.Settings):
        if f.name in STORE_FIELDS:
            flag = "--" + f.name.replace("_", "-")
            env = config.ENV_PREFIX + f.name.upper()
            parser.add_argument(flag, dest=f.name, help=f"{f.metadata.get('help', '')} [env {env}]")
