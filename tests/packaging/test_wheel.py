"""The wheel `make build-release` ships holds the product only, and works installed on its own.

Installed "on its own" means a fresh virtualenv with the wheel and the distributions of its runtime
dependency closure copied from the development virtualenv (no index, no network): so a module the
runtime forgot to declare, or one that imports the developer tooling, fails here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
# The dev tooling lives in devkit/ (zen_flow_dev); none of these may appear in the product.
DEV_ONLY = ("zen_flow_dev", "zen_flow/bench", "zen_flow/devcluster", "zen_flow/testing", "zen_flow/devmode")


@pytest.fixture(scope="module")
def wheel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("zen_flow-*.whl")
    return path


@pytest.fixture(scope="module")
def wheel(wheel_path: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(wheel_path)


def _requires(wheel: zipfile.ZipFile) -> list[str]:
    (meta,) = (n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return Parser().parsestr(wheel.read(meta).decode()).get_all("Requires-Dist") or []


def test_the_wheel_holds_every_runtime_module_and_no_dev_tooling(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    sources = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "zen_flow").rglob("*.py")}
    assert sources <= names
    assert "zen_flow/py.typed" in names
    assert [n for n in names if n.startswith(DEV_ONLY)] == []
    assert not any(name.startswith(("tests/", "docs/", "devkit/", "examples/")) for name in names)


def test_the_wheel_carries_the_license_it_declares(wheel: zipfile.ZipFile) -> None:
    (meta,) = (n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    headers = Parser().parsestr(wheel.read(meta).decode())
    assert headers["License-Expression"] == "Apache-2.0"
    (license_file,) = (n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE"))
    assert wheel.read(license_file).decode() == (ROOT / "LICENSE").read_text()
    assert "Apache License" in (ROOT / "LICENSE").read_text().splitlines()[1]


def test_the_wheel_installs_the_zen_flow_command(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = (n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    text = wheel.read(entry_points).decode()
    assert "zen-flow = zen_flow.__main__:main" in text
    assert "kubectl-jobflow = zen_flow.__main__:main" in text  # `kubectl jobflow ...`
    assert "zen-flow-dev" not in text


def test_runtime_dependencies_leave_test_tools_out(wheel: zipfile.ZipFile) -> None:
    requires = _requires(wheel)
    runtime = {Requirement(r).name for r in requires}
    assert {"aiohttp", "pydantic", "prometheus-client", "structlog", "tenacity"} <= runtime
    # The controller has its own API client; kubernetes-asyncio is for the tests only (36 MB saved).
    assert not runtime & {"kubernetes-asyncio", "pytest", "hypothesis", "mypy", "ruff"}
    # The dev tools are devkit's, not an extra of ours; the one extra is what `zen-flow artifact` needs
    # in a step's pod (the image installs it), and the controller never imports it.
    extras = {Requirement(r).name for r in requires if "extra ==" in r}
    assert extras == {"minio"}
    for r in requires:
        marker = Requirement(r).marker
        if marker is not None and "extra" in str(marker):
            assert marker.evaluate({"extra": "artifacts"}), r


def _closure(requirements: list[str]) -> set[str]:
    """Distribution names needed to satisfy `requirements` in this interpreter, transitively."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = metadata.distribution(req.name).metadata["Name"]
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        todo.extend(Requirement(r) for r in metadata.distribution(name).requires or [])
    return seen


@pytest.fixture(scope="module")
def alone(wheel_path: Path, wheel: zipfile.ZipFile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel and its runtime closure only; its bin directory."""
    env = tmp_path_factory.mktemp("alone") / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    (site,) = env.glob("lib/python*/site-packages")
    for name in _closure(_requires(wheel)):
        dist = metadata.distribution(name)
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if file.parts[0] == ".." or not source.is_file():
                continue  # console scripts outside site-packages are not needed
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    with zipfile.ZipFile(wheel_path) as archive:
        archive.extractall(site)
    script = env / "bin" / "zen-flow"
    script.write_text(f"#!{env / 'bin' / 'python'}\nfrom zen_flow.__main__ import main\nmain()\n")
    script.chmod(0o755)
    return env / "bin"


def _run(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(bin_dir.parent)},
        check=False,
    )


def test_the_installed_wheel_alone_runs_the_controller_command(alone: Path) -> None:
    done = _run(alone, "zen-flow", "run", "--help")
    assert done.returncode == 0, done.stderr
    assert "--leader-elect" in done.stdout


def test_the_installed_wheel_alone_validates_flows(alone: Path) -> None:
    done = _run(alone, "zen-flow", "validate", "examples")
    assert done.returncode == 0, done.stdout + done.stderr
    # examples/ holds JobFlows, a CronJobFlow and a JobFlowTemplate: each kind counted, none invalid.
    assert re.search(r"\d+ JobFlow\(s\).* checked, 0 invalid", done.stderr), done.stderr


def test_the_installed_wheel_alone_has_no_dev_tooling(alone: Path) -> None:
    done = _run(alone, "python", "-c", "import zen_flow_dev")
    assert done.returncode == 1
    assert "No module named 'zen_flow_dev'" in done.stderr
    help_text = _run(alone, "zen-flow", "--help").stdout
    assert " dev " not in help_text
    assert " cluster " not in help_text
