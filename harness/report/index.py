"""The index page of a run: one row per test that used a testnet (outcome, duration, check
verdicts, seed, replay command, links to its report.html and logs folder), with totals.

    entries = [IndexEntry(nodeid, "failed", 12.3, testnets, {"delivery": "failed"}, report, logs)]
    write_index(entries, artifacts)      # index.json + index.html (links relative to the folder)
    load_index(artifacts)                # the entries back, from index.json and/or report.json files

Paths in ``index.json`` are relative to its folder, so an artifacts folder downloaded from CI
still resolves.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from harness.jsonfile import load_json
from harness.report.html import STYLE, badge
from harness.report.load import RunFileError

#: pytest outcomes, in the order the header shows them; None: not known (rebuilt from a
#: report.json alone, which does not record how the test ended)
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
VERDICTS = ("ok", "failed", "unknown")
INDEX_JSON = "index.json"
INDEX_HTML = "index.html"


@dataclass(frozen=True)
class IndexEntry:
    """One test of the run. Paths are absolute (or as given) in memory."""

    nodeid: str
    outcome: str | None
    duration: float | None = None
    #: [{"name", "seed", "backend", "swarms", "swarm_size"}] of the testnets it used
    testnets: list[dict[str, Any]] = field(default_factory=list)
    #: check name -> "ok" | "failed" | "unknown" (empty: no history, or no check recorded)
    verdicts: dict[str, str] = field(default_factory=dict)
    report: str | None = None
    logs: str | None = None

    @property
    def seeds(self) -> list[str]:
        return [str(t["seed"]) for t in self.testnets if t.get("seed") is not None]

    @property
    def replay(self) -> str:
        return f"python3 -m pytest {shlex.quote(self.nodeid)}"

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: Path | None = None) -> IndexEntry:
        def path(v: Any) -> str | None:
            if not v:
                return None
            return str(base / v) if base is not None and not os.path.isabs(v) else str(v)
        try:
            dur = d.get("duration")
            return cls(nodeid=str(d["nodeid"]), outcome=d.get("outcome"),
                       duration=None if dur is None else float(dur),
                       testnets=[dict(t) for t in d.get("testnets") or []],
                       verdicts={str(k): str(v) for k, v in (d.get("verdicts") or {}).items()},
                       report=path(d.get("report")), logs=path(d.get("logs")))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise RunFileError(f"index entry {d!r:.80} is invalid: {e}") from None

    def to_dict(self, base: Path | None = None) -> dict[str, Any]:
        d = asdict(self)
        if base is not None:
            d["report"] = _relative(self.report, base)
            d["logs"] = _relative(self.logs, base)
        d["seeds"] = self.seeds
        d["replay"] = self.replay
        return d


def _relative(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
    return rel if not rel.startswith("..") else os.path.abspath(path)


def totals(entries: list[IndexEntry]) -> dict[str, Any]:
    """{"tests", "outcomes": {outcome: n}, "verdicts": {verdict: n of checks}, "duration"}."""
    outcomes = Counter(e.outcome or "unknown" for e in entries)
    verdicts = Counter(v for e in entries for v in e.verdicts.values())
    return {"tests": len(entries),
            "outcomes": {k: outcomes[k] for k in (*OUTCOMES, "unknown") if outcomes[k]},
            "verdicts": {k: verdicts.get(k, 0) for k in VERDICTS},
            "duration": round(sum(e.duration or 0.0 for e in entries), 3)}


def verdict_of(entry: IndexEntry) -> str:
    """A test's overall verdict: failed if it failed/errored or a check failed, unknown if a
    check could not decide (or the outcome is not known), else ok (also for skips)."""
    vs = set(entry.verdicts.values())
    if entry.outcome in ("failed", "error") or "failed" in vs:
        return "failed"
    if entry.outcome is None or "unknown" in vs:
        return "unknown"
    return "ok"


def index_dict(entries: list[IndexEntry], folder: str | Path) -> dict[str, Any]:
    """What ``index.json`` holds: totals and the tests in run order, paths relative to
    ``folder``."""
    base = Path(folder)
    return {"generated_at": time.time(), "totals": totals(entries),
            "tests": [e.to_dict(base) for e in entries]}


def entry_from_report_json(path: Path) -> IndexEntry:
    """A row from a test's ``report.json`` (no outcome or duration: it does not record them)."""
    d = load_json(path, "report", RunFileError)
    if not isinstance(d, dict) or "checks" not in d:
        raise RunFileError(f"{path}: not a run's report.json (no 'checks')")
    html = path.with_name("report.html")
    logs = path.parent if any(p.is_dir() for p in path.parent.iterdir()) else None
    return IndexEntry(nodeid=str(d.get("nodeid") or path.parent.name), outcome=None,
                      testnets=list(d.get("testnets") or []),
                      verdicts={str(c.get("name")): str(c.get("verdict"))
                                for c in d.get("checks") or [] if isinstance(c, dict)},
                      report=str(html) if html.is_file() else None,
                      logs=str(logs) if logs else None)


