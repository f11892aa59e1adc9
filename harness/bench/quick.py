"""``testnet bench --quick``: one short run (≤ 3 min on 2 cores) that yields today's bench figures
with a small load plus the figures the project's goals are stated in, each with its target:

- ``bringup_s`` — the default topology brought up by the harness on the **docker** backend,
  warm (images built; one bring-up before the measured one); ``compose_up_s`` — the same
  topology's rendered Compose file started by plain ``docker-compose up -d`` until the same
  readiness holds (:mod:`harness.bench.quick_docker`);
- ``onion_roundtrip_p50_ms`` / ``_p99_ms`` — ≥ 200 onion-routed stores one after another (the
  bench's ``send`` figure with ``messages`` ≥ 200);
- ``onion_stores_per_s`` — many client sessions (distinct accounts) storing onion-routed at
  once for a fixed window: acknowledged stores per second;
- ``direct_stores_per_s`` — the bench's direct store throughput (``store_throughput.per_s``);
- ``delivery_rate_under_churn`` — the standard seeded churn schedule of the suites for a short
  window while a steady stream of acknowledged sends goes on: delivered / acknowledged.

Everything but the docker figures runs on the CLI's ``--backend``; ``quick.backends`` says
which backend each figure used. A figure that could not be measured is None, its target is not
met and says why (``reason``).
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from harness.bench.load import Load
from harness.bench.run import Reporter, run_bench
from harness.network import Testnet
from harness.suites.support import SEND_RATE
from harness.topology import Topology
from nodes.common.eventloop import run as run_load

#: the new top-level keys, in the order the table shows them
QUICK_KEYS = ("bringup_s", "compose_up_s", "onion_roundtrip_p50_ms", "onion_roundtrip_p99_ms",
              "onion_stores_per_s", "direct_stores_per_s", "delivery_rate_under_churn")
#: every top-level key --quick adds to a bench result (``targets`` gains one entry per figure)
QUICK_TOP_LEVEL_KEYS = (*QUICK_KEYS, "quick")
#: sequential onion stores the round-trip percentiles need at least
MIN_ONION_SAMPLES = 200



@dataclass(frozen=True)
class Target:
    """``figure OP value``; ``value`` is a number or the name of another quick figure (the
    baseline it is compared with); None: the figure has no target (reported for comparison)."""

    op: str
    value: float | str | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "target": self.value}


#: the goals (2 cores): bring-up ≤ 5 s warm and no slower than plain Compose, onion p50 ≤ 25 ms
#: and p99 ≤ 100 ms, ≥ 300 onion stores/s, ≥ 99.9 % delivered under churn
TARGETS: dict[str, Target] = {
    "bringup_s": Target("<=", 5.0),
    "compose_up_s": Target(">=", "bringup_s", "plain Compose is no faster than the harness"),
    "onion_roundtrip_p50_ms": Target("<=", 25.0),
    "onion_roundtrip_p99_ms": Target("<=", 100.0),
    "onion_stores_per_s": Target(">=", 300.0),
    "direct_stores_per_s": Target(">=", None, "no target: the direct-RPC baseline of onion_stores_per_s"),
    "delivery_rate_under_churn": Target(">=", 0.999),
}
_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}


def target_results(figures: Mapping[str, float | None],
                   reasons: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``{key: {"op", "target", "met"[, "reason"][, "note"]}}`` for every key of :data:`TARGETS`:
    ``met`` is computed from the figure (and the baseline figure a target names); a figure
    that is None is not met and carries its ``reason``; a key without a target has ``met`` None."""
    out: dict[str, dict[str, Any]] = {}
    for key, t in TARGETS.items():
        entry = t.to_dict()
        if t.note:
            entry["note"] = t.note
        value = figures.get(key)
        if t.value is None:
            entry["met"] = None
        elif value is None:
            entry["met"] = False
            entry["reason"] = reasons.get(key) or f"{key} was not measured"
        else:
            ref = figures.get(t.value) if isinstance(t.value, str) else t.value
            if ref is None:
                entry["met"] = False
                entry["reason"] = (f"the baseline {t.value} was not measured"
                                   + (f": {reasons[str(t.value)]}" if t.value in reasons else ""))
            else:
                entry["met"] = _OPS[t.op](float(value), float(ref))
        out[key] = entry
    return out


@dataclass(frozen=True)
class QuickParams:
    """How much the quick run does (the defaults are the ≤ 3 min run; tests pass less)."""

    load: Load = field(default_factory=lambda: Load(messages=MIN_ONION_SAMPLES, stores=200,
                                                    retrieves=200, concurrency=16))
    onion_clients: int = 32          #: concurrent client sessions (distinct accounts)
    onion_window_s: float = 8.0      #: how long they store
    churn_window_s: float = 30.0     #: how much of the standard churn schedule runs
    churn_send_rate: float = SEND_RATE  #: the suites' stream under the standard churn
    docker: bool = True              #: measure bringup_s / compose_up_s (False: null, skipped)
    delivery_wait_s: float = 40.0    #: how long the recipient waits for the acknowledged sends


def quick_load(load: Load) -> Load:
    """``load`` with at least :data:`MIN_ONION_SAMPLES` sequential onion stores."""
    return replace(load, messages=max(load.messages, MIN_ONION_SAMPLES))


