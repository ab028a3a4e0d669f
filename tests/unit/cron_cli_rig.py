"""The in-memory apiserver the `zen-flow cron` CLI tests run against, at a fixed instant (NOW), and the
CronJobFlows and runs they store in it."""

from __future__ import annotations

import copy
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import format_time
from zen_flow.cli import cron, cron_backfill, main, session
from zen_flow.kube.errors import ApiError, from_status
from zen_flow.kube.streams import ListResult
from zen_flow.planner.cron import CreateRun, StopRun, build_run, plan_cron
from zen_flow.planner.cron_runs import manual_run

NS = "default"
RANDOM_TOKEN = cron.token  # the cluster fixture makes tokens predictable
# A Saturday noon (UTC) before Berlin's spring change: that night 02:30 does not exist there.
NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}
    },
}


def cron_manifest(name: str = "nightly-report", namespace: str = NS, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "CronJobFlow",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": format_time(NOW - timedelta(days=3)),
        },
        "spec": {
            "schedule": "30 2 * * *",
            "timeZone": "Europe/Berlin",
            "jobFlowTemplate": {
                "metadata": {"labels": {"team": "reporting"}, "annotations": {"owner": "data"}},
                "spec": {"steps": [{"name": "collect", "template": JOB}]},
            },
            **spec,
        },
        "status": {},
    }


def a_run(cron: dict[str, Any], moment: datetime, status: dict[str, Any]) -> dict[str, Any]:
    """A scheduled run of `cron`, as the controller made it."""
    made: dict[str, Any] = build_run(CronJobFlow.model_validate(cron), moment)
    made["metadata"]["uid"] = f"uid-{made['metadata']['name']}"
    return {**made, "status": status}


class FakeCluster:
    """CronJobFlows and JobFlows by namespace and name; every write the CLI sends."""

    def __init__(self) -> None:
        self.crons: dict[tuple[str, str], dict[str, Any]] = {}
        self.flows: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, Any, str | None]] = []
        self.clock = NOW
        self.refused: dict[str, ApiError] = {}  # a create of this name answers this error
        self.on_list: Callable[[], None] | None = None  # time passing between two LISTs (runs ending)

    def store(self, path: str) -> tuple[dict[tuple[str, str], dict[str, Any]], str | None, str | None]:
        parts = path.strip("/").split("/")
        namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts else None
        plural = next(p for p in parts if p in ("cronjobflows", "jobflows"))
        after = parts[parts.index(plural) + 1 :]
        return (
            (self.crons if plural == "cronjobflows" else self.flows),
            namespace,
            after[0] if after else None,
        )

    async def list_all(self, path: str, query: Any = (), *, page_size: int = 500) -> ListResult:
        objects, namespace, _ = self.store(path)
        if self.on_list is not None:
            self.on_list()
        selector = dict(query).get("labelSelector")
        items = [
            copy.deepcopy(o)
            for (ns, _), o in sorted(objects.items())
            if namespace in (None, ns) and (selector is None or _labelled(o, *selector.split("=", 1)))
        ]
        return ListResult(tuple(items), "1")

    async def request(
        self, method: str, path: str, body: Any = None, query: Any = (), content_type: str | None = None
    ) -> dict[str, Any]:
        objects, namespace, name = self.store(path)
        assert namespace is not None
        if method != "GET":
            self.writes.append((method, path, copy.deepcopy(body), content_type))
        if method == "POST":
            made: dict[str, Any] = copy.deepcopy(body)
            made["metadata"].setdefault("name", made["metadata"].get("generateName", "") + "x7k2p")
            key = (namespace, made["metadata"]["name"])
            if key[1] in self.refused:
                raise self.refused[key[1]]
            if key in objects:
                raise from_status(409, {"reason": "AlreadyExists", "message": f'"{key[1]}" already exists'})
            # The apiserver's clock, which orders a manual run (the user's machine's clock may be off).
            made["metadata"]["creationTimestamp"] = format_time(self.clock)
            objects[key] = {**made, "status": {}}
            return made
        found = objects.get((namespace, name or ""))
        if found is None:
            raise from_status(404, {"reason": "NotFound", "message": f'cronjobflows "{name}" not found'})
        if method == "PATCH":
            found["spec"].update(body.get("spec", {}))
            annotations = found["metadata"].setdefault("annotations", {})
            for key, value in body.get("metadata", {}).get("annotations", {}).items():
                annotations.pop(key, None) if value is None else annotations.update({key: value})
        return copy.deepcopy(found)


