"""A real Prometheus for the tests: Debian's package, unpacked by tools/fetch-prometheus.sh into the tool
cache (`make test` passes its directory as ZENFLOW_PROMETHEUS_BIN)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from zen_flow_dev.testing.controller import free_port

FETCH_HINT = "run `tools/fetch-prometheus.sh` once (seconds; cached afterwards)"


def prometheus_tool(name: str) -> Path | None:
    """`prometheus` or `promtool`: ZENFLOW_PROMTOOL (promtool only), ZENFLOW_PROMETHEUS_BIN, the cache,
    then PATH; None when none has it."""
    if name == "promtool" and (override := os.environ.get("ZENFLOW_PROMTOOL")):
        return Path(override)
    if directory := os.environ.get("ZENFLOW_PROMETHEUS_BIN"):
        return Path(directory) / name
    cache = Path(
        os.environ.get("ZENFLOW_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zen-flow"
    )
    fetched = sorted(cache.glob(f"tools/prometheus-*/bin/{name}"))
    if fetched:
        return fetched[-1]
    found = shutil.which(name)
    return Path(found) if found else None


# --- a Prometheus server on loopback ---------------------------------------------------------------------


def alert_rules(rule_object: dict[str, Any]) -> list[dict[str, Any]]:
    """The alerting rules of a PrometheusRule object, every group's in order."""
    rules: list[dict[str, Any]] = [
        rule for group in rule_object["spec"]["groups"] for rule in group["rules"] if "alert" in rule
    ]
    return rules


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every query of a Grafana dashboard, nested rows included."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel.get("title", "?"), target["expr"]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """A dashboard query with Grafana's variables replaced (longest name first: `$job` vs `$jobs`)."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(name, variables[name])
    return expr


def rule_groups_for_tests(rule_object: dict[str, Any], *, interval: str, hold: str) -> list[dict[str, Any]]:
    """The PrometheusRule's groups as a Prometheus rule file, every group evaluated each `interval` and
    every `for:` shortened to `hold`, so a test sees an alert fire in seconds; expressions unchanged."""
    groups: list[dict[str, Any]] = copy.deepcopy(rule_object["spec"]["groups"])
    for group in groups:
        group["interval"] = interval
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = hold
    return groups


class PrometheusError(RuntimeError):
    """The HTTP API answered an error (bad query, not ready)."""


class PrometheusServer:
    """`prometheus` as a child process on 127.0.0.1, scraping static targets every `scrape_interval`
    with `honor_labels` (as the ServiceMonitor does), evaluating `rule_groups`."""

    def __init__(
        self,
        workdir: Path,
        targets: dict[str, list[str]],
        *,
        rule_groups: list[dict[str, Any]] | None = None,
        scrape_interval: str = "1s",
        binary: Path | None = None,
    ) -> None:
        found = binary or prometheus_tool("prometheus")
        if found is None or not found.exists():
            raise FileNotFoundError(f"no prometheus binary: {FETCH_HINT}")
        self.binary = found
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = workdir / "prometheus.log"
        config: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [
                {
                    "job_name": job,
                    "honor_labels": True,
                    "scrape_timeout": scrape_interval,
                    "static_configs": [{"targets": addresses}],
                }
                for job, addresses in targets.items()
            ],
        }
        if rule_groups is not None:
            (workdir / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
            config["rule_files"] = [str(workdir / "rules.yaml")]
        (workdir / "prometheus.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        args = [
            str(self.binary),
            f"--config.file={self.workdir / 'prometheus.yaml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log_path.open("ab") as sink:
            self.proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)  # poll: a starting child process has no event to wait on
        raise TimeoutError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; its `data`, or PrometheusError with Prometheus' own message."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            body = json.loads(err.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query now; the result's samples (a scalar result as one sample without labels)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def metric_names(self) -> set[str]:
        return set(self.api("label/__name__/values"))

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now."""
        found: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return found

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def metric_names_in(expr: str) -> set[str]:
    """The metric names an (already substituted) PromQL expression selects."""
    import promql_parser  # a developer dependency; only tests that read PromQL need it

    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return names
