"""Delivering CloudEvents (controller/cloud_event_sink.py): in order, retried while the sink is down or
busy, dropped (and counted) when it refuses, after the give-up time, or when the queue is full; never a
log line per event; and over real HTTP, the headers and body a receiver sees."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from zen_flow import config
from zen_flow.controller.cloud_event_sink import (
    GIVE_UP_SECONDS,
    REFUSAL_LOG_SECONDS,
    CloudEventSink,
    configured_sink,
)
from zen_flow.controller.metrics import Metrics
from zen_flow.machinery.clock import SystemClock
from zen_flow.planner.cloud_events import CloudEvent, cloud_events
from zen_flow_dev.testing.clock import FakeClock, settle
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

URL = "http://sink.example:8080/events"
HANG = "hang"


def event(n: int) -> CloudEvent:
    return CloudEvent(
        id=f"id-{n}", source="/s", type="t", subject=f"step-{n}", time="2025-01-01T00:00:00Z", data=b"{}"
    )


class Receiver:
    """A fake transport: answers in turn from `answers` (a status, an exception, HANG), then 202."""

    def __init__(self, *answers: int | BaseException | str) -> None:
        self.answers = list(answers)
        self.ids: list[str] = []

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        assert url == URL
        self.ids.append(headers["ce-id"])
        answer = self.answers.pop(0) if self.answers else 202
        if answer == HANG:
            await asyncio.Event().wait()
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, int)
        return answer


def sample(metrics: Metrics, name: str, reason: str | None = None) -> float:
    labels = {} if reason is None else {"reason": reason}
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def running(sink: CloudEventSink) -> asyncio.Task[None]:
    task = asyncio.create_task(sink.run())
    await settle()
    return task


async def stop(task: asyncio.Task[None]) -> None:
    """End the sender (it has ended by itself if the sink was flushed)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_events_go_out_in_order_and_are_counted(clock: FakeClock) -> None:
    receiver, metrics = Receiver(), Metrics()
    sink = CloudEventSink(URL, clock=clock, metrics=metrics, post=receiver.post)
    task = await running(sink)
    for n in range(3):
        sink.publish(event(n))
    await settle()
    assert receiver.ids == ["id-0", "id-1", "id-2"]
    assert sample(metrics, "zen_flow_cloudevents_sent_total") == 3
    assert sink.depth == 0
    await stop(task)


async def test_a_busy_or_failing_sink_gets_the_same_event_again_until_it_takes_it(clock: FakeClock) -> None:
    receiver, metrics = Receiver(503, 429, ConnectionRefusedError(), TimeoutError()), Metrics()
    sink = CloudEventSink(URL, clock=clock, metrics=metrics, post=receiver.post)
    task = await running(sink)
    sink.publish(event(1))
    sink.publish(event(2))
    await clock.advance(GIVE_UP_SECONDS / 2)  # four backoffs of at most 0.5 + 1 + 2 + 4 s
    assert receiver.ids == ["id-1"] * 5 + ["id-2"]  # the next one waited its turn: order is kept
    assert sample(metrics, "zen_flow_cloudevents_sent_total") == 2
    for reason in ("server_error", "throttled", "connection", "timeout"):
        assert sample(metrics, "zen_flow_cloudevents_failed_total", reason) == 1, reason
    assert sample(metrics, "zen_flow_cloudevents_dropped_total", "gave_up") == 0
    await stop(task)


async def test_an_event_is_dropped_after_the_give_up_time_and_the_next_one_goes(clock: FakeClock) -> None:
    down = [ConnectionRefusedError() for _ in range(100)]
    receiver, metrics = Receiver(*down), Metrics()
    sink = CloudEventSink(URL, clock=clock, metrics=metrics, post=receiver.post)
    task = await running(sink)
    sink.publish(event(1))
    await clock.advance(GIVE_UP_SECONDS + 10)  # the last wait may start just before the give-up time
    assert sample(metrics, "zen_flow_cloudevents_dropped_total", "gave_up") == 1
    attempts = len(receiver.ids)
    assert 5 < attempts < 20  # backed off, not hammered
    receiver.answers.clear()  # the sink is back
    sink.publish(event(2))
    await settle()
    assert receiver.ids[attempts:] == ["id-2"]
    assert sample(metrics, "zen_flow_cloudevents_sent_total") == 1
    await stop(task)


