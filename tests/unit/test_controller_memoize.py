"""Controller: a memoized step's cache ConfigMap is read when the step is ready (the plan made again with
the entry), a result is stored with a merge patch (the ConfigMap created, labelled, when absent), and a
cache that cannot be read or written never fails the flow."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog

from zen_flow.api import JobFlow
from zen_flow.api.meta import format_time
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.core.naming import job_name
from zen_flow.kube.errors import from_status
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner.memoization import MEMO_CACHE_LABEL, MemoEntry, data_key, encode_entry
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

NS = "default"
CACHE = "build-cache"
KEY = "build-v1"


def flow(name: str, *more: dict[str, Any]) -> JobFlow:
    step = job_step(
        "a",
        inputs={"parameters": [{"name": "version", "value": "v1"}]},
        outputs={"parameters": [{"name": "count", "valueFrom": {"jsonPath": "$.succeeded"}}]},
        memoize={
            "key": "build-{{inputs.parameters.version}}",
            "maxAge": "1h",
            "cache": {"configMap": {"name": CACHE}},
        },
    )
    return make_flow([step, *more], name=name)


class Cluster:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.api = FakeApiServer(self.clock)
        self.metrics = Metrics()
        self.controller = Controller(
            flows=self.api,
            jobs=self.api,
            api=self.api,
            queue=WorkQueue(clock=self.clock),
            expectations=Expectations(self.clock),
            events=self.api,
            clock=self.clock,
            metrics=self.metrics,
        )
        self.api.on_flow = self.controller.on_flow_event
        self.api.on_job = self.controller.on_job_event

    async def run(self, name: str) -> JobFlow:
        """Create the flow and reconcile it until it ends, completing each Job it creates."""
        key = self.api.create_flow(flow(name)).key
        for _ in range(10):
            self.api.sync()
            await self.controller.reconcile(key)
            self.api.sync()
            for (_, job), found in list(self.api.jobs.items()):
                if not found.finished:
                    self.api.finish_job(NS, job)
            current = self.api.flows[key]
            if current.status.phase in ("Succeeded", "Failed"):
                return current
        raise AssertionError(f"flow {name} did not end: {self.api.flows[key].status}")

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.api.events]


def lookups(c: Cluster) -> dict[str, float]:
    registry = c.metrics.registry
    return {
        r: registry.get_sample_value("zen_flow_memoize_lookups_total", {"result": r}) or 0.0
        for r in ("hit", "miss", "error")
    }


def saves(c: Cluster) -> dict[str, float]:
    registry = c.metrics.registry
    return {
        r: registry.get_sample_value("zen_flow_memoize_saves_total", {"result": r}) or 0.0
        for r in ("ok", "error")
    }


def forbidden() -> Exception:
    return from_status(403, {"reason": "Forbidden", "message": 'configmaps "build-cache" is forbidden'})


def outputs(found: JobFlow) -> dict[str, str]:
    step = found.status.step("a")
    assert step is not None
    assert step.outputs is not None
    return {p.name: p.value for p in step.outputs.parameters}


async def test_the_first_flow_runs_the_step_and_creates_the_labelled_cache() -> None:
    c = Cluster()
    done = await c.run("first")
    assert done.status.phase == "Succeeded"
    assert c.api.job_creates == [job_name("first", "a", 0)]
    # Read when the step was ready (absent), and again to store the result once it succeeded: a create.
    assert c.api.config_map_requests == [f"get {CACHE}", f"get {CACHE}", f"create {CACHE}"]
    stored = c.api.config_maps[(NS, CACHE)]
    assert stored["labels"] == {"workflow.kube-zen.io/memo-cache": "true"}
    entry = json.loads(stored["data"][data_key(KEY)])
    assert entry["key"] == KEY
    assert entry["outputs"] == {"count": "1"}
    assert entry["flow"] == f"{NS}/first"


async def test_a_second_flow_with_the_same_key_runs_no_job_and_gets_the_outputs() -> None:
    c = Cluster()
    await c.run("first")
    await c.clock.advance(60)
    done = await c.run("second")
    assert done.status.phase == "Succeeded"
    assert c.api.job_creates == [job_name("first", "a", 0)]  # none for the second flow
    assert outputs(done) == {"count": "1"}
    step = done.status.step("a")
    assert step is not None
    assert step.message is not None
    assert step.message.startswith(f"memoized: the result flow {NS}/first (step a)")
    assert "StepMemoized" in c.reasons()
    # One read for the second flow, and nothing stored again.
    assert c.api.config_map_requests[3:] == [f"get {CACHE}"]


async def test_an_unreadable_cache_runs_the_step() -> None:
    c = Cluster()
    await c.run("first")
    c.api.config_map_errors["get"] = [forbidden()]
    with structlog.testing.capture_logs() as logs:
        done = await c.run("second")
    assert done.status.phase == "Succeeded"
    assert job_name("second", "a", 0) in c.api.job_creates
    assert any(line["event"] == "memoize cache unreadable; its steps run" for line in logs)


async def test_a_save_that_fails_warns_and_leaves_the_step_succeeded() -> None:
    c = Cluster()
    c.api.config_map_errors["get"] = [None, forbidden()]  # the lookup's read, then the save's
    with structlog.testing.capture_logs():
        done = await c.run("first")
    assert done.status.phase == "Succeeded"
    failed = [(t, m) for t, reason, m in c.api.events if reason == "MemoizeFailed"]
    assert len(failed) == 1
    assert failed[0][0] == "Warning"
    assert failed[0][1].startswith("step a: its result was not stored in ConfigMap build-cache")
    assert "403" in failed[0][1]
    assert (NS, CACHE) not in c.api.config_maps
    assert saves(c) == {"ok": 0, "error": 1}


async def test_a_cache_created_by_another_flow_meanwhile_gets_the_entry() -> None:
    c = Cluster()
    # The save's read finds no ConfigMap; another flow creates it before our create: ours answers 409.
    c.api.config_maps[(NS, CACHE)] = {"labels": {MEMO_CACHE_LABEL: "true"}, "data": {"other": "x"}}
    c.api.config_map_errors["get"] = [None, from_status(404, {"reason": "NotFound", "message": "gone"})]
    done = await c.run("first")
    assert done.status.phase == "Succeeded"
    assert c.api.config_map_requests[1:] == [
        f"get {CACHE}",
        f"create {CACHE}",
        f"get {CACHE}",
        f"patch {CACHE}",
    ]
    data: dict[str, Any] = c.api.config_maps[(NS, CACHE)]["data"]
    assert set(data) == {"other", data_key(KEY)}


def hostile(**fields: Any) -> str:
    doc = {"key": KEY, "outputs": {"count": "7"}, "flow": "x/y", "step": "a", "time": "2030-01-01T00:00:00Z"}
    doc.update(fields)
    return json.dumps(doc)  # ensure_ascii: a lone surrogate travels as \ud800, as the apiserver keeps it


# Entries anyone who may write ConfigMaps can store; each raised in every reconcile of every flow that
# reached its key (the flow never got a phase), or would have put a string JSON cannot carry in a status.
HOSTILE = {
    "time at year 1, +14:00 (before year 1 in UTC)": hostile(time="0001-01-01T00:00:00+14:00"),
    "time at year 9999, -14:00 (past 9999 in UTC)": hostile(time="9999-12-31T23:59:59-14:00"),
    "expiry out of range": hostile(time="2025-01-01T00:00:00Z", expires="0001-01-01T00:00:00+14:00"),
    "a lone surrogate in an output value": hostile(outputs={"count": "\ud800"}),
    "a lone surrogate in an output name": hostile(outputs={"count": "7", "\udfff": "x"}),
    "a lone surrogate in the flow's name": hostile(flow="x/\ud800"),
    "a lone surrogate in the step's name": hostile(step="\udc00"),
    "a number for the time": hostile(time=1),
    "deep nesting": "[" * 200_000 + "]" * 200_000,
    "a huge integer": '{"key": ' + "9" * 100_000 + "}",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_hostile_entry_is_a_miss_and_the_step_runs(text: str) -> None:
    c = Cluster()
    c.api.config_maps[(NS, CACHE)] = {"labels": {MEMO_CACHE_LABEL: "true"}, "data": {data_key(KEY): text}}
    with structlog.testing.capture_logs():
        done = await c.run("victim")
    assert done.status.phase == "Succeeded"
    assert c.api.job_creates == [job_name("victim", "a", 0)]
    assert outputs(done) == {"count": "1"}  # its own result, not the entry's
    stored = json.loads(c.api.config_maps[(NS, CACHE)]["data"][data_key(KEY)])
    assert stored["flow"] == f"{NS}/victim"  # the hostile entry is replaced by the step's result


async def test_without_the_webhook_memoize_where_admission_refuses_it_fails_the_flow_invalid() -> None:
    # The same rules as admission (one validator): a dependent reading a memoized step's Job status
    # worked on a miss and failed on a hit; a memoized finally step was served on a rerun.
    source = {"jsonPath": "a:$.succeeded"}
    reader = job_step("b", "a", inputs={"parameters": [{"name": "n", "valueFrom": source}]})
    cleanup = job_step(
        "c", **{"finally": True}, memoize={"key": "c", "cache": {"configMap": {"name": CACHE}}}
    )
    for more, path, text in (
        (reader, "spec.steps[1].inputs.parameters[0].valueFrom.jsonPath", 'step "a" is memoized'),
        (cleanup, "spec.steps[1].memoize", "a finally step cannot be memoized"),
    ):
        c = Cluster()
        key = c.api.create_flow(flow("refused", more)).key
        c.api.sync()
        await c.controller.reconcile(key)
        done = c.api.flows[key]
        assert done.status.phase == "Failed"
        assert c.api.job_creates == []
        assert c.api.config_map_requests == []
        assert f"invalid spec: {path}" in (done.status.message or "")
        assert text in (done.status.message or "")


def stored_entry(key: str, time: datetime, expires: datetime | None = None) -> tuple[str, str]:
    entry = MemoEntry(key, {"count": "3"}, f"{NS}/old", "a", time, expires)
    return data_key(key), encode_entry(entry)


async def test_a_configmap_without_the_cache_label_is_no_cache_and_is_never_written() -> None:
    # A flow author names someone else's ConfigMap: it was patched with author-chosen text.
    c = Cluster()
    key, value = stored_entry(KEY, c.clock.now())  # even a fresh entry of the key: no hit from it
    settings = {"settings.yaml": "x: 1", key: value}
    c.api.config_maps[(NS, CACHE)] = {"labels": {"app": "payments"}, "data": dict(settings)}
    with structlog.testing.capture_logs():
        done = await c.run("author")
    assert done.status.phase == "Succeeded"
    assert c.api.job_creates == [job_name("author", "a", 0)]
    assert outputs(done) == {"count": "1"}
    assert c.api.config_maps[(NS, CACHE)] == {"labels": {"app": "payments"}, "data": settings}
    assert c.api.config_map_requests == [f"get {CACHE}", f"get {CACHE}"]  # no patch, no create
    warnings = [m for t, reason, m in c.api.events if reason == "MemoizeFailed"]
    assert len(warnings) == 1  # once, by the reconcile that would have saved
    assert 'lacks the label workflow.kube-zen.io/memo-cache: "true"' in warnings[0]
    assert "step a: its result was not stored in ConfigMap build-cache" in warnings[0]
    assert lookups(c) == {"hit": 0, "miss": 0, "error": 1}
    assert saves(c) == {"ok": 0, "error": 1}


async def test_lookups_and_saves_are_counted_by_result() -> None:
    c = Cluster()
    assert lookups(c) == {"hit": 0, "miss": 0, "error": 0}  # exported from the start
    assert saves(c) == {"ok": 0, "error": 0}
    await c.run("first")
    assert lookups(c) == {"hit": 0, "miss": 1, "error": 0}
    assert saves(c) == {"ok": 1, "error": 0}
    await c.clock.advance(60)
    await c.run("second")
    assert lookups(c) == {"hit": 1, "miss": 1, "error": 0}
    c.api.config_map_errors["get"] = [forbidden()]
    with structlog.testing.capture_logs():
        await c.run("third")
    assert lookups(c) == {"hit": 1, "miss": 1, "error": 1}
    assert saves(c) == {"ok": 2, "error": 0}


async def test_a_save_removes_the_entries_whose_expiry_passed() -> None:
    c = Cluster()
    now = c.clock.now()
    expired = stored_entry("old", now - timedelta(hours=2), now - timedelta(hours=1))
    fresh = stored_entry("fresh", now - timedelta(hours=2), now + timedelta(hours=1))
    forever = stored_entry("forever", now - timedelta(days=400))  # no maxAge: kept until evicted
    data = dict([expired, fresh, forever])
    data["memo-junk"] = "not json"
    data["notes"] = "not an entry"
    c.api.config_maps[(NS, CACHE)] = {"labels": {MEMO_CACHE_LABEL: "true"}, "data": dict(data)}
    await c.run("first")
    kept = c.api.config_maps[(NS, CACHE)]["data"]
    assert set(kept) == {fresh[0], forever[0], "memo-junk", "notes", data_key(KEY)}
    stored = json.loads(kept[data_key(KEY)])
    assert stored["expires"] == format_time(c.clock.now() + timedelta(hours=1))  # the step's maxAge


async def test_a_full_cache_evicts_its_oldest_half_and_stores_the_result() -> None:
    # Every save failed for good once the ConfigMap reached 1 MiB (~3,300 entries), and every lookup
    # downloaded all of it. Here the limit is smaller, the same way.
    c = Cluster()
    now = c.clock.now()
    old = [stored_entry(f"k{i}", now - timedelta(hours=100 - i)) for i in range(60)]  # k0 the oldest
    old.append(("memo-junk", "not json"))
    c.api.config_map_limit = sum(len(v) for _, v in old) + 50  # no room for one more entry
    c.api.config_maps[(NS, CACHE)] = {"labels": {MEMO_CACHE_LABEL: "true"}, "data": dict(old)}
    with structlog.testing.capture_logs():
        await c.run("first")
    kept = c.api.config_maps[(NS, CACHE)]["data"]
    assert data_key(KEY) in kept
    # The older half went (what does not parse first, then by time); the newer half stays.
    assert set(kept) - {data_key(KEY)} == {data_key(f"k{i}") for i in range(30, 60)}
    assert c.api.config_map_requests[1:] == [f"get {CACHE}", f"patch {CACHE}", f"patch {CACHE}"]
    assert "MemoizeFailed" not in c.reasons()
    assert saves(c) == {"ok": 1, "error": 0}


async def test_a_save_still_too_large_after_the_eviction_is_not_tried_again() -> None:
    c = Cluster()
    c.api.config_maps[(NS, CACHE)] = {"labels": {MEMO_CACHE_LABEL: "true"}, "data": {}}
    c.api.config_map_limit = 10  # not even the entry alone fits
    with structlog.testing.capture_logs():
        done = await c.run("first")
    assert done.status.phase == "Succeeded"
    assert c.api.config_map_requests[1:] == [f"get {CACHE}", f"patch {CACHE}", f"patch {CACHE}"]
    (warning,) = [m for _, reason, m in c.api.events if reason == "MemoizeFailed"]
    assert "Too long" in warning
    assert saves(c) == {"ok": 0, "error": 1}


@pytest.mark.parametrize("exists", [True, False], ids=["patched", "created"])
async def test_the_items_of_a_memoized_matrix_step_ending_together_are_stored_in_one_write(
    exists: bool,
) -> None:
    # 256 items ending at once were 256 GETs of a growing ConfigMap and 255 PATCHes, one after another,
    # before the status write their dependents wait for.
    c = Cluster()
    now = c.clock.now()
    old = stored_entry("old", now - timedelta(hours=2), now - timedelta(hours=1))
    if exists:
        c.api.config_maps[(NS, CACHE)] = {"labels": {MEMO_CACHE_LABEL: "true"}, "data": dict([old])}
    shards = [f"s{i:03d}" for i in range(256)]
    memo = {"key": "build-{{inputs.parameters.shard}}", "cache": {"configMap": {"name": CACHE}}}
    step = job_step("a", matrix={"parameters": [{"name": "shard", "values": shards}]}, memoize=memo)
    key = c.api.create_flow(make_flow([step, job_step("b", "a")], name="wide")).key
    c.api.sync()
    await c.controller.reconcile(key)
    c.api.sync()
    assert len(c.api.job_creates) == 256
    for (_, job), found in list(c.api.jobs.items()):
        if not found.finished:
            c.api.finish_job(NS, job)
    c.api.sync()
    before = len(c.api.config_map_requests)
    await c.controller.reconcile(key)
    assert c.api.config_map_requests[before:] == [
        f"get {CACHE}",
        f"{'patch' if exists else 'create'} {CACHE}",
    ]
    data = c.api.config_maps[(NS, CACHE)]["data"]
    assert set(data) == {data_key(f"build-{s}") for s in shards}  # the expired entry removed with them
    assert saves(c) == {"ok": 256, "error": 0}
    step_b = c.api.flows[key].status.step("b")
    assert step_b is not None
    assert step_b.phase == "Running"
