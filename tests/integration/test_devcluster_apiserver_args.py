"""LocalCluster(extra_apiserver_args=...): the benchmark's audit log of one client's requests.

Starts a private apiserver-profile cluster (a few seconds): the session's shared cluster cannot be
restarted with other flags.
"""

from __future__ import annotations

import json
from pathlib import Path

from zen_flow_dev.cluster import LocalCluster

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create]
  resources: [{group: "", resources: [configmaps]}]
- level: None
"""


def test_extra_apiserver_args_reach_the_apiserver(tmp_path: Path) -> None:
    policy, audit_log = tmp_path / "policy.yaml", tmp_path / "audit.log"
    policy.write_text(AUDIT_POLICY)
    args = [f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}"]
    with LocalCluster("apiserver", extra_apiserver_args=args) as cluster:
        body = {"metadata": {"name": "audited"}, "data": {}}
        cluster.admin_client().create("/api/v1/namespaces/default/configmaps", body)
        assert cluster.extra_apiserver_args == tuple(args)
        events = [json.loads(line) for line in audit_log.read_text().splitlines()]
    created = [e for e in events if e["objectRef"].get("name") == "audited"]
    assert [(e["verb"], e["objectRef"]["resource"], e["responseStatus"]["code"]) for e in created] == [
        ("create", "configmaps", 201)
    ]
