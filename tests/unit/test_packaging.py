"""The wheel `make build-release` ships: the whole package, the command, and only runtime dependencies."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("zen_flow-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_every_module_and_the_type_marker(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    sources = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "zen_flow").rglob("*.py")}
    assert sources <= names
    assert "zen_flow/py.typed" in names
    assert not any(name.startswith(("tests/", "docs/")) for name in names)


def test_the_wheel_installs_the_zen_flow_command(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = (n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "zen-flow = zen_flow.__main__:main" in wheel.read(entry_points).decode()


def test_runtime_dependencies_leave_test_tools_out(wheel: zipfile.ZipFile) -> None:
    (metadata,) = (n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    requires = Parser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist") or []
    runtime = {r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requires if "extra ==" not in r}
    assert {"aiohttp", "pydantic", "prometheus-client", "structlog", "tenacity"} <= runtime
    # The controller has its own API client; kubernetes-asyncio is for the tests only (36 MB saved).
    assert "kubernetes-asyncio" not in runtime
    assert any(r.startswith("kubernetes-asyncio") and "extra == 'dev'" in r for r in requires)