async def test_a_refusal_is_not_sent_again(clock: FakeClock) -> None:
    receiver, metrics = Receiver(400, 302), Metrics()
    sink = CloudEventSink(URL, clock=clock, metrics=metrics, post=receiver.post)
    task = await running(sink)
    sink.publish(event(1))
    sink.publish(event(2))
    sink.publish(event(3))
    await settle()
    assert receiver.ids == ["id-1", "id-2", "id-3"]
    assert sample(metrics, "zen_flow_cloudevents_dropped_total", "refused") == 2
    assert sample(metrics, "zen_flow_cloudevents_failed_total", "refused") == 2
    assert sample(metrics, "zen_flow_cloudevents_sent_total") == 1
    await stop(task)


async def test_a_full_queue_drops_the_oldest(clock: FakeClock) -> None:
    receiver, metrics = Receiver(), Metrics()
    sink = CloudEventSink(URL, clock=clock, metrics=metrics, post=receiver.post, max_pending=3)
    for n in range(5):  # the sender is not running: a sink that hangs looks the same from here
        sink.publish(event(n))
    assert sink.depth == 3
    assert sample(metrics, "zen_flow_cloudevents_dropped_total", "queue_full") == 2
    task = await running(sink)
    assert receiver.ids == ["id-2", "id-3", "id-4"]
    await stop(task)


async def test_the_log_says_when_the_sink_fails_and_when_it_recovers_not_per_event(clock: FakeClock) -> None:
    receiver = Receiver(*[500] * 12)  # more than one event's attempts before it gives up
    sink = CloudEventSink(URL, clock=clock, metrics=Metrics(), post=receiver.post)
    with capture_logs() as logs:
        task = await running(sink)
        for n in range(3):
            sink.publish(event(n))
        await clock.advance(3 * (GIVE_UP_SECONDS + 10))
        await stop(task)
    said = [entry["event"] for entry in logs if entry["log_level"] != "debug"]
    assert len(receiver.ids) > 12
    assert said == [
        "cloudevents sink failing; retrying with backoff, dropping what waits too long",
        "cloudevents sink recovered",
    ]
    assert logs[0]["sink"] == "http://sink.example:8080"  # never the path, which may hold a token


async def test_shutdown_waits_a_bounded_time_for_what_is_queued_then_sends_nothing(clock: FakeClock) -> None:
    receiver, metrics = Receiver(HANG, 500), Metrics()
    sink = CloudEventSink(URL, clock=clock, metrics=metrics, post=receiver.post)
    task = await running(sink)
    sink.publish(event(1))
    sink.publish(event(2))
    with capture_logs():
        flushing = asyncio.create_task(sink.flush(5.0))
        await clock.advance(5.0)
        await flushing
    assert sample(metrics, "zen_flow_cloudevents_dropped_total", "shutdown") == 2
    # The lease is released next: from now on a new leader sends, so this one is silent. The POST in
    # flight was abandoned, the sender ended, and what comes later is not sent.
    await settle()
    assert task.done()
    assert task.exception() is None
    sink.publish(event(3))
    await clock.advance(GIVE_UP_SECONDS)
    assert receiver.ids == ["id-1"]
    assert sample(metrics, "zen_flow_cloudevents_dropped_total", "shutdown") == 3
    idle = CloudEventSink(URL, clock=clock, metrics=Metrics(), post=Receiver().post)
    await idle.flush(5.0)  # nothing queued: returns at once, on a clock nobody advances


