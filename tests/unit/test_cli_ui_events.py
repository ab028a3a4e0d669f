"""The web UI's live updates: each page's stream of Server-Sent Events, fed by a (fake) watch of its
flows, says `changed` when they change, holds one watch per page, ends it when the page goes, refuses
streams past its cap; and `changes`, the watch `zen-flow watch` and the pages share, lists, watches from
where it stopped, and lists again after 410 Gone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from test_cli_render import NOW, release
from test_cli_ui import FakeClient

from zen_flow.cli.ui_events import CHANGED, KEEP_ALIVE
from zen_flow.cli.ui_pages import flow_page, list_page
from zen_flow.cli.ui_server import HEADERS, Ui, start
from zen_flow.cli.watcher import Change, changes
from zen_flow.kube.errors import Expired
from zen_flow.kube.streams import WatchEvent
from zen_flow_dev.testing.clock import FakeClock, settle

DEADLINE = 10.0  # seconds a test waits for what must happen at once


class FakeWatch:
    """The watches the server opens: what each was asked (client, namespace, name, since), a queue of
    changes to send each, and the ones that were closed."""

    def __init__(self) -> None:
        self.asked: list[tuple[str | None, str | None, str]] = []
        self.feeds: list[asyncio.Queue[Change | None]] = []
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()

    async def follow(
        self, client: Any, namespace: str | None, name: str | None, since: str
    ) -> AsyncGenerator[Change]:
        feed: asyncio.Queue[Change | None] = asyncio.Queue()
        self.asked.append((namespace, name, since))
        self.feeds.append(feed)
        self.opened.set()
        try:
            while (change := await feed.get()) is not None:
                yield change
        finally:
            self.closed.set()


@pytest.fixture
async def served() -> AsyncIterator[tuple[Ui, FakeWatch]]:
    watch = FakeWatch()
    ui = Ui(FakeClient(release().flow), "team-a", False, "s3cret")  # type: ignore[arg-type]
    ui.streams.follow = watch.follow
    runner = await start(ui, 0)
    yield ui, watch
    await runner.cleanup()


def _browser(ui: Ui) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookies={ui.cookie: "s3cret"})


@contextlib.asynccontextmanager
async def _opened(ui: Ui, path: str, *, token: bool = True) -> AsyncIterator[aiohttp.ClientResponse]:
    """`path` of the server as a browser opens it (with the token's cookie, or without); closed after."""
    browser = _browser(ui) if token else aiohttp.ClientSession()
    async with browser, browser.get(f"http://127.0.0.1:{ui.port}{path}") as answer:
        yield answer


async def _next_event(answer: aiohttp.ClientResponse) -> bytes:
    """The next event or comment, blank line included."""
    lines = []
    while (line := await asyncio.wait_for(answer.content.readline(), DEADLINE)) != b"\n":
        assert line, "the stream ended"
        lines.append(line)
    return b"".join(lines) + b"\n"


async def test_a_change_of_the_flow_is_sent_as_a_bare_notice_and_the_watch_ends_with_the_page(
    served: Any,
) -> None:
    ui, watch = served
    async with _opened(ui, "/flows/team-a/release/events?rv=41") as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/event-stream"
        assert answer.headers["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]
        await asyncio.wait_for(watch.opened.wait(), DEADLINE)
        # The one flow, watched from the version the page was made from.
        assert watch.asked == [("team-a", "release", "41")]
        hostile = {"metadata": {"name": "release"}, "status": {"message": "<script>x</script>"}}
        await watch.feeds[0].put(Change("changed", (hostile,)))
        assert await _next_event(answer) == CHANGED == b"event: changed\ndata: changed\n\n"
        assert ui.streams.open == 1
    # The page went (its connection closed): its watch ends at once, and its place is free.
    await asyncio.wait_for(watch.closed.wait(), DEADLINE)
    assert ui.streams.open == 0


async def test_the_list_page_follows_the_namespace_it_shows_and_a_relist_counts_as_a_change(
    served: Any,
) -> None:
    ui, watch = served
    async with _opened(ui, "/events?all=1") as answer:
        await asyncio.wait_for(watch.opened.wait(), DEADLINE)
        assert watch.asked == [(None, None, "")]  # every namespace; no version: a LIST first
        feed = watch.feeds[0]
        await feed.put(Change("listed", ()))  # the baseline: the page was just made from it
        await feed.put(Change("listed", ()))  # a LIST after 410 Gone: anything may have changed
        assert await _next_event(answer) == CHANGED
    watch.opened.clear()
    async with _opened(ui, "/events?namespace=team-b&rv=x;y") as answer:
        assert answer.status == 200
        await asyncio.wait_for(watch.opened.wait(), DEADLINE)
    assert watch.asked[1] == ("team-b", None, "")  # a malformed version is no version


async def test_a_stream_sends_at_most_one_notice_a_second_the_changes_in_between_in_one(served: Any) -> None:
    ui, watch = served
    clock = ui.streams.clock = FakeClock(start=1000.0)
    change = Change("changed", ({"metadata": {"name": "release"}},))
    async with _opened(ui, "/flows/team-a/release/events?rv=41") as answer:
        await asyncio.wait_for(watch.opened.wait(), DEADLINE)
        feed = watch.feeds[0]
        await feed.put(change)
        assert await _next_event(answer) == CHANGED  # the first change: at once
        # A change 200 ms later: its notice waits until a second after the last one...
        await clock.advance(0.2)
        await feed.put(change)
        await settle()
        assert clock.next_deadline() == 1001.0
        for _ in range(5):  # ...and the changes that come meanwhile go with it
            await clock.advance(0.1)
            await feed.put(change)
        await clock.advance(0.3)
        assert await _next_event(answer) == CHANGED
        await settle()
        assert clock.pending_timers == 0  # nothing more to tell: the sender waits for a change
        # After a quiet second, a change is told at once.
        await clock.advance(1.0)
        await feed.put(change)
        assert await _next_event(answer) == CHANGED
        assert clock.pending_timers == 0


async def test_no_change_for_a_while_sends_a_keep_alive_comment_that_finds_a_page_gone(served: Any) -> None:
    ui, _ = served
    ui.streams.heartbeat = 0.01
    async with _opened(ui, "/flows/team-a/release/events") as answer:
        assert await _next_event(answer) == KEEP_ALIVE


async def test_streams_past_the_cap_are_refused_and_the_page_falls_back_to_reloading(served: Any) -> None:
    ui, watch = served
    ui.streams.limit = 1
    address = f"http://127.0.0.1:{ui.port}/flows/team-a/release/events"
    async with _browser(ui) as browser, browser.get(address) as first:
        assert first.status == 200
        await asyncio.wait_for(watch.opened.wait(), DEADLINE)
        async with browser.get(address) as second:
            assert second.status == 503
            assert "reloads by itself" in await second.text()
            assert second.headers["X-Frame-Options"] == "DENY"
    assert len(watch.asked) == 1


async def test_a_stream_needs_the_token_and_names_a_flow(served: Any) -> None:
    ui, watch = served
    async with _opened(ui, "/events", token=False) as answer:
        assert answer.status == 403
    async with _opened(ui, "/flows/team-a/x%3By/events") as answer:
        assert answer.status == 400
        assert "name &#x27;x;y&#x27; is not a Kubernetes name" in await answer.text()
    assert watch.asked == []


async def test_a_watch_that_fails_ends_the_stream(served: Any) -> None:
    ui, watch = served
    async with _opened(ui, "/flows/team-a/release/events") as answer:
        await asyncio.wait_for(watch.opened.wait(), DEADLINE)
        await watch.feeds[0].put(None)  # the watch ends (a 403 on WATCH, the apiserver gone)
        assert await asyncio.wait_for(answer.content.read(), DEADLINE) == b""


async def test_the_server_stops_at_once_with_a_page_still_open() -> None:
    watch = FakeWatch()
    ui = Ui(FakeClient(release().flow), "team-a", False, "s3cret")  # type: ignore[arg-type]
    ui.streams.follow = watch.follow
    runner = await start(ui, 0)
    async with _opened(ui, "/flows/team-a/release/events") as answer:
        await asyncio.wait_for(watch.opened.wait(), DEADLINE)
        await asyncio.wait_for(runner.cleanup(), DEADLINE)  # Ctrl-C: not a minute's wait for the page
        assert watch.closed.is_set()
        assert await asyncio.wait_for(answer.content.read(), DEADLINE) == b""


def test_pages_name_their_stream_with_the_version_they_were_made_from() -> None:
    flow = release().flow
    flow = flow.model_copy(update={"metadata": flow.metadata.model_copy(update={"resource_version": "812"})})
    assert '<div id="live" data-events="/flows/team-a/release/events?rv=812">' in flow_page(flow, NOW)
    assert 'data-events="/events?namespace=team-a&amp;rv=9">' in list_page([], "team-a", version="9")
    assert 'data-events="/events?all=1&amp;rv=9">' in list_page([], None, version="9")
    note = flow_page(flow, NOW, note="approved")
    assert note.index('<div class="note">approved</div>') < note.index('<div id="live"')  # kept by a swap
    assert "connect-src 'self'" in HEADERS["Content-Security-Policy"]


class FakeApiserver:
    """LIST and WATCH of JobFlows as `changes` asks them: each watch sends its batch of events, or raises
    410 Gone; `asked` records every request."""

    def __init__(self, watches: list[list[WatchEvent] | Exception]) -> None:
        self.watches = watches
        self.asked: list[tuple[str, str, dict[str, str]]] = []
        self.lists = 0

    async def list_all(self, path: str, query: Any = (), **_: Any) -> Any:
        self.lists += 1
        self.asked.append(("LIST", path, dict(query)))
        return SimpleNamespace(
            items=({"metadata": {"name": f"listed-{self.lists}"}},), resource_version=f"{self.lists}00"
        )

    @contextlib.asynccontextmanager
    async def stream(self, path: str, query: Any, **_: Any) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        self.asked.append(("WATCH", path, dict(query)))
        batch = self.watches.pop(0)
        if isinstance(batch, Exception):
            raise batch

        async def events() -> AsyncIterator[WatchEvent]:
            for event in batch:
                yield event

        yield events()


async def test_changes_lists_watches_on_from_where_it_stopped_and_lists_again_after_gone() -> None:
    def event(kind: str, name: str, version: str) -> WatchEvent:
        return WatchEvent(kind, {"metadata": {"name": name, "resourceVersion": version}})

    api = FakeApiserver(
        [
            [event("ADDED", "a", "101"), event("BOOKMARK", "", "150")],
            [event("DELETED", "a", "160")],
            Expired(410, "Expired", "too old"),
            [event("MODIFIED", "b", "201")],
        ]
    )
    seen = []
    async with contextlib.aclosing(changes(api, "team-a", "a", "")) as follow:  # type: ignore[arg-type]
        async for change in follow:
            seen.append((change.kind, [i["metadata"]["name"] for i in change.items]))
            if len(seen) == 5:
                break
    assert seen == [
        ("listed", ["listed-1"]),
        ("changed", ["a"]),  # the bookmark is no change
        ("deleted", ["a"]),
        ("listed", ["listed-2"]),  # after 410 Gone
        ("changed", ["b"]),
    ]
    versions = [(verb, q.get("resourceVersion")) for verb, _, q in api.asked]
    assert versions == [
        ("LIST", None),
        ("WATCH", "100"),
        ("WATCH", "150"),
        ("WATCH", "160"),
        ("LIST", None),
        ("WATCH", "200"),
    ]
    assert {q["fieldSelector"] for _, _, q in api.asked} == {"metadata.name=a"}


async def test_changes_from_a_known_version_watches_at_once() -> None:
    api = FakeApiserver([[WatchEvent("MODIFIED", {"metadata": {"name": "x", "resourceVersion": "8"}})]])
    async with contextlib.aclosing(changes(api, None, None, "7")) as follow:  # type: ignore[arg-type]
        first = await anext(follow)
    assert first.kind == "changed"
    assert api.asked == [
        (
            "WATCH",
            "/apis/workflow.kube-zen.io/v1alpha1/jobflows",
            {"allowWatchBookmarks": "true", "resourceVersion": "7"},
        )
    ]
