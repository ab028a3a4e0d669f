"""`zen-flow list|get|submit|approve|reject|suspend|resume`: JobFlows driven from a terminal with the user's
own kubeconfig and RBAC (never the controller's), through the same API and annotations as kubectl.

Exit status: 0 done (with `submit --wait`: the flow Succeeded); 1 the flow Failed (`submit --wait`), or
the apiserver refused or could not be reached (the message says which: not found, forbidden with the
apiserver's words naming the verb and resource, a webhook's field errors); 2 bad usage or unreadable,
invalid input (nothing was sent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from zen_flow.api import JobFlow
from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_CREATED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_STOP,
    APPROVE_PREFIX,
    REJECT_PREFIX,
)
from zen_flow.api.transfer import TRANSFER_NAMES
from zen_flow.cli.overrides import override_arguments, parse_overrides
from zen_flow.cli.render import dependency_order, flow_detail, flow_list
from zen_flow.cli.validate import is_jobflow
from zen_flow.core.naming import job_name
from zen_flow.documents import DocumentError, load_all, read_bounded
from zen_flow.kube.client import ClientOptions, KubeClient
from zen_flow.kube.config import load_config
from zen_flow.kube.errors import ApiError, KubeError, NotFound, TransportError
from zen_flow.kube.jobflows import JOBFLOWS, JobFlowClient
from zen_flow.kube.pods import JOB_NAME_LABEL
from zen_flow.validation.approvals import validate_approvals
from zen_flow.validation.flow import validate_jobflow

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
USER_AGENT = "zen-flow-cli"
WAIT_POLL_SECONDS = 1.0


class UsageError(Exception):
    """Bad input, found before anything was sent: exit 2."""


def add_client_arguments(parser: argparse.ArgumentParser, *, all_namespaces: bool = False) -> None:
    """kubectl's flags, with kubectl's meaning."""
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current context)")
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's, else default)")
    if all_namespaces:
        parser.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")


Command = Callable[["Session", argparse.Namespace], Awaitable[int]]


def run(command: Command, args: argparse.Namespace) -> int:
    """Run one command; errors become one line on stderr and an exit status."""
    prog = f"zen-flow {args.command}"
    try:
        if args.command == "submit":  # bad files are refused before any cluster is contacted
            args.flows = _read_flows(args.files, _overrides(args.parameters))
        if args.command == "graph" and Path(args.name).is_file():
            args.flow_from_file = JobFlow.model_validate(_read_flows([args.name], {})[0])
            return asyncio.run(graph(None, args))
        return asyncio.run(_with_session(command, args))
    except UsageError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except NotFound as err:
        print(f"{prog}: not found: {err.message}", file=sys.stderr)
        return EXIT_FAILED
    except ApiError as err:
        # 403 names the user, the verb and the resource; a webhook's denial lists its field errors.
        print(f"{prog}: the apiserver refused ({err.status} {err.reason}): {err.message}", file=sys.stderr)
        return EXIT_FAILED
    except TransportError as err:
        print(f"{prog}: cannot reach the apiserver: {err}", file=sys.stderr)
        return EXIT_FAILED
    except (KubeError, ValueError, OSError) as err:  # kubeconfig problems
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


class Session:
    """A client for the user's cluster and the namespace the command acts in."""

    def __init__(self, client: KubeClient, namespace: str, out: TextIO) -> None:
        self.client = client
        self.flows = JobFlowClient(client)
        self.namespace = namespace
        self.out = out

    async def get(self, name: str) -> JobFlow:
        return JobFlow.model_validate(await self.flows.get(self.namespace, name))

    async def merge_patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.client.request(
            "PATCH",
            JOBFLOWS.path(self.namespace, name),
            body=patch,
            content_type="application/merge-patch+json",
        )