def _labelled(obj: dict[str, Any], key: str, value: str) -> bool:
    return bool((obj["metadata"].get("labels") or {}).get(key) == value)


@pytest.fixture(name="cluster")
def cluster_fixture(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    """The `cluster` of the cron CLI tests: each module imports it as `cluster_fixture as
    cluster_fixture` (a fixture imported under its own name would be redefined by every test's
    parameter, and an import no code reads is an unused one to the linter)."""
    return fake_cluster(monkeypatch)


def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    """A FakeCluster the CLI's sessions talk to, at NOW, with predictable tokens."""
    fake = FakeCluster()

    @asynccontextmanager
    async def open_session(args: Any, out: Any = None) -> AsyncIterator[session.Session]:
        yield session.Session(fake, args.namespace or NS, sys.stdout)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "open_session", open_session)
    monkeypatch.setattr(cron, "now", lambda: NOW)
    monkeypatch.setattr(cron_backfill, "now", lambda: NOW)
    # No test waits: a poll or a retry comes at once (the rig's runs change between LISTs, on_list).
    monkeypatch.setattr(cron_backfill, "POLL_SECONDS", 0)
    monkeypatch.setattr(cron_backfill, "RETRY_SECONDS", (0, 0, 0))
    tokens = iter(["b2c4d", "f5g6h", "j7k8l", "m9n2p"])
    monkeypatch.setattr(cron, "token", lambda: next(tokens))
    return fake


def zen_flow(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    said = capsys.readouterr()
    return code, said.out, said.err


def add(cluster: FakeCluster, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    (cluster.crons if obj["kind"] == "CronJobFlow" else cluster.flows)[(meta["namespace"], meta["name"])] = (
        obj
    )
    return obj


def posted(cluster: FakeCluster) -> list[dict[str, Any]]:
    return [body for method, _, body, _ in cluster.writes if method == "POST"]


# --- runs as the controller's planner sees them -------------------------------------------------------------


def planned(report: dict[str, Any], runs: list[dict[str, Any]], now: datetime) -> Any:
    return plan_cron(CronJobFlow.model_validate(report), [JobFlow.model_validate(r) for r in runs], now)


def manual(
    report: dict[str, Any], created: datetime, phase: str = "Running", token: str = "b2c4d"
) -> dict[str, Any]:
    """`trigger`'s run as the apiserver stores it: created (its creationTimestamp) at `created`."""
    body: dict[str, Any] = manual_run(CronJobFlow.model_validate(report), token)
    meta = {**body["metadata"], "uid": f"uid-manual-{token}", "creationTimestamp": format_time(created)}
    return {**body, "metadata": meta, "status": {"phase": phase}}


EVERY_10 = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)  # a */10 schedule's run time


def every_10(**spec: Any) -> dict[str, Any]:
    report = cron_manifest(schedule="*/10 * * * *", timeZone=None, **spec)
    report["metadata"]["creationTimestamp"] = format_time(EVERY_10 - timedelta(hours=1))
    report["status"] = {"lastScheduleTime": format_time(EVERY_10 - timedelta(minutes=10))}
    return report


def outcome(plan: Any) -> tuple[str | None, list[str], list[str]]:
    """What became of the run time due, the runs created and the runs asked to stop."""
    return (
        plan.outcome,
        [a.name for a in plan.actions if isinstance(a, CreateRun)],
        [a.name for a in plan.actions if isinstance(a, StopRun)],
    )
