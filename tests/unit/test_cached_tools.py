"""The tests find the newest cached build of a Go tool (tools/build-gotool.sh), by version number."""

from __future__ import annotations

from pathlib import Path

import pytest

from zen_flow_dev.testing.kueue import kueue_binary
from zen_flow_dev.testing.storage import cached_tool


def test_the_newest_version_is_found_not_the_last_in_text_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZENFLOW_CACHE", str(tmp_path))
    monkeypatch.delenv("ZENFLOW_KUEUE", raising=False)
    assert cached_tool("kueue") is None
    for version in ("v0.9.3", "v0.17.0", "v0.10.1"):
        binary = tmp_path / "tools" / f"kueue-{version}" / "bin" / "kueue"
        binary.parent.mkdir(parents=True)
        binary.touch()
    assert kueue_binary() == tmp_path / "tools" / "kueue-v0.17.0" / "bin" / "kueue"
    monkeypatch.setenv("ZENFLOW_KUEUE", "/opt/kueue")
    assert kueue_binary() == Path("/opt/kueue")