def _extras(params: QuickParams, out: dict[str, Any], report: Reporter) -> Callable[[Testnet], None]:
    """The measurements made on the bench's testnet before it goes down (churn last: it
    changes the testnet)."""
    from harness.bench.quick_load import churn_delivery, onion_store_rate

    def run(net: Testnet) -> None:
        report(f"bench --quick: {params.onion_clients} clients storing onion-routed for "
               f"{params.onion_window_s:g} s")
        try:
            out["onion_stores"] = run_load(onion_store_rate(net, params.onion_clients,
                                                               params.onion_window_s))
        except Exception as e:  # unmeasured, with the reason; the run goes on
            out["onion_stores"] = {"per_s": None, "reason": f"{type(e).__name__}: {e}"}
        report(f"bench --quick: {params.churn_window_s:g} s of the standard churn schedule "
               f"(seed {net.topology.seed}) under a stream of sends")
        try:
            out["churn"] = churn_delivery(net, params.churn_window_s, params.churn_send_rate,
                                          params.delivery_wait_s, report)
        except Exception as e:
            out["churn"] = {"rate": None, "reason": f"{type(e).__name__}: {e}"}

    return run


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def assemble(result: dict[str, Any], backend: str, docker_up: Mapping[str, Any],
             compose_up: Mapping[str, Any], extras: Mapping[str, Any]) -> dict[str, Any]:
    """Add the quick keys, their targets and ``quick`` (details, backends, reasons) to a bench
    ``result`` (its ``send`` and ``store_throughput`` give the round trip and direct figures)."""
    send = result.get("send") or {}
    stores = result.get("store_throughput") or {}
    onion = extras.get("onion_stores") or {"per_s": None, "reason": "not run"}
    churn = extras.get("churn") or {"rate": None, "reason": "not run"}
    figures: dict[str, float | None] = {
        "bringup_s": _num(docker_up.get("up_s")),
        "compose_up_s": _num(compose_up.get("up_s")),
        "onion_roundtrip_p50_ms": _num(send.get("p50_ms")),
        "onion_roundtrip_p99_ms": _num(send.get("p99_ms")),
        "onion_stores_per_s": _num(onion.get("per_s")),
        "direct_stores_per_s": _num(stores.get("per_s")),
        "delivery_rate_under_churn": _num(churn.get("rate")),
    }
    reasons: dict[str, str] = {}
    for key, detail in (("bringup_s", docker_up), ("compose_up_s", compose_up),
                        ("onion_stores_per_s", onion), ("delivery_rate_under_churn", churn)):
        if figures[key] is None:
            reasons[key] = str(detail.get("reason") or "not measured")
    for key in ("onion_roundtrip_p50_ms", "onion_roundtrip_p99_ms"):
        if figures[key] is None:
            reasons[key] = "no sequential onion store succeeded"
    if figures["direct_stores_per_s"] is None:
        reasons["direct_stores_per_s"] = "the store throughput was not measured"
    n = send.get("n")
    result.update(figures)
    result["targets"] = {**result.get("targets", {}), **target_results(figures, reasons)}
    result["quick"] = {
        "backends": {"bringup_s": "docker", "compose_up_s": "docker-compose",
                     **{k: backend for k in QUICK_KEYS[2:]}},
        "reasons": reasons,
        "bringup": dict(docker_up), "compose_up": dict(compose_up),
        "onion_roundtrip": {"n": n, "backend": backend},
        "onion_stores": dict(onion), "churn": dict(churn),
    }
    return result


def run_quick(backend: str, topology: Topology, report: Reporter,
              params: QuickParams | None = None) -> dict[str, Any]:
    """The quick bench: the docker figures of the default topology (unless ``params.docker``
    is false), then the bench of ``topology`` on ``backend`` with the quick measurements on
    the same testnet; one JSON object (see :data:`QUICK_KEYS` and the module docstring)."""
    from harness.bench.quick_docker import docker_figures
    from harness.naming import unique_name

    params = params or QuickParams()
    t0 = time.perf_counter()
    if params.docker:
        docker_up, compose_up = docker_figures(Topology(name=unique_name("quick")), report)
    else:
        skipped = "docker figures skipped (QuickParams.docker is false)"
        docker_up = {"backend": "docker", "up_s": None, "reason": skipped}
        compose_up = {"backend": "docker-compose", "up_s": None, "reason": skipped}
    extras: dict[str, Any] = {}
    result = run_bench(backend, topology, quick_load(params.load), report,
                       extra=_extras(params, extras, report))
    assemble(result, backend, docker_up, compose_up, extras)
    result["quick"]["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def _cell(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key == "delivery_rate_under_churn":
        return f"{value:.2%}"
    if key.endswith("_per_s"):
        return f"{value:.1f} /s"
    return f"{value:.1f} ms" if key.endswith("_ms") else f"{value:.2f} s"


def render_quick(result: Mapping[str, Any]) -> list[str]:
    """The table rows of the quick figures: value, target, met/MISSED (and why, when null)."""
    q = result["quick"]
    lines = [f"  quick figures (figure / target / verdict; wall {q.get('wall_s', '?')} s):"]
    for key in QUICK_KEYS:
        t = result["targets"][key]
        target = t["target"]
        if target is None:
            shown, verdict = "-", "(no target)"
        else:
            shown = f"{t['op']} " + (target if isinstance(target, str)
                                     else _cell(key, float(target)))
            verdict = "met" if t["met"] else "MISSED"
        row = (f"  {key:<26}{_cell(key, result.get(key)):>14}  {shown:<16}{verdict:<8}"
               f" [{q['backends'][key]}]")
        if "reason" in t:
            row += f" — {t['reason']}"
        lines.append(row)
    churn = q.get("churn") or {}
    if churn.get("seed") is not None:
        lines.append(f"  churn: seed {churn['seed']}, {churn.get('steps')} kills in "
                     f"{churn.get('window_s')} s, {churn.get('delivered')} of "
                     f"{churn.get('acknowledged')} acknowledged sends delivered")
    return lines


__all__ = ["QUICK_KEYS", "QUICK_TOP_LEVEL_KEYS", "TARGETS", "QuickParams", "assemble", "render_quick", "run_quick",
           "target_results"]