def load_index(folder: str | Path) -> list[IndexEntry]:
    """The entries of the run whose artifacts are in ``folder``: those of its ``index.json``,
    plus a row for every ``report.json`` below it that the index does not list."""
    base = Path(folder)
    if not base.is_dir():
        raise RunFileError(f"{base} is not a folder: give the artifacts folder of a run "
                           "(--testnet-artifacts, default ./testnet-artifacts)")
    entries: list[IndexEntry] = []
    index = base / INDEX_JSON
    if index.is_file():
        d = load_json(index, "index", RunFileError)
        if not isinstance(d, dict) or not isinstance(d.get("tests"), list):
            raise RunFileError(f"{index}: not a run index (expected an object with 'tests')")
        entries = [IndexEntry.from_dict(t, base) for t in d["tests"]]
    listed = {os.path.abspath(e.report) for e in entries if e.report}
    for rj in sorted(base.rglob("report.json")):
        if os.path.abspath(rj.with_name("report.html")) not in listed:
            entries.append(entry_from_report_json(rj))
    if not entries:
        raise RunFileError(f"{base} has neither {INDEX_JSON} nor any report.json: nothing to "
                           "index (run pytest with the testnet fixtures, or "
                           "--testnet-reports=all to keep the reports of passing tests)")
    return entries


# -- HTML ------------------------------------------------------------------------------------

INDEX_STYLE = """
.o-passed{color:#2a9d8f}.o-failed,.o-error{color:#c1121f}.o-skipped,.o-xfailed,.o-xpassed,
.o-unknown{color:#8d99ae}
#tests th{cursor:pointer;user-select:none}
#tests th[aria-sort=ascending]::after{content:" ▲"}#tests th[aria-sort=descending]::after{content:" ▼"}
#tests code{font-size:12px;word-break:break-all}
#tests td:first-child{word-break:break-word}
#tests .chk,#tests .seed{display:block;white-space:nowrap;margin:1px 0}
.scroll{overflow-x:auto}
.totals{display:flex;gap:18px;flex-wrap:wrap}.totals div{font-size:13px}
.totals b{font-size:18px;display:block}
"""

#: filter (text, outcome) and sort (click a column header; data-sort holds the sort key)
INDEX_SCRIPT = """
(function(){
  var table=document.getElementById('tests'), body=table.tBodies[0];
  var q=document.getElementById('test-filter'), o=document.getElementById('test-outcome');
  var n=document.getElementById('test-count');
  function apply(){
    var text=q.value.toLowerCase(), want=o.value, shown=0, rows=body.rows;
    for(var i=0;i<rows.length;i++){var r=rows[i];
      var ok=(!want||r.dataset.outcome===want)&&r.textContent.toLowerCase().indexOf(text)>=0;
      r.hidden=!ok; if(ok){shown++;}}
    n.textContent=shown+' of '+rows.length;
  }
  table.querySelectorAll('th').forEach(function(th,col){
    th.addEventListener('click',function(){
      var asc=th.getAttribute('aria-sort')!=='ascending';
      table.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',asc?'ascending':'descending');
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[col].dataset.sort||a.cells[col].textContent;
        var y=b.cells[col].dataset.sort||b.cells[col].textContent;
        var nx=parseFloat(x), ny=parseFloat(y);
        var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);
        return asc?c:-c;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  q.addEventListener('input',apply); o.addEventListener('change',apply); apply();
})();
"""


