"""The differential run: a testnet of 10 real storage servers and a testnet of our nodes (default
topology) side by side, the same requests to both, from inside one loopback-only network namespace.

Run by tests/conformance/test_differential.py as
``unshare --net --pid --fork --kill-child --mount-proc python3 differential_net.py BINARY WORKDIR``.
It refuses to run where the namespace has any interface but ``lo``.  Both testnets come up
through the CLI (``testnet up``, fixed seeds); every case of differential_cases.py runs against
a node of each; the observations and their differences go to WORKDIR/report.json; both testnets
go down.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import aiohttp  # noqa: E402

from conformance.differential import Observation, Symbols, as_json, compare  # noqa: E402
from conformance.differential_cases import CASES, Side  # noqa: E402
from conformance.wire import TIMEOUT, Wire, zbase32  # noqa: E402

REAL, OURS = "diffreal", "diffours"
SEED = "differential"
NODES = 10


def links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], check=True, capture_output=True, text=True).stdout
    return [line.split(":")[1].strip() for line in out.splitlines() if line.strip()]


def cli(work: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SESSION_TESTNET_HOME": str(work / "home")}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=timeout)


def up(work: Path, name: str, *extra: str) -> dict[str, Any]:
    proc = cli(work, "up", "-n", name, "--seed", SEED, "--backend", "process", "--json",
               "--timeout", "120", *extra)
    if proc.returncode != 0:
        raise RuntimeError(f"testnet up -n {name} exited {proc.returncode}: {proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def pair_link_ips(work: Path, name: str) -> list[str]:
    """The addresses real servers of testnet ``name`` see their peers at: the pair link proxies
    of the seed's per-node lists (``peer_ips``, docs/nodes.md "Link faults between real
    servers"). A real server answers ``get_swarm`` and 421s with the addresses its own list gives
    (as ours does with the seed's): they are node addresses of that testnet."""
    spec = json.loads((work / "home" / "networks" / name / "oxenmq-nodes.json").read_text())
    return sorted({ip for n in spec["nodes"] for ip in n.get("peer_ips", {}).values()})


async def side(session: aiohttp.ClientSession, name: str, seed_url: str,
               peer_ips: Sequence[str] = ()) -> Side:
    wire = Wire(session, seed_url, None)
    await wire.refresh_nodes()
    await wire.sync_clock()
    syms = Symbols()
    listing = (await wire.seed("get_n_service_nodes", {"active_only": False})).expect(200)
    for sn in listing["result"]["service_node_states"]:
        legacy = sn.get("service_node_pubkey") or sn["pubkey_ed25519"]
        syms.add_node(sn["pubkey_ed25519"], sn["pubkey_x25519"], sn["public_ip"], legacy,
                      zbase32(bytes.fromhex(legacy)) + ".snode")
        syms.add_swarm(int(sn["swarm_id"]))
    for ip in peer_ips:
        syms.strings.setdefault(ip, "<snode ip>")
    return Side(name, wire, syms)


async def run_cases(real_seed: str, ours_seed: str, real_peer_ips: list[str]) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(ssl=False, limit=32)
    async with aiohttp.ClientSession(timeout=TIMEOUT, connector=connector) as session:
        real = await side(session, "real", real_seed, real_peer_ips)
        ours = await side(session, "ours", ours_seed)
        crashes: dict[str, dict[str, str]] = {}
        timings: dict[str, dict[str, float]] = {}
        for case in CASES:
            for s in (real, ours):
                t0 = time.monotonic()
                try:
                    await case(s)
                except Exception:  # noqa: BLE001 - a crash is a difference too; reported
                    crashes.setdefault(case.__name__, {})[s.name] = traceback.format_exc(limit=4)[-1500:]
                    s.probes[f"{case.__name__} (case finished)"] = Observation(None, None, "crashed")
                timings.setdefault(case.__name__, {})[s.name] = round(time.monotonic() - t0, 2)
            for s in (real, ours):
                s.probes.setdefault(f"{case.__name__} (case finished)", Observation(None, None, "ok"))
        probes = list(dict.fromkeys([*real.probes, *ours.probes]))
        missing = Observation(None, None, "(not sent)")
        diffs = [d for p in probes for d in compare(p, real.probes.get(p, missing), ours.probes.get(p, missing))]
        return {"probes": {p: {"real": as_json(real.probes.get(p, missing)),
                               "ours": as_json(ours.probes.get(p, missing))} for p in probes},
                "differences": [d.__dict__ for d in diffs], "crashes": crashes, "case_s": timings,
                "nodes": {"real": len(real.wire.nodes), "ours": len(ours.wire.nodes)}}


def scenario(binary: Path, work: Path, report: dict[str, Any]) -> None:
    t0 = time.monotonic()
    real = up(work, REAL, "--nodes", f"{NODES}:oxen-storage={binary}")
    report["up_real_s"] = round(time.monotonic() - t0, 2)
    t1 = time.monotonic()
    ours = up(work, OURS)
    report["up_ours_s"] = round(time.monotonic() - t1, 2)
    report["kinds"] = {"real": sorted({n["kind"] for n in real["nodes"]}),
                       "ours": sorted({n["kind"] for n in ours["nodes"]})}
    t1 = time.monotonic()
    report.update(asyncio.run(run_cases(real["seed_url"], ours["seed_url"], pair_link_ips(work, REAL))))
    report["requests_s"] = round(time.monotonic() - t1, 2)
    report["links_at_end"] = links()


def main(binary: Path, work: Path) -> int:
    report: dict[str, Any] = {"links": links()}
    t0 = time.monotonic()
    try:
        if report["links"] != ["lo"]:
            report["error"] = f"refusing to run: interfaces {report['links']}, not just lo"
            return 2
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        scenario(binary, work, report)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        report["error"] = f"{exc!r}\n{traceback.format_exc(limit=6)}"
    finally:
        for name in (REAL, OURS):
            down = cli(work, "down", "-n", name)
            if down.returncode != 0 and "unknown testnet" not in down.stderr.lower():
                report.setdefault("down_errors", {})[name] = down.stderr[-500:]
        report["total_s"] = round(time.monotonic() - t0, 2)
        (work / "report.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
