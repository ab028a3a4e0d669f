"""Where the example flows are: the project's own, the compatibility fixtures, and the original's.

The project's `examples/` and `tests/fixtures/original-forms/` are in every checkout and are always
tested. The original zen-flow's own example files are not ours to copy in: when a folder of them sits
beside the checkout (`../shared/examples-upstream`) the tests that apply them run too; otherwise those
tests are skipped with `UPSTREAM_MISSING` as the reason.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow.api.transfer import TRANSFER_NAMES, UPLOADER, Stored, UploadReport
from zen_flow_dev.cluster.stages import (
    EXIT_CODE_ANNOTATION,
    INIT_TERMINATION_MESSAGE_ANNOTATION,
    TERMINATION_MESSAGE_ANNOTATION,
)

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
ORIGINAL_FORMS = REPO / "tests" / "fixtures" / "original-forms"
UPSTREAM_EXAMPLES = REPO.parent / "shared" / "examples-upstream"
UPSTREAM_MISSING = f"the original zen-flow's examples are not beside this checkout ({UPSTREAM_EXAMPLES})"
# The flows `make dev` runs when given none: a DAG and a chain, both done in seconds.
DEV_DEFAULTS = (EXAMPLES / "dag.yaml", EXAMPLES / "chain.yaml")
# A fixture's expected final phase on the local cluster (no approval given).
EXPECT_PHASE = "zen-flow.test/expect-phase"


# What the containers of an example's steps write to their termination messages (container -> text),
# by file and step: on a cluster whose nodes run no containers (kwok) the tests hand it to the fake
# kubelet (`simulate_messages`), the planner tests to the simulator.
_APP = b"app 1.4.2\n"  # what build-and-check's `build` writes to /out/app.txt
WRITTEN: dict[str, dict[str, dict[str, str]]] = {
    "build-and-check.yaml": {
        "build": {
            "main": f"digest=sha256:{hashlib.sha256(_APP).hexdigest()}\nsize={len(_APP)}\n",
            UPLOADER: UploadReport(
                stored={"app": Stored(size=len(_APP), digest="sha256:" + hashlib.sha256(_APP).hexdigest())}
            ).model_dump_json(),
        },
    },
    # Every item writes this on kwok (they share the template); on real nodes each writes its own name.
    "matrix-build.yaml": {"build": {"main": "app.tar"}},
    "matrix-from-output.yaml": {"gen": {"main": '["a","b","c"]'}},
}


# The steps of an example whose every attempt fails, as their command does (`exit 1`): on kwok
# `simulate_messages` makes their pods fail so, the planner tests fail their Jobs. Each has allowFailure:
# the example still ends Succeeded.
FAILING: dict[str, frozenset[str]] = {"allow-failure.yaml": frozenset({"lint"})}


def simulate_messages(manifest: dict[str, Any], path: Path) -> dict[str, Any]:
    """`manifest` with the termination messages of `WRITTEN` as pod annotations the kwok Stages read
    (one text for the step's containers, one for zen-flow's init containers), and the exit code of the
    `FAILING` steps' pods."""
    for step in manifest["spec"]["steps"]:
        written = WRITTEN.get(path.name, {}).get(step["name"], {})
        annotations = {
            INIT_TERMINATION_MESSAGE_ANNOTATION
            if container in TRANSFER_NAMES
            else TERMINATION_MESSAGE_ANNOTATION: text
            for container, text in written.items()
        }
        if step["name"] in FAILING.get(path.name, ()):
            annotations[EXIT_CODE_ANNOTATION] = "1"
        if annotations:
            pod = step["template"]["spec"]["template"]
            pod.setdefault("metadata", {}).setdefault("annotations", {}).update(annotations)
    return manifest


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


def project_examples() -> list[Path]:
    return _yaml_files(EXAMPLES)


def original_forms() -> list[Path]:
    return _yaml_files(ORIGINAL_FORMS)


def upstream_examples() -> list[Path]:
    """The original's example files, or [] when they are not beside the checkout."""
    return _yaml_files(UPSTREAM_EXAMPLES) if UPSTREAM_EXAMPLES.is_dir() else []


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def upstream_params(*names: str) -> list[Any]:
    """pytest parameters of the original's files (all, or those `names`): one skipped parameter saying
    why when the folder is absent."""
    found = [p for p in upstream_examples() if not names or p.name in names]
    if not found:
        return [pytest.param(None, id="upstream", marks=pytest.mark.skip(reason=UPSTREAM_MISSING))]
    return [pytest.param(p, id=f"upstream/{p.name}") for p in found]


def original_form_params(*, upstream: bool = True) -> list[Any]:
    """Flows in the original's field forms: our fixtures always, plus the original's files."""
    ours = [pytest.param(p, id=f"original-forms/{p.name}") for p in original_forms()]
    return ours + (upstream_params() if upstream else [])


def all_flow_params() -> list[Any]:
    """Every flow file the project answers for: examples, fixtures, and the original's when present."""
    return [pytest.param(p, id=f"examples/{p.name}") for p in project_examples()] + original_form_params()
