"""zen_flow.kube's lists and watches against a scripted HTTP apiserver (kube_client_rig): pages, continue
tokens, relists at a resourceVersion, watch decoding and its errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kube_client_rig import FakeApiserver, reply, status_body, watch_lines
from kube_client_rig import api_fixture as api_fixture  # the `api` fixture
from kube_client_rig import clock_fixture as clock_fixture  # the `clock` fixture
from kube_client_rig import fake_fixture as fake_fixture  # the `fake` fixture
from kube_client_rig import kube_fixture as kube_fixture  # the `kube` fixture

from zen_flow.kube import ApiError, Expired, JobClient, JobFlowClient, KubeClient


async def test_list_follows_continue_tokens_and_keeps_the_snapshot_rv(
    api: FakeApiserver, kube: KubeClient
) -> None:
    api.answer(
        reply(
            200,
            {
                "metadata": {"resourceVersion": "100", "continue": "t1"},
                "items": [{"metadata": {"name": "a"}}],
            },
        ),
        reply(200, {"metadata": {"resourceVersion": "100"}, "items": [{"metadata": {"name": "b"}}]}),
    )
    result = await JobClient(kube).list(None)
    assert [i["metadata"]["name"] for i in result.items] == ["a", "b"]
    assert result.resource_version == "100"
    first, second = api.requests
    assert first[1] == "/apis/batch/v1/jobs"
    assert first[3] == {"labelSelector": "app.kubernetes.io/managed-by=zen-flow", "limit": "500"}
    assert second[3]["continue"] == "t1"


async def test_list_decodes_each_page_before_asking_for_the_next(
    api: FakeApiserver, kube: KubeClient
) -> None:
    page = {"metadata": {"resourceVersion": "100", "continue": "t1"}, "items": [{"metadata": {"name": "a"}}]}
    api.answer(reply(200, page), reply(200, {"metadata": {"resourceVersion": "100"}, "items": [{}, {}]}))
    seen: list[tuple[str, int]] = []

    class Names:
        """Decodes nothing fast (page/event None): the client's fallback calls `item` per object."""

        def item(self, raw: dict[str, Any]) -> str | None:
            name = raw.get("metadata", {}).get("name")
            seen.append((name or "?", len(api.requests)))
            return name  # None: dropped

        def page(self, raw: bytes) -> None:
            return None

        def event(self, raw: bytes) -> None:
            return None

    result = await JobClient(kube).list(None, decoder=Names())
    assert result.items == ("a",)
    assert result.resource_version == "100"
    # "a" was decoded while only the first page had been requested; the nameless ones were dropped.
    assert seen == [("a", 1), ("?", 2), ("?", 2)]


async def test_an_expired_continue_token_restarts_the_list_in_pages_then_in_one(
    api: FakeApiserver, kube: KubeClient
) -> None:
    first_page = reply(
        200,
        {"metadata": {"resourceVersion": "100", "continue": "t1"}, "items": [{"metadata": {"name": "a"}}]},
    )
    expired = reply(410, status_body(410, "Expired", "continue token expired"))
    api.answer(
        first_page,
        expired,
        first_page,  # the restart, in pages: one unpaginated answer would hold the whole list at once
        expired,
        reply(200, {"metadata": {"resourceVersion": "300"}, "items": [{"metadata": {"name": "b"}}]}),
    )
    result = await JobFlowClient(kube).list("ns", "")
    assert [i["metadata"]["name"] for i in result.items] == ["b"]
    assert result.resource_version == "300"
    assert api.requests[0][3]["limit"] == "100"  # JobFlows are big: smaller pages than Jobs
    assert [(q.get("limit"), q.get("continue")) for _, _, _, q, _ in api.requests] == [
        ("100", None),
        ("100", "t1"),
        ("100", None),
        ("100", "t1"),
        (None, None),  # twice expired: one full list, as client-go's pager falls back to
    ]


async def test_watch_decodes_events_and_bookmarks(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(
        watch_lines(
            {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "11"}}},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
        )
    )
    async with JobClient(kube).watch("ns", "10", 300) as stream:
        events = [(e.type, e.resource_version) async for e in stream]
    assert events == [("ADDED", "11"), ("BOOKMARK", "12")]
    _, path, _, query, _ = api.requests[0]
    assert path == "/apis/batch/v1/namespaces/ns/jobs"
    assert query == {
        "labelSelector": "app.kubernetes.io/managed-by=zen-flow",
        "watch": "true",
        "allowWatchBookmarks": "true",
        "resourceVersion": "10",
        "timeoutSeconds": "300",
    }


async def test_watch_reads_events_larger_than_aiohttps_line_limit(
    api: FakeApiserver, kube: KubeClient
) -> None:
    # A JobFlow of a few hundred steps is a watch line of several hundred KB (aiohttp's default: 128 KB).
    steps = [{"name": f"s{i}", "template": {"spec": {"x": "y" * 900}}} for i in range(600)]
    big = {"metadata": {"name": "big", "resourceVersion": "12"}, "spec": {"steps": steps}}
    api.answer(watch_lines({"type": "ADDED", "object": big}))
    async with JobFlowClient(kube).watch("ns", "1", timeout_seconds=300) as stream:
        events = [event async for event in stream]
    assert len(json.dumps(big)) > 500_000
    assert [(e.type, e.resource_version, len(e.object["spec"]["steps"])) for e in events] == [
        ("ADDED", "12", 600)
    ]


async def test_watch_error_event_410_raises_expired(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(
        watch_lines(
            {"type": "ERROR", "object": status_body(410, "Expired", "too old resource version: 5 (90)")}
        )
    )
    async with JobClient(kube).watch("ns", "5", 300) as stream:
        with pytest.raises(Expired):
            await anext(stream)


async def test_watch_refused_with_an_http_error_raises_it(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(reply(403, status_body(403, "Forbidden", "cannot watch jobs")))
    with pytest.raises(ApiError, match="Forbidden"):
        async with JobClient(kube).watch(None, "5", 300):
            pass


async def test_relist_at_an_rv_is_not_older_than_it_in_pages(api: FakeApiserver, kube: KubeClient) -> None:
    api.answer(
        reply(200, {"metadata": {"resourceVersion": "60", "continue": "t1"}, "items": []}),
        reply(200, {"metadata": {"resourceVersion": "60"}, "items": []}),
    )
    result = await JobFlowClient(kube).list("ns", "55")
    assert result.resource_version == "60"
    # In pages: resourceVersionMatch spelt out keeps "not older than" with a limit (KEP-2523); the next
    # pages name only their continue token (the apiserver refuses an RV or a match beside one: 422).
    assert [q for _, _, _, q, _ in api.requests] == [
        {"resourceVersion": "55", "resourceVersionMatch": "NotOlderThan", "limit": "100"},
        {"limit": "100", "continue": "t1"},
    ]
