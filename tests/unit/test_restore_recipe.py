"""docs/DISASTER_RECOVERY.md's restore recipe, run as shown: the filter it gives, run on a backup as
`kubectl get jobflows -A -o json` writes it, makes flows whose Manual gates wait for a decision again,
where the backup restored as it is passes them at once in the restorer's name (as the document warns)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow.api import JobFlow
from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_CORRELATION_ID,
    ANNOTATION_CREATED_BY,
    ANNOTATION_DECISION_MESSAGE_PREFIX,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    APPROVE_PREFIX,
)
from zen_flow.core import jsonpatch
from zen_flow.webhook.mutation import mutation_ops, request_decisions
from zen_flow_dev.testing.docblocks import REPO, blocks
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RESTORER = "system:serviceaccount:velero:velero"
GATE = "approve-deploy"


def recipe() -> str:
    """The Python program of the document's restore block (its heredoc)."""
    doc = REPO / "docs" / "DISASTER_RECOVERY.md"
    [block] = [b for b in blocks(doc) if b.body.startswith("python3 - jobflows.json")]
    return block.body.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]


def approved_flow() -> dict[str, Any]:
    """The example release flow as the backup holds it: approved by alice, stopped, finished."""
    flow: dict[str, Any] = yaml.safe_load((REPO / "examples" / "approval-gate.yaml").read_text())
    flow["metadata"].update(
        namespace="team-a",
        uid="old-uid",
        resourceVersion="4711",
        creationTimestamp="2024-12-31T00:00:00Z",
        generation=1,
        annotations={
            APPROVE_PREFIX + GATE: "true",
            ANNOTATION_APPROVED_BY_PREFIX + GATE: "alice",
            ANNOTATION_DECISION_MESSAGE_PREFIX + GATE: "the build looks right",
            ANNOTATION_CREATED_BY: "alice",
            ANNOTATION_STOP: "true",
            ANNOTATION_STOPPED_BY: "bob",
            ANNOTATION_CORRELATION_ID: "release-1.2.3",
            "team.example.com/owner": "payments",
        },
    )
    flow["status"] = {"phase": "Succeeded"}
    return flow


def run_recipe(backup: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "jobflows.json").write_text(json.dumps(backup))
    done = subprocess.run(
        [sys.executable, "-", "jobflows.json"],
        input=recipe(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    restored: dict[str, Any] = json.loads(done.stdout)
    return restored


def restore(flow: dict[str, Any]) -> Simulator:
    """What the cluster makes of a flow in a create request: the mutating webhook's changes (the restorer
    is the requesting user), a new UID, no status; then the flow runs until its gate is reached."""
    flow = jsonpatch.apply(flow, mutation_ops("CREATE", flow, None, RESTORER))
    flow.pop("status", None)
    flow["metadata"].update(uid="new-uid", generation=1)
    sim = Simulator(JobFlow.model_validate(flow), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])  # build
    sim.reconcile()
    return sim


def gate(sim: Simulator) -> tuple[str, str | None]:
    step = next(s for s in sim.flow.status.steps if s.name == GATE)
    return step.phase, step.message


def test_a_backup_restored_as_it_is_passes_its_gate_in_the_restorers_name() -> None:
    # What the document warns of (a stop request left out here: it would stop the flow first).
    flow = approved_flow()
    del flow["metadata"]["annotations"][ANNOTATION_STOP]
    assert request_decisions("CREATE", flow, None) == {GATE}  # the webhook asks for the verb approve
    assert gate(restore(flow)) == ("Succeeded", f"approved by {RESTORER}")


@pytest.mark.parametrize("shape", ["list", "one flow"])
def test_the_recipe_restores_flows_whose_gates_wait_again(shape: str, tmp_path: Path) -> None:
    flow = approved_flow()
    backup = {"apiVersion": "v1", "kind": "List", "items": [flow]} if shape == "list" else flow
    out = run_recipe(backup, tmp_path)
    [restored] = out["items"] if shape == "list" else [out]
    assert "status" not in restored
    assert not {"uid", "resourceVersion", "creationTimestamp", "generation"} & restored["metadata"].keys()
    # What the user wrote stays; the decisions and who took them go.
    assert restored["metadata"]["annotations"] == {
        ANNOTATION_CORRELATION_ID: "release-1.2.3",
        "team.example.com/owner": "payments",
    }
    assert restored["spec"] == flow["spec"]
    assert request_decisions("CREATE", restored, None) == set()  # no verb approve needed to restore
    sim = restore(restored)
    # Waiting at the gate: neither passed by the old approval nor stopped by the old flow's request.
    assert sim.phase == "Paused"
    assert {s.name: s.phase for s in sim.flow.status.steps} == {
        "build": "Succeeded",
        GATE: "PendingApproval",
        "deploy": "Pending",
    }
    assert sim.running() == []
