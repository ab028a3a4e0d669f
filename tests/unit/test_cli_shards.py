"""`zen-flow shards` against an in-memory apiserver at a fixed instant: the shard Leases of a controller
run with --shards (holder, renewal, expiry), the shard and replica of one flow (the controller's own
function), and what it says of a controller run with --shards 1 or not found."""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from textwrap import dedent
from typing import Any

import pytest

from zen_flow.cli import build_parser, completion, main, session, shards
from zen_flow.core.shards import flow_shard_key, shard_of
from zen_flow.kube.errors import from_status
from zen_flow.kube.leases import format_micro_time
from zen_flow.kube.streams import ListResult

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
SYSTEM = "zen-flow-system"


def lease(
    name: str, holder: str, renewed_ago: float | None, *, of: str = "zen-flow-controller", n: int = 4
) -> dict[str, Any]:
    spec: dict[str, Any] = {"holderIdentity": holder, "leaseDurationSeconds": 15}
    if renewed_ago is not None:
        spec["renewTime"] = format_micro_time(NOW - timedelta(seconds=renewed_ago))
    labels = {"workflow.kube-zen.io/sharded-lease": of, "workflow.kube-zen.io/shards": str(n)}
    return {"metadata": {"name": name, "namespace": SYSTEM, "labels": labels}, "spec": spec}


class FakeCluster:
    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.flows: dict[tuple[str, str], dict[str, Any]] = {}
        self.asked: list[tuple[str, Any]] = []

    def add(self, *leases: dict[str, Any]) -> None:
        for item in leases:
            self.leases[item["metadata"]["name"]] = item

    async def list_all(self, path: str, query: Any = (), *, page_size: int = 500) -> ListResult:
        assert path == "/apis/workflow.kube-zen.io/v1alpha1/jobflows"
        return ListResult(tuple(copy.deepcopy(f) for _, f in sorted(self.flows.items())), "1")

    async def request(self, method: str, path: str, body: Any = None, query: Any = (), **_: Any) -> Any:
        assert method == "GET"
        self.asked.append((path, list(query)))
        parts = path.strip("/").split("/")
        if "leases" in parts:
            assert parts[parts.index("namespaces") + 1] == SYSTEM
            if parts[-1] == "leases":
                selector = dict(query).get("labelSelector", "")
                key, _, value = selector.partition("=")
                items = [
                    copy.deepcopy(item)
                    for item in self.leases.values()
                    if not selector or item["metadata"].get("labels", {}).get(key) == value
                ]
                return {"items": items}
            found = self.leases.get(parts[-1])
        else:
            found = self.flows.get((parts[parts.index("namespaces") + 1], parts[-1]))
        if found is None:
            raise from_status(404, {"reason": "NotFound", "message": f'"{parts[-1]}" not found'})
        return copy.deepcopy(found)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()

    @asynccontextmanager
    async def open_session(args: Any, out: Any = None) -> AsyncIterator[session.Session]:
        yield session.Session(fake, args.namespace or "default", sys.stdout)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "open_session", open_session)
    monkeypatch.setattr(shards, "now", lambda: NOW)
    return fake


def zen_flow(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["shards", *argv])
    said = capsys.readouterr()
    return code, said.out, said.err


def four_shards(cluster: FakeCluster) -> None:
    cluster.add(
        lease("zen-flow-controller-shard-0", "zen-flow-7d9f-a_1a2b3c4d", 2),
        lease("zen-flow-controller-shard-1", "zen-flow-7d9f-b_5e6f7a8b", 40),  # its replica was killed
        lease("zen-flow-controller-shard-2", "", 3),  # handed over, not taken yet
        lease("zen-flow-controller-member-0123456789", "zen-flow-7d9f-a_1a2b3c4d", 1),
        lease("zen-flow-controller-member-abcdef0123", "zen-flow-7d9f-b_5e6f7a8b", 40),
        lease(
            "zen-flow-controller-team-a-shard-0", "someone-else", 1, of="zen-flow-controller-team-a"
        ),  # another instance
    )


