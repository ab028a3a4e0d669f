"""The web UI's pages (`zen-flow ui`) as HTML text: pure functions of the flows read and the current time,
the rows computed as `zen-flow list` and `zen-flow get` compute theirs (cli/render.py), the DAG drawn by
cli/dag_svg.py. No JavaScript framework, no asset from the network: inline CSS, and one short script
(SCRIPT, allowed by its hash in the server's Content-Security-Policy) that swaps in the page's live part
anew at each change its event stream tells of (cli/ui_events.py), or reloads the page every few seconds
when the stream fails, unless the user is in a form or has changed one (a swap would lose what was typed
or chosen).

Every value read from the cluster is a tenant's text (a step's message may hold `<script>`): each one goes
through `_e` (control characters made visible as `get` shows them, then HTML-escaped) where it is written;
URLs are built from quoted path segments (`_path`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote, urlencode

from zen_flow.api import JobFlow, Step
from zen_flow.api.constants import VALUES_PREFIX
from zen_flow.cli.dag_svg import svg
from zen_flow.cli.graph import COLOURS
from zen_flow.cli.render import FlowRow, flow_summary, outputs, printable, step_table
from zen_flow.core.gate_values import ValuesError, read_values, supplied_of

REFRESH_SECONDS = 5
FETCH_INTERVAL_MS = 1000  # a page fetches itself at most once a second however fast the flows change
# On each `changed` notice of the page's event stream (cli/ui_events.py, which sends at most one a second),
# the page fetches itself and swaps in its live part (`#live`): one fetch at a time, the next no sooner
# than a second after the last one started; none while the user is in a form or has changed one (typed,
# ticked, chosen: a swap would lose it; every <select> has one option marked selected, `_value_inputs`,
# so an unchanged one holds nothing), nor while the page is hidden, and that is checked again when the
# fetch comes back, before the swap (the user may have started typing meanwhile): the page is then
# fetched again once the form is left unchanged (submitted, or the change undone), or the page shown.
# DOMParser runs no script, and the fetched HTML is escaped as every page is.
# A hidden page (another tab, a minimised window) or one left (pagehide: bfcache) closes its stream: a
# browser allows 6 connections to this server across its tabs, and every stream holds one, so tabs
# left open would hold them all and stall every other request. Shown again, it opens its stream anew
# from the version of the live part it shows, so the server's watch tells it of any change meanwhile
# (after 410 Gone too: a new LIST counts as one), and it fetches itself once then, only if something
# changed. Without EventSource, or when the stream fails or is refused, the page reloads every few
# seconds as before (each reload tries the stream again).
SCRIPT = (
    '(function(){var live=document.getElementById("live");'
    "function busy(){var a=document.activeElement;"
    "if(a&&/^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName))return true;"
    'var c=document.querySelectorAll("input,textarea,option");for(var i=0;i<c.length;i++){var e=c[i];'
    'if(e.tagName==="OPTION"?e.selected!==e.defaultSelected:/^(checkbox|radio)$/.test(e.type)?'
    "e.checked!==e.defaultChecked:e.value!==e.defaultValue)return true;}return false;}"
    "function timed(){setInterval(function(){if(!document.hidden&&!busy())location.reload();},"
    + str(REFRESH_SECONDS * 1000)
    + ");}"
    "if(!live||!live.dataset.events||!window.EventSource||!window.fetch){timed();return;}"
    "var es=null,failed=false,running=false,dirty=false,timer=null,last=-1e9;"
    "function close(){if(es){es.close();es=null;}}"
    "function fail(){if(!failed){failed=true;close();timed();}}"
    "function open(){if(es||failed||document.hidden)return;es=new EventSource(live.dataset.events);"
    'es.addEventListener("changed",refresh);es.onerror=fail;}'
    "function later(ms){if(timer===null)timer=setTimeout(function(){timer=null;refresh();},ms);}"
    "function refresh(){if(failed)return;if(document.hidden){dirty=true;return;}"
    "var wait=last+" + str(FETCH_INTERVAL_MS) + "-Date.now();"
    "if(running||wait>0||busy()){dirty=true;if(!running)later(wait>0?wait:"
    + str(FETCH_INTERVAL_MS)
    + ");return;}"
    'running=true;dirty=false;last=Date.now();fetch(location.href,{credentials:"same-origin"})'
    ".then(function(r){return r.text();}).then(function(t){"
    'var n=new DOMParser().parseFromString(t,"text/html").getElementById("live");'
    "if(!n){location.reload();return;}if(document.hidden||busy()){dirty=true;return;}"
    "live.replaceWith(n);live=n;}).catch(fail).finally(function(){running=false;"
    "if(dirty)later(last+" + str(FETCH_INTERVAL_MS) + "-Date.now());});}"
    'document.addEventListener("visibilitychange",function(){if(document.hidden)close();'
    "else{open();if(dirty)refresh();}});"
    'window.addEventListener("pagehide",close);window.addEventListener("pageshow",open);open();})();'
)
_ENDED = ("Succeeded", "Failed")
_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#212121;background:#fafafa}
header{background:#263238;color:#fff;padding:.6em 1em;display:flex;gap:1.5em;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:bold}
main{padding:1em}
table{border-collapse:collapse;background:#fff;margin:.5em 0 1.2em}
th,td{border:1px solid #e0e0e0;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eceff1;font-size:.85em}
td.msg{max-width:48em;white-space:pre-wrap;word-break:break-word}
td.step{white-space:pre;font-family:monospace}
.phase{padding:.1em .45em;border-radius:.3em;border:1px solid;font-size:.9em;white-space:nowrap}
.note{background:#e8f5e9;border:1px solid #2e7d32;padding:.5em .8em;margin-bottom:1em}
.error{background:#ffebee;border:1px solid #c62828;padding:.5em .8em;margin-bottom:1em;white-space:pre-wrap}
.dagbox{overflow:auto;background:#fff;border:1px solid #e0e0e0;max-height:70vh;margin-bottom:1em}
form.inline{display:inline-block;margin:0 .8em .6em 0;padding:.4em .6em;background:#fff;
 border:1px solid #e0e0e0}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}dd{margin:0}
small{color:#616161}
"""


