"""Differential conformance, the pure part: how an answer is normalised, how the answers of the
real storage server and of our node are compared, and the allow-list in docs/conformance.md.

The same request goes to a real node and to ours (differential_cases.py); each answer becomes an
:class:`Observation` — status, content type, the body with per-node values replaced by symbols
(node keys, addresses, ports, swarm ids, server times, ``t``/``hf``), and *facts* the case
computed from the answer (signatures verify, the swarm is the account's, ...).  Everything the
client sent itself (timestamps, expiries, message hashes of the same accounts and data) is the
same on both sides, so it stays literal or becomes the case's own symbol.

:func:`compare` turns two observations into :class:`Difference` rows (probe, aspect, real,
ours); :func:`allow_list` reads the table of docs/conformance.md section
"Differences from the real server (differential run)" that must list every one of them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: ints under these keys differ per node or per chain, not per behaviour
PER_NODE_INT_KEYS = frozenset({"port", "port_https", "port_omq", "port_quic", "storage_port",
                               "storage_lmq_port", "height", "swarm_id"})
#: any integer above this is epoch milliseconds (2020-09-13)
EPOCH_MS_FLOOR = 1_600_000_000_000
SECTION = "Differences from the real server (differential run)"
HARDEN = "fixed on the harden branch"

_B64_SIG = re.compile(r"^[A-Za-z0-9+/]{86}==$")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_IPV4 = re.compile(r"^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$")
#: the elapsed time in curl's connect error (an exit node that cannot reach a server)
_CURL_ELAPSED = re.compile(r"(?<=\bafter )\d+(?= ms: )")


@dataclass
class Observation:
    """One answer, normalised.  ``body`` is JSON (normalised) or a text (normalised)."""

    status: int | None
    content_type: str | None
    body: Any
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Difference:
    probe: str
    aspect: str
    real: str
    ours: str


@dataclass
class Symbols:
    """Values that differ between the two testnets (or between runs), each with the symbol it is
    shown as: the nodes' keys, addresses and swarm ids of one testnet, and times a case used."""

    strings: dict[str, str] = field(default_factory=dict)
    ints: dict[int, str] = field(default_factory=dict)

    def add_node(self, ed25519: str, x25519: str, ip: str, legacy: str | None = None,
                 address: str | None = None) -> None:
        for value, sym in ((ed25519, "<snode ed25519>"), (x25519, "<snode x25519>"),
                           (legacy, "<snode legacy>"), (address, "<snode address>"), (ip, "<snode ip>")):
            if value:
                self.strings.setdefault(value.lower() if sym != "<snode ip>" else value, sym)

    def add_swarm(self, swarm_id: int) -> None:
        self.strings[f"{swarm_id:x}"] = "<swarm id>"
        self.strings[f"{swarm_id:016x}"] = "<swarm id>"

    def time(self, name: str, value: int) -> int:
        """Register a time the case sent (epoch ms) under ``name``; returns it."""
        self.ints[value] = name
        return value

    def copy(self) -> Symbols:
        return Symbols(dict(self.strings), dict(self.ints))

    def is_node_key(self, s: str) -> bool:
        return self.strings.get(s.lower(), "").startswith("<snode")


def _text(s: str, syms: Symbols) -> str:
    """Per-node values inside a text (e.g. ``Next node not found: <hex>``, curl's elapsed ms)."""
    s = _CURL_ELAPSED.sub("<elapsed>", s)
    return _HEX64.sub(lambda m: syms.strings.get(m.group(0).lower(), "<hex64>"), s)


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def normalise(value: Any, syms: Symbols, key: str | None = None) -> Any:
    """``value`` with everything per-node replaced by a symbol (see the module doc)."""
    if key == "t":
        now = time.time() * 1000
        ok = isinstance(value, int) and not isinstance(value, bool) and abs(value - now) < 120_000
        return "<t: ms near now>" if ok else f"<bad t {value!r}>"
    if key == "hf" and isinstance(value, list) and len(value) == 2 and all(isinstance(x, int) for x in value):
        return "<hf [major, minor]>"
    if key in ("version", "v") and isinstance(value, list) and len(value) == 3 and all(
            isinstance(x, int) for x in value):
        return "<version [x, y, z]>"  # the implementation's own; compared once, as a fact of `info`
    if isinstance(value, dict):
        if value and all(isinstance(k, str) and syms.is_node_key(k) for k in value):
            # one entry per swarm member (store, delete, expire ...): the set of distinct shapes
            shapes = {_key(normalise(v, syms)): normalise(v, syms) for v in value.values()}
            return {"<member>": [shapes[k] for k in sorted(shapes)]}
        return {k: normalise(v, syms, k) for k, v in value.items()}
    if isinstance(value, list):
        items = [normalise(v, syms) for v in value]
        if value and all(isinstance(v, dict) and "pubkey_ed25519" in v for v in value):
            shapes = {_key(i): i for i in items}  # swarm members: how many is per-testnet
            return {"<each snode>": [shapes[k] for k in sorted(shapes)]}
        return items
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        if key in PER_NODE_INT_KEYS:
            return f"<{key}>"
        if value >= EPOCH_MS_FLOOR:
            return syms.ints.get(value, "<server time>")
        return value
    if isinstance(value, str):
        if value.lower() in syms.strings:
            return syms.strings[value.lower()]
        if value in syms.strings:
            return syms.strings[value]
        if _B64_SIG.match(value):
            return "<signature>"
        if _IPV4.match(value):
            return "<ip>"
        return _text(value, syms)
    return repr(value)