async def _with_session(command: Command, args: argparse.Namespace) -> int:
    config = await load_config(args.kubeconfig, args.context)
    client = KubeClient(config, ClientOptions(user_agent=USER_AGENT))
    try:
        return await command(
            Session(client, args.namespace or config.namespace or "default", sys.stdout), args
        )
    finally:
        await client.close()


def now() -> datetime:
    return datetime.now(UTC)


# --- commands ------------------------------------------------------------------------------------------


async def list_flows(session: Session, args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else session.namespace
    selector = (("labelSelector", args.selector),) if args.selector else ()
    listed = await session.client.list_all(JOBFLOWS.path(namespace), selector, page_size=100)
    flows = [JobFlow.model_validate(item) for item in listed.items]
    if args.phase:
        flows = [f for f in flows if (f.status.phase or "Pending") == args.phase]
    if not flows:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No JobFlows found in {where}.", file=sys.stderr)
        return EXIT_OK
    session.out.write(flow_list(flows, now(), all_namespaces=namespace is None))
    return EXIT_OK


async def get_flow(session: Session, args: argparse.Namespace) -> int:
    raw = await session.flows.get(session.namespace, args.name)
    if args.output == "json":
        session.out.write(json.dumps(raw, indent=2) + "\n")
    elif args.output == "yaml":
        session.out.write(yaml.safe_dump(raw, sort_keys=False))
    else:
        session.out.write(flow_detail(JobFlow.model_validate(raw), now()))
    return EXIT_OK


async def decide(session: Session, args: argparse.Namespace) -> int:
    """`approve` / `reject`: the annotation the API defines; the mutating webhook records who did it."""
    flow = await session.get(args.name)
    step = next((s for s in flow.spec.steps if s.name == args.step), None)
    if step is None:
        raise UsageError(f"jobflow {args.name} has no step {args.step!r} (steps: {_names(flow)})")
    if not step.is_manual:
        raise UsageError(f"step {args.step!r} of jobflow {args.name} is not a Manual step")
    prefix = APPROVE_PREFIX if args.command == "approve" else REJECT_PREFIX
    await session.merge_patch(args.name, {"metadata": {"annotations": {f"{prefix}{args.step}": "true"}}})
    verb = "approved" if args.command == "approve" else "rejected"
    session.out.write(f"jobflow {session.namespace}/{args.name}: step {args.step} {verb}\n")
    return EXIT_OK


async def retry(session: Session, args: argparse.Namespace) -> int:
    """Ask the controller to rerun a Failed flow from its failed steps (or only `--step` ones): the
    request annotation with a fresh id, honoured once (docs/API.md, "Rerunning a failed flow")."""
    flow = await session.get(args.name)
    if flow.status.phase != "Failed":
        raise UsageError(
            f"jobflow {args.name} is {flow.status.phase or 'Pending'}: only a Failed flow reruns"
        )
    failed = {s.name for s in flow.status.steps if s.phase == "Failed"}
    unknown = [s for s in args.steps if s not in failed]
    if unknown:
        raise UsageError(
            f"not failed steps of jobflow {args.name}: {', '.join(unknown)} "
            f"(failed: {', '.join(sorted(failed))})"
        )
    rid = f"{now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    scope = ",".join(args.steps) or None  # null removes an earlier request's scope
    # A stop request left on the flow would stop the rerun at once: the rerun replaces it.
    requested = {ANNOTATION_RETRY: rid, ANNOTATION_RETRY_STEPS: scope, ANNOTATION_STOP: None}
    await session.merge_patch(args.name, {"metadata": {"annotations": requested}})
    session.out.write(f"jobflow {session.namespace}/{args.name}: rerun requested ({rid})\n")
    return EXIT_OK


_NOT_COPIED = (
    APPROVE_PREFIX,
    REJECT_PREFIX,
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_RETRY,
    ANNOTATION_CREATED_BY,
    ANNOTATION_STOP,
)


async def resubmit(session: Session, args: argparse.Namespace) -> int:
    """A new flow from an old one's spec, labels and annotations (not its decisions, requests or audit)."""
    old = await session.flows.get(session.namespace, args.name)
    meta = old.get("metadata", {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(_NOT_COPIED)}
    body = {
        "apiVersion": old["apiVersion"],
        "kind": old["kind"],
        "metadata": {
            "generateName": f"{args.name}-",
            "labels": meta.get("labels") or {},
            "annotations": annotations,
        },
        "spec": old["spec"],
    }
    made = await session.client.request("POST", JOBFLOWS.path(session.namespace), body=body)
    session.out.write(f"jobflow {session.namespace}/{made['metadata']['name']} created\n")
    return EXIT_OK


async def stop(session: Session, args: argparse.Namespace) -> int:
    """Fail the flow now: running Jobs are deleted, nothing else starts (docs/API.md, "Stopping a flow")."""
    flow = await session.get(args.name)
    if flow.status.phase in ("Succeeded", "Failed"):
        raise UsageError(f"jobflow {args.name} has ended ({flow.status.phase}): nothing to stop")
    await session.merge_patch(args.name, {"metadata": {"annotations": {ANNOTATION_STOP: "true"}}})
    session.out.write(f"jobflow {session.namespace}/{args.name}: stop requested\n")
    return EXIT_OK


async def delete(session: Session, args: argparse.Namespace) -> int:
    """Delete flows; their Jobs and pods go with them (owner references, background deletion)."""
    for name in args.names:
        await session.client.request(
            "DELETE", JOBFLOWS.path(session.namespace, name), body={"propagationPolicy": "Background"}
        )
        session.out.write(f"jobflow {session.namespace}/{name} deleted\n")
    return EXIT_OK


async def suspend(session: Session, args: argparse.Namespace) -> int:
    """`suspend` / `resume`: spec.suspend (running steps finish; no new step starts while suspended)."""
    await session.get(args.name)  # a clear "not found" before any write
    suspended = args.command == "suspend"
    await session.merge_patch(args.name, {"spec": {"suspend": suspended}})
    session.out.write(f"jobflow {session.namespace}/{args.name} {'suspended' if suspended else 'resumed'}\n")
    return EXIT_OK


async def submit(session: Session, args: argparse.Namespace) -> int:
    """Validate every flow of the files offline (as the webhook would), then create them; `--wait`
    follows them to the end and exits with their outcome."""
    created: list[str] = []
    for doc in args.flows:
        metadata = doc.setdefault("metadata", {})
        if args.generate_name and metadata.get("name"):
            metadata["generateName"] = f"{metadata.pop('name')}-"
        metadata["namespace"] = metadata.get("namespace") or session.namespace
        made = await session.client.request("POST", JOBFLOWS.path(metadata["namespace"]), body=doc)
        name = made["metadata"]["name"]
        created.append(f"{metadata['namespace']}/{name}")
        session.out.write(f"jobflow {metadata['namespace']}/{name} created\n")
    if not args.wait:
        return EXIT_OK
    outcome = EXIT_OK
    for key in created:
        namespace, name = key.split("/", 1)
        flow = await _until_finished(session, namespace, name, args.timeout)
        if flow is None:
            session.out.write(f"jobflow {key}: still running after {args.timeout:g}s\n")
            outcome = EXIT_FAILED
            continue
        session.out.write(f"jobflow {key} {flow.status.phase}: {flow.status.message or ''}\n")
        if flow.status.phase != "Succeeded":
            outcome = EXIT_FAILED
    return outcome


async def logs(session: Session, args: argparse.Namespace) -> int:
    """The step pods' logs through the API (pods/log), each line prefixed with `[step]` (or
    `[step/container]`) when more than one container is shown; zen-flow's own transfer containers are
    left out. A step's latest attempt unless `--attempt N` (1 = the first)."""
    flow = await session.get(args.name)
    names = [name for name, _ in dependency_order(flow)]
    if args.step is not None and args.step not in names:
        raise UsageError(f"jobflow {args.name} has no step {args.step!r} (steps: {_names(flow)})")
    shown: list[tuple[str, str, str]] = []  # (step, pod, container)
    for step in [args.step] if args.step is not None else names:
        status = flow.status.step(step)
        if args.attempt is not None:
            job = job_name(flow.metadata.name, step, args.attempt - 1)
        elif status is not None and status.job_ref is not None and status.job_ref.name:
            job = status.job_ref.name
        else:
            continue  # not started (or a Manual step): no pod
        pods = await session.client.request(
            "GET",
            f"/api/v1/namespaces/{session.namespace}/pods",
            query=(("labelSelector", f"{JOB_NAME_LABEL}={job}"),),
        )
        if not pods["items"]:
            continue
        pod = max(pods["items"], key=lambda p: p["metadata"].get("creationTimestamp", ""))
        for container in pod["spec"].get("containers", []):
            if container["name"] not in TRANSFER_NAMES:
                shown.append((step, pod["metadata"]["name"], container["name"]))
    if not shown:
        raise UsageError(f"no pod of jobflow {args.name}{' step ' + args.step if args.step else ''} to show")
    several_steps = len({step for step, _, _ in shown}) > 1
    several_containers = len(shown) > len({step for step, _, _ in shown})
    for step, pod, container in shown:
        path = f"/api/v1/namespaces/{session.namespace}/pods/{pod}/log"
        text = (await session.client.request_raw("GET", path, query=(("container", container),))).decode(
            errors="replace"
        )
        prefix = f"[{step}/{container}] " if several_containers else f"[{step}] " if several_steps else ""
        session.out.writelines(f"{prefix}{line}\n" for line in text.splitlines())
    return EXIT_OK


async def graph(session: Session | None, args: argparse.Namespace) -> int:
    """The DAG of a flow on the cluster, or of the first flow in a file (no cluster needed then)."""
    from zen_flow.cli.graph import dot, mermaid

    flow = args.flow_from_file if session is None else await session.get(args.name)
    text = mermaid(flow) if args.format == "mermaid" else dot(flow)
    if args.format == "svg":
        graphviz = shutil.which("dot")
        if graphviz is None:
            raise UsageError("--format svg needs Graphviz's `dot` on PATH; --format dot prints its input")
        done = await asyncio.to_thread(
            subprocess.run, [graphviz, "-Tsvg"], input=text, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise UsageError(f"dot failed: {done.stderr.strip()}")
        text = done.stdout
    sys.stdout.write(text)
    return EXIT_OK


async def _until_finished(session: Session, namespace: str, name: str, timeout: float) -> JobFlow | None:
    deadline = time.monotonic() + timeout
    while True:
        flow = JobFlow.model_validate(await session.flows.get(namespace, name))
        if flow.status.phase in ("Succeeded", "Failed"):
            return flow
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(WAIT_POLL_SECONDS)  # polling one object; a watch is the `watch` command's job


def _read_flows(paths: list[str], overrides: dict[str, str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    problems: list[str] = []
    for raw in paths:
        try:
            found = load_all(read_bounded(Path(raw)))
        except (DocumentError, OSError) as err:
            raise UsageError(f"{raw}: {err}") from None
        for number, doc in enumerate(found, start=1):
            if not is_jobflow(doc):
                continue
            label = f"{raw}#{number}" if len(found) > 1 else raw
            doc, errors = override_arguments(doc, overrides)
            errors += validate_jobflow(doc) + validate_approvals(doc)
            problems += [f"{label}: {error}" for error in errors]
            docs.append(doc)
    if problems:
        raise UsageError("invalid, nothing was created:\n" + "\n".join(problems))
    if not docs:
        raise UsageError(f"no JobFlow in {', '.join(paths)}")
    return docs


def _overrides(items: list[str]) -> dict[str, str]:
    try:
        return parse_overrides(items)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _names(flow: JobFlow) -> str:
    return ", ".join(s.name for s in flow.spec.steps)
