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
    slots = RequestSlots(total=4, share=2)
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