def test_the_shards_show_holder_renewal_and_expiry(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    four_shards(cluster)
    code, out, err = zen_flow(capsys)
    assert (code, err) == (0, "")
    assert out == dedent("""\
        4 shards of zen-flow-system/zen-flow-controller, 1 live member(s)
        SHARD   HOLDER                     RENEWED   DURATION   EXPIRED
        0       zen-flow-7d9f-a_1a2b3c4d   2s ago    15s        no
        1       zen-flow-7d9f-b_5e6f7a8b   40s ago   15s        yes
        2       <none>                     3s ago    15s        free
        3       <no Lease>                 -         -          yes
        """)
    [(path, query)] = cluster.asked
    assert path == "/apis/coordination.k8s.io/v1/namespaces/zen-flow-system/leases"
    assert query == [("labelSelector", "workflow.kube-zen.io/sharded-lease=zen-flow-controller")]
    code, out, _ = zen_flow(capsys, "-o", "json")
    shown = json.loads(out)
    assert (shown["shards"], shown["members"]) == (4, ["zen-flow-7d9f-a_1a2b3c4d"])
    assert [(i["shard"], i["holder"], i["expired"]) for i in shown["items"]] == [
        (0, "zen-flow-7d9f-a_1a2b3c4d", False),
        (1, "zen-flow-7d9f-b_5e6f7a8b", True),
        (2, None, False),
        (3, None, True),
    ]


def test_a_lease_whose_number_is_no_ascii_number_is_passed_over(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    four_shards(cluster)
    _, shown, _ = zen_flow(capsys)
    # `"\N{SUPERSCRIPT TWO}".isdigit()` is True, but int() refuses it; another script's digits int()
    # reads. Neither is a count or a shard the controller writes.
    for odd in ("\N{SUPERSCRIPT TWO}", "\N{ARABIC-INDIC DIGIT ONE}"):
        stray = lease(f"zen-flow-controller-shard-{odd}", "someone", 1)
        stray["metadata"]["labels"]["workflow.kube-zen.io/shards"] = odd
        cluster.add(stray)
    assert zen_flow(capsys) == (0, shown, "")


def test_a_flow_maps_to_the_shard_the_controller_computes_and_its_holder(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    four_shards(cluster)
    # Names whose hashes land on a held shard and on the expired one (the controller's own function).
    names = [f"nightly-{i}" for i in range(40)]
    held = next(n for n in names if shard_of(f"team-a/{n}", 4) == 0)
    lost = next(n for n in names if shard_of(f"team-a/{n}", 4) == 1)
    for name in (held, lost):
        cluster.flows[("team-a", name)] = {"metadata": {"name": name, "namespace": "team-a"}}
    code, out, _ = zen_flow(capsys, "-n", "team-a", held)
    assert code == 0
    assert out == (
        f"jobflow team-a/{held}: shard 0 of 4 (hashed from 'team-a/{held}', its namespace/name), held by "
        "zen-flow-7d9f-a_1a2b3c4d\n"
    )
    code, out, _ = zen_flow(capsys, "--flow", f"team-a/{lost}")
    assert out.endswith(
        "its Lease held by zen-flow-7d9f-b_5e6f7a8b has expired: the other replicas take it over\n"
    )
    # A concurrency group lives on one shard: the key is the group's.
    grouped = {
        "name": "report",
        "namespace": "team-a",
        "labels": {"workflow.kube-zen.io/concurrency-key": "nightly"},
    }
    cluster.flows[("team-a", "report")] = {"metadata": grouped}
    code, out, _ = zen_flow(capsys, "--flow", "team-a/report", "-o", "json")
    key = flow_shard_key("team-a", "report", grouped["labels"])
    assert key == "team-a/nightly"
    assert json.loads(out)["shard"] == shard_of(key, 4)
    assert json.loads(out)["key"] == key


def test_an_instance_and_a_controller_namespace_are_named_as_zen_flow_run_names_them(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    four_shards(cluster)
    code, out, _ = zen_flow(capsys, "--instance-id", "team-a", "--leader-election-namespace", SYSTEM)
    assert code == 0
    assert out.startswith("4 shards of zen-flow-system/zen-flow-controller-team-a, 0 live member(s)\n")
    assert "someone-else" in out


def test_a_controller_with_one_shard_names_its_leader_and_a_missing_one_says_where_it_looked(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = zen_flow(capsys)
    assert (code, out) == (2, "")
    assert err == (
        "zen-flow shards: no Lease zen-flow-controller in namespace zen-flow-system: is the controller "
        "there? "
        "(--leader-election-namespace, --leader-election-name or --instance-id)\n"
    )
    cluster.add(
        {
            "metadata": {"name": "zen-flow-controller", "namespace": SYSTEM},
            "spec": {"holderIdentity": "pod-0_ab"},
        }
    )
    code, out, _ = zen_flow(capsys, "--flow", "team-a/nightly")
    assert code == 0
    assert out == (
        "no shard Leases of zen-flow-system/zen-flow-controller: the controller runs with --shards 1, and "
        "jobflow team-a/nightly is reconciled by its leader, pod-0_ab\n"
    )


def test_a_flow_given_twice_or_without_a_name_is_refused(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    four_shards(cluster)
    assert zen_flow(capsys, "--flow", "team-a/a", "b")[0] == 2
    code, _, err = zen_flow(capsys, "--flow", "team-a/")
    assert code == 2
    assert "expected NAMESPACE/NAME" in err


def test_tab_completes_flows_of_every_namespace_for_flow(cluster: FakeCluster) -> None:
    for namespace, name in (("team-a", "nightly"), ("team-b", "nightly"), ("team-b", "weekly")):
        cluster.flows[(namespace, name)] = {"metadata": {"name": name, "namespace": namespace}}
    typed = argparse.Namespace(kubeconfig=None, context=None, namespace=None)
    assert completion.any_flow_names("team-b/", typed) == ["team-b/nightly", "team-b/weekly"]
    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions if a.choices)  # type: ignore[union-attr]
    actions = {a.dest: a for a in sub.choices["shards"]._actions}
    assert actions["flow"].completer is completion.any_flow_names  # type: ignore[attr-defined]
    assert actions["name"].completer is completion.flow_names  # type: ignore[attr-defined]


def test_shard_leases_left_from_a_sharded_run_are_flagged_stale_and_the_leader_named(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # The controller ran with --shards 4 and runs with --shards 1 now: its shard Leases were released
    # (holder cleared), never deleted, and no member Lease is live; the leader Lease is held and renewed.
    cluster.add(*(lease(f"zen-flow-controller-shard-{i}", "", 3600) for i in range(4)))
    cluster.add(lease("zen-flow-controller-member-0123456789", "zen-flow-7d9f-a_1a2b3c4d", 3600))
    leader = lease("zen-flow-controller", "zen-flow-abc_1234", 1)
    del leader["metadata"]["labels"]
    cluster.add(leader)
    cluster.flows[("team-a", "nightly")] = {"metadata": {"name": "nightly", "namespace": "team-a"}}
    stale = (
        "; the 4 shard Leases of zen-flow-system/zen-flow-controller are stale (left from a run with "
        "--shards 4: no replica holds one, no member Lease is live)\n"
    )
    assert zen_flow(capsys) == (
        0,
        "the controller runs with --shards 1, and every flow is reconciled by its leader, zen-flow-abc_1234"
        + stale,
        "",
    )
    _, out, _ = zen_flow(capsys, "-n", "team-a", "nightly")
    assert out == (
        "the controller runs with --shards 1, and jobflow team-a/nightly is reconciled by its leader, "
        "zen-flow-abc_1234" + stale
    )
    _, out, _ = zen_flow(capsys, "--flow", "team-a/nightly", "-o", "json")
    assert json.loads(out) == {
        "lease": "zen-flow-controller",
        "namespace": SYSTEM,
        "shards": 1,
        "flow": "team-a/nightly",
        "leader": "zen-flow-abc_1234",
        "staleShardLeases": [f"zen-flow-controller-shard-{i}" for i in range(4)],
    }
    # A sharded controller whose replicas are all down, its leader Lease left from before: the table.
    cluster.add(lease("zen-flow-controller", "zen-flow-old_9", 3600))
    assert zen_flow(capsys)[1].startswith(
        "4 shards of zen-flow-system/zen-flow-controller, 0 live member(s)\n"
    )


@pytest.mark.parametrize("given", ["-3", "0", "65", "four"])
def test_a_shard_count_outside_the_controllers_range_is_refused(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    four_shards(cluster)
    with pytest.raises(SystemExit) as exited:
        main(["shards", "--shards", given])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --shards: " in err
    assert (
        "a controller runs with 1 to 64 shards" if given != "four" else "'four' is not a whole number"
    ) in err
    assert cluster.asked == []