def observe(status: int | None, content_type: str | None, body: bytes | str | None,
            syms: Symbols, facts: dict[str, Any] | None = None) -> Observation:
    """An answer as an :class:`Observation`: JSON bodies normalised, others as normalised text."""
    ctype = content_type.split(";")[0].strip().lower() if content_type else None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    parsed: Any
    if text is None:
        parsed = None
    else:
        try:
            obj = json.loads(text)
            parsed = normalise(obj, syms) if isinstance(obj, (dict, list)) else _text(text, syms)
        except ValueError:
            parsed = _text(text[:500], syms)
    return Observation(status, ctype, parsed, dict(facts or {}))


def _show(v: Any) -> str:
    if v is _ABSENT:
        return "(absent)"
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return s if len(s) <= 300 else s[:297] + "..."


_ABSENT = object()
#: keys of collapsed per-member values: compared as one unit (their order is not meaningful)
COLLAPSED = frozenset({"<member>", "<each snode>"})


def _diff_body(path: str, real: Any, ours: Any, out: list[tuple[str, Any, Any]]) -> None:
    if isinstance(real, dict) and isinstance(ours, dict) and not (set(real) | set(ours)) & COLLAPSED:
        for k in sorted(set(real) | set(ours)):
            _diff_body(f"{path}.{k}", real.get(k, _ABSENT), ours.get(k, _ABSENT), out)
    elif isinstance(real, list) and isinstance(ours, list) and len(real) == len(ours):
        for i, (a, b) in enumerate(zip(real, ours, strict=True)):
            _diff_body(f"{path}[{i}]", a, b, out)
    elif real is _ABSENT or ours is _ABSENT:
        if real is not ours:
            out.append((path, real, ours))
    elif _key(real) != _key(ours):
        out.append((path, real, ours))


def compare(probe: str, real: Observation, ours: Observation) -> list[Difference]:
    """Every aspect in which our answer differs from the real server's."""
    found: list[tuple[str, Any, Any]] = []
    if real.status != ours.status:
        found.append(("status", real.status, ours.status))
    if real.content_type != ours.content_type:
        found.append(("content-type", real.content_type, ours.content_type))
    if isinstance(real.body, (dict, list)) and isinstance(ours.body, (dict, list)):
        _diff_body("body", real.body, ours.body, found)
    elif _key(real.body) != _key(ours.body):
        found.append(("body", real.body, ours.body))
    for k in sorted(set(real.facts) | set(ours.facts)):
        a, b = real.facts.get(k, _ABSENT), ours.facts.get(k, _ABSENT)
        if a is _ABSENT or b is _ABSENT or _key(a) != _key(b):
            found.append((f"fact: {k}", a, b))
    return [Difference(probe, aspect, _show(a), _show(b)) for aspect, a, b in found]


# ------------------------------------------------------------------------------------------------
# the allow-list (docs/conformance.md) and the report table
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Allowed:
    probe: str
    aspect: str
    reason: str


def allow_list(doc: Path) -> list[Allowed]:
    """The rows ``| probe | aspect | reason |`` of the section :data:`SECTION` of ``doc``
    (backticks around probe and aspect are dropped)."""
    text = doc.read_text(encoding="utf-8")
    start = text.find(f"## {SECTION}")
    if start < 0:
        raise ValueError(f"{doc} has no section '## {SECTION}'")
    end = text.find("\n## ", start + 3)
    rows = []
    for line in text[start:end if end > 0 else len(text)].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) != 3 or cells[0] in ("probe", "") or set(cells[0]) <= set("-: "):
            continue
        rows.append(Allowed(cells[0].strip("`"), cells[1].strip("`"), cells[2]))
    return rows


def check_against(diffs: list[Difference], allowed: list[Allowed]) -> tuple[list[Difference], list[Allowed]]:
    """(differences the list lacks, listed entries no longer observed)."""
    keys = {(a.probe, a.aspect) for a in allowed}
    seen = {(d.probe, d.aspect) for d in diffs}
    return ([d for d in diffs if (d.probe, d.aspect) not in keys],
            [a for a in allowed if (a.probe, a.aspect) not in seen])


def table(diffs: list[Difference], allowed: list[Allowed]) -> str:
    """The differences as a Markdown table: request, real answer, ours, verdict."""
    reasons = {(a.probe, a.aspect): a.reason for a in allowed}

    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| probe | aspect | real server | ours | verdict |", "| --- | --- | --- | --- | --- |"]
    for d in diffs:
        verdict = reasons.get((d.probe, d.aspect), "NOT LISTED in docs/conformance.md")
        lines.append(f"| `{d.probe}` | `{d.aspect}` | {cell(d.real)} | {cell(d.ours)} | {cell(verdict)} |")
    return "\n".join(lines) + "\n"


def as_json(obs: Observation) -> dict[str, Any]:
    return asdict(obs)