async def test_a_flush_during_another_returns_when_either_stopped_the_sink(
    clock: FakeClock,
) -> None:
    # On SIGTERM the reconcile task flushes once its reconciles end; the shutdown flushes too when they
    # overran. The second must not hold the lease for a budget of its own, nor warn of nothing left.
    receiver, metrics = Receiver(HANG), Metrics()
    sink = CloudEventSink(URL, clock=clock, metrics=metrics, post=receiver.post)
    task = await running(sink)
    sink.publish(event(1))
    with capture_logs() as logs:
        first = asyncio.create_task(sink.flush(5.0))
        await clock.advance(3.0)
        second = asyncio.create_task(sink.flush(5.0))
        await clock.advance(2.0)  # the first flush's budget is over; the second's would end 3 s later
        await settle()
        assert second.done()
        await first
        await sink.flush(5.0)  # once stopped: at once
    assert [(e["event"], e["events"]) for e in logs if e["log_level"] == "warning"] == [
        ("cloudevents not sent before shutdown", 1)
    ]
    assert sample(metrics, "zen_flow_cloudevents_dropped_total", "shutdown") == 1
    await settle()
    assert task.done()
    # The shutdown's flush once the reconciles overran their time (renew deadline + flush): it stops
    # the sink at once, ending the reconcile task's flush with it.
    sink = CloudEventSink(URL, clock=clock, metrics=Metrics(), post=Receiver(HANG).post)
    task = await running(sink)
    sink.publish(event(2))
    with capture_logs():
        first = asyncio.create_task(sink.flush(5.0))
        await settle()
        await sink.flush(0.0)
        await settle()
        assert first.done()
    await settle()
    assert task.done()


async def test_refusals_log_a_line_a_minute_and_neither_end_nor_start_a_streak(clock: FakeClock) -> None:
    # A receiver that refuses one type of event and takes the others; then one that is down a moment.
    receiver = Receiver(*[400, 202] * 10, 500, 202, 400, 202)
    sink = CloudEventSink(URL, clock=clock, metrics=Metrics(), post=receiver.post)
    with capture_logs() as logs:
        task = await running(sink)
        for n in range(20):
            sink.publish(event(n))
        await settle()
        sink.publish(event(20))
        await clock.advance(1.0)  # its 500, then its retry taken
        await clock.advance(REFUSAL_LOG_SECONDS)
        sink.publish(event(21))
        await settle()
        await stop(task)
    said = [(entry["event"], entry.get("refused")) for entry in logs if entry["log_level"] != "debug"]
    assert said == [
        ("cloudevents refused by the sink; dropped, not sent again", 1),
        ("cloudevents sink failing; retrying with backoff, dropping what waits too long", None),
        ("cloudevents sink recovered", None),
        ("cloudevents refused by the sink; dropped, not sent again", 10),  # a minute on: the count since
    ]


# --- the settings -------------------------------------------------------------------------------------


def settings(*argv: str, env: dict[str, str] | None = None) -> config.Settings:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.load(parser.parse_args(list(argv)), env=env or {})


def test_the_sink_is_off_unless_set_by_flag_or_environment() -> None:
    assert settings().cloudevents_sink == ""
    assert (
        settings("--cloudevents-sink", "https://hooks.example/ce").cloudevents_sink
        == "https://hooks.example/ce"
    )
    env = {"ZEN_FLOW_CLOUDEVENTS_SINK": "http://r.ns.svc:8080/"}
    assert settings(env=env).cloudevents_sink == "http://r.ns.svc:8080/"


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        ("ftp://hooks.example/", "ftp://hooks.example"),
        ("hooks.example:8080", "..."),  # no scheme: nothing to tell a host from a token
        ("http://", "http://"),
        ("http://hooks.example:99999/", "http://hooks.example:99999"),
        ("/x", "..."),
    ],
)
def test_a_sink_that_is_no_http_url_is_refused_naming_the_flag(bad: str, shown: str) -> None:
    with pytest.raises(ValueError, match=r"--cloudevents-sink: .* URL") as err:
        settings(f"--cloudevents-sink={bad}")
    assert f"--cloudevents-sink: {shown!r} " in str(err.value)


