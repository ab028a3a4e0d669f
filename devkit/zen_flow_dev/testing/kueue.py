"""Kueue (sigs.k8s.io/kueue, Apache-2.0), the batch queue platform teams put in front of their Jobs, for
the e2e tests of queued steps: built from its Go module by `tools/build-gotool.sh kueue` and cached
outside the repository with its CRDs and webhook manifests, copied from the same module version (nothing
of Kueue is committed).

The manager runs as a process on the test machine. Its webhook server listens on loopback with a
certificate of our own CA, and its webhook configurations are Kueue's own, pointed at that address: the
Job webhooks only for namespaces labelled `zenflow.test/kueue=true`, so the rest of a shared cluster
never calls them. Kueue reads its metrics certificate from a fixed path, /etc/kueue/metrics/certs, when it
does not manage certificates itself: the process gets that path in a private user and mount namespace
(an overlay on /etc that lives and dies with it), so the host's /etc is never written.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zen_flow_dev.cluster.adminclient import wait_until
from zen_flow_dev.cluster.pki import create_ca, issue_serving_cert
from zen_flow_dev.cluster.process import ComponentProcess
from zen_flow_dev.testing.crd import is_established
from zen_flow_dev.testing.storage import cached_tool

MISSING = "Kueue is not built: run `tools/build-gotool.sh kueue` once (a few minutes, cached)"
# The label that lets Kueue's Job webhooks see a namespace's Jobs (see the module docstring).
NAMESPACE_LABEL = ("zenflow.test/kueue", "true")
WEBHOOK_CONFIGURATIONS = (
    ("mutatingwebhookconfiguration", "zen-flow-tests-kueue"),
    ("validatingwebhookconfiguration", "zen-flow-tests-kueue"),
)


def kueue_binary() -> Path | None:
    """$ZENFLOW_KUEUE, else the cached build of tools/build-gotool.sh (None when neither exists)."""
    if override := os.environ.get("ZENFLOW_KUEUE"):
        return Path(override)
    return cached_tool("kueue")


def unavailable() -> str | None:
    """Why Kueue cannot run here, or None: its build, and the user and mount namespaces it runs in."""
    binary = kueue_binary()
    if binary is None or not binary.exists():
        return MISSING
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return (
            f"Kueue runs in a user and mount namespace, and `unshare` cannot make one: {probe.stderr.strip()}"
        )
    return None


def _webhooks(manifests: Path, url: str, ca_bundle: str) -> Iterator[dict[str, Any]]:
    """Kueue's webhook configurations for what the tests use (Jobs and Kueue's own kinds), pointed at
    `url`; the Job webhooks only for labelled namespaces."""
    for document in yaml.safe_load_all(manifests.read_text()):
        kept = []
        for hook in document["webhooks"]:
            groups = {group for rule in hook["rules"] for group in rule["apiGroups"]}
            resources = {resource for rule in hook["rules"] for resource in rule["resources"]}
            jobs = groups == {"batch"} and "jobs" in resources
            if not jobs and groups != {"kueue.x-k8s.io"}:
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": url + path, "caBundle": ca_bundle}
            if jobs:
                hook["namespaceSelector"] = {"matchLabels": dict([NAMESPACE_LABEL])}
            kept.append(hook)
        kind = document["kind"].lower()
        name = dict(WEBHOOK_CONFIGURATIONS)[kind]
        yield {**document, "metadata": {"name": name}, "webhooks": kept}


@dataclass
class Kueue:
    """Kueue's manager against the cluster of `kubeconfig`; `start()` installs its CRDs and webhooks."""

    binary: Path
    kubeconfig: Path
    kubectl: Path
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="zen-flow-kueue-")))
    process: ComponentProcess | None = None

    @property
    def manifests(self) -> Path:
        return self.binary.parent.parent / "config"

    def apply(self, *documents: dict[str, Any]) -> None:
        self._kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump_all(documents)
        )

    def start(self) -> Kueue:
        from zen_flow_dev.testing.controller import free_port

        self._kubectl("apply", "--server-side", "--force-conflicts", "-f", str(self.manifests / "crd"))
        for crd in sorted((self.manifests / "crd").glob("*.yaml")):
            name: str = yaml.safe_load(crd.read_text())["metadata"]["name"]
            wait_until(functools.partial(self._established, name), 60.0, f"Kueue's CRD {name} Established")
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kueue-system"}})
        certs = self.scratch / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        ca = create_ca(certs, "zen-flow-tests-kueue-ca")
        issue_serving_cert(ca, certs, ["127.0.0.1"], name="tls")
        webhook_port, health_port = free_port(), free_port()
        config = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "namespace": "kueue-system",
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
            "metrics": {"bindAddress": "0"},
            "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(certs)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "integrations": {"frameworks": ["batch/job"]},
        }
        (self.scratch / "config.yaml").write_text(yaml.safe_dump(config))
        for part in ("upper", "work"):
            (self.scratch / "etc" / part).mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.binary),
            "--config", str(self.scratch / "config.yaml"),
            "--kubeconfig", str(self.kubeconfig),
            # The on-demand visibility API is an aggregated apiserver: not registered here, not needed.
            "--feature-gates=VisibilityOnDemand=false",
        ]  # fmt: skip
        etc = self.scratch / "etc"
        inside = (
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={etc}/upper,workdir={etc}/work /etc"
            f" && mkdir -p /etc/kueue/metrics/certs"
            f" && cp {certs}/tls.crt {certs}/tls.key /etc/kueue/metrics/certs/"
            f" && exec {shlex.join(argv)}"
        )
        # As the control plane's components: its own process group, killed with us even by SIGKILL.
        self.process = ComponentProcess(
            "kueue",
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", inside],
            self.scratch / "kueue.log",
        )
        self.process.start()
        wait_until(lambda: self._ready(health_port), 60.0, "Kueue's manager ready", abort=self._exited)
        ca_bundle = base64.b64encode(ca.cert_path.read_bytes()).decode()
        self.apply(
            *_webhooks(
                self.manifests / "webhook" / "manifests.yaml", f"https://127.0.0.1:{webhook_port}", ca_bundle
            )
        )
        return self

    def stop(self) -> None:
        for kind, name in WEBHOOK_CONFIGURATIONS:
            self._kubectl("delete", kind, name, "--ignore-not-found", check=False)
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _ready(self, port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _exited(self) -> str | None:
        if self.process is None or (code := self.process.exit_code()) is None:
            return None
        return f"Kueue exited with status {code}:\n{self.process.tail(40)}"

    def _established(self, name: str) -> bool:
        return is_established(json.loads(self._kubectl("get", "crd", name, "-o", "json")))

    def _kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr}")
        return done.stdout
