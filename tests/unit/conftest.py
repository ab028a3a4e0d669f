"""Every unit test runs hermetic (hermetic.py): no cluster tools, no network. `rig`: a controller against
FakeApiServer (controller_rig.py), for tests parametrized indirectly with the flow it starts from."""

from __future__ import annotations

from collections.abc import AsyncIterator

import hermetic
import pytest
from controller_rig import Rig, running


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    hermetic.install(monkeypatch)


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    async with running(request.param) as started:
        yield started
