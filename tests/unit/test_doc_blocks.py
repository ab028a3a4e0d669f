"""The docs' code blocks, offline: each says how it is tested (or, visibly, why it is not); manifests
and fragments parse, flows validate, and the offline commands run as shown. The blocks that need a
cluster run in tests/node/test_doc_sessions.py."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow.validation import validate_jobflow
from zen_flow_dev.testing.docblocks import LANGUAGES, REPO, Block, blocks, documents

ALL = [b for doc in documents() for b in blocks(doc)]


def ids(found: list[Block]) -> list[Any]:
    return [pytest.param(b, id=b.where) for b in found]


def test_every_block_says_how_it_is_tested() -> None:
    unmarked = [b.where for b in ALL if b.kind == "missing"]
    assert unmarked == [], "add <!-- doc-test: run|file|fragment --> or a visible <sub>not run...</sub>"
    assert {b.language for b in ALL} <= set(LANGUAGES)
    assert all(b.reason.strip() for b in ALL if b.kind == "skip")


@pytest.mark.parametrize("block", ids([b for b in ALL if b.kind == "fragment"]))
def test_fragments_parse(block: Block) -> None:
    if block.language == "python":
        ast.parse(block.text())
        return
    assert block.language == "yaml", block.where
    documents_ = list(yaml.safe_load_all(block.text()))
    assert documents_, block.where
    assert all(d is not None for d in documents_), block.where


@pytest.mark.parametrize("block", ids([b for b in ALL if b.kind == "file"]))
def test_files_are_valid_jobflows(block: Block) -> None:
    assert block.words, f"{block.where}: file needs a name"
    flow = yaml.safe_load(block.text())
    assert [str(e) for e in validate_jobflow(flow)] == [], block.where


@pytest.mark.parametrize("block", ids([b for b in ALL if b.kind == "run" and "offline" in b.words]))
def test_offline_commands_run_as_shown(block: Block, tmp_path: Path) -> None:
    """From a folder with the repository's examples (what a reader has), with the project's commands."""
    (tmp_path / "examples").symlink_to(REPO / "examples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    assert block.language == "sh", f"{block.where}: offline blocks are sh"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{block.where}:\n{done.stdout}\n{done.stderr}"