def _e(value: object) -> str:
    """A tenant's text for HTML: control and bidi characters shown as escapes (as `get` prints them),
    then `<`, `>`, `&` and quotes escaped."""
    return escape(printable(str(value)), quote=True)


def _path(*segments: str) -> str:
    return "/" + "/".join(quote(s, safe="") for s in segments)


def flow_path(namespace: str, name: str, *rest: str) -> str:
    return _path("flows", namespace, name, *rest)


def _phase(phase: str) -> str:
    """A phase as `get` shows it, coloured by the phase itself: `Failed (allowed)` is a failure too."""
    fill, stroke = COLOURS.get(phase.split(" ", 1)[0], COLOURS["Pending"])
    return f'<span class="phase" style="background:{fill};border-color:{stroke}">{_e(phase)}</span>'


def page(title: str, body: str, *, note: str | None = None, events: str | None = None) -> str:
    """A whole page: `note` (what an action did) above `body`, which the caller built escaped. With
    `events` (the address of its event stream) the body is the live part, swapped in anew at each
    change the stream tells of (SCRIPT), and the note stays."""
    said = f'<div class="note">{_e(note)}</div>' if note else ""
    script = f"<script>{SCRIPT}</script>" if events is not None else ""
    if events is not None:
        body = f'<div id="live" data-events="{_e(events)}">{body}</div>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} - zen-flow</title><style>{_STYLE}</style></head><body>"
        '<header><a href="/">zen-flow</a><span>' + _e(title) + "</span></header>"
        f"<main>{said}{body}</main>{script}</body></html>"
    )


def error_page(status: int, title: str, message: str) -> str:
    """The apiserver's refusal (or ours) as a page: its words, never a traceback."""
    return page(title, f'<div class="error"><b>{status}</b> {_e(message)}</div><a href="/">all flows</a>')


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str = "none") -> str:
    """A table of cells already made HTML (escaped by the caller)."""
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    if not body:
        return f"<p><small>{_e(empty)}</small></p>"
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + f"</tr>{body}</table>"


def events_path(path: str, version: str, **query: str) -> str:
    """The address of a page's event stream: `path`, where its watch starts (`version`, the
    resourceVersion the page was made from) and what it shows (`query`)."""
    return f"{path}?{urlencode({**query, 'rv': version})}"


