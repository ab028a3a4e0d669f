"""The tools tier's fixtures: `helm`, built once a session (tests/tools/helm_rig.py renders with it)."""

from __future__ import annotations

import os
import subprocess

import pytest

from deploy_manifests import ROOT


@pytest.fixture(scope="session")
def helm() -> str:
    if override := os.environ.get("ZENFLOW_HELM"):
        return override
    done = subprocess.run(
        [str(ROOT / "tools" / "build-gotool.sh"), "helm"], capture_output=True, text=True, timeout=1200
    )
    if done.returncode != 0:
        pytest.skip(f"helm could not be built: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]