def test_the_ca_bundle_is_read_at_start_and_only_for_https(tmp_path: Path) -> None:
    missing = tmp_path / "none.pem"
    with pytest.raises(ValueError, match=r"--cloudevents-ca-file: .* is not a readable PEM bundle"):
        settings("--cloudevents-sink=https://h.example/", f"--cloudevents-ca-file={missing}")
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello")
    with pytest.raises(ValueError, match=r"--cloudevents-ca-file: .* is not a readable PEM bundle"):
        settings("--cloudevents-sink=https://h.example/", f"--cloudevents-ca-file={not_pem}")
    with pytest.raises(ValueError, match="--cloudevents-ca-file needs an https --cloudevents-sink"):
        settings("--cloudevents-sink=http://h.example/", f"--cloudevents-ca-file={not_pem}")


def test_step_events_are_sent_unless_turned_off_by_flag_or_environment() -> None:
    assert settings("--cloudevents-sink=http://h.example/").cloudevents_step_events is True
    assert settings("--cloudevents-step-events=false").cloudevents_step_events is False
    assert settings("--cloudevents-step-events", "true").cloudevents_step_events is True
    env = {"ZEN_FLOW_CLOUDEVENTS_STEP_EVENTS": "false"}
    assert settings(env=env).cloudevents_step_events is False
    assert settings("--cloudevents-step-events=true", env=env).cloudevents_step_events is True  # flag wins


@pytest.mark.parametrize("bad", ["maybe", "", "steps"])
def test_a_step_events_value_that_is_no_boolean_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match=f"^--cloudevents-step-events: not a boolean: {bad!r}"):
        settings(f"--cloudevents-step-events={bad}")
    env = {"ZEN_FLOW_CLOUDEVENTS_STEP_EVENTS": bad}
    with pytest.raises(ValueError, match=f"^ZEN_FLOW_CLOUDEVENTS_STEP_EVENTS: not a boolean: {bad!r}"):
        settings(env=env)


def test_the_sink_of_the_settings_takes_what_they_say_of_step_events() -> None:
    metrics, clock = Metrics(), FakeClock()
    assert configured_sink(settings("--cloudevents-step-events=false"), clock, metrics) is None  # no sink
    on = configured_sink(settings("--cloudevents-sink=http://h.example/"), clock, metrics)
    off = configured_sink(
        settings("--cloudevents-sink=http://h.example/", "--cloudevents-step-events=false"), clock, Metrics()
    )
    assert on is not None
    assert off is not None
    assert (on.step_events, off.step_events) == (True, False)


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf"])
def test_the_timeout_must_be_a_finite_number_above_zero(bad: str) -> None:
    with pytest.raises(ValueError, match="--cloudevents-timeout must be a finite number of seconds > 0"):
        settings("--cloudevents-sink=http://h.example/", f"--cloudevents-timeout={bad}")


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("http://h /x", "holds whitespace"),
        (" http://h.example/", "holds whitespace"),
        ("http://h.example/\n", "holds whitespace"),  # a Secret written with `echo`
        ("http://h.example:0/", "names port 0"),
    ],
)
def test_a_sink_the_requests_could_not_reach_is_refused_at_start(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"--cloudevents-sink: .* {why}"):
        settings(f"--cloudevents-sink={bad}")


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        ("ftp://robot:S3CRET@hooks.example/in?token=S3CRET#S3CRET", "'ftp://hooks.example'"),
        ("http://robot:S3CRET@hooks.example:99999/?token=S3CRET", "'http://hooks.example:99999'"),
        ("http://hooks.example/in?token=S3CRET x", "'http://hooks.example'"),
        # A Slack-style URL: the secret is in the path.
        ("https://hooks.example/services/T0/B0/S3CRET x", "'https://hooks.example'"),
        ("https://hooks.example:0/services/S3CRET", "'https://hooks.example:0'"),
        ("https://robot:S3/CRET@hooks.example/ x", "'https://...'"),  # a "/" in the password
    ],
)
def test_a_start_up_error_shows_only_the_sinks_scheme_host_and_port(bad: str, shown: str) -> None:
    with pytest.raises(ValueError, match="--cloudevents-sink") as err:
        settings(f"--cloudevents-sink={bad}")
    assert shown in str(err.value)
    assert "S3CRET" not in str(err.value)


