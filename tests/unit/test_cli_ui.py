"""`zen-flow ui`: the DAG drawn as SVG, the pages (tenants' text escaped), and the server's security rules
(token, cookie, Host, Origin), against a fake apiserver client."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import itertools
import random
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from test_cli_render import NOW, T0, release

from zen_flow.api import JobFlow
from zen_flow.cli import main
from zen_flow.cli.dag_svg import BOX_HEIGHT, BOX_WIDTH, H_GAP, MARGIN, WRAP, Layout, layout, svg
from zen_flow.cli.graph import COLOURS
from zen_flow.cli.render import FlowRow, flow_rows
from zen_flow.cli.session import Session, UsageError
from zen_flow.cli.ui_pages import SCRIPT, flow_page, list_page
from zen_flow.cli.ui_server import HEADERS, LOG_BOUND, Ui, is_loopback, refusal, serve, start, warning
from zen_flow.kube.errors import ApiError
from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator, run

HOSTILE = '<script>alert("x")</script>'


def diamond() -> JobFlow:
    steps = [
        job_step("a"),
        job_step("b", "a"),
        job_step("c", "a"),
        job_step("d", "b", "c"),
        job_step("e"),
        job_step("cleanup", **{"finally": True}),
    ]
    return make_flow(steps, name="diamond", namespace="team-a", created=T0)


def test_the_dag_draws_every_step_and_an_edge_per_dependency() -> None:
    flow = diamond()
    drawn = layout(flow)
    assert sorted(b.step for b in drawn.boxes) == ["a", "b", "c", "cleanup", "d", "e"]
    assert sorted(drawn.edges) == [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    rows = {b.step: b.y for b in drawn.boxes}
    assert rows["a"] == rows["e"] < rows["b"] == rows["c"] < rows["d"] < rows["cleanup"]  # finally: last
    text = svg(flow)
    assert len(re.findall(r'<path class="edge"', text)) == 4
    assert '<path class="edge" data-from="b" data-to="d"' in text
    assert 'stroke-dasharray="5 4"' in text  # the finally step, and only it
    assert text.count("stroke-dasharray") == 1


def test_boxes_of_a_row_never_overlap_and_fit_the_drawing() -> None:
    flow = make_flow([job_step(f"s{i}") for i in range(7)] + [job_step("join", *[f"s{i}" for i in range(7)])])
    drawn = layout(flow)
    row = sorted(b.x for b in drawn.boxes if b.step != "join")
    assert len(row) == 7
    assert all(right - left >= BOX_WIDTH for left, right in itertools.pairwise(row))
    assert all(b.x >= 0 and b.x + BOX_WIDTH <= drawn.width for b in drawn.boxes)


def test_boxes_are_coloured_by_phase_and_a_manual_step_is_a_hexagon() -> None:
    text = svg(release().flow)
    fill, stroke = COLOURS["PendingApproval"]
    gate = text[text.index('data-step="gate"') :].split("</a>")[0]
    assert '<polygon points="' in gate
    assert f'fill="{fill}" stroke="{stroke}"' in gate
    built = text[text.index('data-step="build"') :].split("</a>")[0]
    assert "<rect " in built
    assert f'fill="{COLOURS["Succeeded"][0]}"' in built


def test_a_tolerated_failure_is_red_in_the_table_and_marked_allowed_in_the_dag() -> None:
    steps = [job_step("build"), job_step("lint", "build", allowFailure=True), job_step("ship", "lint")]
    sim = Simulator(make_flow(steps, name="release", namespace="team-a", created=T0), T0)
    run(sim, lambda job: "fail" if sim.steps[job] == "lint" else "complete")
    fill, stroke = COLOURS["Failed"]
    page = flow_page(sim.flow, NOW)
    row = page[page.index('id="step-lint"') :].split("</tr>")[0]
    assert f'style="background:{fill};border-color:{stroke}">Failed (allowed)</span>' in row
    box = svg(sim.flow)[svg(sim.flow).index('data-step="lint"') :].split("</a>")[0]
    assert f'fill="{fill}" stroke="{stroke}"' in box
    assert ">Failed (allowed)</text>" in box


def test_the_dag_escapes_names() -> None:
    # Names are validated by the webhook; a drawing never relies on it.
    flow = make_flow([job_step("a"), job_step('x"><script>', "a")], name="f")
    text = svg(flow)
    assert "<script>" not in text
    assert "x&quot;&gt;&lt;script&gt;" in text


def test_the_flow_page_shows_get_s_table_the_dag_and_the_gate_s_forms() -> None:
    page = flow_page(release().flow, NOW)
    assert "<svg" in page
    assert 'data-step="ship"' in page
    assert '<td class="step" id="step-build">build</td>' in page
    assert 'href="/flows/team-a/release/steps/build/logs"' in page
    assert "steps/gate/logs" not in page  # a Manual step runs no pod
    assert 'action="/flows/team-a/release/approve"' in page
    assert 'action="/flows/team-a/release/reject"' in page
    assert '<input type="hidden" name="step" value="gate">' in page
    assert 'action="/flows/team-a/release/stop"' in page


def test_a_gate_asking_for_values_gets_an_input_for_each() -> None:
    outputs = {"parameters": [
        {"name": "region", "valueFrom": {"supplied": {"enum": ["eu", "us"], "default": "us"}}},
        {"name": "ticket", "valueFrom": {"supplied": {}}},
    ]}  # fmt: skip
    sim = Simulator(make_flow([manual_step("gate", outputs=outputs)], name="f", created=T0), T0)
    sim.reconcile()
    page = flow_page(sim.flow, NOW)
    assert '<select name="value.region"><option value="eu">eu</option><option value="us" selected>' in page
    assert 'name="value.ticket" value="" required>' in page
    # A second approver sees the values the first gave: approving them is counted, others refused.
    sim.flow = sim.flow.model_copy(
        update={"metadata": sim.flow.metadata.model_copy(
            update={"annotations": {"values.workflow.kube-zen.io/gate": '{"region":"eu","ticket":"T-1"}'}}
        )}
    )  # fmt: skip
    page = flow_page(sim.flow, NOW)
    assert '<option value="eu" selected>eu</option><option value="us">us</option>' in page
    assert 'name="value.ticket" value="T-1">' in page


def test_tenant_text_is_shown_as_text_never_run() -> None:
    sim = Simulator(make_flow([manual_step("gate", message=HOSTILE)], name="f", created=T0), T0)
    sim.reconcile()
    row = FlowRow("team-a", "f", "Failed", "0/1", "1m", "1m", f"step x failed: {HOSTILE}")
    pages = [flow_page(sim.flow, NOW), list_page([row], None)]
    for page in pages:
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
        _parses(page)


def test_the_list_page_shows_list_s_rows_with_links() -> None:
    flow = release().flow
    page = list_page(flow_rows([flow], NOW), "team-a")
    assert '<a href="/flows/team-a/release">release</a>' in page
    assert "Paused" in page
    assert "2/4" in page
    assert "NAMESPACE" not in page  # one namespace: no column for it
    assert "NAMESPACE" in list_page(flow_rows([flow], NOW), None)


def _parses(page: str) -> None:
    """Every tag opened in `page` (but void ones) is closed: escaping left no stray markup."""
    stack: list[str] = []
    void = {"meta", "input", "br", "path", "rect", "polygon"}

    class Checker(HTMLParser):
        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag not in void:
                stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            if tag not in void:
                assert stack.pop() == tag

    Checker().feed(page)
    assert stack == []


class FakeClient:
    """The apiserver as the UI reads it: one flow, every write recorded; `refuse`: every call is a 403."""

    def __init__(self, flow: JobFlow) -> None:
        self.raw = flow.model_dump(by_alias=True, mode="json", exclude_none=True)
        self.writes: list[tuple[str, str, Any]] = []
        self.refuse: Exception | None = None
        self.log = b""  # every container's log
        self.log_queries: list[dict[str, str]] = []

    async def list_all(self, path: str, query: Any = (), **_: Any) -> Any:
        if self.refuse:
            raise self.refuse
        return SimpleNamespace(items=[self.raw], resource_version="7")

    async def request(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        if self.refuse:
            raise self.refuse
        if method != "GET":
            self.writes.append((method, path, body))
        if path.endswith("/pods"):
            pod = {"metadata": {"name": "pod-1"}, "spec": {"containers": [{"name": "main"}]}}
            return {"items": [pod]}
        return self.raw

    async def request_raw(self, method: str, path: str, *, query: Any = (), **_: Any) -> bytes:
        """pods/log as the apiserver answers it: the last `tailLines`, then at most `limitBytes`."""
        asked = dict(query)
        self.log_queries.append(asked)
        lines = self.log.splitlines(keepends=True)
        if "tailLines" in asked:
            lines = lines[-int(asked["tailLines"]) :]
        sent = b"".join(lines)
        return sent[: int(asked["limitBytes"])] if "limitBytes" in asked else sent


@pytest.fixture
async def served() -> AsyncIterator[tuple[Ui, FakeClient]]:
    fake = FakeClient(release().flow)
    ui = Ui(fake, "team-a", False, "s3cret")  # type: ignore[arg-type]
    runner = await start(ui, 0)
    yield ui, fake
    await runner.cleanup()


def _browser(**kwargs: Any) -> aiohttp.ClientSession:
    # unsafe: keep cookies set by an IP address (127.0.0.1), as browsers do.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), **kwargs)


async def test_the_token_opens_the_ui_once_and_then_lives_in_a_strict_cookie(served: Any) -> None:
    ui, _ = served
    base = f"http://127.0.0.1:{ui.port}"
    async with _browser() as browser:
        async with browser.get(f"{base}/") as answer:
            assert answer.status == 403
            assert "open the address zen-flow ui printed" in await answer.text()
        async with browser.get(f"{base}/?token=wrong") as answer:
            assert answer.status == 403
        async with browser.get(f"{base}/?token=s3cret", allow_redirects=False) as answer:
            assert answer.status == 303
            assert answer.headers["Location"] == "/"  # the token leaves the address bar
            cookie = answer.headers["Set-Cookie"]
            assert f"{ui.cookie}=s3cret" in cookie
            assert "HttpOnly" in cookie
            assert "SameSite=Strict" in cookie
        async with browser.get(f"{base}/") as answer:  # the cookie alone now
            assert answer.status == 200
            assert '<a href="/flows/team-a/release">release</a>' in await answer.text()
            csp = answer.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp
            assert "frame-ancestors 'none'" in csp


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1:1", "localhost.evil.example:{port}"])
async def test_a_foreign_host_header_is_refused_even_with_the_token(served: Any, host: str) -> None:
    # DNS rebinding: another site's name resolved to 127.0.0.1 reaches this port with its own Host.
    ui, _ = served
    async with _browser(cookies={ui.cookie: "s3cret"}) as browser:
        headers = {"Host": host.format(port=ui.port)}
        async with browser.get(f"http://127.0.0.1:{ui.port}/", headers=headers) as answer:
            assert answer.status == 403
            assert "unexpected Host header" in await answer.text()
    cookies = {ui.cookie: "s3cret"}
    async with _browser(cookies=cookies) as browser, browser.get(f"http://localhost:{ui.port}/") as answer:
        assert answer.status == 200


async def test_a_post_needs_the_cookie_and_this_origin(served: Any) -> None:
    ui, fake = served
    action = f"http://127.0.0.1:{ui.port}/flows/team-a/release/suspend"
    async with _browser() as browser, browser.post(action) as answer:
        assert answer.status == 403
    async with _browser(cookies={ui.cookie: "s3cret"}) as browser:
        for origin in ("http://evil.example", f"http://localhost:{ui.port + 1}"):
            async with browser.post(action, headers={"Origin": origin}) as answer:
                assert answer.status == 403
        async with browser.post(action, headers={"Sec-Fetch-Site": "cross-site"}) as answer:
            assert answer.status == 403
        assert fake.writes == []
        origin = {"Origin": f"http://127.0.0.1:{ui.port}"}
        async with browser.post(action, headers=origin) as answer:
            assert answer.status == 200  # the flow's page, after the redirect
            assert "jobflow team-a/release suspended" in await answer.text()
    assert fake.writes == [("PATCH", JOBFLOWS.path("team-a", "release"), {"spec": {"suspend": True}})]


async def test_the_apiserver_s_refusal_is_shown_with_its_words(served: Any) -> None:
    ui, fake = served
    fake.refuse = ApiError(403, "Forbidden", 'jobflows is forbidden: User "alice" cannot list <x>')
    page = f"http://127.0.0.1:{ui.port}/flows/team-a/release"
    async with _browser(cookies={ui.cookie: "s3cret"}) as browser, browser.get(page) as answer:
        assert answer.status == 403
        text = await answer.text()
    assert "the apiserver refused (403 Forbidden): jobflows is forbidden: User &quot;alice&quot;" in text
    assert "&lt;x&gt;" in text
    assert "Traceback" not in text


async def test_an_action_the_cli_would_refuse_is_refused_with_its_message(served: Any) -> None:
    ui, fake = served
    async with _browser(cookies={ui.cookie: "s3cret"}) as browser:
        action = f"http://127.0.0.1:{ui.port}/flows/team-a/release/approve"
        async with browser.post(action, data={"step": "ship"}) as answer:
            assert answer.status == 400
            assert "step &#x27;ship&#x27; of jobflow release is not a Manual step" in await answer.text()
    assert fake.writes == []


def test_only_loopback_addresses_are_quiet() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.4")


def test_the_command_is_listed_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert re.search(r"\bui\s+serve a web UI", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["ui", "--help"])
    out = capsys.readouterr().out
    assert "--port" in out
    assert "--address" in out
    assert "--all-namespaces" in out


@pytest.mark.parametrize("path", ["/flows/team-a/a%2F..%2Fb", "/flows/Team_A/release", "/?namespace=a%2Fb"])
async def test_a_name_that_is_none_is_refused_before_the_apiserver_is_asked(served: Any, path: str) -> None:
    ui, fake = served
    fake.refuse = ApiError(500, "", "asked")  # any request reaching the apiserver would say so
    address = f"http://127.0.0.1:{ui.port}{path}"
    async with _browser(cookies={ui.cookie: "s3cret"}) as browser, browser.get(address) as answer:
        assert answer.status == 400
        assert "is not a Kubernetes name" in await answer.text()


async def test_a_page_that_is_none_is_a_page_with_the_same_headers(served: Any) -> None:
    ui, _ = served
    async with _browser(cookies={ui.cookie: "s3cret"}) as browser:
        for method, path in (("GET", "/nothing"), ("GET", "/flows/team-a/release/stop")):
            async with browser.request(method, f"http://127.0.0.1:{ui.port}{path}") as answer:
                assert answer.status in (404, 405)
                assert "default-src 'none'" in answer.headers["Content-Security-Policy"]


@pytest.mark.parametrize(("address", "warned"), [(None, False), ("::1", False)])
async def test_the_command_prints_the_address_with_its_token_and_warns_off_loopback(
    address: str | None, warned: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    class Out(io.StringIO):
        printed = asyncio.Event()

        def flush(self) -> None:  # the command flushes once it has said where it serves
            self.printed.set()

    out = Out()
    session = Session(FakeClient(release().flow), "team-a", out)  # type: ignore[arg-type]
    args = argparse.Namespace(address=address, port=0, all_namespaces=False)
    serving = asyncio.create_task(serve(session, args))
    await asyncio.wait_for(out.printed.wait(), 10)
    printed = re.search(r"http://\S+", out.getvalue())
    assert printed is not None
    async with _browser() as browser, browser.get(printed.group()) as answer:
        assert answer.status == 200  # the printed address opens the UI
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert ("warning: listening on" in capsys.readouterr().err) is warned
    assert warning("192.168.1.4") is not None  # another machine's address: served, and said to be open


async def test_a_long_log_is_asked_for_its_tail_only_and_the_page_says_so(served: Any) -> None:
    ui, fake = served
    fake.log = b"".join(b"line %d\n" % i for i in range(LOG_BOUND.lines + 500))
    address = f"http://127.0.0.1:{ui.port}/flows/team-a/release/steps/build/logs"
    async with _browser(cookies={ui.cookie: "s3cret"}) as browser, browser.get(address) as answer:
        text = await answer.text()
    # Never more than the page shows is read from the apiserver (a log may be gigabytes).
    assert fake.log_queries == [
        {"container": "main", "tailLines": str(LOG_BOUND.lines + 1), "limitBytes": str(LOG_BOUND.size)}
    ]
    lines = text.splitlines()
    assert (
        lines[0] == "[not all of the logs are shown: zen-flow logs release build -n team-a prints them all]"
    )
    assert lines[1] == f"[earlier lines left out: the last {LOG_BOUND.lines} are shown]"
    assert lines[2] == "line 500"
    assert lines[-1] == f"line {LOG_BOUND.lines + 499}"

    fake.log = b"short\nlog\n"
    async with _browser(cookies={ui.cookie: "s3cret"}) as browser, browser.get(address) as answer:
        assert await answer.text() == "short\nlog\n"  # all of it: nothing said
    fake.log = b"x" * (LOG_BOUND.size + 10) + b"\n"
    async with _browser(cookies={ui.cookie: "s3cret"}) as browser, browser.get(address) as answer:
        text = await answer.text()
    assert len(text) < LOG_BOUND.size + 200
    assert text.endswith(f"[cut at {LOG_BOUND.size} bytes: later lines left out]\n")


@pytest.mark.parametrize("attempt", ["x", "\N{SUPERSCRIPT TWO}", "\N{ARABIC-INDIC DIGIT ONE}"])
async def test_a_log_attempt_that_is_no_ascii_number_is_refused(served: Any, attempt: str) -> None:
    # `"\N{SUPERSCRIPT TWO}".isdigit()` is True, but int() refuses it: it was a 500.
    ui, fake = served
    address = f"http://127.0.0.1:{ui.port}/flows/team-a/release/steps/build/logs"
    async with (
        _browser(cookies={ui.cookie: "s3cret"}) as browser,
        browser.get(address, params={"attempt": attempt}) as answer,
    ):
        assert answer.status == 400
        assert "expected a number, 1 for the first" in await answer.text()
    assert fake.log_queries == []


@pytest.mark.parametrize("address", ["0.0.0.0", "::"])
async def test_a_wildcard_address_is_refused_as_no_browser_could_use_it(address: str) -> None:
    # Its pages accept only a Host header naming the server's address; a wildcard names none.
    session = Session(FakeClient(release().flow), "team-a", io.StringIO())  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="a wildcard address is refused"):
        # Refused before it listens (else it would serve until cancelled).
        await asyncio.wait_for(
            serve(session, argparse.Namespace(address=address, port=0, all_namespaces=False)), 10
        )
    assert refusal("192.168.1.4") is None


async def test_two_servers_on_one_machine_keep_their_own_cookies(served: Any) -> None:
    # A browser keys cookies by host, not port: one cookie name would be overwritten by the other server.
    ui, _ = served
    other = Ui(FakeClient(release().flow), "team-a", False, "0ther")  # type: ignore[arg-type]
    runner = await start(other, 0)
    try:
        async with _browser() as browser:
            for server in (ui, other):
                async with browser.get(f"http://127.0.0.1:{server.port}/?token={server.token}") as answer:
                    assert answer.status == 200
            for server in (ui, other):
                async with browser.get(f"http://127.0.0.1:{server.port}/") as answer:
                    assert answer.status == 200
    finally:
        await runner.cleanup()
    assert ui.cookie != other.cookie


async def test_an_unexpected_error_is_a_page_with_the_headers_and_its_traceback_in_the_terminal(
    served: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ui, fake = served
    fake.refuse = RuntimeError("a bug")
    address = f"http://127.0.0.1:{ui.port}/flows/team-a/release"
    async with _browser(cookies={ui.cookie: "s3cret"}) as browser, browser.get(address) as answer:
        assert answer.status == 500
        assert "unexpected error (RuntimeError)" in await answer.text()
        assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
        assert answer.headers["X-Frame-Options"] == "DENY"
    assert "RuntimeError: a bug" in capsys.readouterr().err


async def test_the_notes_of_retry_are_shown_on_the_page(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = Simulator(make_flow([job_step("load")], name="nightly", namespace="team-a", created=T0), T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    assert sim.flow.status.phase == "Failed"

    async def notes(*_: Any) -> list[str]:
        return ["a newer run stops this one at once"]

    monkeypatch.setattr("zen_flow.cli.interventions.rerun_notes", notes)
    ui = Ui(FakeClient(sim.flow), "team-a", False, "s3cret")  # type: ignore[arg-type]
    runner = await start(ui, 0)
    try:
        action = f"http://127.0.0.1:{ui.port}/flows/team-a/nightly/retry"
        async with _browser(cookies={ui.cookie: "s3cret"}) as browser, browser.post(action) as answer:
            page = await answer.text()
    finally:
        await runner.cleanup()
    assert "zen-flow retry: note: a newer run stops this one at once" in page
    assert "rerun requested" in page
    assert "note" not in capsys.readouterr().err


def test_the_reload_waits_while_any_form_control_was_changed_and_its_hash_is_allowed() -> None:
    # Text typed, a box ticked, another option chosen: a reload would lose it.
    for changed in (
        "e.value!==e.defaultValue",
        "e.checked!==e.defaultChecked",
        "e.selected!==e.defaultSelected",
    ):
        assert changed in SCRIPT
    page = flow_page(release().flow, NOW)
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in HEADERS["Content-Security-Policy"]


def test_a_choice_with_no_default_marks_the_option_a_browser_shows_as_selected() -> None:
    # Else the browser selects the first option by itself, and the reload script sees a change forever.
    outputs = {"parameters": [{"name": "region", "valueFrom": {"supplied": {"enum": ["eu", "us"]}}}]}
    sim = Simulator(make_flow([manual_step("gate", outputs=outputs)], name="f", created=T0), T0)
    sim.reconcile()
    assert '<option value="eu" selected>eu</option><option value="us">us</option>' in flow_page(sim.flow, NOW)


def test_finally_steps_are_drawn_in_rows_by_their_dependencies_among_themselves() -> None:
    # examples/finally-cleanup.yaml: `page` runs after `release-lock`, both after the main steps.
    steps = [
        job_step("work"),
        job_step("release-lock", **{"finally": True}),
        job_step("page", "release-lock", **{"finally": True}),
    ]
    rows = {b.step: b.y for b in layout(make_flow(steps)).boxes}
    assert rows["work"] < rows["release-lock"] < rows["page"]


def _segments(d: str) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """An edge's path as straight segments (a curve sampled finely)."""
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
    points = list(zip(numbers[::2], numbers[1::2], strict=True))
    if "C" in d:
        (x0, y0), (xa, ya), (xb, yb), (x3, y3) = points
        points = [
            ((1 - t) ** 3 * x0 + 3 * (1 - t) ** 2 * t * xa + 3 * (1 - t) * t**2 * xb + t**3 * x3,
             (1 - t) ** 3 * y0 + 3 * (1 - t) ** 2 * t * ya + 3 * (1 - t) * t**2 * yb + t**3 * y3)
            for t in (i / 40 for i in range(41))
        ]  # fmt: skip
    return list(itertools.pairwise(points))


