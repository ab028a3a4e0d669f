"""Step inputs and outputs: parameters, artifacts and the steps they read from."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from validation_samples import (
    ErrorType,
    Flow,
    assert_error,
    assert_valid,
    errors_of,
    mutated,
    pod_spec,
    step,
)

E = ErrorType
# Step "c" (index 3) depends on gate -> b -> a; step "d" (index 4) depends on a only.
C_IN = "spec.steps[3].inputs"
A_OUT = "spec.steps[0].outputs"


def inputs(**fields: Any) -> Flow:
    return mutated(lambda f: step(f, "c").update(inputs=fields))


def outputs(**fields: Any) -> Flow:
    return mutated(lambda f: step(f, "a").update(outputs=fields))


# --- input parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "param",
    [
        {"name": "greeting", "value": "hello"},
        {"name": "empty", "value": ""},
        {"name": "count", "valueFrom": {"jsonPath": "a:$.succeeded"}},  # a is an indirect dependency
        {"name": "status", "valueFrom": {"jsonPath": "b:$.status.conditions[0].type"}},
        {"name": "cfg", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token.txt"}}},
        {"name": "db.host", "value": "x"},
    ],
)
def test_valid_input_parameters(param: dict[str, Any]) -> None:
    assert_valid(inputs(parameters=[param]))


@pytest.mark.parametrize(
    ("param", "path", "kind", "text"),
    [
        ({"value": "x"}, "name", E.REQUIRED, ""),
        ({"name": "Bad_Name", "value": "x"}, "name", E.INVALID, "RFC 1123 subdomain"),
        ({"name": "p"}, "value", E.REQUIRED, "exactly one of value and valueFrom"),
        (
            {"name": "p", "value": "x", "valueFrom": {"jsonPath": "a:$.x"}},
            "valueFrom",
            E.FORBIDDEN,
            "together with value",
        ),
        ({"name": "p", "value": 3}, "value", E.INVALID, "must be a string"),
        (
            {"name": "p", "valueFrom": {}},
            "valueFrom",
            E.REQUIRED,
            "jsonPath, argument, configMapKeyRef and secretKeyRef",
        ),
        (
            {"name": "p", "valueFrom": {"jsonPath": "a:$.x", "secretKeyRef": {"name": "s", "key": "k"}}},
            "valueFrom.secretKeyRef",
            E.FORBIDDEN,
            "together with jsonPath",
        ),
        (
            {"name": "p", "valueFrom": {"configMapKeyRef": {"key": "k"}}},
            "valueFrom.configMapKeyRef.name",
            E.REQUIRED,
            "",
        ),
        (
            {"name": "p", "valueFrom": {"configMapKeyRef": {"name": "c"}}},
            "valueFrom.configMapKeyRef.key",
            E.REQUIRED,
            "",
        ),
        (
            {"name": "p", "valueFrom": {"secretKeyRef": {"name": "s"}}},
            "valueFrom.secretKeyRef.key",
            E.REQUIRED,
            "",
        ),
        (
            {"name": "p", "valueFrom": {"secretKeyRef": {"name": "S!", "key": "k"}}},
            "valueFrom.secretKeyRef.name",
            E.INVALID,
            "",
        ),
        (
            {"name": "p", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a/b"}}},
            "valueFrom.secretKeyRef.key",
            E.INVALID,
            "config key",
        ),
        (
            {"name": "p", "valueFrom": {"jsonPath": "$.succeeded"}},
            "valueFrom.jsonPath",
            E.INVALID,
            '"<step>:$.path"',
        ),
        (
            {"name": "p", "valueFrom": {"jsonPath": "a:succeeded"}},
            "valueFrom.jsonPath",
            E.INVALID,
            'must start with "$"',
        ),
        (
            {"name": "p", "valueFrom": {"jsonPath": "zzz:$.x"}},
            "valueFrom.jsonPath",
            E.NOT_FOUND,
            'no step "zzz"',
        ),
        (
            {"name": "p", "valueFrom": {"jsonPath": "d:$.x"}},
            "valueFrom.jsonPath",
            E.INVALID,
            'does not depend (directly or indirectly) on step "d"',
        ),
        (
            {"name": "p", "valueFrom": {"jsonPath": "c:$.x"}},
            "valueFrom.jsonPath",
            E.INVALID,
            "does not depend",
        ),
        (
            {"name": "p", "valueFrom": {"jsonPath": "A_b:$.x"}},
            "valueFrom.jsonPath",
            E.INVALID,
            "RFC 1123 label",
        ),
        ({"name": "p", "valueFrom": "a:$.x"}, "valueFrom", E.INVALID, "must be an object"),
        (
            {"name": "p", "valueFrom": {"jsonPath": "a:$.conditions[*].type"}},
            "valueFrom.jsonPath",
            E.INVALID,
            "unsupported JSONPath",
        ),
    ],
)
def test_invalid_input_parameters(param: dict[str, Any], path: str, kind: ErrorType, text: str) -> None:
    assert_error(inputs(parameters=[param]), f"{C_IN}.parameters[0].{path}", kind, text)


def test_duplicate_input_parameter_names() -> None:
    flow = inputs(parameters=[{"name": "p", "value": "1"}, {"name": "p", "value": "2"}])
    assert_error(flow, f"{C_IN}.parameters[1].name", E.DUPLICATE)


# --- input artifacts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "artifact",
    [
        {"name": "data", "from": "a/out", "path": "/in/data"},
        {"name": "data", "from": "a"},
        {"name": "page", "http": {"url": "https://example.com/x.csv", "headers": {"Accept": "text/csv"}}},
        {"name": "page", "http": {"url": "http://example.com"}, "path": "/tmp/page"},
        {
            "name": "page",
            "http": {
                "url": "https://example.com/x",
                "headers": {"Accept": "text/csv"},
                "headersFrom": [
                    {"name": "Authorization", "secretKeyRef": {"name": "gh-token", "key": "header"}}
                ],
            },
        },
    ],
)
def test_valid_input_artifacts(artifact: dict[str, Any]) -> None:
    assert_valid(inputs(artifacts=[artifact]))


@pytest.mark.parametrize(
    ("artifact", "path", "kind", "text"),
    [
        ({"from": "a/out"}, "name", E.REQUIRED, ""),
        ({"name": "Data", "from": "a/out"}, "name", E.INVALID, "RFC 1123"),
        ({"name": "x", "from": "a/out", "path": "relative/x"}, "path", E.INVALID, "absolute path"),
        ({"name": "x", "from": "a/out", "path": "/data/../etc/passwd"}, "path", E.INVALID, "'..'"),
        ({"name": "x"}, "from", E.REQUIRED, "exactly one of from, http and s3"),
        (
            {"name": "x", "http": {"url": "https://x"}, "s3": {"bucket": "b", "key": "k"}},
            "s3",
            E.FORBIDDEN,
            "together with http",
        ),
        ({"name": "x", "s3": {"bucket": "b"}}, "s3.key", E.REQUIRED, ""),
        (
            {"name": "x", "from": "a/out", "http": {"url": "https://x"}},
            "http",
            E.FORBIDDEN,
            "together with from",
        ),
        ({"name": "x", "from": "a/out/more"}, "from", E.INVALID, '"<step>/<artifact>"'),
        ({"name": "x", "from": "/out"}, "from", E.INVALID, '"<step>/<artifact>"'),
        ({"name": "x", "from": "zzz/out"}, "from", E.NOT_FOUND, 'no step "zzz"'),
        ({"name": "x", "from": "d/out"}, "from", E.INVALID, "does not depend"),
        (
            {"name": "x", "from": "a/missing"},
            "from",
            E.NOT_FOUND,
            'step "a" has no output artifact "missing"',
        ),
        ({"name": "x", "from": "a/Out_"}, "from", E.INVALID, "artifact name"),
        ({"name": "x", "http": {"url": "ftp://example.com/x"}}, "http.url", E.INVALID, "http:// or https://"),
        ({"name": "x", "http": {}}, "http.url", E.REQUIRED, ""),
        (
            {"name": "x", "http": {"url": "https://x", "headers": {"A": 1}}},
            "http.headers[A]",
            E.INVALID,
            "string",
        ),
        (
            {
                "name": "x",
                "http": {
                    "url": "https://x",
                    "headersFrom": [{"name": "Bad Header", "secretKeyRef": {"name": "s", "key": "k"}}],
                },
            },
            "http.headersFrom[0].name",
            E.INVALID,
            "HTTP header name",
        ),
        (
            {
                "name": "x",
                "http": {
                    "url": "https://x",
                    "headers": {"Authorization": "plain"},
                    "headersFrom": [{"name": "authorization", "secretKeyRef": {"name": "s", "key": "k"}}],
                },
            },
            "http.headersFrom[0].name",
            E.DUPLICATE,
            "once, in headers or headersFrom",
        ),
        (
            {"name": "x", "http": {"url": "https://x", "headersFrom": [{"name": "A"}]}},
            "http.headersFrom[0].secretKeyRef",
            E.REQUIRED,
            "",
        ),
        (
            {
                "name": "x",
                "http": {"url": "https://x", "headersFrom": [{"name": "A", "secretKeyRef": {"name": "s"}}]},
            },
            "http.headersFrom[0].secretKeyRef.key",
            E.REQUIRED,
            "",
        ),
        (
            {
                "name": "x",
                "http": {
                    "url": "https://x",
                    "headersFrom": [{"name": "A", "secretKeyRef": {"name": "S_", "key": "k"}}],
                },
            },
            "http.headersFrom[0].secretKeyRef.name",
            E.INVALID,
            "",
        ),
    ],
)
def test_invalid_input_artifacts(artifact: dict[str, Any], path: str, kind: ErrorType, text: str) -> None:
    assert_error(inputs(artifacts=[artifact]), f"{C_IN}.artifacts[0].{path}", kind, text)


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ({"http": {"url": "https://user:hunter2@example.com/x.csv"}}, "http.url"),
        ({"http": {"url": "http://hunter2@example.com"}}, "http.url"),  # a user name alone: a token too
        ({"http": {"url": "https://user:hunter2@example.com:8443?a=b@c"}}, "http.url"),
        ({"s3": {"bucket": "b", "key": "k", "endpoint": "https://ak:hunter2@s3.example.com"}}, "s3.endpoint"),
    ],
)
def test_a_url_holding_credentials_is_refused_without_showing_them(source: dict[str, Any], path: str) -> None:
    # urllib cannot send userinfo: the download failed with `nonnumeric port: 'hunter2@example.com'`,
    # which the step's message (status, events) showed. Credentials come from Secrets instead.
    flow = inputs(artifacts=[{"name": "x", **source}])
    error = assert_error(flow, f"{C_IN}.artifacts[0].{path}", E.FORBIDDEN, "from a Secret")
    assert "hunter2" not in "\n".join(map(str, errors_of(flow)))
    assert "user name or password" in str(error)


@pytest.mark.parametrize(
    "url", ["https://example.com/a@b", "https://example.com/x?user=a@b.c", "https://example.com/#x@y"]
)
def test_an_at_sign_after_the_host_is_no_credential(url: str) -> None:
    assert_valid(inputs(artifacts=[{"name": "x", "http": {"url": url}}]))


@given(
    st.sampled_from(["http", "https"]),
    st.text(st.characters(codec="ascii", exclude_characters="/?#@"), max_size=12),
    st.text(st.characters(codec="ascii", exclude_characters="/?#@"), min_size=1, max_size=12),
    st.sampled_from(["example.com", "10.0.0.1:8080", "[::1]:443"]),
    st.text(st.characters(codec="ascii"), max_size=20),
)
def test_any_url_with_userinfo_is_refused_naming_the_field_and_never_showing_it(
    scheme: str, user: str, secret: str, host: str, rest: str
) -> None:
    url = f"{scheme}://{user}:{secret}@{host}/{rest}"
    flow = inputs(artifacts=[{"name": "x", "http": {"url": url}}])
    assert_error(flow, f"{C_IN}.artifacts[0].http.url", E.FORBIDDEN, "headersFrom")
    shown = "\n".join(map(str, errors_of(flow)))
    assert f"{user}:{secret}@" not in shown


def test_duplicate_input_artifact_names() -> None:
    flow = inputs(artifacts=[{"name": "x", "from": "a/out"}, {"name": "x", "from": "a"}])
    assert_error(flow, f"{C_IN}.artifacts[1].name", E.DUPLICATE)


def test_inputs_must_be_objects_and_lists() -> None:
    assert_error(mutated(lambda f: step(f, "c").update(inputs=[])), C_IN, E.INVALID, "must be an object")
    assert_error(inputs(parameters={"p": "v"}), C_IN + ".parameters", E.INVALID, "must be an array")


# --- outputs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"parameters": [{"name": "n", "valueFrom": {"jsonPath": "$.succeeded"}}]},
        {"parameters": [{"name": "n", "valueFrom": {"jsonPath": "a:$.succeeded"}}]},  # the step itself
        {"parameters": [{"name": "n", "valueFrom": {"terminationMessage": {}}}]},  # whole message
        {"parameters": [{"name": "n", "valueFrom": {"terminationMessage": {"key": "image.digest"}}}]},
        {
            "parameters": [
                {"name": "n", "valueFrom": {"terminationMessage": {"container": "main", "key": "x"}}}
            ]
        },
        {
            "artifacts": [
                {
                    "name": "out",
                    "path": "/out",
                    "optional": True,
                    "archive": {"format": "tar", "compression": "gzip"},
                }
            ]
        },
        {"artifacts": [{"name": "out", "path": "/out", "archive": {"format": "zip", "compression": "none"}}]},
        {
            "artifacts": [
                {
                    "name": "out",
                    "path": "/out/result",
                    "s3": {
                        "endpoint": "https://s3.example.com",
                        "bucket": "b",
                        "key": "k",
                        "accessKeyIDSecretRef": {"name": "s3"},
                        "secretAccessKeySecretRef": {"name": "s3", "key": "secret"},
                    },
                }
            ]
        },
    ],
)
def test_valid_outputs(fields: dict[str, Any]) -> None:
    assert_valid(outputs(**fields))


@pytest.mark.parametrize(
    ("fields", "path", "kind", "text"),
    [
        ({"parameters": [{"valueFrom": {"jsonPath": "$.x"}}]}, "parameters[0].name", E.REQUIRED, ""),
        (
            {"parameters": [{"name": "N", "valueFrom": {"jsonPath": "$.x"}}]},
            "parameters[0].name",
            E.INVALID,
            "",
        ),
        ({"parameters": [{"name": "n"}]}, "parameters[0].valueFrom", E.REQUIRED, ""),
        (
            {"parameters": [{"name": "n", "valueFrom": {}}]},
            "parameters[0].valueFrom.jsonPath",
            E.REQUIRED,
            "",
        ),
        (
            {"parameters": [{"name": "n", "valueFrom": {"jsonPath": "$.x", "terminationMessage": {}}}]},
            "parameters[0].valueFrom.terminationMessage",
            E.FORBIDDEN,
            "jsonPath or terminationMessage",
        ),
        (
            {"parameters": [{"name": "n", "valueFrom": {"terminationMessage": {"container": "side"}}}]},
            "parameters[0].valueFrom.terminationMessage.container",
            E.NOT_FOUND,
            "containers are: main",
        ),
        (
            {"parameters": [{"name": "n", "valueFrom": {"terminationMessage": {"key": "a b"}}}]},
            "parameters[0].valueFrom.terminationMessage.key",
            E.INVALID,
            "letters, digits",
        ),
        (
            {"parameters": [{"name": "n", "valueFrom": {"terminationMessage": "digest"}}]},
            "parameters[0].valueFrom.terminationMessage",
            E.INVALID,
            "object",
        ),
        (
            {"parameters": [{"name": "n", "valueFrom": {"jsonPath": ".x"}}]},
            "parameters[0].valueFrom.jsonPath",
            E.INVALID,
            'start with "$"',
        ),
        (
            {"parameters": [{"name": "n", "valueFrom": {"jsonPath": "b:$.x"}}]},
            "parameters[0].valueFrom.jsonPath",
            E.INVALID,
            "own Job",
        ),
        (
            {"parameters": [{"name": "n", "valueFrom": {"jsonPath": "$..succeeded"}}]},
            "parameters[0].valueFrom.jsonPath",
            E.INVALID,
            "unsupported JSONPath",
        ),
        ({"artifacts": [{"name": "out"}]}, "artifacts[0].path", E.REQUIRED, ""),
        ({"artifacts": [{"name": "out", "path": "out"}]}, "artifacts[0].path", E.INVALID, "absolute"),
        ({"artifacts": [{"name": "out", "path": "/a/../b"}]}, "artifacts[0].path", E.INVALID, "'..'"),
        (
            {"artifacts": [{"name": "out", "path": "/o", "optional": "yes"}]},
            "artifacts[0].optional",
            E.INVALID,
            "boolean",
        ),
        (
            {"artifacts": [{"name": "out", "path": "/o", "archive": {"format": "rar"}}]},
            "artifacts[0].archive.format",
            E.NOT_SUPPORTED,
            '"tar", "zip"',
        ),
        (
            {"artifacts": [{"name": "out", "path": "/o", "archive": {"compression": "xz"}}]},
            "artifacts[0].archive.compression",
            E.NOT_SUPPORTED,
            '"gzip", "none"',
        ),
        (
            {"artifacts": [{"name": "out", "path": "/o", "s3": {"key": "k"}}]},
            "artifacts[0].s3.bucket",
            E.REQUIRED,
            "",
        ),
        (
            {"artifacts": [{"name": "out", "path": "/o", "s3": {"bucket": "b", "endpoint": "s3.local"}}]},
            "artifacts[0].s3.endpoint",
            E.INVALID,
            "https://",
        ),
        (
            {"artifacts": [{"name": "out", "path": "/o", "s3": {"bucket": "b", "accessKeyIDSecretRef": {}}}]},
            "artifacts[0].s3.accessKeyIDSecretRef.name",
            E.REQUIRED,
            "",
        ),
        (
            {"artifacts": [{"name": "out", "path": "/o"}, {"name": "out", "path": "/p"}]},
            "artifacts[1].name",
            E.DUPLICATE,
            "",
        ),
        (
            {
                "parameters": [
                    {"name": "n", "valueFrom": {"jsonPath": "$.a"}},
                    {"name": "n", "valueFrom": {"jsonPath": "$.b"}},
                ]
            },
            "parameters[1].name",
            E.DUPLICATE,
            "",
        ),
    ],
)
def test_invalid_outputs(fields: dict[str, Any], path: str, kind: ErrorType, text: str) -> None:
    assert_error(outputs(**fields), f"{A_OUT}.{path}", kind, text)


def test_the_container_is_required_when_the_pod_has_several() -> None:
    def two_containers(flow: Flow) -> None:
        step(flow, "a")["outputs"] = {"parameters": [{"name": "n", "valueFrom": {"terminationMessage": {}}}]}
        pod_spec(flow, "a")["containers"].append({"name": "side", "image": "busybox"})

    assert_error(
        mutated(two_containers),
        f"{A_OUT}.parameters[0].valueFrom.terminationMessage.container",
        E.REQUIRED,
        "2 containers",
    )


# --- flow arguments --------------------------------------------------------------------------------------


def with_arguments(*params: dict[str, Any], reference: str | None = None) -> Flow:
    def change(flow: Flow) -> None:
        flow["spec"]["arguments"] = {"parameters": list(params)}
        if reference is not None:
            step(flow, "c")["inputs"] = {"parameters": [{"name": "p", "valueFrom": {"argument": reference}}]}

    return mutated(change)


def test_valid_arguments_and_a_reference_to_one() -> None:
    assert_valid(
        with_arguments(
            {"name": "environment", "value": "staging", "enum": ["staging", "production"]},
            {"name": "image.tag", "value": "", "description": "empty is a value too"},
            reference="environment",
        )
    )


@pytest.mark.parametrize(
    ("params", "reference", "path", "kind", "text"),
    [
        (
            [{"name": "env", "value": "x"}],
            "nope",
            f"{C_IN}.parameters[0].valueFrom.argument",
            E.NOT_FOUND,
            "(env)",
        ),
        ([], "env", f"{C_IN}.parameters[0].valueFrom.argument", E.NOT_FOUND, "(none)"),
        ([{"value": "x"}], None, "spec.arguments.parameters[0].name", E.REQUIRED, ""),
        ([{"name": "Env", "value": "x"}], None, "spec.arguments.parameters[0].name", E.INVALID, "RFC 1123"),
        ([{"name": "env"}], None, "spec.arguments.parameters[0].value", E.REQUIRED, ""),
        (
            [{"name": "env", "value": "x"}, {"name": "env", "value": "y"}],
            None,
            "spec.arguments.parameters[1].name",
            E.DUPLICATE,
            "",
        ),
        (
            [{"name": "env", "value": "dev", "enum": ["staging", "production"]}],
            None,
            "spec.arguments.parameters[0].value",
            E.NOT_SUPPORTED,
            '"staging", "production"',
        ),
        (
            [{"name": "env", "value": "x" * 4097}],
            None,
            "spec.arguments.parameters[0].value",
            E.TOO_LONG,
            "4096",
        ),
        (
            [{"name": f"a{i}", "value": ""} for i in range(65)],
            None,
            "spec.arguments.parameters",
            E.TOO_MANY,
            "64",
        ),
    ],
)
def test_invalid_arguments(
    params: list[dict[str, Any]], reference: str | None, path: str, kind: ErrorType, text: str
) -> None:
    assert_error(with_arguments(*params, reference=reference), path, kind, text)


# --- artifact transfer -----------------------------------------------------------------------------------


def test_an_input_from_an_artifact_that_is_not_stored_is_refused() -> None:
    def unstored(flow: Flow) -> None:
        del step(flow, "a")["outputs"]["artifacts"][0]["s3"]
        step(flow, "c")["inputs"] = {"artifacts": [{"name": "x", "from": "a/out", "path": "/in/x"}]}

    assert_error(
        mutated(unstored),
        f"{C_IN}.artifacts[0].from",
        E.INVALID,
        "(it has no s3 and the flow no spec.artifactRepository)",
    )


def test_the_bare_step_form_needs_exactly_one_stored_artifact() -> None:
    def two(flow: Flow) -> None:
        step(flow, "a")["outputs"]["artifacts"].append(
            {"name": "more", "path": "/work/more", "s3": {"bucket": "b"}}
        )
        step(flow, "c")["inputs"] = {"artifacts": [{"name": "x", "from": "a"}]}

    assert_error(mutated(two), f"{C_IN}.artifacts[0].from", E.INVALID, "stores 2 artifacts")


def test_a_stored_output_needs_a_directory_unless_a_volume_holds_it() -> None:
    def at_root(flow: Flow) -> None:
        step(flow, "a")["outputs"]["artifacts"][0]["path"] = "/report.txt"

    assert_error(mutated(at_root), f"{A_OUT}.artifacts[0].path", E.INVALID, "e.g. /outputs/report.txt")

    def on_a_volume(flow: Flow) -> None:
        at_root(flow)
        step(flow, "a")["outputs"]["artifacts"][0]["path"] = "/data"
        pod_spec(flow, "a")["containers"][0]["volumeMounts"] = [{"name": "d", "mountPath": "/data"}]
        pod_spec(flow, "a")["volumes"] = [{"name": "d", "emptyDir": {}}]

    assert_valid(mutated(on_a_volume))


@pytest.mark.parametrize("field", ["volumes", "initContainers", "containers"])
def test_our_transfer_names_are_reserved_in_steps_that_move_artifacts(field: str) -> None:
    def clash(flow: Flow) -> None:
        item = (
            {"name": "zf-artifacts-out", "image": "busybox"}
            if field != "volumes"
            else {"name": "zf-artifacts"}
        )
        pod_spec(flow, "a").setdefault(field, []).append(item)

    index = 1 if field == "containers" else 0
    path = f"spec.steps[0].template.spec.template.spec.{field}[{index}].name"
    assert_error(mutated(clash), path, E.INVALID, "reserved for zen-flow's artifact transfer")
