"""The process's memory: what the cyclic garbage collector walks, and the C heap's freed pages.

Both keep a long-running controller's latency and footprint flat: the cache and the imported code, once
synced, are exempted from full collections, and the pages decoding freed go back to the OS now and then.
"""

from __future__ import annotations

import gc

from zen_flow.informer.decoding import release_freed_memory
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock

log = get_logger(__name__)

MEMORY_RELEASE_SECONDS = 30.0


def freeze_long_lived() -> None:
    """Exempt what exists now (imported code, the freshly synced cache) from cyclic garbage collection.

    A full collection walks every tracked object. An admission review of a 500-step flow builds ~50,000
    dicts and lists that live long enough to be promoted, so full collections ran every few reviews and
    each walked the whole process: the webhook's p99 was 98 ms against a p50 of 42 ms, with those pauses
    (docs/BENCHMARKS.md). Frozen objects are still freed by reference counting (cached models hold no
    cycles); only a cycle among them would never be collected.
    """
    gc.collect()
    gc.freeze()
    log.debug("gc frozen", objects=gc.get_freeze_count())


async def release_memory(clock: Clock, period: float = MEMORY_RELEASE_SECONDS) -> None:
    """Give the C heap's free pages back to the OS now and then (see `release_freed_memory`).

    Every watch event is parsed in Rust heap memory before it becomes a model; under a burst of events
    the freed parse trees leave the heap larger than the cache. A trim costs a few milliseconds.
    """
    while True:
        await clock.sleep(period)
        release_freed_memory()
