"""The `zen-flow cron` command line: its subcommands, flags and help. The commands themselves (cli.cron) are
imported only when one runs, so `zen-flow --help` and completion stay quick."""

from __future__ import annotations

import argparse
from collections.abc import Callable

DESCRIPTION = """\
CronJobFlows (scheduled flows), driven as `argo cron` drives CronWorkflows and kubectl CronJobs.
`trigger` creates a run now, as `kubectl create job --from=cronjob/NAME` or `argo submit --from
cronwf/NAME` do: named NAME-manual-<5 random characters> and annotated
workflow.kube-zen.io/instantiate=manual, it counts for concurrencyPolicy and the history limits like a
scheduled run (docs/API.md, "Manual runs"); `--scheduled-time` sets the time its steps process
({{.JobFlow.ScheduledTime}}), not its place among the runs. `backfill` runs the run times of a past range
that were not run (an outage, a suspension), as `argo cron backfill` does: each run is named as the
controller names that run time's run, so one whose run still exists is skipped (docs/API.md,
"Backfill"). `resume` starts the latest run time missed while suspended (within
startingDeadlineSeconds)."""

EXAMPLES = """\
examples:
  zen-flow cron list -A
  zen-flow cron get nightly-report -n team-a
  zen-flow cron trigger nightly-report     # jobflow team-a/nightly-report-manual-x7kqd created
  zen-flow cron trigger nightly-report --scheduled-time 2026-12-06   # redo that night
  zen-flow cron backfill nightly-report --from 2026-12-01 --to 2026-12-03 --dry-run   # the nights missed
  zen-flow cron suspend nightly-report"""


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    def invoke(args: argparse.Namespace) -> int:
        from zen_flow.cli import cron, cron_backfill, session

        command = {
            "list": cron.list_crons,
            "get": cron.get_cron,
            "trigger": cron.trigger,
            "backfill": cron_backfill.backfill,
            "suspend": cron.suspend,
            "resume": cron.suspend,
        }[name]
        args.command = f"cron {args.cron_command}"  # errors say `zen-flow cron trigger: ...`
        return session.run(command, args)

    return invoke


def add_cron_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from zen_flow.cli.completion import cron_names
    from zen_flow.cli.session import add_client_arguments

    cron = sub.add_parser(
        "cron",
        help="list, show, trigger, backfill, suspend and resume CronJobFlows",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = cron.add_subparsers(dest="cron_command", required=True, metavar="COMMAND")

    def command(
        name: str, help: str, example: str, *, aliases: tuple[str, ...] = (), all_namespaces: bool = False
    ) -> argparse.ArgumentParser:
        p = verbs.add_parser(
            name, aliases=list(aliases), help=help, description=f"{help}.", epilog=f"example: {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        add_client_arguments(p, all_namespaces=all_namespaces)
        p.set_defaults(func=_command(name), cron_command=name)
        return p

    def named(p: argparse.ArgumentParser) -> None:
        p.add_argument("name").completer = cron_names  # type: ignore[attr-defined]  # read by argcomplete

    p = command(
        "list",
        "list CronJobFlows: schedule, time zone, suspend, active runs, last schedule and success, next run",
        "zen-flow cron list -A",
        all_namespaces=True,
    )
    p.add_argument(
        "-o", "--output", choices=["name"], help="name: one `cronjobflow.workflow.kube-zen.io/NAME` per line"
    )
    p = command(
        "get",
        "show a CronJobFlow: its spec, status, next 3 run times and runs, newest first",
        "zen-flow cron get nightly-report",
    )
    named(p)
    p.add_argument(
        "-o", "--output", choices=["yaml", "json", "name"], help="yaml, json: the object; name: as kubectl"
    )
    p = command(
        "trigger",
        "create a run of a CronJobFlow now, from its template (named NAME-manual-<5 random characters>)",
        "zen-flow cron trigger nightly-report",
        aliases=("run-now",),
    )
    named(p)
    p.add_argument(
        "--scheduled-time",
        metavar="TIME",
        help="the time the run's steps process, {{.JobFlow.ScheduledTime}} (a past night, run again): "
        "RFC 3339 (2026-12-07T02:30:00Z) or a date YYYY-MM-DD, midnight in the CronJobFlow's time zone; "
        "the run is still a manual run, placed among the runs at its creation",
    )
    p = command(
        "backfill",
        "create a CronJobFlow's runs for the run times of a past range that were not run, oldest first "
        "(named as the controller names them: a run time that has a run is skipped)",
        "zen-flow cron backfill nightly-report --from 2026-12-01 --to 2026-12-03",
    )
    named(p)
    p.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        required=True,
        help="the first time of the range: RFC 3339 (2026-12-01T00:00:00Z) or a date YYYY-MM-DD, from its "
        "midnight in the CronJobFlow's time zone",
    )
    p.add_argument(
        "--to",
        dest="end",
        metavar="TIME",
        help="the last time of the range, included (default: now): RFC 3339 or a date YYYY-MM-DD, to its end "
        "in the CronJobFlow's time zone; run times after now (this machine's clock) are left to the "
        "controller",
    )
    p.add_argument(
        "--max-runs",
        type=_positive,
        default=100,
        metavar="N",
        help="refuse a range of more than N run times, creating nothing (default 100)",
    )
    p.add_argument(
        "--parallel",
        type=_positive,
        default=1,
        metavar="N",
        help="concurrencyPolicy Allow: how many of the range's runs may be active at once (default 1; under "
        "Forbid and Replace only 1: each run waits until no run of the CronJobFlow is active); the command "
        "returns once the last is created",
    )
    p.add_argument("--dry-run", action="store_true", help="print the run times and run names; create nothing")
    for verb, what in (("suspend", "create no new run (active runs go on)"), ("resume", "create runs again")):
        p = command(verb, f"{verb} a CronJobFlow: {what}", f"zen-flow cron {verb} nightly-report")
        named(p)


def _positive(text: str) -> int:
    """A whole number of at least 1 (`--max-runs`, `--parallel`); argparse names the option."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value
