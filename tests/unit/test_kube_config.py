"""Our kubeconfig and in-cluster loader, and the credentials it builds (files, env, a fake plugin)."""

from __future__ import annotations

import base64
import json
import ssl
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow.kube import KubeError, load_config
from zen_flow.kube.config import in_cluster_config
from zen_flow.kube.credentials import ExecPlugin, TokenFile
from zen_flow_dev.cluster.pki import create_ca, issue_client_cert
from zen_flow_dev.testing.clock import FakeClock


def kubeconfig(
    path: Path, *, user: dict[str, Any], cluster: dict[str, Any] | None = None, context: str = "x"
) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KUBECONFIG",
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
        "HTTPS_PROXY",
        "https_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "")


async def test_a_static_token_becomes_a_bearer_header(tmp_path: Path) -> None:
    config = await load_config(str(kubeconfig(tmp_path / "kc", user={"token": "s3cret"})))
    assert config.host == "https://127.0.0.1:6443"
    assert await config.credentials.authorization() == "Bearer s3cret"
    assert isinstance(config.ssl_context, ssl.SSLContext)
    assert config.ssl_context.verify_mode == ssl.CERT_REQUIRED


async def test_client_certificate_files_are_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "pki")
    issue_client_cert(ca, tmp_path / "pki", "alice")
    user = {"client-certificate": "pki/alice.crt", "client-key": "pki/alice.key"}
    cluster = {"server": "https://127.0.0.1:6443", "certificate-authority": "pki/ca.crt"}
    config = await load_config(str(kubeconfig(tmp_path / "kc", user=user, cluster=cluster)))
    assert await config.credentials.authorization() is None  # the certificate is in the TLS context
    assert config.ssl_context is not None
    assert config.ssl_context.get_ca_certs()[0]["subject"][0][0][1] == "zenflow-dev-ca"


async def test_inline_data_and_insecure_skip_verify(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "pki")
    cert, key = issue_client_cert(ca, tmp_path / "pki", "bob")
    b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
    user = {"client-certificate-data": b64(cert), "client-key-data": b64(key)}
    cluster = {"server": "https://10.0.0.1:443", "insecure-skip-tls-verify": True, "tls-server-name": "api"}
    config = await load_config(str(kubeconfig(tmp_path / "kc", user=user, cluster=cluster)))
    assert config.ssl_context is not None
    assert config.ssl_context.verify_mode == ssl.CERT_NONE
    assert config.tls_server_name == "api"


async def test_kubeconfig_path_lists_merge_first_definition_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = kubeconfig(tmp_path / "one", user={"token": "first"})
    second = kubeconfig(tmp_path / "two", user={"token": "second"}, context="other")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{first}:{second}")
    config = await load_config()
    assert await config.credentials.authorization() == "Bearer first"


