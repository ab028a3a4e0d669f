"""`zen-flow list|get|submit|suspend|resume|delete|graph`: JobFlows driven from a terminal with the user's
own kubeconfig and RBAC (never the controller's), through the same API as kubectl (cli.session:
connection, errors, exit status; cli.interventions: approve, reject, stop, retry, resubmit)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from zen_flow.api import JobFlow
from zen_flow.api.constants import API_VERSION, KIND
from zen_flow.cli.graph import dot, mermaid
from zen_flow.cli.overrides import override_arguments, parse_overrides, template_arguments
from zen_flow.cli.render import flow_detail, flow_list, printable
from zen_flow.cli.session import EXIT_FAILED, EXIT_OK, STRICT, Session, UsageError, now
from zen_flow.cli.validate import UNCHECKED, is_jobflow, unknown_fields
from zen_flow.cli.waits import read_waits
from zen_flow.core.matrix import effective_flow
from zen_flow.core.naming import is_label_value, is_qualified_name
from zen_flow.documents import DocumentError, load_all, read_bounded
from zen_flow.kube.errors import NotFound
from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow.validation.approvals import awaits_expansion
from zen_flow.validation.flow import validate_jobflow
from zen_flow.validation.limits import MAX_GENERATE_NAME
from zen_flow.validation.warnings import flow_warnings

WAIT_POLL_SECONDS = 1.0


async def list_flows(session: Session, args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else session.namespace
    selector = (("labelSelector", args.selector),) if args.selector else ()
    listed = await session.client.list_all(JOBFLOWS.path(namespace), selector, page_size=100)
    decoded = [(item, JobFlow.model_validate(item)) for item in listed.items]
    if args.phase:
        decoded = [(item, f) for item, f in decoded if (f.status.phase or "Pending") == args.phase]
    if args.output in ("json", "yaml"):  # for scripts: the flows as stored, an empty List when none
        session.print_object(as_list([item for item, _ in decoded]), args.output, _kind_name)
        return EXIT_OK
    flows = [f for _, f in decoded]
    if not flows:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No JobFlows found in {where}.", file=sys.stderr)
        return EXIT_OK
    if args.output == "name":  # for scripts: `zen-flow list -o name --phase Failed | xargs ...`
        session.out.write("".join(f"{_kind_name(f.metadata.name)}\n" for f in flows))
        return EXIT_OK
    session.show(flow_list(flows, now(), all_namespaces=namespace is None))
    return EXIT_OK


def as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """kubectl's `get -o json` of several objects: a v1 List, each item with its apiVersion and kind, in
    `list`'s order (namespace, then name)."""
    ordered = sorted(items, key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"]))
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [{"apiVersion": API_VERSION, "kind": KIND, **item} for item in ordered],
    }


def _kind_name(name: str) -> str:
    """kubectl's `-o name`: resource.group/name."""
    return f"{JOBFLOWS.plural.removesuffix('s')}.{JOBFLOWS.group}/{name}"


async def get_flow(session: Session, args: argparse.Namespace) -> int:
    raw = await session.flows.get(session.namespace, args.name)
    if not session.print_object(raw, args.output, _kind_name):
        stored = JobFlow.model_validate(raw)
        waits = await read_waits(session, stored)  # one LIST, only when it waits for a slot or a lock
        flow = effective_flow(stored)
        wide = args.output == "wide"
        session.show(flow_detail(flow, now(), wide=wide, extra=waits.summary, notes=waits.steps))
    return EXIT_OK


async def delete(session: Session, args: argparse.Namespace) -> int:
    """Delete flows; their Jobs and pods go with them (owner references, background deletion). As kubectl,
    a name not found is said and the others are deleted all the same; the exit code is then 1."""
    outcome = EXIT_OK
    for name in args.names:
        try:
            await session.client.request(
                "DELETE", JOBFLOWS.path(session.namespace, name), body={"propagationPolicy": "Background"}
            )
        except NotFound:
            sys.stderr.write(f"zen-flow delete: jobflow {session.namespace}/{name} not found\n")
            outcome = EXIT_FAILED
            continue
        session.out.write(f"jobflow {session.namespace}/{name} deleted\n")
    return outcome


async def suspend(session: Session, args: argparse.Namespace) -> int:
    """`suspend` / `resume`: spec.suspend (running steps finish; no new step starts while suspended)."""
    await session.get(args.name)  # a clear "not found" before any write
    suspended = args.command == "suspend"
    await session.merge_patch(args.name, {"spec": {"suspend": suspended}})
    session.out.write(f"jobflow {session.namespace}/{args.name} {'suspended' if suspended else 'resumed'}\n")
    return EXIT_OK


