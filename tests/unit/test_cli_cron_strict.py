"""`zen-flow cron trigger` and `cron backfill` create their runs with strict field validation, as `zen-flow
submit` creates flows: a key of the template's spec the JobFlow CRD does not have (kept in the
CronJobFlow, whose template the CRD keeps whole) is refused by name by the apiserver, where without it the
run was created without it, silently."""

from __future__ import annotations

from typing import Any

import pytest
from backfill_rig import at, backfill, utc
from cron_cli_rig import FakeCluster, add, cron_manifest, zen_flow
from cron_cli_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture


def post_queries(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """The query of each create the CLI sends, in order."""
    queries: list[list[Any]] = []
    request = cluster.request

    async def recorded(method: str, path: str, body: Any = None, query: Any = (), **kw: Any) -> Any:
        if method == "POST":
            queries.append(list(query))
        return await request(method, path, body=body, query=query, **kw)

    monkeypatch.setattr(cluster, "request", recorded)
    return queries


def test_trigger_asks_for_strict_field_validation(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    add(cluster, cron_manifest())
    queries = post_queries(cluster, monkeypatch)
    code, _, _ = zen_flow(capsys, "cron", "trigger", "nightly-report")
    assert code == 0
    assert queries == [[("fieldValidation", "Strict")]]


def test_backfill_asks_for_strict_field_validation_for_every_run(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, utc(2026, 4, 1, 12))
    add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    queries = post_queries(cluster, monkeypatch)
    code, _, _ = backfill(capsys, "--from", "2026-03-27", "--to", "2026-03-30", "--parallel", "4")
    assert code == 0
    assert len(queries) >= 2
    assert all(query == [("fieldValidation", "Strict")] for query in queries)