# --- over real HTTP, on loopback ------------------------------------------------------------------


class HttpReceiver:
    """A CloudEvents receiver on 127.0.0.1: what it got, and a wait for it."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self._changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self._changed:
            self.got.append((dict(request.headers), body))
            self._changed.notify_all()
        answer = web.Response(status=202)
        answer.set_cookie(f"session{len(self.got)}", "x" * 1000)  # a sink with a session of its own
        return answer

    async def wait_for(self, count: int, seconds: float = 10.0) -> None:
        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(lambda: len(self.got) >= count)


@pytest.fixture
async def http_receiver() -> AsyncIterator[tuple[HttpReceiver, str]]:
    receiver = HttpReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield receiver, str(server.make_url("/hook"))
    await server.close()


async def test_a_receiver_gets_the_binary_content_mode(http_receiver: tuple[HttpReceiver, str]) -> None:
    receiver, url = http_receiver
    got = receiver.got
    sim = Simulator(make_flow([job_step("build")], name="nightly", namespace="team-a"), datetime.now(UTC))
    sim.reconcile()
    published = cloud_events(sim.flow, sim.last.status, sim.last.events, sim.now)
    metrics = Metrics()
    sink = CloudEventSink(url, clock=SystemClock(), metrics=metrics)
    task = asyncio.create_task(sink.run())
    for cloud_event in published:
        sink.publish(cloud_event)
    try:
        await receiver.wait_for(len(published))
        await sink.flush(5.0)  # the answers read and counted
    finally:
        await stop(task)
        await sink.close()
    headers, body = got[1]
    assert {k.lower(): v for k, v in headers.items() if k.lower().startswith("ce-")} == {
        "ce-specversion": "1.0",
        "ce-id": published[1].id,
        "ce-source": "/apis/workflow.kube-zen.io/v1alpha1/namespaces/team-a/jobflows/nightly",
        "ce-type": "dev.kube-zen.jobflow.step.started.v1",
        "ce-subject": "build",
        "ce-time": published[1].time,
    }
    assert headers["Content-Type"] == "application/json"
    data: dict[str, Any] = json.loads(body)
    assert (data["flow"], data["step"], data["reason"]) == ("nightly", "build", "StepStarted")
    assert [h["ce-type"] for h, _ in got] == [e.type for e in published]
    assert metrics.registry.get_sample_value("zen_flow_cloudevents_sent_total") == 2


async def test_the_sinks_cookies_are_not_kept(http_receiver: tuple[HttpReceiver, str]) -> None:
    receiver, url = http_receiver
    # By name: a cookie jar keeps no cookie from an IP address, so 127.0.0.1 would prove nothing.
    sink = CloudEventSink(url.replace("127.0.0.1", "localhost"), clock=SystemClock(), metrics=Metrics())
    task = asyncio.create_task(sink.run())
    for n in range(3):
        sink.publish(event(n))
    try:
        await receiver.wait_for(3)
    finally:
        await stop(task)
        await sink.close()
    assert [h.get("Cookie") for h, _ in receiver.got] == [None, None, None]


async def test_an_answer_over_64_kib_is_not_read_its_connection_is_closed_instead() -> None:
    peers: list[object] = []
    bodies = [b"x" * (1024 * 1024), b"ok", b"ok", b"y" * (64 * 1024)]  # answers in turn

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(status=202, body=bodies[len(peers) - 1])

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    metrics = Metrics()
    sink = CloudEventSink(str(server.make_url("/hook")), clock=SystemClock(), metrics=metrics)
    task = asyncio.create_task(sink.run())
    for n in range(len(bodies)):
        sink.publish(event(n))
    try:
        await sink.flush(10.0)
    finally:
        await stop(task)
        await sink.close()
        await server.close()
    assert metrics.registry.get_sample_value("zen_flow_cloudevents_sent_total") == 4
    # The 1 MiB answer was left unread, so its connection could not serve the next POST; the small
    # answers (64 KiB included) were read and their connection kept.
    assert peers[1] != peers[0]
    assert peers[3] == peers[2] == peers[1]