async def submit(session: Session, args: argparse.Namespace) -> int:
    """Validate every flow of the files offline (as the webhook would), then create them; `--wait`
    follows them to the end and exits with their outcome; `--watch` shows one as `zen-flow watch` does."""
    created: list[str] = []
    for doc in args.flows:
        metadata = doc.setdefault("metadata", {})
        if args.generate_name and metadata.get("name"):
            metadata["generateName"] = f"{metadata.pop('name')}-"
        metadata["namespace"] = metadata.get("namespace") or session.namespace
        # Strict, as kubectl: a key the CRD does not have is refused by name, never silently pruned.
        made = await session.client.request(
            "POST", JOBFLOWS.path(metadata["namespace"]), query=STRICT, body=doc
        )
        name = made["metadata"]["name"]
        created.append(f"{metadata['namespace']}/{name}")
        session.out.write(f"jobflow {metadata['namespace']}/{name} created\n")
    if args.watch:
        from zen_flow.cli.watcher import watch

        namespace, name = created[0].split("/", 1)
        return await watch(Session(session.client, namespace, session.out), argparse.Namespace(name=name))
    if not args.wait:
        return EXIT_OK
    outcome = EXIT_OK
    deadline = (
        time.monotonic() + args.timeout
    )  # for them all: N flows still running wait --timeout, not N times it
    for key in created:
        namespace, name = key.split("/", 1)
        flow, finished = await _until_finished(session, namespace, name, deadline)
        if not finished:
            gates = awaiting_approval(flow)
            what = f"waiting for approval of {', '.join(gates)}" if gates else "still running"
            session.out.write(f"jobflow {key}: {what} after {args.timeout:g}s\n")
            outcome = EXIT_FAILED
            continue
        session.out.write(f"jobflow {key} {flow.status.phase}: {printable(flow.status.message or '')}\n")
        if flow.status.phase != "Succeeded":
            outcome = EXIT_FAILED
    return outcome


def prepare_submit(args: argparse.Namespace) -> None:
    """Offline, before any cluster is contacted: every file read and validated (`args.flows`), or the flow
    made from `--from-template`."""
    if bool(args.files) == bool(args.from_template):
        raise UsageError("give FILE arguments or --from-template TEMPLATE (one of them)")
    if args.cluster and not args.from_template:
        raise UsageError("--cluster names a ClusterJobFlowTemplate: use it with --from-template TEMPLATE")
    if args.from_template:
        values = _overrides(args.parameters)
        args.flows = [_from_template(args.from_template, values, args.namespace, cluster=args.cluster)]
    else:
        args.flows = _read_flows(args.files, _overrides(args.parameters))
    if labels := _labels(args.labels):
        for doc in args.flows:
            meta = doc.setdefault("metadata", {})
            meta["labels"] = {**(meta.get("labels") or {}), **labels}
    # As kubectl: `-n` fills in a missing namespace, and one that says otherwise is a mistake, not a
    # choice between the two (a flow meant for staging was created in prod).
    for doc in args.flows:
        named = doc.get("metadata", {}).get("namespace")
        if args.namespace and named and named != args.namespace:
            flow = doc["metadata"].get("name") or doc["metadata"].get("generateName") or "a flow"
            raise UsageError(
                f"the namespace of {flow} in the file ({named}) does not match -n {args.namespace}; "
                "nothing was created"
            )
    if args.watch and len(args.flows) != 1:
        raise UsageError(f"--watch follows one flow; these files hold {len(args.flows)} (use --wait)")


def graph_of_file(args: argparse.Namespace) -> int | None:
    """`graph FILE` needs no cluster: drawn here; None for a flow's name."""
    if not Path(args.name).is_file():
        if args.parameters:  # a flow on the cluster runs with the arguments it has
            raise UsageError(f"-p sets the arguments of a FILE; {args.name} is no file")
        return None
    # A matrix reading an argument left "" (for -p) fails without a value, as `validate` does.
    flow = effective_flow(JobFlow.model_validate(_read_flows([args.name], _overrides(args.parameters))[0]))
    sys.stdout.write(_drawn(flow, args.format))
    return EXIT_OK


async def graph(session: Session, args: argparse.Namespace) -> int:
    """The DAG of a flow on the cluster."""
    flow = await session.get(args.name)
    session.out.write(await asyncio.to_thread(_drawn, flow, args.format))
    return EXIT_OK


