"""The `zen-flow` command: run the controller, validate flows offline, drive flows with your own
kubeconfig (list, get, watch, submit, logs, approve, reject, stop, retry, resubmit, suspend, resume,
delete, graph, or a web page served on your machine: ui) and CronJobFlows (cron list, get, trigger,
suspend, resume), read the flow archive (archive list, get), show a sharded controller's shards
(shards), move artifacts (in a pod)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from zen_flow import __version__, config
from zen_flow.core.shards import MAX_SHARDS


def _cmd_version(_: argparse.Namespace) -> int:
    from zen_flow.validation import BUILD  # the image's are compiled (mypyc); a pip install's, Python

    print(f"zen-flow {__version__}")
    print(f"admission rules: {BUILD}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from zen_flow.controller.app import run_controller

    try:
        settings = config.load(args)
    except ValueError as exc:
        print(f"zen-flow run: {exc}", file=sys.stderr)
        return 2
    return run_controller(settings)


def _cmd_validate(args: argparse.Namespace) -> int:
    from zen_flow.cli.overrides import parse_overrides
    from zen_flow.cli.validate import EXIT_UNREADABLE, validate_paths

    try:
        overrides = parse_overrides(args.parameters)
    except ValueError as exc:
        print(f"zen-flow validate: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        return validate_paths(args.paths, sys.stdout, sys.stderr, overrides)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise  # the reader went away (`| head`): zen_flow.__main__ ends quietly
    except Exception as exc:  # a bug of ours must still be one line, not a traceback
        print(f"zen-flow validate: internal error: {exc!r}", file=sys.stderr)
        return EXIT_UNREADABLE


def _cmd_completion(args: argparse.Namespace) -> int:
    from zen_flow.cli.completion import script

    print(script(args.shell), end="")
    return 0


def _cmd_artifact(args: argparse.Namespace) -> int:
    from zen_flow.cli.artifact import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zen-flow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=_cmd_version)

    p = sub.add_parser("run", help="run the controller (and its webhooks, metrics and probes)")
    config.add_arguments(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "validate",
        help="validate JobFlow YAML files or directories offline",
        description="Validate JobFlow YAML files or directories offline, with the webhook's rules: one line\n"
        "per error on stdout (FILE: field: problem), then how many flows were checked on stderr.\n"
        "Directories are searched for *.yaml and *.yml; documents that are not JobFlows are skipped.\n"
        "Exit status: 0 every flow is valid; 2 a flow is invalid or a file could not be read.",
        epilog="example: zen-flow validate flows/ -p env=prod",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override the flows' argument NAME (spec.arguments.parameters) before validating",
    )
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser(
        "artifact", help="move a step's artifacts: run by zen-flow's containers in the step's pod"
    )
    from zen_flow.cli.artifact import add_arguments

    add_arguments(p)
    p.set_defaults(func=_cmd_artifact)

    _add_flow_commands(sub)

    from zen_flow.cli.cron_parser import add_cron_commands

    add_cron_commands(sub)

    from zen_flow.cli.archive_parser import add_archive_commands

    add_archive_commands(sub)

    _add_shards_command(sub)

    from zen_flow.cli.completion import SHELLS

    p = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for bash, zsh or fish: commands, options, their values and\n"
        "the names of flows and steps on the cluster (with your kubeconfig, --context and -n as typed).",
        epilog="examples:\n  source <(zen-flow completion bash)        # in ~/.bashrc\n"
        '  zen-flow completion zsh > "${fpath[1]}/_zen-flow"\n'
        "  zen-flow completion fish > ~/.config/fish/completions/zen-flow.fish",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=_cmd_completion)
    return parser


SHARDS_EXAMPLES = """\
examples:
  zen-flow shards                              # the controller in zen-flow-system
  zen-flow shards --instance-id team-a         # the Leases of instance team-a
  zen-flow shards -n team-a nightly            # which shard, and which replica, reconcile a flow
  zen-flow shards --flow team-a/nightly -o json"""


def _cmd_shards(args: argparse.Namespace) -> int:
    from zen_flow.cli import session, shards

    return session.run(shards.shards, args)


def _shard_count(text: str) -> int:
    """`--shards N`: the controller's own range (`zen-flow run --shards`)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= n <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"{n}: a controller runs with 1 to {MAX_SHARDS} shards")
    return n


