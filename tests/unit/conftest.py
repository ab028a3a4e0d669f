"""Every unit test runs hermetic (hermetic.py): no cluster tools, no network."""

from __future__ import annotations

import hermetic
import pytest


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    hermetic.install(monkeypatch)