def _drawn(flow: JobFlow, fmt: str) -> str:
    text = mermaid(flow) if fmt == "mermaid" else dot(flow)
    if fmt != "svg":
        return text
    graphviz = shutil.which("dot")
    if graphviz is None:
        raise UsageError("--format svg needs Graphviz's `dot` on PATH; --format dot prints its input")
    done = subprocess.run([graphviz, "-Tsvg"], input=text, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise UsageError(f"dot failed: {done.stderr.strip()}")
    return done.stdout


async def _until_finished(
    session: Session, namespace: str, name: str, deadline: float
) -> tuple[JobFlow, bool]:
    """The flow once it finished (True), or as it was at `deadline` (False; time.monotonic). Says once
    when it starts waiting for a person: a `--wait` of an hour must not sit silent while a gate waits for
    an approval."""
    told: tuple[str, ...] = ()
    while True:
        flow = effective_flow(JobFlow.model_validate(await session.flows.get(namespace, name)))
        if flow.status.phase in ("Succeeded", "Failed"):
            return flow, True
        if (gates := awaiting_approval(flow)) and gates != told:
            told = gates
            how = f"zen-flow approve {name} {gates[0]} -n {namespace}"
            session.out.write(
                f"jobflow {namespace}/{name}: waiting for approval of {', '.join(gates)} ({how})\n"
            )
        if time.monotonic() >= deadline:
            return flow, False
        await asyncio.sleep(WAIT_POLL_SECONDS)  # polling one object; a watch is the `watch` command's job


def awaiting_approval(flow: JobFlow) -> tuple[str, ...]:
    return tuple(step.name for step in flow.status.steps if step.phase == "PendingApproval")


def _read_flows(paths: list[str], overrides: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    problems: list[str] = []
    for raw in paths:
        try:
            found = load_all(read_bounded(Path(raw)))
        except (DocumentError, OSError) as err:
            raise UsageError(f"{raw}: {err}") from None
        for number, doc in enumerate(found, start=1):
            label = f"{raw}#{number}" if len(found) > 1 else raw
            if not is_jobflow(doc):
                kind = doc.get("kind") if isinstance(doc, dict) else None
                if doc is not None:  # an empty document (a trailing ---) is nothing to mention
                    sys.stderr.write(
                        f"zen-flow: skipped {label}: {kind or 'not a JobFlow'} (only JobFlows are read)\n"
                    )
                continue
            unknown = unknown_fields(doc)  # a typo the apiserver would drop changes the flow
            doc, errors = override_arguments(doc, overrides)
            errors += unknown
            waits = awaits_expansion(doc)  # the template is the cluster's: the webhook checks them then
            errors += validate_jobflow(doc, approvals=not waits)  # listed together, as the webhook does
            if waits:
                sys.stderr.write(f"{label}: note: {UNCHECKED}\n")
            problems += [f"{label}: {error}" for error in errors]
            for warning in [] if errors else flow_warnings(doc):  # what the webhook would say too
                sys.stderr.write(f"{label}: Warning: {warning}\n")
            docs.append(doc)
    if problems:
        raise UsageError("invalid, nothing was created:\n" + "\n".join(problems))
    if not docs:
        raise UsageError(f"no JobFlow in {', '.join(paths)}")
    return docs


def _from_template(
    template: str, values: dict[str, str], namespace: str | None, *, cluster: bool = False
) -> dict[str, Any]:
    """A flow naming `template` (expanded by the webhook, or the controller), named after it; the values
    of its arguments are checked against the template's declarations when it is created. `cluster`: the
    ClusterJobFlowTemplate of that name (`templateRef.clusterScope: true`)."""
    prefix = template[: MAX_GENERATE_NAME - 1].rstrip("-.") + "-"
    metadata: dict[str, Any] = {"generateName": prefix, **({"namespace": namespace} if namespace else {})}
    spec: dict[str, Any] = {"templateRef": {"name": template, **({"clusterScope": True} if cluster else {})}}
    if values:
        spec["arguments"] = template_arguments(values)
    doc = {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
    if errors := validate_jobflow(doc):
        raise UsageError(
            "invalid, nothing was created:\n" + "\n".join(f"--from-template: {e}" for e in errors)
        )
    return doc


def _labels(items: list[str]) -> dict[str, str]:
    """`-l KEY=VALUE` labels, checked as the apiserver would (a bad one would be refused after the other
    flows were created)."""
    labels: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not is_qualified_name(key) or not is_label_value(value):
            raise UsageError(
                f"-l {item!r}: expected KEY=VALUE, a label key (prefix/name) and a label value "
                "(at most 63 characters: letters, digits, '-', '_' and '.')"
            )
        labels[key] = value
    return labels


def _overrides(items: list[str]) -> dict[str, str]:
    try:
        return parse_overrides(items)
    except ValueError as err:
        raise UsageError(str(err)) from None
