"""The docs' flows and commands, run as a reader would run them, with real containers: each document is
one session (a fresh namespace as the kubeconfig's default, a controller watching it, the document's
files in the working directory, the cluster's kubectl and the project's `zen-flow` on PATH). Its `run`
blocks go in order; a console block's commands must exit 0 and print what the document shows (retried
until they do, within a deadline: flows move on). tests/unit/test_doc_blocks.py checks the markers and runs
the offline blocks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow_dev.cluster import LocalCluster, find_kubectl
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.docblocks import REPO, Block, blocks, commands, documents, shows

DEADLINE = 180.0  # seconds a shown output may take to appear (a flow of a few real steps)


def _sessions() -> list[Any]:
    params = []
    for doc in documents():
        found = blocks(doc)
        if any(b.kind == "run" and "offline" not in b.words for b in found):
            params.append(pytest.param(found, id=str(doc.relative_to(REPO))))
    return params


def _kubeconfig(source: Path, namespace: str, target: Path) -> Path:
    config = yaml.safe_load(source.read_text())
    for context in config["contexts"]:
        context["context"]["namespace"] = namespace
    target.write_text(yaml.safe_dump(config))
    target.chmod(0o600)
    return target


def _run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def _console(block: Block, cwd: Path, env: dict[str, str]) -> None:
    for command, expected in commands(block):
        deadline = time.monotonic() + DEADLINE
        while True:
            done = _run(command, cwd, env)
            if done.returncode == 0 and shows(expected, done.stdout):
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{block.where}: `{command}` exited {done.returncode}; the document shows:\n"
                    + "\n".join(expected)
                    + f"\nit printed:\n{done.stdout}{done.stderr}"
                )
            time.sleep(0.5)  # the flow has not got there yet: ask again, as a reader would


@pytest.mark.parametrize("found", _sessions())
def test_the_documents_flows_and_commands_work_as_written(
    found: list[Block],
    node_cluster: LocalCluster,
    kubeconfig: Path,
    namespace: str,
    start_controller: StartController,
    tmp_path: Path,
) -> None:
    work = tmp_path / "reader"
    work.mkdir()
    for name in ("examples", "config", "charts"):
        (work / name).symlink_to(REPO / name)
    for block in found:
        if block.kind == "file":
            (work / block.words[0]).write_text(block.text())
    kubectl_dir = find_kubectl(node_cluster.bin_dir).parent
    env = {
        **os.environ,
        "KUBECONFIG": str(_kubeconfig(kubeconfig, namespace, tmp_path / "kubeconfig")),
        "PATH": f"{kubectl_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    start_controller()
    for block in found:
        if block.kind != "run" or "offline" in block.words:
            continue
        if block.language == "console":
            _console(block, work, env)
        else:
            done = _run("set -eu\n" + block.text(), work, env)
            assert done.returncode == 0, f"{block.where}:\n{done.stdout}{done.stderr}"
