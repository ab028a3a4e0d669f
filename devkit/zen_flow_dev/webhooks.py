"""`zen-flow-dev webhooks`: the admission webhooks of a controller running outside the cluster (`make run`,
an IDE), registered by URL, without cert-manager.

It makes a CA and a serving certificate whose subjectAltName is the URL's host (an IP address or a DNS
name: the apiserver checks it and sends no SNI for an IP), writes `tls.crt`, `tls.key` and `ca.crt`
into --cert-dir (give that directory to `zen-flow run --webhook-cert-dir`), and prints the shipped
webhook configurations (config/webhook) with `clientConfig.url` and the CA as `caBundle`, ready for
`kubectl apply -f -`. `--namespace` limits them to one namespace, so a developer's controller never
judges the rest of a shared cluster.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import shutil
import sys
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import yaml

from zen_flow_dev.cluster.pki import create_ca, issue_serving_cert

REPO = Path(__file__).resolve().parents[2]
CONFIGURATIONS = ("validating-webhook.yaml", "mutating-webhook.yaml")


def url_configurations(url: str, ca_pem: bytes, namespace: str | None = None) -> list[dict[str, Any]]:
    """The shipped webhook configurations, calling `url` (https://host:port) instead of the Service."""
    base = url.rstrip("/")
    configs = []
    for name in CONFIGURATIONS:
        config: dict[str, Any] = yaml.safe_load((REPO / "config" / "webhook" / name).read_text())
        config["metadata"].get("annotations", {}).pop("cert-manager.io/inject-ca-from", None)
        if not config["metadata"].get("annotations"):
            config["metadata"].pop("annotations", None)
        for hook in config["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": base + path, "caBundle": base64.b64encode(ca_pem).decode()}
            if namespace is not None:
                hook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        configs.append(config)
    return configs


def prepare(url: str, cert_dir: Path, namespace: str | None = None) -> list[dict[str, Any]]:
    """Certificates into `cert_dir` for the URL's host; the configurations that trust them."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or not parts.port:
        raise ValueError(f"{url!r}: the apiserver calls webhooks over HTTPS: use https://HOST:PORT")
    cert_dir.mkdir(parents=True, exist_ok=True)
    ca = create_ca(cert_dir / "ca", common_name="zen-flow-dev-webhook-ca")
    cert, key = issue_serving_cert(ca, cert_dir / "serving", [parts.hostname])
    for source, target in ((cert, "tls.crt"), (key, "tls.key"), (ca.cert_path, "ca.crt")):
        shutil.copyfile(source, cert_dir / target)
    (cert_dir / "tls.key").chmod(0o600)
    return url_configurations(url, ca.cert_path.read_bytes(), namespace)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="where the apiserver reaches the webhook server")
    parser.add_argument("--cert-dir", required=True, type=Path, help="written: tls.crt, tls.key, ca.crt")
    parser.add_argument("--namespace", help="judge only this namespace's JobFlows")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    # sys.stdout read at call time, not bound at import (pytest's capture and redirect_stdout replace it)
    out = out or sys.stdout
    try:
        configs = prepare(args.url, args.cert_dir, args.namespace)
    except ValueError as err:
        print(f"zen-flow-dev webhooks: {err}", file=sys.stderr)
        return 2
    host = urlsplit(args.url).hostname or ""
    kind = "IP" if _is_ip(host) else "DNS"
    print(f"# certificates in {args.cert_dir} (subjectAltName {kind}:{host})", file=sys.stderr)
    out.write(yaml.safe_dump_all(configs, sort_keys=False))
    return 0


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
