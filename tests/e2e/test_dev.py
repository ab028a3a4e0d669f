"""`make dev` (`zen-flow-dev dev`): the README's first command works, narrates the run, stops on Ctrl-C,
and works from a plain clone with nothing beside it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from zen_flow_dev.testing.examples import DEV_DEFAULTS, REPO, UPSTREAM_MISSING, load

BIN = Path(sys.executable).parent


def _steps_of_defaults() -> list[str]:
    return [s["name"] for path in DEV_DEFAULTS for s in load(path)["spec"]["steps"]]


def _assert_narrated(out: str) -> None:
    for phase in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert phase in out
    # every step of both examples is reported as it succeeds, then the summary
    for step in _steps_of_defaults():
        assert any(
            f" {step} " in line and line.rstrip().endswith("Succeeded") for line in out.splitlines()
        ), step
    assert "All flows succeeded." in out


@pytest.fixture(scope="module")
def plain_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files (as `git clone` would give them, uncommitted edits included) in an empty
    folder: no ../shared, no virtualenv, no caches."""
    clone = tmp_path_factory.mktemp("plain") / "zen-flow"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        source = REPO / raw.decode()
        if source.is_file():
            target = clone / raw.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    assert not (clone.parent / "shared").exists()
    return clone


def _clone_env(clone: Path) -> dict[str, str]:
    # The development virtualenv's tools, but the clone's own code: PYTHONPATH comes before the
    # editable installs' paths, so zen_flow and zen_flow_dev are imported from the clone.
    return {**os.environ, "PYTHONPATH": f"{clone / 'src'}:{clone / 'devkit'}"}


def _run(
    args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_a_plain_clone_collects_every_test_and_skips_the_originals_with_the_reason(plain_clone: Path) -> None:
    env = _clone_env(plain_clone)
    collected = _run(
        [str(BIN / "pytest"), "--collect-only", "-q", "-p", "no:cacheprovider"], plain_clone, env, 300
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert "error" not in collected.stdout.splitlines()[-1]
    where = _run(
        [str(BIN / "python"), "-c", "import zen_flow_dev; print(zen_flow_dev.__file__)"], plain_clone, env, 30
    )
    assert where.stdout.startswith(str(plain_clone))
    schema = _run(
        [str(BIN / "pytest"), "-q", "-rs", "-p", "no:cacheprovider", "tests/unit/test_crd_schema.py"],
        plain_clone,
        env,
        300,
    )
    assert schema.returncode == 0, schema.stdout[-3000:]
    assert UPSTREAM_MISSING.split(" (")[0] in schema.stdout


def test_a_plain_clone_runs_make_devs_flows_to_success(plain_clone: Path) -> None:
    done = _run(
        [str(BIN / "zen-flow-dev"), "dev", "--exit-when-done", "--timeout", "120"],
        plain_clone,
        _clone_env(plain_clone),
        300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_narrated(done.stdout)


def test_dev_stops_cleanly_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [str(BIN / "zen-flow-dev"), "dev", "--timeout", "120"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 300
    try:
        for line in proc.stdout:  # ends when the process closes its output
            lines.append(line)
            if "press Ctrl-C" in line or time.monotonic() > deadline:
                break
        assert any("press Ctrl-C" in line for line in lines), "".join(lines)
        _assert_narrated("".join(lines))
        workdir = next(
            line.split("logs: ")[1].split("/controller.log")[0] for line in lines if "logs: " in line
        )
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends to the foreground group
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode in (0, 130), rest
    assert "Traceback" not in rest
    assert not Path(workdir).exists()  # the cluster's directory is removed with it


def test_dev_refuses_a_broken_flow_before_starting_anything(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    flow = load(DEV_DEFAULTS[0])
    flow["spec"]["steps"][1]["dependencies"] = ["no-such-step"]
    broken.write_text(yaml.safe_dump(flow))
    done = _run([str(BIN / "zen-flow-dev"), "dev", str(broken)], REPO, dict(os.environ), 60)
    assert done.returncode == 2
    assert 'spec.steps[1].dependencies[0]: Not found: "no-such-step"' in done.stderr
    assert "[1/5]" not in done.stdout  # no cluster was started for it
    missing = _run(
        [str(BIN / "zen-flow-dev"), "dev", str(tmp_path / "nope.yaml")], REPO, dict(os.environ), 60
    )
    assert missing.returncode == 2
    assert "nope.yaml: no such file" in missing.stderr
