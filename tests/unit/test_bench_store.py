"""The benchmark's `--job-retention` option and the store's size at the end of each part (issue 15)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from zen_flow.api.constants import JobRetention
from zen_flow.validation import validate_jobflow
from zen_flow_dev.bench import cli, report, storesize
from zen_flow_dev.bench.runner import BenchConfig
from zen_flow_dev.bench.workloads import (
    PRESETS,
    WORKLOAD_NAMES,
    baseline_job,
    build_workloads,
    flow_manifest_for,
)

APISERVER_METRICS = """\
# HELP apiserver_storage_objects [STABLE] Number of stored objects at the time of last check split by kind.
# TYPE apiserver_storage_objects gauge
apiserver_storage_objects{resource="jobs.batch"} 1000
apiserver_storage_objects{resource="pods"} 1002
apiserver_storage_objects{resource="jobflows.workflow.kube-zen.io"} 100
apiserver_storage_objects{resource="cronjobs.batch"} 0
"""

ETCD_METRICS = """\
# TYPE etcd_debugging_mvcc_keys_total gauge
etcd_debugging_mvcc_keys_total 5230
etcd_mvcc_db_total_size_in_bytes 2.62144e+07
etcd_mvcc_db_total_size_in_use_in_bytes 1.2582912e+07
"""


def _config(*argv: str) -> BenchConfig:
    return cli.config_from(cli.parser().parse_args([*argv]), Path("out.json"))


def test_the_option_takes_the_api_s_values_and_defaults_to_leaving_the_field_out() -> None:
    assert _config("--job-retention", "FailedOnly").job_retention == "FailedOnly"
    assert _config().job_retention is None
    for value in JobRetention:
        assert _config(f"--job-retention={value}").job_retention == value
    with pytest.raises(SystemExit):
        _config("--job-retention", "Never")


def test_every_zen_flow_flow_carries_the_retention_and_the_baseline_jobs_do_not_change() -> None:
    # Sizes that build every workload, the length-* ones and many-large included.
    sizes = {**PRESETS["quick"], "many_large_flows": 2, "length_max": 20}
    plain = build_workloads(sizes, frozenset(WORKLOAD_NAMES))
    kept = build_workloads(sizes, frozenset(WORKLOAD_NAMES), job_retention="FailedOnly")
    names = [w.name for w in kept]
    assert names == [w.name for w in plain]
    assert "many-large" in names
    assert any(name.startswith("length-") for name in names)
    for before, after in zip(plain, kept, strict=True):
        name = after.flow_names()[0]
        flow = flow_manifest_for(after, name, "ns")
        assert flow["spec"]["executionPolicy"] == {"jobRetention": "FailedOnly"}
        assert validate_jobflow(flow) == []
        # Without the option the field is left out: the API's default (All), as before the option.
        assert "executionPolicy" not in flow_manifest_for(before, name, "ns")["spec"]
        for step, _ in after.dag.steps:
            assert baseline_job(after, name, step, "ns") == baseline_job(before, name, step, "ns")


def test_store_figures_come_from_both_metrics_pages_and_a_missing_one_is_absent() -> None:
    figures = storesize.from_metrics(APISERVER_METRICS, ETCD_METRICS)
    assert figures == {
        "apiserver_jobs": 1000,
        "apiserver_pods": 1002,
        "apiserver_jobflows": 100,
        "etcd_keys": 5230,
        "etcd_db_bytes": 26214400,
        "etcd_db_in_use_bytes": 12582912,
    }
    # An older etcd without the in-use gauge, no etcd page at all, no apiserver page: absent, no error.
    older = storesize.from_metrics(None, ETCD_METRICS.replace("in_use_in_bytes", "x"))
    assert "etcd_db_in_use_bytes" not in older
    assert older["etcd_keys"] == 5230
    assert storesize.from_metrics(None, None) == {}
    assert storesize.from_metrics("garbage", "") == {}


def test_a_part_reports_the_store_at_its_end_and_what_etcd_gained_during_it() -> None:
    before = storesize.from_metrics(APISERVER_METRICS, ETCD_METRICS)
    after = storesize.from_metrics(
        APISERVER_METRICS, ETCD_METRICS.replace("5230", "6230").replace("1.2582912e+07", "1.4680064e+07")
    )
    part = storesize.part(before, after, {"namespace_jobs": 2, "namespace_pods": None})
    assert part["etcd_keys"] == 6230
    assert part["etcd_keys_added"] == 1000
    assert part["etcd_db_in_use_bytes_added"] == 2097152
    assert part["namespace_jobs"] == 2
    assert "namespace_pods" not in part  # its count failed: absent
    # Nothing measured before: the end values only.
    assert "etcd_keys_added" not in storesize.part({}, after, {})


def test_an_etcd_that_does_not_answer_gives_no_page() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert storesize.scrape_etcd(f"http://127.0.0.1:{port}", timeout=2.0) is None
    assert storesize.scrape_etcd(None) is None


def _part(engine: str, store: dict[str, float] | None) -> dict[str, object]:
    lat = {"n": 9, "p50": 1.0, "p90": 2.0, "p99": 3.0, "max": 4.0}
    out: dict[str, object] = {
        "engine": engine,
        "steps_completed": 10,
        "transition_latency_ms": lat,
        "steps_per_second": 1.0,
        "drain_seconds": 10.0,
    }
    if store is not None:
        out["store"] = store
    return out


def test_the_report_names_the_retention_and_shows_each_part_s_store() -> None:
    meta = {
        "date": "d",
        "commit": "c",
        "preset": "quick",
        "controller": {},
        "machine": {"nproc": 2, "cpu_model": "x", "memory_gb": 1},
        "job_retention": "FailedOnly",
    }
    zen = {"namespace_jobs": 0, "namespace_pods": 3, "apiserver_jobs": 12, "etcd_keys": 6230,
           "etcd_keys_added": 1000, "etcd_db_in_use_bytes": 14680064,
           "etcd_db_in_use_bytes_added": 2097152}  # fmt: skip
    many = {
        "workload": "many",
        "kind": "flows",
        "zen-flow": _part("zen-flow", zen),
        "baseline": _part("baseline", {"namespace_jobs": 50}),
    }
    shown = report.render({"meta": meta, "workloads": [many]})
    assert shown.splitlines()[0].endswith("; jobRetention FailedOnly")
    assert "the baseline keeps every Job" in shown
    rows = report.store_rows([many])
    assert rows == [
        ["many", "zen-flow", 0, 3, 6230, 1000, 14.0, 2.0, None],
        ["", "baseline", 50, None, None, None, None, None, None],
    ]
    compacted = {**many, "zen-flow": _part("zen-flow", {**zen, "etcd_compacted": True})}
    assert report.store_rows([compacted])[0][-1] == "yes"
    # A run before the option: the field was omitted, which is the API's default.
    del meta["job_retention"]
    assert report.render({"meta": meta, "workloads": [many]}).splitlines()[0].endswith("omitted (All)")
    # --admission-only runs no flow: no retention to name.
    assert "jobRetention" not in report.render({"meta": {**meta, "job_retention": "FailedOnly"}})
    # Parts without store figures (an older results file) show no store table.
    assert report.store_rows([{**many, "zen-flow": _part("zen-flow", None), "baseline": {}}]) == []


def test_an_unknown_workload_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="nope"):
        _config("--only", "many,nope")
    assert _config("--only", "many").only == frozenset({"many"})
    # main's logging would outlive the captured stderr and break every later test that logs.
    monkeypatch.setattr(cli.zf_logging, "configure", lambda *_args: None)
    assert cli.main(["--no-compiled", "--only", "nope"]) == 2
    assert "unknown workloads: ['nope']" in capsys.readouterr().err