def _crosses(segment: tuple[tuple[float, float], tuple[float, float]], box: Any) -> bool:
    """Whether the segment enters the box's interior (Liang-Barsky clipping; touching its edge is not)."""
    (x1, y1), (x2, y2) = segment
    left, top, right, bottom = box.x + 1, box.y + 1, box.x + BOX_WIDTH - 1, box.y + BOX_HEIGHT - 1
    low, high = 0.0, 1.0
    for p, q in ((x1 - x2, x1 - left), (x2 - x1, right - x1), (y1 - y2, y1 - top), (y2 - y1, bottom - y1)):
        if p == 0:
            if q < 0:
                return False
        elif p < 0:
            low = max(low, q / p)
        else:
            high = min(high, q / p)
    return low < high


def _hidden_edges(flow: JobFlow) -> list[tuple[str, str, str]]:
    drawn: Layout = layout(flow)
    paths = re.findall(r'data-from="([^"]*)" data-to="([^"]*)" d="([^"]*)"', svg(flow))
    assert len(paths) == len(drawn.edges)
    return [
        (start, end, box.step)
        for start, end, d in paths
        for box in drawn.boxes
        if box.step not in (start, end) and any(_crosses(seg, box) for seg in _segments(d))
    ]


def test_no_edge_is_drawn_behind_a_box() -> None:
    # a->d skips the rows of b and c: drawn straight, it would run behind their boxes.
    chain = make_flow([job_step("a"), job_step("b", "a"), job_step("c", "b"), job_step("d", "c", "a")])
    assert _hidden_edges(chain) == []
    rng = random.Random(1)
    steps = [job_step("s0")]
    for i in range(1, 120):
        steps.append(job_step(f"s{i}", *sorted({f"s{rng.randrange(i)}" for _ in range(rng.randint(1, 4))})))
    assert _hidden_edges(make_flow(steps)) == []


def test_a_wide_fan_out_goes_on_over_several_lines_its_edges_clear_of_the_boxes() -> None:
    fan = [job_step("root"), *(job_step(f"item-{i}", "root") for i in range(200)), job_step("join")]
    flow = make_flow([*fan[:-1], job_step("join", *(f"item-{i}" for i in range(200)))])
    drawn = layout(flow)
    assert drawn.width <= 2 * MARGIN + WRAP * BOX_WIDTH + (WRAP - 1) * H_GAP
    assert len({b.y for b in drawn.boxes}) == 2 + -(-200 // WRAP)  # root, 9 lines of items, join
    places = {(b.x, b.y) for b in drawn.boxes}
    assert len(places) == len(drawn.boxes)  # no two boxes in one place
    assert _hidden_edges(flow) == []


def test_a_long_name_keeps_its_end_so_matrix_items_stay_apart() -> None:
    flow = make_flow([job_step(f"transform-customer-data-{k}") for k in range(3)], name="m")
    shown = re.findall(r'font-weight="bold">([^<]*)<', svg(flow))
    assert len(set(shown)) == 3
    assert all(name.endswith(f"data-{k}") and "\u2026" in name for k, name in enumerate(shown))