def _href(path: str | None, folder: Path) -> str | None:
    rel = _relative(path, folder)
    if rel is None:
        return None
    return Path(rel).as_uri() if os.path.isabs(rel) else rel


def _link(path: str | None, folder: Path, label: str) -> str:
    href = _href(path, folder)
    return f'<a href="{escape(href)}">{escape(label)}</a>' if href else "-"


def _row(e: IndexEntry, folder: Path) -> str:
    outcome = e.outcome or "unknown"
    checks = "".join(f'<span class="chk">{badge(v)} {escape(k)}</span>'
                     for k, v in e.verdicts.items()) or "-"
    dur = "-" if e.duration is None else f"{e.duration:.2f}"
    seeds = "".join(f'<span class="seed">{escape(str(t.get("name")))}: '
                    f'{escape(str(t.get("seed")))}</span>' for t in e.testnets) or "-"
    return (f'<tr data-outcome="{escape(outcome)}"><td>{escape(e.nodeid)}</td>'
            f'<td class="outcome o-{escape(outcome)}">{escape(outcome)}</td>'
            f'<td data-sort="{e.duration or 0:.3f}">{dur}</td>'
            f'<td data-sort="{escape(verdict_of(e))}">{checks}</td><td>{seeds}</td>'
            f"<td><code>{escape(e.replay)}</code></td>"
            f"<td>{_link(e.report, folder, 'report.html')}</td>"
            f"<td>{_link(e.logs, folder, 'logs')}</td></tr>")


def render_index(entries: list[IndexEntry], folder: str | Path,
                 title: str = "testnet run") -> str:
    """The index page (self-contained: the report's CSS, a few lines of JS); links relative to
    ``folder``, where the page is written."""
    base = Path(folder)
    tot = totals(entries)
    worst = ("failed" if any(verdict_of(e) == "failed" for e in entries) else
             "unknown" if any(verdict_of(e) == "unknown" for e in entries) else "ok")
    boxes = [("tests", tot["tests"]), *tot["outcomes"].items(),
             *((f"checks {k}", v) for k, v in tot["verdicts"].items()),
             ("seconds", f"{tot['duration']:.1f}")]
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    outcomes = sorted({e.outcome or "unknown" for e in entries})
    options = "".join(f'<option value="{escape(o)}">{escape(o)}</option>' for o in outcomes)
    head = ("<th>test</th><th>outcome</th><th>seconds</th><th>checks</th><th>seed</th>"
            "<th>replay</th><th>report</th><th>logs</th>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{STYLE}{INDEX_STYLE}</style></head><body>"
            f"<header><h1>{badge(worst)} {escape(title)}</h1><div class=\"sub\">"
            f"{tot['tests']} tests · generated {when}</div></header><main>"
            '<section id="totals"><h2>Totals</h2><div class="totals">'
            + "".join(f"<div><b>{escape(str(v))}</b>{escape(k)}</div>" for k, v in boxes)
            + '</div></section><section id="tests-section"><h2>Tests</h2><div class="filters">'
            '<input id="test-filter" type="search" placeholder="filter: test id, check, seed…">'
            f'<select id="test-outcome"><option value="">any outcome</option>{options}</select>'
            f'<span id="test-count"></span></div><div class="scroll"><table id="tests"><thead>'
            f"<tr>{head}</tr></thead><tbody>{''.join(_row(e, base) for e in entries)}</tbody>"
            "</table></div>"
            f"</section></main><script>{INDEX_SCRIPT}</script></body></html>\n")


def write_index(entries: list[IndexEntry], folder: str | Path) -> dict[str, Path]:
    """Write ``index.json`` and ``index.html`` into ``folder``; returns their paths."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"json": d / INDEX_JSON, "html": d / INDEX_HTML}
    paths["json"].write_text(json.dumps(index_dict(entries, d), indent=1, default=str))
    paths["html"].write_text(render_index(entries, d))
    return paths


__all__ = ["INDEX_HTML", "INDEX_JSON", "IndexEntry", "entry_from_report_json", "index_dict",
           "load_index", "render_index", "verdict_of", "totals", "write_index"]
