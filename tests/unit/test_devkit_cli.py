"""`zen-flow-dev`: the developer commands; bench and chaos keep their own options and help; webhooks."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from zen_flow_dev.cli import main


@pytest.mark.parametrize(("command", "option"), [("bench", "--preset"), ("chaos", "--kill-every")])
def test_pass_through_commands_show_their_own_help(
    command: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: zen-flow-dev {command}")
    assert option in out


def test_the_runtime_cli_has_no_developer_commands(capsys: pytest.CaptureFixture[str]) -> None:
    from zen_flow.cli import main as runtime_main

    with pytest.raises(SystemExit):
        runtime_main(["dev"])
    assert "invalid choice: 'dev'" in capsys.readouterr().err


def test_webhooks_makes_certificates_for_the_urls_host_and_configurations_that_trust_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Step 1 of docs/WEBHOOKS.md, "A controller outside the cluster": what the apiserver needs to call a
    local webhook server (the integration tier registers its server with the same configurations)."""
    cert_dir = tmp_path / "certs"
    code = main(
        ["webhooks", "--url", "https://127.0.0.1:9443", "--cert-dir", str(cert_dir), "--namespace", "team-a"]
    )
    assert code == 0
    configs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [c["kind"] for c in configs] == ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"]
    cert = x509.load_pem_x509_certificate((cert_dir / "tls.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ca = x509.load_pem_x509_certificate((cert_dir / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)  # the caBundle below really trusts the serving certificate
    for config in configs:
        assert "annotations" not in config["metadata"]  # no cert-manager injection to wait for
        for hook in config["webhooks"]:
            assert hook["clientConfig"]["url"].startswith("https://127.0.0.1:9443/")
            assert base64.b64decode(hook["clientConfig"]["caBundle"]) == (cert_dir / "ca.crt").read_bytes()
            assert hook["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}
    assert oct((cert_dir / "tls.key").stat().st_mode & 0o777) == "0o600"


def test_webhooks_refuses_a_url_the_apiserver_would_not_call(tmp_path: Path) -> None:
    assert main(["webhooks", "--url", "http://127.0.0.1:9443", "--cert-dir", str(tmp_path)]) == 2