def _add_shards_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from zen_flow.cli.completion import any_flow_names, flow_names
    from zen_flow.cli.session import add_client_arguments

    p = sub.add_parser(
        "shards",
        help="who holds which shard of a controller run with --shards, and which shard a flow is in",
        description="List the shard Leases of a controller run with --shards N: each shard's holder (a\n"
        "replica's identity), when it last renewed and whether its Lease has expired (by this machine's\n"
        "clock); with a flow, the shard it is hashed into and the replica holding it.",
        epilog=SHARDS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_client_arguments(p)
    name = p.add_argument("name", nargs="?", help="a flow of the namespace (-n): which shard and replica")
    name.completer = flow_names  # type: ignore[attr-defined]  # read by argcomplete
    flow = p.add_argument("--flow", metavar="NAMESPACE/NAME", help="a flow: which shard and replica")
    flow.completer = any_flow_names  # type: ignore[attr-defined]
    p.add_argument(
        "--leader-election-namespace",
        default="",
        help="the controller's namespace, where its Leases are (default: zen-flow-system)",
    )
    p.add_argument(
        "--leader-election-name",
        default="",
        help="the controller's Lease name (default: zen-flow-controller, or zen-flow-controller-<instance "
        "id>), as `zen-flow run` takes it",
    )
    p.add_argument("--instance-id", default="", help="the controller instance (`zen-flow run --instance-id`)")
    p.add_argument(
        "--shards",
        type=_shard_count,
        metavar="N",
        help=f"the controller's --shards, 1 to {MAX_SHARDS} (default: its Leases')",
    )
    p.add_argument("-o", "--output", choices=["json"], help="json: the shards (or the flow's) as JSON")
    p.set_defaults(func=_cmd_shards)


def _flow_command(name: str) -> Callable[[argparse.Namespace], int]:
    def invoke(args: argparse.Namespace) -> int:
        from zen_flow.cli import flows, interventions, podlogs, session, watcher

        if name == "ui":
            from zen_flow.cli.ui_server import serve

            return session.run(serve, args)
        command = {
            "list": flows.list_flows,
            "get": flows.get_flow,
            "submit": flows.submit,
            "approve": interventions.decide,
            "reject": interventions.decide,
            "suspend": flows.suspend,
            "resume": flows.suspend,
            "graph": flows.graph,
            "logs": podlogs.logs,
            "watch": watcher.watch,
            "retry": interventions.retry,
            "resubmit": interventions.resubmit,
            "stop": interventions.stop,
            "delete": flows.delete,
        }[name]
        offline = {"submit": flows.prepare_submit, "graph": flows.graph_of_file}.get(name)
        return session.run(command, args, offline)

    return invoke


def _add_flow_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from zen_flow.cli.completion import flow_names, step_names
    from zen_flow.cli.session import add_client_arguments

    def completes(action: argparse.Action, completer: Callable[..., list[str]]) -> None:
        action.completer = completer  # type: ignore[attr-defined]  # read by argcomplete

    def command(
        name: str, help: str, example: str, *, all_namespaces: bool = False
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name, help=help, description=f"{help}.", epilog=f"example: {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        add_client_arguments(p, all_namespaces=all_namespaces)
        p.set_defaults(func=_flow_command(name))
        return p

    p = command(
        "list",
        "list JobFlows: phase, progress, age, message",
        "zen-flow list -A --phase Failed",
        all_namespaces=True,
    )
    p.add_argument("--phase", choices=["Pending", "Running", "Paused", "Suspended", "Succeeded", "Failed"])
    p.add_argument("-l", "--selector", help="label selector, as kubectl's")
    p.add_argument(
        "-o", "--output", choices=["name"], help="name: one `jobflow.workflow.kube-zen.io/NAME` per line"
    )

    p = command("get", "show a JobFlow and its steps in dependency order", "zen-flow get nightly -n team-a")
    completes(p.add_argument("name"), flow_names)
    p.add_argument(
        "-o",
        "--output",
        choices=["wide", "yaml", "json", "name"],
        help="wide: with the steps' outputs; yaml, json: the object; name: as kubectl prints it",
    )

    p = command(
        "submit",
        "validate JobFlow files offline, then create them (or create one from a JobFlowTemplate)",
        "zen-flow submit flow.yaml -p env=prod --wait; zen-flow submit --from-template build -p ref=v2; "
        "zen-flow submit --from-template build --cluster",
    )
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--from-template", metavar="TEMPLATE",
                   help="create a flow from the JobFlowTemplate TEMPLATE (named TEMPLATE-xxxxx)")  # fmt: skip
    p.add_argument("--cluster", action="store_true",
                   help="with --from-template: TEMPLATE is a ClusterJobFlowTemplate")  # fmt: skip
    p.add_argument("-p", "--parameter", dest="parameters", action="append", default=[], metavar="NAME=VALUE",
                   help="override the flow's argument NAME (spec.arguments.parameters)")  # fmt: skip
    p.add_argument("-l", "--label", dest="labels", action="append", default=[], metavar="KEY=VALUE",
                   help="add a label to each flow, e.g. workflow.kube-zen.io/controller-instance=team-a "
                   "(the controller instance that runs it)")  # fmt: skip
    p.add_argument("--generate-name", action="store_true", help="name each flow <its name>-<random suffix>")
    follow = p.add_mutually_exclusive_group()
    follow.add_argument(
        "--wait", action="store_true", help="wait for the flows to finish; exit 1 if one failed"
    )
    follow.add_argument(
        "--watch", action="store_true", help="follow the flow as `zen-flow watch` does; exit 1 if it failed"
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)")

    for verb in ("approve", "reject"):
        p = command(verb, f"{verb} a Manual step (the webhook records who)", f"zen-flow {verb} release gate")
        completes(p.add_argument("name"), flow_names)
        completes(p.add_argument("step"), step_names(manual_only=True))
        p.add_argument("-m", "--message", help="why (recorded in status.audit.approvals)")
        if verb == "approve":
            p.add_argument("-p", "--parameter", dest="parameters", action="append", default=[],
                           metavar="NAME=VALUE",
                           help="a value the gate asks for (its outputs' valueFrom.supplied)")  # fmt: skip

    p = command(
        "watch", "follow one flow, or every flow of the namespace, as it changes", "zen-flow watch nightly"
    )
    completes(
        p.add_argument("name", nargs="?", help="one flow: ends when it does (exit 1 if it failed)"),
        flow_names,
    )

    p = command("logs", "print the logs of a flow's step pods", "zen-flow logs nightly load --attempt 1")
    completes(p.add_argument("name"), flow_names)
    completes(
        p.add_argument(
            "step", nargs="?", help="one step (default: every step that ran, in dependency order)"
        ),
        step_names(),
    )
    p.add_argument("--attempt", type=int, help="the attempt to show, 1 for the first (default: the latest)")
    p.add_argument("-f", "--follow", action="store_true", help="stream the logs until the containers end")

    p = command(
        "graph",
        "draw a flow's DAG, its steps coloured by phase",
        "zen-flow graph nightly --format dot | dot -Tpng > nightly.png",
    )
    p.add_argument(
        "name", metavar="NAME|FILE", help="a flow on the cluster, or a YAML file (no cluster needed)"
    )
    p.add_argument(
        "--format",
        choices=["mermaid", "dot", "svg"],
        default="mermaid",
        help="default mermaid; svg needs Graphviz",
    )
    p.add_argument("-p", "--parameter", dest="parameters", action="append", default=[], metavar="NAME=VALUE",
                   help="set a FILE's argument NAME (spec.arguments.parameters), as validate -p")  # fmt: skip

    p = command("retry", "rerun a Failed flow from its failed steps", "zen-flow retry nightly --step load")
    completes(p.add_argument("name"), flow_names)
    completes(
        p.add_argument(
            "--step", dest="steps", action="append", default=[], help="only this failed step (repeatable)"
        ),
        step_names(),
    )

    p = command(
        "stop",
        "fail a flow now: its running Jobs are deleted (--run-finally: its finally steps run first)",
        "zen-flow stop --run-finally nightly",
    )
    completes(p.add_argument("name"), flow_names)
    p.add_argument(
        "--run-finally",
        action="store_true",
        help="stop the other steps the same way, then run the finally steps (the flow fails Stopped)",
    )

    p = command("delete", "delete flows, with their Jobs and pods", "zen-flow delete nightly weekly")
    completes(p.add_argument("names", nargs="+", metavar="NAME"), flow_names)

    p = command("resubmit", "create a new flow from an old one's spec", "zen-flow resubmit nightly")
    completes(p.add_argument("name"), flow_names)

    for verb, what in (
        ("suspend", "start no new step (running steps finish)"),
        ("resume", "start steps again"),
    ):
        p = command(verb, f"{verb} a JobFlow: {what}", f"zen-flow {verb} nightly")
        completes(p.add_argument("name"), flow_names)

    p = command(
        "ui",
        "serve a web UI on this machine (127.0.0.1) with your kubeconfig: flows, DAGs, logs, approvals",
        "zen-flow ui -n team-a --port 8765",
        all_namespaces=True,
    )
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0: any free one)")
    p.add_argument(
        "--address",
        help="address to listen on (default 127.0.0.1); another one warns: whoever reaches it and holds "
        "the token acts with your credentials; a wildcard (0.0.0.0) is refused",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (zen-flow completion SHELL)
        from zen_flow.cli.completion import answer

        answer(parser)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
