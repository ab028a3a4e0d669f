"""The kubeconfig's entries, typed strictly the way client-go decodes them.

client-go unmarshals a kubeconfig into typed Go structs, so `insecure-skip-tls-verify: "false"` (a
string) is an error there, not "true because the string is not empty", and `user: "alice"` is an error,
not an anonymous user. The checks here give the same verdicts, each as one line naming the entry and the
field. Unknown fields are ignored, as client-go does (`extensions`, `as`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)


class ClusterEntry(_Strict):
    server: str = ""
    certificate_authority: str | None = Field(None, alias="certificate-authority")
    certificate_authority_data: str | None = Field(None, alias="certificate-authority-data")
    insecure_skip_tls_verify: bool = Field(False, alias="insecure-skip-tls-verify")
    tls_server_name: str | None = Field(None, alias="tls-server-name")
    proxy_url: str | None = Field(None, alias="proxy-url")


class ExecEnv(_Strict):
    name: str
    value: str = ""


class ExecEntry(_Strict):
    api_version: str = Field("", alias="apiVersion")
    command: str = ""
    args: list[str] | None = None
    env: list[ExecEnv] | None = None
    provide_cluster_info: bool = Field(False, alias="provideClusterInfo")
    interactive_mode: str | None = Field(None, alias="interactiveMode")


class AuthProviderEntry(_Strict):
    name: str = "?"


class UserEntry(_Strict):
    token: str | None = None
    token_file: str | None = Field(None, alias="tokenFile")
    client_certificate: str | None = Field(None, alias="client-certificate")
    client_certificate_data: str | None = Field(None, alias="client-certificate-data")
    client_key: str | None = Field(None, alias="client-key")
    client_key_data: str | None = Field(None, alias="client-key-data")
    username: str | None = None
    password: str | None = None
    exec: ExecEntry | None = None
    auth_provider: AuthProviderEntry | None = Field(None, alias="auth-provider")


class ContextEntry(_Strict):
    cluster: str = ""
    user: str = ""
    namespace: str | None = None


_SCHEMAS: dict[str, type[_Strict]] = {"cluster": ClusterEntry, "user": UserEntry, "context": ContextEntry}


def check_entry(section: str, index: int, entry: Any) -> tuple[str, dict[str, Any]]:
    """(name, body) of `section`[index] (clusters, users or contexts); ValueError in one line if any
    part has the wrong type."""
    kind = section[:-1]
    where = f"{section}[{index}]"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a mapping with 'name' and '{kind}', not {_kind_of(entry)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name must be a non-empty string")
    body = entry.get(kind)
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ValueError(f"{where} ({name!r}).{kind} must be a mapping, not {_kind_of(body)}")
    try:
        _SCHEMAS[kind].model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"{where} ({name!r}).{kind}.{field}: {first['msg']}") from None
    return name, dict(body)


def _kind_of(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"a {type(value).__name__}"
