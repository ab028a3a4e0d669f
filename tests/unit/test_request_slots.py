"""The client's request slots: a bound in all, and a share of it per namespace (kube/request_slots.py)."""

from __future__ import annotations

import asyncio

import pytest

from zen_flow.kube.request_slots import RequestSlots, namespace_of_path
from zen_flow_dev.testing.clock import settle


@pytest.mark.parametrize(
    ("path", "namespace"),
    [
        ("/apis/batch/v1/namespaces/team-a/jobs", "team-a"),
        ("/apis/workflow.kube-zen.io/v1alpha1/namespaces/b/jobflows/f/status", "b"),
        ("/api/v1/namespaces/c", "c"),
        ("/apis/batch/v1/jobs", None),
        ("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x", None),
    ],
)
def test_a_paths_namespace(path: str, namespace: str | None) -> None:
    assert namespace_of_path(path) == namespace


async def test_a_namespace_past_its_share_waits_in_its_own_line_and_leaves_the_rest() -> None:
    slots = RequestSlots(total=4, share=2, reserve=0)  # the share alone
    held = [await slots.acquire("/api/v1/namespaces/a/pods") for _ in range(2)]
    third = asyncio.create_task(slots.acquire("/api/v1/namespaces/a/pods"))
    await settle()
    assert not third.done(), "a namespace holds no more than its share"
    others = [await slots.acquire(path) for path in ("/api/v1/namespaces/b/pods", "/apis/batch/v1/jobs")]
    slots.release(held.pop())
    await settle()
    assert third.result() == "a"
    for namespace in [*held, *others, third.result()]:
        slots.release(namespace)
    assert slots._namespaces == {}, "namespaces with nothing in flight are forgotten"


async def test_the_bound_in_all_holds_across_namespaces() -> None:
    slots = RequestSlots(total=2)
    held = [await slots.acquire(f"/api/v1/namespaces/n{i}/pods") for i in range(2)]
    waiting = asyncio.create_task(slots.acquire("/api/v1/namespaces/n3/pods"))
    await settle()
    assert not waiting.done()
    slots.release(held[0])
    await settle()
    assert waiting.result() == "n3"


async def test_a_request_cancelled_while_waiting_gives_back_what_it_held() -> None:
    slots = RequestSlots(total=1, share=1)
    held = await slots.acquire("/api/v1/namespaces/a/pods")
    for path in ("/api/v1/namespaces/a/pods", "/api/v1/namespaces/b/pods"):  # its share's line; the bound's
        waiting = asyncio.create_task(slots.acquire(path))
        await settle()
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    slots.release(held)
    assert slots._namespaces == {}
    assert await slots.acquire("/api/v1/namespaces/b/pods") == "b"  # nothing was left taken


async def test_namespaces_with_requests_in_flight_leave_the_reserve_to_one_with_none() -> None:
    # Two tenants' creates wait on a webhook slow for both: each may hold its share (6 of 8), which was
    # every slot between them. With 2 kept in reserve, a third tenant's request goes out at once.
    slots = RequestSlots(total=8, share=6, reserve=2)
    held = [await slots.acquire("/api/v1/namespaces/a/pods") for _ in range(6)]
    held.append(await slots.acquire("/api/v1/namespaces/b/pods"))  # its first: from the reserve
    second = asyncio.create_task(slots.acquire("/api/v1/namespaces/b/pods"))
    await settle()
    assert not second.done(), "a namespace with a request in flight does not take the reserve"
    assert await slots.acquire("/api/v1/namespaces/c/pods") == "c"  # behind b's, but it has none in flight
    slots.release(held.pop(0))
    slots.release(held.pop(0))
    await settle()
    assert not second.done(), "two free: still the reserve"
    slots.release(held.pop(0))
    await settle()
    assert second.result() == "b"
    for namespace in [*held, "c", "b"]:
        slots.release(namespace)
    assert slots._namespaces == {}


async def test_a_request_held_back_by_the_reserve_goes_once_its_namespace_has_none_in_flight() -> None:
    # No deadlock: the namespace's own request in flight ends, and then it has a first request to send.
    slots = RequestSlots(total=2, share=2, reserve=1)
    first = await slots.acquire("/api/v1/namespaces/a/pods")
    other = await slots.acquire("/api/v1/namespaces/b/pods")
    waiting = asyncio.create_task(slots.acquire("/api/v1/namespaces/a/pods"))
    slots.release(other)
    await settle()
    assert not waiting.done()
    slots.release(first)
    await settle()
    assert waiting.result() == "a"
    slots.release("a")
    assert slots._namespaces == {}
