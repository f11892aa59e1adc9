"""The Markdown report (``report.md``): the checks, every failure explained operation by
operation, the passed checks, the fault timeline and where the node logs are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.report.model import Report


def render(report: Report, max_ops: int = 20) -> str:
    out = [f"# {report.title}", ""]
    if report.testnet:
        out += [f"Testnet `{report.testnet}`; times are seconds from the first operation or "
                "fault (+0.000s).", ""]
    out += ["| check | result | summary |", "| --- | --- | --- |"]
    out += [f"| {r.name} | {r.verdict.label if r.ok else f'**{r.verdict.label}**'} | "
            f"{r.summary} |" for r in report.results]
    out.append("")
    for r in report.results:
        if r.ok:
            continue
        out += [f"## {r.verdict.name}: {r.name}", "", r.summary, ""]
        out += [f"- {d}" for d in r.details]
        ops = r.evidence.get("op_ids", [])
        if ops:
            out += ["", f"### Operations involved ({len(ops)})", ""]
        for op in ops[:max_ops]:
            out += _md_op(report, report.explain(op))
        if len(ops) > max_ops:
            out.append(f"… and {len(ops) - max_ops} more (see report.json)")
        out.append("")
    failed_ops = report.failed_ops()
    if failed_ops:
        out += [f"## Operations that failed ({len(failed_ops)})", ""]
        for op in failed_ops[:max_ops]:
            out += _md_op(report, report.explain(op))
    passed = [r for r in report.results if r.ok]
    if passed:
        out += ["## Passed checks", ""]
        for r in passed:
            out += [f"### {r.name}", "", r.summary, ""] + [f"- {d}" for d in r.details] + [""]
    if report.history.events:
        out += ["## Fault timeline", "", "```"]
        out += [f"+{e.wall - report.origin:8.3f}s {e.describe()[e.describe().index(']') + 2:]}"
                for e in sorted(report.history.events, key=lambda e: (e.wall, e.seq))]
        out += ["```", ""]
    if report.history.nodes:
        out += ["## Node logs", ""]
        out += [f"- {n} ({info.get('public_ip')}, …{str(info.get('ed25519'))[-8:]}): "
                f"{report.log_pointer(n)}" for n, info in sorted(report.history.nodes.items())]
        out.append("")
    return "\n".join(out)


def _md_op(report: Report, e: dict[str, Any]) -> list[str]:
    if e.get("missing"):
        return [f"#### {e['op_id']}: no record in the history", ""]
    what = f" message {e['body']!r}" if e.get("body") is not None else ""
    out = [f"#### {e['kind']} {e['op_id']}{what}", "",
           f"- from `{e['from']}` to `{e['to']}`" + (f", hash `{e['hash']}`" if e["hash"] else ""),
           f"- +{e['started']:.3f}s → +{e['ended']:.3f}s, outcome **{e['outcome']}**"
           + (f": {e['error']}" if e.get("error") else ""),
           "", "| # | at | method | path (guard first) | destination | status | error | client did |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for a in e["attempts"]:
        status = f"{a['http_status']}/{a['status']}" if a["status"] is not None else str(a["http_status"])
        err = f"{a['error_kind']}: {a['error']}" if a["error_kind"] else ("ok" if a["ok"] else "")
        out.append(f"| {a['n']} | +{a['at']:.3f}s ({a['elapsed_ms']:.0f} ms) | {a['method']} | "
                   f"{' → '.join(a['path']) or 'direct'} | {a['destination']} | {status} | "
                   f"{err.replace('|', '/')} | {', '.join(a['actions'])} |")
    out.append("")
    if e["faults"]:
        out.append("Faults active during this operation:")
        out += [f"- {f['text']}" for f in e["faults"]]
    else:
        out.append("No fault from the timeline was active during this operation.")
    if e["logs"]:
        out += ["", "Node logs:"] + [f"- {n}: {p}" for n, p in e["logs"].items()]
    out.append("")
    return out


__all__ = ["render"]
