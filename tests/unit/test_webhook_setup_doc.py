"""docs/WEBHOOKS.md "Setup without cert-manager": the shell that writes the CA into the webhook
configurations, run with a stand-in kubectl that answers from config/webhook, reaches every webhook of
each configuration (one left without a caBundle fails, with failurePolicy Fail, every write it covers)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy_manifests import CONFIG, ROOT, documents
from zen_flow.webhook.patch import apply_patch

START = "CA_BUNDLE=$("
CONFIGURATIONS = {
    "validatingwebhookconfiguration/zen-flow-validating-webhook": CONFIG
    / "webhook"
    / "validating-webhook.yaml",
    "mutatingwebhookconfiguration/zen-flow-mutating-webhook": CONFIG / "webhook" / "mutating-webhook.yaml",
}
# kubectl: `get KIND -o jsonpath=...` answers one `x` per webhook of the configuration (as the real
# one, with the doc's jsonpath); `patch KIND --type=json -p OPS` records the patch.
KUBECTL = """#!{python}
import json, sys
from pathlib import Path
import yaml
args = sys.argv[1:]
files = json.loads(Path({files!r}).read_text())
if args[0] == "get":
    assert args[2:] == ["-o", "jsonpath={{range .webhooks[*]}}x{{end}}"], args
    print("x" * len(yaml.safe_load(Path(files[args[1]]).read_text())["webhooks"]), end="")
elif args[0] == "patch":
    assert args[2:4] == ["--type=json", "-p"], args
    with open({log!r}, "a") as log:
        log.write(json.dumps([args[1], json.loads(args[4])]) + "\\n")
else:
    sys.exit(f"unexpected kubectl {{args}}")
"""


def ca_bundle_block() -> str:
    """The lines of the doc's block from `CA_BUNDLE=$(` to the end of its loop."""
    text = (ROOT / "docs" / "WEBHOOKS.md").read_text()
    start = text.index(START)
    return text[start : text.index("\n```", start)]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_documented_ca_bundle_commands_set_it_on_every_webhook(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    files, log = tmp_path / "files.json", tmp_path / "patches.jsonl"
    files.write_text(json.dumps({kind: str(path) for kind, path in CONFIGURATIONS.items()}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(KUBECTL.format(python=sys.executable, files=str(files), log=str(log)))
    kubectl.chmod(0o755)
    done = subprocess.run(
        ["bash", "-euc", ca_bundle_block()],
        cwd=tmp_path,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    bundle = base64.b64encode((tmp_path / "ca.crt").read_bytes()).decode()
    patched: dict[str, Any] = {}
    for line in log.read_text().splitlines():
        kind, ops = json.loads(line)
        (configuration,) = documents(CONFIGURATIONS[kind])
        patched[kind] = apply_patch(patched.get(kind, configuration), ops)
    assert set(patched) == set(CONFIGURATIONS)
    validating = patched["validatingwebhookconfiguration/zen-flow-validating-webhook"]
    assert len(validating["webhooks"]) > 1  # what the first-webhook-only patch missed
    for kind, configuration in patched.items():
        for webhook in configuration["webhooks"]:
            assert webhook["clientConfig"].get("caBundle") == bundle, (kind, webhook["name"])
