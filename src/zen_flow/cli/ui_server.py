"""`zen-flow ui`: a web UI served from the user's own machine, talking to the apiserver with the user's
kubeconfig, so RBAC applies exactly as it does to the CLI (nothing new runs in the cluster). Pages are
cli/ui_pages.py's; every action calls the CLI command's own code (cli/interventions.py, cli/flows.py).

Who may use it: anyone who can reach the port acts with the user's credentials, so
- it listens on 127.0.0.1 unless `--address` says otherwise (a warning is printed then);
- every request needs the random token printed at start (`/?token=...`, as Jupyter does); it is then kept
  in an HttpOnly, SameSite=Strict cookie named with the port (browsers key cookies by host, not port: two
  servers on 127.0.0.1 would otherwise overwrite each other's) and taken out of the address bar;
- the Host header must name this server (127.0.0.1, localhost, [::1] or the `--address`, with its port):
  a page of another site whose name was made to resolve to 127.0.0.1 (DNS rebinding) is refused;
- a POST from another origin (its Origin header, or Sec-Fetch-Site) is refused, whatever cookie it carries;
- responses forbid framing, caching, referrers and any script but the page's own (by its hash), an
  unexpected error's page included; the page may connect to this server only (its event stream of
  changes, cli/ui_events.py, which says that something changed, never what)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import ipaddress
import secrets
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from zen_flow.api import JobFlow
from zen_flow.cli import flows as flow_commands
from zen_flow.cli import interventions, podlogs
from zen_flow.cli.render import flow_rows
from zen_flow.cli.session import EXIT_OK, Session, UsageError, now
from zen_flow.cli.ui_events import Streams, stream
from zen_flow.cli.ui_pages import SCRIPT, error_page, flow_page, flow_path, list_page
from zen_flow.core.naming import is_dns1123_label, is_dns1123_subdomain
from zen_flow.kube.client import KubeClient
from zen_flow.kube.errors import ApiError, KubeError, NotFound, TransportError
from zen_flow.kube.jobflows import JOBFLOWS

# A step's logs page shows each container's last lines, and at most so many bytes in all: only that much
# is asked of the apiserver (a pod's log may be gigabytes); `zen-flow logs` prints them all.
LOG_BOUND = podlogs.Bound(lines=10_000, size=2_000_000)
_NOTES_KEPT = 64
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
HEADERS = {
    # connect-src: the page's event stream and its fetch of itself (cli/ui_events.py), this server only.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the first address holds the token
    "Cache-Control": "no-store",
}
Action = Callable[[Session, argparse.Namespace], Awaitable[int]]
ACTIONS: dict[str, Action] = {
    "approve": interventions.decide,
    "reject": interventions.decide,
    "stop": interventions.stop,
    "retry": interventions.retry,
    "suspend": flow_commands.suspend,
    "resume": flow_commands.suspend,
}


@dataclass
class Ui:
    """What the server needs: the user's client, where it starts, its token, and the address it serves
    (`port` known once bound)."""

    client: KubeClient
    namespace: str
    all_namespaces: bool
    token: str
    address: str = "127.0.0.1"
    port: int = 0
    notes: dict[str, str] = field(default_factory=dict)  # what an action said, shown after its redirect
    streams: Streams = field(default_factory=Streams)  # the pages' streams of changes (cli/ui_events.py)

    def hosts(self) -> set[str]:
        """The Host headers a browser sends for this server."""
        names = {*_LOOPBACK_NAMES, _host(self.address)}
        return {f"{name}:{self.port}" for name in names}

    @property
    def cookie(self) -> str:
        """The token's cookie, named with the port: a browser sends a 127.0.0.1 cookie to every port."""
        return f"zen_flow_ui_{self.port}"

    def session(self, namespace: str) -> tuple[Session, io.StringIO]:
        """A session acting in `namespace`, and what its command writes, notes included (on the page)."""
        out = io.StringIO()
        return Session(self.client, namespace, out, err=out), out


UI_KEY = web.AppKey("ui", Ui)


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _refused(status: int, why: str) -> web.Response:
    return _html(error_page(status, "refused", why), status)


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The security rules of the module docstring, then the apiserver's errors as pages."""
    response = await _checked(request, handler)
    response.headers.update(HEADERS)
    return response


