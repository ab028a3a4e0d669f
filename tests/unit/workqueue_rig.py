"""The work queue the queue tests use, on a fake clock."""

from __future__ import annotations

from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.clock import FakeClock


def make_queue(clock: FakeClock | None = None) -> WorkQueue[str]:
    return WorkQueue[str](name="test", clock=clock or FakeClock())