@pytest.mark.parametrize(
    ("user", "context", "message"),
    [
        ({"token": "t"}, "nope", "context 'nope' not found"),
        ({"auth-provider": {"name": "oidc"}}, "x", "auth-provider 'oidc' is not supported"),
        (
            {"client-certificate-data": "eA=="},
            "x",
            "client-certificate and client-key must be given together",
        ),
        ({"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}}, "x", "v1alpha1"),
    ],
)
async def test_broken_kubeconfigs_say_what_is_wrong(
    tmp_path: Path, user: dict[str, Any], context: str, message: str
) -> None:
    path = kubeconfig(tmp_path / "kc", user=user, context=context)
    with pytest.raises(KubeError, match=message) as caught:
        await load_config(str(path))
    assert str(path) in str(caught.value)


async def test_a_malformed_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_text("clusters: {c: x}\n")
    with pytest.raises(KubeError, match="clusters must be a list"):
        await load_config(str(path))


async def test_in_cluster_reads_the_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = create_ca(tmp_path / "sa-pki")
    (tmp_path / "ca.crt").write_bytes(ca.cert_path.read_bytes())
    (tmp_path / "token").write_text("sa-token\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    config = in_cluster_config(directory=tmp_path)
    assert config.host == "https://[fd00::1]:443"
    assert config.source == "in-cluster"
    assert await config.credentials.authorization() == "Bearer sa-token"


def test_in_cluster_without_a_service_account_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(KubeError, match="no service account mounted"):
        in_cluster_config(directory=tmp_path)


async def test_the_proxy_is_read_once_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    path = kubeconfig(tmp_path / "kc", user={"token": "t"})
    assert (await load_config(str(path))).proxy == "http://proxy:3128"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert (await load_config(str(path))).proxy is None
    cluster = {"server": "https://127.0.0.1:6443", "proxy-url": "http://explicit:8080"}
    assert (
        await load_config(str(kubeconfig(tmp_path / "kc2", user={"token": "t"}, cluster=cluster)))
    ).proxy == ("http://explicit:8080")


async def test_a_token_file_is_reread_every_minute(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "token"
    path.write_text("one")
    token = TokenFile(path, clock=clock)
    assert await token.authorization() == "Bearer one"
    path.write_text("two")
    clock.jump(59)
    assert await token.authorization() == "Bearer one"
    clock.jump(1)
    assert await token.authorization() == "Bearer two"
    path.unlink()
    clock.jump(60)
    assert await token.authorization() == "Bearer two"  # the last good token, until the file is back


def exec_plugin(tmp_path: Path, clock: FakeClock, *, expires_in: float | None) -> tuple[ExecPlugin, Path]:
    """A plugin that hands out token-<n> on its n-th run (counted in a file)."""
    counter = tmp_path / "runs"
    expiry = (clock.now() + timedelta(seconds=expires_in)).isoformat() if expires_in is not None else None
    script = tmp_path / "plugin.py"
    script.write_text(
        "import json, os, pathlib, sys\n"
        f"c = pathlib.Path({str(counter)!r})\n"
        "n = int(c.read_text()) + 1 if c.exists() else 1\n"
        "c.write_text(str(n))\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "assert info['kind'] == 'ExecCredential' and os.environ['EXTRA'] == 'yes', info\n"
        f"status = {{'token': f'token-{{n}}', 'expirationTimestamp': {expiry!r}}}\n"
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential', 'status': status}))\n"
    )
    spec = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": [str(script)],
        "env": [{"name": "EXTRA", "value": "yes"}],
    }
    plugin = ExecPlugin.from_kubeconfig(
        spec, tmp_path / "kc", clock=clock, ssl_context=None, cluster_info={"server": "https://x"}
    )
    return plugin, counter


async def test_an_exec_plugin_token_is_cached_until_it_expires(tmp_path: Path) -> None:
    clock = FakeClock()
    plugin, counter = exec_plugin(tmp_path, clock, expires_in=300)
    assert await plugin.authorization() == "Bearer token-1"
    assert await plugin.authorization() == "Bearer token-1"
    clock.jump(301)
    assert await plugin.authorization() == "Bearer token-2"
    assert counter.read_text() == "2"


async def test_an_exec_plugin_runs_again_after_a_401(tmp_path: Path) -> None:
    plugin, _ = exec_plugin(tmp_path, FakeClock(), expires_in=None)
    assert await plugin.authorization() == "Bearer token-1"
    assert plugin.invalidate() is True
    assert await plugin.authorization() == "Bearer token-2"


async def test_a_failing_exec_plugin_reports_its_stderr(tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text("import sys; sys.stderr.write('please run aws sso login'); sys.exit(3)\n")
    spec = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": sys.executable,
        "args": [str(script)],
    }
    plugin = ExecPlugin.from_kubeconfig(
        spec, tmp_path / "kc", clock=FakeClock(), ssl_context=None, cluster_info={"server": "x"}
    )
    with pytest.raises(KubeError, match="exited with 3: please run aws sso login"):
        await plugin.authorization()


def test_exec_credential_status_is_required() -> None:
    from zen_flow.kube.credentials import _parse_credential

    with pytest.raises(KubeError, match="no status"):
        _parse_credential(json.dumps({"kind": "ExecCredential"}).encode(), "p")


async def test_an_exec_plugin_asking_for_cluster_info_gets_the_server_and_ca(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "pki")
    seen = tmp_path / "exec-info.json"
    script = tmp_path / "plugin.py"
    script.write_text(
        "import json, os, pathlib\n"
        f"pathlib.Path({str(seen)!r}).write_text(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "print(json.dumps({'kind': 'ExecCredential', 'status': {'token': 'from-plugin'}}))\n"
    )
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(script)],
            "provideClusterInfo": True,
        }
    }
    cluster = {
        "server": "https://10.0.0.1:6443",
        "certificate-authority": "pki/ca.crt",
        "tls-server-name": "api",
    }
    config = await load_config(str(kubeconfig(tmp_path / "kc", user=user, cluster=cluster)))
    assert await config.credentials.authorization() == "Bearer from-plugin"
    info = json.loads(seen.read_text())["spec"]["cluster"]
    assert info["server"] == "https://10.0.0.1:6443"
    assert info["tls-server-name"] == "api"
    assert base64.b64decode(info["certificate-authority-data"]) == ca.cert_path.read_bytes()


# --- strict typing: the verdicts client-go gives, each one line ------------------------------------------


@pytest.mark.parametrize(
    ("cluster", "user", "message"),
    [
        pytest.param(
            {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": "false"},
            {"token": "t"},
            "clusters[0] ('c').cluster.insecure-skip-tls-verify: Input should be a valid boolean",
            id="quoted-bool-never-turns-verification-off",
        ),
        pytest.param(
            None,
            {"auth-provider": "gcp"},
            "users[0] ('u').user.auth-provider: Input should be",
            id="auth-provider-as-a-string",
        ),
        pytest.param(
            None,
            {"auth-provider": {"name": "gcp"}},
            "user auth-provider 'gcp' is not supported",
            id="auth-provider-refused",
        ),
        pytest.param(
            None, {"token": 42}, "users[0] ('u').user.token: Input should be a valid string", id="int-token"
        ),
        pytest.param(
            None, {"exec": {"command": ["x"]}}, "user.exec.command: Input should be a valid string", id="exec"
        ),
    ],
)
async def test_wrongly_typed_fields_are_refused_with_the_field_named(
    tmp_path: Path, cluster: dict[str, Any] | None, user: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubeError) as caught:
        await load_config(str(kubeconfig(tmp_path / "kc", user=user, cluster=cluster)))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_a_user_that_is_a_string_is_an_error_not_an_anonymous_user(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    doc = yaml.safe_load(kubeconfig(path, user={"token": "t"}).read_text())
    doc["users"][0]["user"] = "alice"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(KubeError, match=r"users\[0\] \('u'\).user must be a mapping, not the string 'alice'"):
        await load_config(str(path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("clusters: " + "[" * 2000 + "]" * 2000, "nested more than 100 levels deep", id="deep"),
        pytest.param("a: &a [*a]", "recursive alias", id="recursive"),
        pytest.param("clusters: [unclosed", "not valid YAML", id="broken"),
    ],
)
async def test_malformed_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "kc"
    path.write_text(text)
    with pytest.raises(KubeError) as caught:
        await load_config(str(path))
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"kubeconfig {path}: ")