def list_page(
    rows: Sequence[FlowRow], namespace: str | None, *, note: str | None = None, version: str = ""
) -> str:
    """`/`: the flows of `namespace` (None: every namespace) as `zen-flow list` shows them; `version`:
    the list's resourceVersion, where the page's stream of changes starts."""
    where = "all namespaces" if namespace is None else f"namespace {namespace}"
    chooser = (
        '<form method="get" action="/" class="inline">namespace '
        f'<input type="text" name="namespace" value="{_e(namespace or "")}" size="20"> '
        f'<label><input type="checkbox" name="all" value="1"{" checked" if namespace is None else ""}>'
        ' all namespaces</label> <button type="submit">show</button></form>'
    )
    header = [*(["NAMESPACE"] if namespace is None else []), "NAME", "PHASE", "PROGRESS", "AGE", "DURATION",
              "MESSAGE"]  # fmt: skip
    cells = (
        [
            *([f"<td>{_e(r.namespace)}</td>"] if namespace is None else []),
            f'<td><a href="{_e(flow_path(r.namespace, r.name))}">{_e(r.name)}</a></td>',
            f"<td>{_phase(r.phase)}</td>",
            f"<td>{_e(r.progress)}</td>",
            f"<td>{_e(r.age)}</td>",
            f"<td>{_e(r.duration)}</td>",
            f'<td class="msg">{_e(r.message)}</td>',
        ]
        for r in rows
    )
    table = _table(header, cells, empty=f"No JobFlows found in {where}.")
    scope = {"all": "1"} if namespace is None else {"namespace": namespace}
    events = events_path("/events", version, **scope)
    return page(f"JobFlows in {where}", chooser + table, note=note, events=events)


def flow_page(flow: JobFlow, now: datetime, *, note: str | None = None) -> str:
    """`/flows/NS/NAME`: what `zen-flow get -o wide` shows, the DAG, and the actions the flow allows."""
    ns, name = flow.metadata.namespace, flow.metadata.name
    summary = "".join(f"<dt>{_e(label)}</dt><dd>{_e(value)}</dd>" for label, value in flow_summary(flow, now))
    if flow.spec.suspend:
        summary += "<dt>Suspended</dt><dd>yes: no new step starts</dd>"
    body = [f"<dl>{summary}</dl>", _actions(flow), *_gates(flow), '<div class="dagbox">', svg(flow), "</div>"]
    body += ["<h3>Steps</h3>", _steps(flow, now)]
    args = flow.spec.arguments.parameters if flow.spec.arguments is not None else ()
    body += [
        "<h3>Parameters</h3>",
        _table(
            ["NAME", "VALUE"],
            ([f"<td>{_e(p.name)}</td>", f'<td class="msg">{_e(p.value)}</td>'] for p in args),
        ),
        "<h3>Outputs</h3>",
        _table(
            ["STEP", "OUTPUTS"],
            (
                [f"<td>{_e(s.name)}</td>", f'<td class="msg">{_e(outputs(s))}</td>']
                for s in flow.status.steps
                if outputs(s)
            ),
        ),
        "<h3>Conditions</h3>",
        _table(
            ["TYPE", "STATUS", "REASON", "MESSAGE"],
            (
                [
                    f"<td>{_e(c.type)}</td>",
                    f"<td>{_e(c.status)}</td>",
                    f"<td>{_e(c.reason or '')}</td>",
                    f'<td class="msg">{_e(c.message or "")}</td>',
                ]
                for c in flow.status.conditions
            ),
        ),
    ]
    approvals = flow.status.audit.approvals if flow.status.audit is not None else ()
    if approvals:
        body += [
            "<h3>Decisions</h3>",
            _table(
                ["STEP", "DECISION", "BY", "MESSAGE"],
                (
                    [
                        f"<td>{_e(a.step)}</td>",
                        f"<td>{_e(a.decision)}</td>",
                        f"<td>{_e(a.user or '-')}</td>",
                        f'<td class="msg">{_e(a.message or "")}</td>',
                    ]
                    for a in approvals
                ),
            ),
        ]
    events = events_path(flow_path(ns, name, "events"), flow.metadata.resource_version)
    return page(f"{ns}/{name}", "".join(body), note=note, events=events)


