"""The HTML report: one self-contained page (inline CSS, SVG and a few lines of JS; nothing
fetched, works offline) with the verdict of every check, how to replay the run, the fault
timeline, the latency and delivery plots, the messages with each attempt's path, and links to
the node logs.

Sections that have no data say so instead of drawing empty axes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from harness.report import data, plots
from harness.report.data import SendPoint

if TYPE_CHECKING:
    from harness.report.model import Report

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232a;
background:#f5f6f8}
main{max-width:1080px;margin:0 auto;padding:20px 24px 60px}
header{background:#1d2b36;color:#fff;padding:18px 24px}
header h1{margin:0 0 4px;font-size:20px;font-weight:600}
header .sub{opacity:.75;font-size:13px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);
margin:18px 0;padding:14px 18px}
h2{font-size:16px;margin:0 0 10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6e8eb;vertical-align:top}
th{background:#f0f2f4;font-weight:600}
.badge{display:inline-block;border-radius:4px;padding:1px 8px;font-weight:600;font-size:12px;
color:#fff}
.v-ok{background:#2a9d8f}.v-failed{background:#c1121f}.v-unknown{background:#8d99ae}
.o-delivered{color:#2a9d8f}.o-acknowledged{color:#457b9d}.o-indeterminate{color:#c77d12}
.o-failed{color:#e76f51}.o-lost{color:#9b2226}
td.outcome{font-weight:600}
#messages td:nth-child(-n+2){white-space:nowrap}
pre{background:#f0f2f4;padding:8px 10px;border-radius:6px;overflow-x:auto;font-size:12px}
figure{margin:0}
figure svg{width:100%;height:auto}
figcaption{font-size:12px;color:#555;margin-top:4px}
.nodata{color:#777;font-style:italic}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:14px}
.grid svg{width:100%}
.attempts{margin:0;padding-left:16px;font-size:12px}
.attempts .bad{color:#c1121f}
.filters{display:flex;gap:10px;margin-bottom:8px}
.filters input{flex:1;padding:5px 8px;border:1px solid #ccd;border-radius:4px}
.filters select{padding:5px;border:1px solid #ccd;border-radius:4px}
ul.details{margin:4px 0 0;padding-left:18px;font-size:12px;color:#444}
"""

#: the message table's filter: text matches anywhere in a row, the select picks an outcome
SCRIPT = """
(function(){
  var q=document.getElementById('msg-filter'), o=document.getElementById('msg-outcome');
  var rows=document.querySelectorAll('#messages tbody tr'), n=document.getElementById('msg-count');
  function apply(){
    var text=q.value.toLowerCase(), want=o.value, shown=0;
    rows.forEach(function(r){
      var ok=(!want||r.dataset.outcome===want)&&r.textContent.toLowerCase().indexOf(text)>=0;
      r.hidden=!ok; if(ok){shown++;}
    });
    n.textContent=shown+' of '+rows.length;
  }
  q.addEventListener('input',apply); o.addEventListener('change',apply); apply();
})();
"""


def render(report: Report, folder: str | Path | None = None) -> str:
    """The page for ``report``; log links relative to ``folder`` (default: absolute paths)."""
    h = report.history
    t0 = data.origin(h)
    t_end = data.end_of(h, t0)
    points = data.send_points(h, t0)
    bands = data.fault_bands(h, t0)
    body = [_header(report), _checks(report), _replay(report), _timeline(report, t0, t_end,
                                                                         points, bands),
            _plots(report, t0, t_end, points, bands), _messages(report, points, t0),
            _logs(report, folder)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(report.title)}</title><style>{STYLE}</style></head><body>"
            + "".join(body) + f"<script>{SCRIPT}</script></body></html>\n")


def badge(verdict: str) -> str:
    label = {"ok": "PASS", "failed": "FAIL", "unknown": "UNKNOWN"}.get(verdict, verdict)
    return f'<span class="badge v-{escape(verdict)}">{label}</span>'


def _header(report: Report) -> str:
    nets = ", ".join(f"{t.get('name')} (seed {t.get('seed')}, {t.get('backend', '?')})"
                     for t in report.testnets) or report.testnet or "-"
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return (f"<header><h1>{badge(report.verdict.value)} {escape(report.title)}</h1>"
            f'<div class="sub">testnet {escape(nets)} · generated {when}</div></header><main>')


