"""The command line of the commands that drive flows (list, get, submit, approve, reject, watch, logs,
graph, retry, stop, delete, resubmit, suspend, resume, ui): their flags and help. The commands themselves
(cli.flows, cli.interventions, cli.podlogs, cli.watcher, cli.ui_server) are imported only when one runs,
so `zen-flow --help` and completion stay quick."""

from __future__ import annotations

import argparse
from collections.abc import Callable


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


def add_flow_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        "-o",
        "--output",
        choices=["json", "yaml", "name"],
        help="json, yaml: the flows as stored, in a kubectl List; name: one "
        "`jobflow.workflow.kube-zen.io/NAME` per line",
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
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds --wait waits, for all the flows (default 3600)"
    )

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