def _steps(flow: JobFlow, now: datetime) -> str:
    """`get`'s step table, each step anchored (the DAG's boxes link to it) with a link to its logs."""
    ns, name = flow.metadata.namespace, flow.metadata.name
    specs = {s.name: s for s in flow.spec.steps}
    drawn = step_table(flow, now)
    rows = []
    for step, row in zip(drawn.steps, drawn.rows, strict=True):
        status = flow.status.step(step)
        ref = status.job_ref.name if status is not None and status.job_ref is not None else None
        if specs[step].is_flow and ref:
            link = f'<a href="{_e(flow_path(ns, ref))}">child flow</a>'
        elif specs[step].is_manual or not ref:
            link = "-"
        else:
            link = f'<a href="{_e(flow_path(ns, name, "steps", step, "logs"))}">logs</a>'
        cells = [
            f'<td class="step" id="{_e("step-" + step)}">{_e(row[0])}</td>',
            f"<td>{_phase(row[1])}</td>",
        ]
        cells += [f"<td>{_e(c)}</td>" for c in row[2:-1]]
        cells += [f'<td class="msg">{_e(row[-1])}</td>', f"<td>{link}</td>"]
        rows.append(cells)
    return _table([*drawn.header, "LOGS"], rows)


def _button(flow: JobFlow, verb: str, label: str, extra: str = "") -> str:
    action = flow_path(flow.metadata.namespace, flow.metadata.name, verb)
    return (
        f'<form method="post" action="{_e(action)}" class="inline">{extra}'
        f'<button type="submit">{_e(label)}</button></form>'
    )


def _actions(flow: JobFlow) -> str:
    """What may be asked of the flow as it stands; the server checks again, as the CLI does."""
    ended = flow.status.phase in _ENDED
    buttons = []
    if not ended:
        run_finally = (
            '<label><input type="checkbox" name="run_finally" value="1"> run finally steps first</label> '
        )
        buttons.append(_button(flow, "stop", "stop", run_finally))
        buttons.append(
            _button(flow, "resume", "resume") if flow.spec.suspend else _button(flow, "suspend", "suspend")
        )
    if flow.status.phase == "Failed":
        buttons.append(_button(flow, "retry", "retry failed steps"))
    return "<div>" + "".join(buttons) + "</div>" if buttons else ""


def _gates(flow: JobFlow) -> list[str]:
    """An approve and a reject form per Manual step still to decide, with an input per value it asks for."""
    if flow.status.phase in _ENDED:
        return []
    forms = []
    for step in flow.spec.steps:
        status = flow.status.step(step.name)
        if not step.is_manual or (status is not None and status.phase in ("Succeeded", "Failed", "Skipped")):
            continue
        waiting = status is not None and status.phase == "PendingApproval"
        later = "" if waiting else " (not reached yet: it may be decided in advance)"
        head = f"<h4>Manual step {_e(step.name)}{later}</h4>"
        step_field = f'<input type="hidden" name="step" value="{_e(step.name)}">'
        message = '<input type="text" name="message" placeholder="why (optional)" size="30"> '
        approve = _button(flow, "approve", "approve", step_field + _value_inputs(flow, step) + message)
        reject = _button(flow, "reject", "reject", step_field + message)
        forms.append(head + approve + reject)
    return ["<h3>Approvals</h3>", *forms] if forms else []


def _value_inputs(flow: JobFlow, step: Step) -> str:
    """An input per value the gate asks for (its outputs' valueFrom.supplied): a choice when the values
    are listed, filled in with the value an earlier approver gave (a second approval of the same values
    is counted; other values would be refused), else its default."""
    try:
        given = read_values(flow.metadata.annotations.get(VALUES_PREFIX + step.name))
    except ValuesError:
        given = {}
    fields = []
    for param in supplied_of(step):
        current = given.get(param.name, param.default)
        field = "value." + param.name
        if param.enum:
            chosen = current if current in param.enum else param.enum[0]  # what the browser would show
            options = "".join(
                f'<option value="{_e(v)}"{" selected" if v == chosen else ""}>{_e(v)}</option>'
                for v in param.enum
            )
            fields.append(f'<label>{_e(param.name)} <select name="{_e(field)}">{options}</select></label> ')
        else:
            required = "" if current is not None else " required"
            fields.append(
                f'<label>{_e(param.name)} <input type="text" name="{_e(field)}" '
                f'value="{_e(current or "")}"{required}></label> '
            )
    return "".join(fields)