async def _checked(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    ui = request.app[UI_KEY]
    host = request.headers.get("Host", "")
    if host not in ui.hosts():
        return _refused(403, f"unexpected Host header {host!r}: open the address zen-flow ui printed")
    given = request.query.get("token")
    if given is not None and secrets.compare_digest(given.encode(), ui.token.encode()):
        # Into a cookie, and out of the address bar (and the browser's history).
        rest = request.rel_url.with_query([(k, v) for k, v in request.query.items() if k != "token"])
        response = _see_other(str(rest))
        response.set_cookie(ui.cookie, ui.token, httponly=True, samesite="Strict", path="/")
        return response
    cookie = request.cookies.get(ui.cookie, "")
    if not secrets.compare_digest(cookie.encode(), ui.token.encode()):
        return _refused(403, "no valid token: open the address zen-flow ui printed (it holds the token)")
    if request.method not in ("GET", "HEAD"):
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"http://{host}":
            return _refused(403, f"a request from another site ({origin}) is refused")
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return _refused(403, "a request from another site is refused")
    try:
        return await handler(request)
    except web.HTTPException as err:  # no such page, or GET of an action: a page too, with the headers
        return _html(error_page(err.status, err.reason, err.reason), err.status)
    except NotFound as err:
        return _html(error_page(404, "not found", err.message or str(err)), 404)
    except ApiError as err:
        # 403 names the user, the verb and the resource: the user's RBAC, as the CLI says it.
        status = f"{err.status} {err.reason}" if err.reason else str(err.status)
        said = f"the apiserver refused ({status}): {err.message or 'no reason given'}"
        return _html(error_page(err.status, "refused", said), err.status)
    except UsageError as err:
        return _html(error_page(400, "cannot do that", str(err)), 400)
    except TransportError as err:
        return _html(error_page(502, "unreachable", f"cannot reach the apiserver: {err}"), 502)
    except (KubeError, ValueError) as err:  # a malformed object: say so, never a traceback
        return _html(error_page(500, "error", str(err)), 500)
    except Exception as err:  # a bug: the traceback to the terminal, a page with the headers to the browser
        traceback.print_exc(file=sys.stderr)
        return _html(
            error_page(500, "error", f"unexpected error ({type(err).__name__}): see the terminal"), 500
        )


def _names(request: web.Request, *keys: str) -> list[str]:
    """The path's names, each checked to be one (a name holding `/` or `..` would change the apiserver
    path asked for)."""
    found = [request.match_info[key] for key in keys]
    for key, value in zip(keys, found, strict=True):
        _check_name(key, value)
    return found


def _check_name(key: str, value: str) -> None:
    ok = is_dns1123_label(value) if key == "namespace" else is_dns1123_subdomain(value)
    if not ok:
        raise UsageError(f"{key} {value!r} is not a Kubernetes name")


def _note(request: web.Request) -> str | None:
    return request.app[UI_KEY].notes.pop(request.query.get("note", ""), None)  # once: a reload drops it


def _scope(request: web.Request) -> str | None:
    """The namespace the list shows (None: every namespace): the page's query, else the command's."""
    ui = request.app[UI_KEY]
    if "namespace" in request.query or "all" in request.query:
        everywhere = request.query.get("all") == "1"
        namespace = request.query.get("namespace") or ui.namespace
        _check_name("namespace", namespace)
    else:
        everywhere, namespace = ui.all_namespaces, ui.namespace
    return None if everywhere else namespace


async def flow_list(request: web.Request) -> web.StreamResponse:
    ui = request.app[UI_KEY]
    namespace = _scope(request)
    listed = await ui.client.list_all(JOBFLOWS.path(namespace), (), page_size=100)
    rows = flow_rows([JobFlow.model_validate(item) for item in listed.items], now())
    page = list_page(rows, namespace, note=_note(request), version=listed.resource_version)
    return _html(page)


async def list_events(request: web.Request) -> web.StreamResponse:
    """The list page's stream of changes: a notice whenever a flow it shows changes."""
    ui = request.app[UI_KEY]
    return await stream(request, ui.client, ui.streams, _scope(request), None, HEADERS)


async def flow_events(request: web.Request) -> web.StreamResponse:
    """A flow page's stream of changes: a notice whenever the flow changes."""
    ns, name = _names(request, "namespace", "name")
    ui = request.app[UI_KEY]
    return await stream(request, ui.client, ui.streams, ns, name, HEADERS)


async def one_flow(request: web.Request) -> web.StreamResponse:
    ns, name = _names(request, "namespace", "name")
    session, _ = request.app[UI_KEY].session(ns)
    flow = await session.get(name)
    return _html(flow_page(flow, now(), note=_note(request)))


async def step_logs(request: web.Request) -> web.StreamResponse:
    """The step's pod logs as `zen-flow logs NAME STEP` prints them, plain text, at most LOG_BOUND; what
    is left out is said, with the command that shows it."""
    ns, name, step = _names(request, "namespace", "name", "step")
    attempt = request.query.get("attempt")
    # isascii(): str.isdigit() takes a superscript (int() refuses it) and other scripts' digits.
    if attempt is not None and not (attempt.isascii() and attempt.isdigit()):
        raise UsageError(f"attempt {attempt!r}: expected a number, 1 for the first")
    session, out = request.app[UI_KEY].session(ns)
    args = argparse.Namespace(name=name, step=step, attempt=int(attempt) if attempt else None, follow=False)
    cut = await podlogs.show(session, args, bound=LOG_BOUND)
    text = out.getvalue()
    if cut:
        text = (
            f"[not all of the logs are shown: zen-flow logs {name} {step} -n {ns} prints them all]\n" + text
        )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def act(request: web.Request) -> web.StreamResponse:
    """A POSTed action: the CLI command's own function, with the arguments its flags would give."""
    ui = request.app[UI_KEY]
    ns, name = _names(request, "namespace", "name")
    verb = request.match_info["verb"]
    if verb not in ACTIONS:
        return _html(error_page(404, "not found", f"no action {verb!r}"), 404)
    form = await request.post()
    args = _arguments(verb, name, {k: str(v) for k, v in form.items()})
    session, out = ui.session(ns)
    code = await ACTIONS[verb](session, args)
    said = out.getvalue().strip() or f"{verb}: exit status {code}"
    if code != EXIT_OK:
        return _html(error_page(400, verb, said), 400)
    key = secrets.token_hex(8)
    ui.notes[key] = said
    while len(ui.notes) > _NOTES_KEPT:
        ui.notes.pop(next(iter(ui.notes)))
    return _see_other(flow_path(ns, name) + f"?note={key}")


def _arguments(verb: str, name: str, form: dict[str, str]) -> argparse.Namespace:
    """What the command's flags would have given it."""
    common: dict[str, Any] = {"command": verb, "name": name}
    if verb in ("approve", "reject"):
        if not form.get("step"):
            raise UsageError("which step: the form names none")
        values = [f"{k.removeprefix('value.')}={v}" for k, v in form.items() if k.startswith("value.") and v]
        return argparse.Namespace(**common, step=form["step"], message=form.get("message") or None,
                                  parameters=values if verb == "approve" else [])  # fmt: skip
    if verb == "stop":
        return argparse.Namespace(**common, run_finally=form.get("run_finally") == "1")
    if verb == "retry":
        return argparse.Namespace(**common, steps=[])
    return argparse.Namespace(**common)


def make_app(ui: Ui) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[UI_KEY] = ui

    async def end_streams(_: web.Application) -> None:
        await ui.streams.close()

    app.on_shutdown.append(end_streams)
    app.router.add_get("/", flow_list)
    app.router.add_get("/events", list_events)
    app.router.add_get("/flows/{namespace}/{name}", one_flow)
    app.router.add_get("/flows/{namespace}/{name}/events", flow_events)
    app.router.add_get("/flows/{namespace}/{name}/steps/{step}/logs", step_logs)
    app.router.add_post("/flows/{namespace}/{name}/{verb}", act)
    return app


async def start(ui: Ui, port: int) -> web.AppRunner:
    """Serve `ui` on its address and `port` (0: a free one); `ui.port` is the one bound."""
    # A page closed cancels what it asked for: its watch (cli/ui_events.py), the logs it was reading. An
    # action cancelled so is either sent or not: each is one write.
    runner = web.AppRunner(make_app(ui), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, ui.address, port)
    await site.start()
    ui.port = runner.addresses[0][1]  # `port` 0: the one the system chose
    return runner


def url(ui: Ui) -> str:
    return f"http://{_host(ui.address)}:{ui.port}/?token={ui.token}"


def refusal(address: str) -> str | None:
    """Why the server cannot listen on `address`: a wildcard (0.0.0.0, ::) names no host a browser
    could put in the Host header that the DNS-rebinding check accepts."""
    try:
        wildcard = ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return None
    if not wildcard:
        return None
    return (
        f"--address {address}: a wildcard address is refused (the pages accept only requests naming this "
        "server's address in their Host header): give the one address to serve on, e.g. the machine's "
        "own IP address"
    )


def warning(address: str) -> str | None:
    if is_loopback(address):
        return None
    return (
        f"zen-flow ui: warning: listening on {address}: anyone who can reach it and holds the token acts "
        "with your kubeconfig's credentials"
    )


async def serve(session: Session, args: argparse.Namespace) -> int:
    """`zen-flow ui`: serve until interrupted."""
    address = args.address or "127.0.0.1"
    if (why := refusal(address)) is not None:
        raise UsageError(why)
    if (said := warning(address)) is not None:
        print(said, file=sys.stderr)
    ui = Ui(session.client, session.namespace, bool(args.all_namespaces), secrets.token_urlsafe(24), address)
    runner = await start(ui, args.port)
    try:
        session.out.write(
            f"zen-flow ui: serving on {address}:{ui.port}; open\n  {url(ui)}\n(Ctrl-C stops it)\n"
        )
        session.out.flush()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
    return EXIT_OK