def _checks(report: Report) -> str:
    rows = "".join(
        f"<tr><td>{escape(r.name)}</td><td>{badge(r.verdict.value)}</td>"
        f"<td>{escape(r.summary)}{_details(r.details) if not r.ok else ''}</td></tr>"
        for r in report.results)
    if not rows:
        return '<section id="checks"><h2>Checks</h2><p class="nodata">no check ran</p></section>'
    return ('<section id="checks"><h2>Checks</h2><table><thead><tr><th>check</th>'
            f"<th>verdict</th><th>summary</th></tr></thead><tbody>{rows}</tbody></table></section>")


def _details(lines: list[str], limit: int = 12) -> str:
    items = "".join(f"<li>{escape(d)}</li>" for d in lines[:limit])
    more = f"<li>… {len(lines) - limit} more in report.md</li>" if len(lines) > limit else ""
    return f'<ul class="details">{items}{more}</ul>' if items else ""


def _replay(report: Report) -> str:
    cmds = data.replay_commands(report.testnets, report.nodeid)
    if not cmds:
        return ('<section id="replay"><h2>Replay</h2><p class="nodata">the run did not record '
                "its testnet or test id: nothing to replay from</p></section>")
    seeds = ", ".join(f"{t.get('name')}: {t.get('seed')}" for t in report.testnets) or "-"
    return (f'<section id="replay"><h2>Seed and replay</h2><p>Seed {escape(seeds)}. Same seed ⇒ '
            "same keys, swarms and fault targets.</p>"
            f"<pre>{escape(chr(10).join(cmds))}</pre></section>")


def _lanes(report: Report, bands: list[data.Band], marks: list[data.EventMark]) -> list[str]:
    used = {b.lane for b in bands} | {m.lane for m in marks}
    nodes = sorted(n for n in report.history.nodes if n in used)
    return nodes + sorted(used - set(nodes))


def _timeline(report: Report, t0: float, t_end: float, points: list[SendPoint],
              bands: list[data.Band]) -> str:
    marks = data.churn_marks(report.history, t0)
    if not points and not bands:
        inner = '<p class="nodata">no send and no fault in this run: nothing on the timeline</p>'
    else:
        svg = plots.timeline_svg(_lanes(report, bands, marks), bands, marks, points, t_end)
        inner = (f"<figure>{svg}<figcaption>Faults as bands on the node or link they hit (▲ node "
                 "taken out, ▼ back); every send is a mark at its start, coloured by "
                 "outcome.</figcaption></figure>")
    return f'<section id="timeline" class="plot"><h2>Timeline</h2>{inner}</section>'


def _figure(pid: str, title: str, draw: Callable[[], str] | None, caption: str,
            missing: str) -> str:
    inner = (f'<figure>{draw()}<figcaption>{escape(caption)}</figcaption></figure>' if draw
             else f'<p class="nodata">{escape(missing)}</p>')
    return f'<div id="plot-{pid}" class="plot"><h2>{escape(title)}</h2>{inner}</div>'


def _plots(report: Report, t0: float, t_end: float, points: list[SendPoint],
           bands: list[data.Band]) -> str:
    send = data.latency_series(points, "send")
    deliver = data.latency_series(points, "delivery")
    sent, got = data.sent_and_delivered(points)
    counts = data.role_counts(report.history)
    censor = data.censorship_points(report.history, points, t0)
    cdfs = {"send": data.cdf([v for _, v in send]), "delivery": data.cdf([v for _, v in deliver])}
    figs = [
        _figure("latency", "Latency over time",
                (lambda: plots.latency_svg(send, deliver, bands, t_end)) if send or deliver
                else None, "Send and delivery latency of each message at its send time; "
                "shaded: faults in force.", "no successful send: no latency to plot"),
        _figure("cdf", "Latency CDF", (lambda: plots.cdf_svg(cdfs)) if send else None,
                "Fraction of messages at or below each latency.",
                "no successful send: no latency distribution"),
        _figure("delivered", "Delivered versus sent",
                (lambda: plots.sent_delivered_svg(sent, got, bands, t_end)) if sent else None,
                "Cumulative messages sent and delivered; shaded: faults in force.",
                "no send in this run"),
        _figure("roles", "Requests per node by role",
                (lambda: plots.roles_svg(counts)) if counts else None,
                "Onion requests each node took part in, from the records' paths (guard = first "
                "hop).", "no onion request in the records"),
        _figure("censorship", "Delivery rate vs censoring nodes",
                (lambda: plots.censorship_svg(censor)) if censor else None,
                "Share of sends delivered, grouped by the fraction of nodes censoring while the "
                "send ran (labels: delivered/sent).",
                "no node censored (drop_stores, drop_relays, corrupt_relays) in this run"),
    ]
    return f'<section id="plots"><div class="grid">{"".join(figs)}</div></section>'


