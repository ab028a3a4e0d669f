"""Each CRD carries its schema's revision (annotation workflow.kube-zen.io/crd-revision), an integer raised
with every change of its schema, so that the chart can refuse to apply a CRD older than the one installed
(charts/zen-flow/templates/crd.yaml): an older CRD prunes the fields only the newer one has from every
stored object at its next write, for good. The schema's hash is recorded beside the number, in the CRD
file, so a schema changed without raising it fails here."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANNOTATION = "workflow.kube-zen.io/crd-revision"
CRDS = sorted((ROOT / "config" / "crd").glob("*.workflow.kube-zen.io.yaml"))
RECORDED = re.compile(r"^\s*# schema sha256: ([0-9a-f]{64})$", re.M)


def schema_hash(crd: dict[str, Any]) -> str:
    """What decides what the apiserver keeps and admits: each version's name and schema."""
    versions = [{"name": v["name"], "schema": v["schema"]} for v in crd["spec"]["versions"]]
    return hashlib.sha256(json.dumps(versions, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_every_crd_is_checked() -> None:
    assert [p.name.split(".")[0] for p in CRDS] == [
        "clusterjobflowtemplates",
        "cronjobflows",
        "jobflows",
        "jobflowtemplates",
    ]


@pytest.mark.parametrize("path", CRDS, ids=lambda p: p.name)
def test_the_schema_revision_is_raised_with_every_schema_change(path: Path) -> None:
    text = path.read_text()
    crd = yaml.safe_load(text)
    revision = crd["metadata"]["annotations"][ANNOTATION]
    assert revision.isdigit()
    assert int(revision) >= 1
    recorded = RECORDED.findall(text)
    assert len(recorded) == 1, f"{path.name}: record the schema's hash beside {ANNOTATION}"
    assert recorded[0] == schema_hash(crd), (
        f"{path.name}: its schema changed: raise {ANNOTATION} to {int(revision) + 1} and record "
        f"`# schema sha256: {schema_hash(crd)}` beside it (an older chart then refuses to apply its older "
        "CRD over this one: docs/OPERATOR_GUIDE.md, Rollback)"
    )