def _attempts(report: Report, op_id: str) -> str:
    e = report.explain(op_id)
    items = []
    for a in e.get("attempts", []):
        path = " → ".join(a["path"]) or "direct"
        err = f" — {a['error_kind']}: {a['error']}" if a["error_kind"] else ""
        cls = "" if a["ok"] else ' class="bad"'
        items.append(f"<li{cls}>#{a['n']} {escape(a['method'])} +{a['at']:.2f}s "
                     f"{a['elapsed_ms']:.0f} ms: {escape(path)} ⇒ {escape(a['destination'])}"
                     f"{escape(err)}</li>")
    return f'<ol class="attempts">{"".join(items)}</ol>'


def _messages(report: Report, points: list[SendPoint], t0: float) -> str:
    if not points:
        return ('<section id="messages-section"><h2>Messages</h2><p class="nodata">no send in '
                "this run</p></section>")
    rows = []
    for p in points:
        sent = report.history.sent.get(p.op_id, {})
        ms = "" if p.send_ms is None else f"{p.send_ms:.0f}"
        dms = "" if p.delivery_ms is None else f"{p.delivery_ms:.0f}"
        rows.append(f'<tr data-outcome="{p.outcome}"><td>+{p.t:.2f}s</td>'
                    f"<td>{escape(p.op_id)}</td><td>{escape(str(sent.get('body', '')))}</td>"
                    f'<td class="outcome o-{p.outcome}">{p.outcome}</td><td>{ms}</td>'
                    f"<td>{dms}</td><td>{_attempts(report, p.op_id)}</td></tr>")
    options = "".join(f'<option value="{o}">{o}</option>' for o in data.OUTCOMES)
    return ('<section id="messages-section"><h2>Messages</h2><div class="filters">'
            '<input id="msg-filter" type="search" placeholder="filter: op id, body, node, error…">'
            f'<select id="msg-outcome"><option value="">any outcome</option>{options}</select>'
            '<span id="msg-count"></span></div><table id="messages"><thead><tr><th>sent</th>'
            "<th>op</th><th>body</th><th>outcome</th><th>send ms</th><th>delivery ms</th>"
            "<th>attempts (path guard first ⇒ destination)</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></section>")


def log_href(path: str, folder: str | Path | None) -> str:
    """A node log's link: relative to the page's folder when it is under it."""
    if folder is None:
        return Path(path).as_uri() if os.path.isabs(path) else path
    rel = os.path.relpath(path, folder)
    return rel if not rel.startswith("..") else Path(os.path.abspath(path)).as_uri()


def _logs(report: Report, folder: str | Path | None) -> str:
    items = []
    for node, info in sorted(report.history.nodes.items()):
        path = report.log_paths.get(node)
        where = (f'<a href="{escape(log_href(path, folder))}">{escape(os.path.basename(path))}'
                 "</a>" if path else escape(report.log_pointer(node)))
        items.append(f"<tr><td>{escape(node)}</td><td>{escape(str(info.get('public_ip', '')))}"
                     f"</td><td>{where}</td></tr>")
    if not items:
        return '<section id="logs"><h2>Node logs</h2><p class="nodata">no node known</p></section></main>'
    return ('<section id="logs"><h2>Node logs</h2><table><thead><tr><th>node</th><th>address'
            f"</th><th>log</th></tr></thead><tbody>{''.join(items)}</tbody></table></section></main>")


__all__ = ["STYLE", "badge", "log_href", "render"]
