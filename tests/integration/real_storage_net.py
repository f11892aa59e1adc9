"""A testnet of real storage servers behind our seed, measured from inside a network namespace.

Run by tests/integration/test_real_storage_server.py as
``unshare --net --pid --fork --kill-child --mount-proc python3 real_storage_net.py BINARY WORKDIR [MODE]``:
it only runs where nothing can leave the machine (it refuses to start if the namespace has any
interface but ``lo``).  It starts our seed (``python -m nodes.seed`` with a real-node list) and N
real ``oxen-storage`` servers, waits for them to become active, talks to them (``info``,
``get_swarm``, a store on one swarm member and a signed retrieve from another), collects what the
seed observed, and writes every fact to WORKDIR/report.json for the test to assert on.  It stops
everything it started; the PID namespace kills whatever would survive it.

MODE ``guard``: only GUARD_REAL real servers, so the seed holds their first node list (fewer than
10 listed); after GUARD_WAIT_S seconds GUARD_PROOFS of our (simulated) nodes register over HTTP
and the servers must then become active, never having asked public bootstrap nodes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from nodes.common.proof import PROOF_PATH, build_proof  # noqa: E402
from nodes.protocol.keys import Identity, derive_seed  # noqa: E402
from nodes.protocol.signing import retrieve_message, sign_request  # noqa: E402
from nodes.protocol.swarm import swarm_for, swarm_space  # noqa: E402

NODES = int(os.environ.get("REAL_NODES", "10"))
TESTNET_SEED = "real-storage-itest"
SEED_PORT = 22023
HTTPS_PORT = 22021
HARDFORK = os.environ.get("REAL_HARDFORK", "19.4")
ACTIVE_LINE = "Storage server is now active"
ACTIVE_TIMEOUT = float(os.environ.get("REAL_ACTIVE_TIMEOUT", "180"))
OBSERVE_TIMEOUT = 90.0
GUARD_REAL = 3
GUARD_PROOFS = 7
GUARD_WAIT_S = 8.0


def node_ip(i: int) -> str:
    return f"127.60.0.{i}"


def omq_port(i: int) -> int:
    return 23000 + i  # OxenMQ (TCP) always binds 0.0.0.0: one port per server


def oxend_endpoint(i: int) -> str:
    return f"tcp://127.0.0.1:{24000 + i}"


def loopback_only() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], check=True, capture_output=True, text=True).stdout
    return [line.split(":")[1].strip() for line in out.splitlines() if line.strip()]


class Net:
    def __init__(self, binary: Path, work: Path, nodes: int) -> None:
        self.binary = binary
        self.work = work
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.token = base64.b16encode(os.urandom(16)).decode().lower()
        self.names = [f"sn{i:02d}" for i in range(1, nodes + 1)]

    # --- start ---------------------------------------------------------------------------------
    def start_seed(self) -> None:
        spec = {"nodes": [{"name": name, "endpoint": oxend_endpoint(i), "public_ip": node_ip(i),
                           "storage_port": HTTPS_PORT, "storage_lmq_port": omq_port(i)}
                          for i, name in enumerate(self.names, 1)]}
        (self.work / "real-nodes.json").write_text(json.dumps(spec, indent=1))
        argv = [sys.executable, "-m", "nodes.seed", "--host", "127.0.0.1", "--port", str(SEED_PORT),
                "--https-port", "0", "--data-dir", str(self.work / "seed"), "--testnet-seed", TESTNET_SEED,
                "--expect", str(len(self.names)), "--min-swarm-size", "3", "--new-swarm-size", "3",
                "--ideal-swarm-margin", "0", "--block-interval", "2", "--hardfork", HARDFORK, "--proof-timeout", "600",
                "--oxenmq-nodes", str(self.work / "real-nodes.json"), "--log-file", str(self.work / "seed.log")]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SESSION_TESTNET_ADMIN_TOKEN": self.token}
        self.procs["seed"] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                              stderr=open(self.work / "seed.stderr", "wb"))  # noqa: SIM115

    def start_servers(self, dh_pem: Path) -> None:
        for i, name in enumerate(self.names, 1):
            data = self.work / name
            data.mkdir()
            shutil.copy(dh_pem, data / "dh.pem")
            argv = [str(self.binary), "--data-dir", str(data), "--oxend-rpc", oxend_endpoint(i),
                    "--omq-port", str(omq_port(i)), "--https-port", str(HTTPS_PORT), "--bind-ip", node_ip(i),
                    "--testnet", "--log-level", "info"]
            self.procs[name] = subprocess.Popen(argv, cwd=data, stdin=subprocess.DEVNULL,
                                                stdout=open(data / "stdout.log", "wb"),  # noqa: SIM115
                                                stderr=subprocess.STDOUT)

    def log_of(self, name: str) -> str:
        path = self.work / name / "stdout.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> dict[str, int | None]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + 15
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes

    # --- talk ----------------------------------------------------------------------------------
    async def seed_get(self, session: aiohttp.ClientSession, path: str) -> Any:
        async with session.get(f"http://127.0.0.1:{SEED_PORT}{path}",
                               headers={"Authorization": f"Bearer {self.token}"}) as r:
            r.raise_for_status()
            return await r.json()

    @staticmethod
    async def storage_rpc(session: aiohttp.ClientSession, ip: str, method: str,
                          params: dict[str, Any]) -> tuple[int, Any]:
        async with session.post(f"https://{ip}:{HTTPS_PORT}/storage_rpc/v1", json={"method": method, "params": params},
                                ssl=False, timeout=aiohttp.ClientTimeout(total=10)) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except json.JSONDecodeError:
                return r.status, text


async def wait_active(net: Net) -> dict[str, float]:
    start = time.monotonic()
    active: dict[str, float] = {}
    while time.monotonic() - start < ACTIVE_TIMEOUT and len(active) < len(net.names):
        for name in net.names:
            if name not in active and ACTIVE_LINE in net.log_of(name):
                active[name] = round(time.monotonic() - start, 2)
            if net.procs[name].poll() is not None and name not in active:
                return active
        await asyncio.sleep(0.2)
    return active


def interesting_lines(text: str) -> list[str]:
    keys = ("active", "oxend", "Initialized", "bootstrap", "Bootstrap", "hardfork", "error", "critical",
            "warning", "Listening", "listening", "swarm")
    return [line[:300] for line in text.splitlines() if any(k in line for k in keys)][:60]


async def exercise(net: Net, report: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session:
        state = await net.seed_get(session, "/internal/v1/state")
        report["seed_state"] = state
        ip_of = {Identity.from_seed(derive_seed(TESTNET_SEED, "node", name)).ed25519_hex: node_ip(i)
                 for i, name in enumerate(net.names, 1)}
        report["info"] = {}
        for i, name in enumerate(net.names, 1):
            try:
                report["info"][name] = await net.storage_rpc(session, node_ip(i), "info", {})
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                report["info"][name] = [0, repr(exc)]

        # one account, the seed's swarm for it, and what each real node says about it
        account = Identity.from_seed(derive_seed(TESTNET_SEED, "account", "alice"))
        swarms = {s["swarm_id"]: s["members"] for s in state["swarms"]}
        sid = swarm_for(swarm_space(account.session_id), swarms)
        members = swarms[sid]
        report["account"] = {"session_id": account.session_id, "swarm_id": sid, "members": members}
        report["get_swarm"] = {}
        for i, name in enumerate(net.names, 1):
            try:
                report["get_swarm"][name] = await net.storage_rpc(session, node_ip(i), "get_swarm",
                                                                  {"pubkey": account.session_id})
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                report["get_swarm"][name] = [0, repr(exc)]

        # store on the first member, retrieve (signed) from the last one
        first, last = ip_of[members[0]], ip_of[members[-1]]
        now_ms = int(time.time() * 1000)
        data = base64.b64encode(b"hello from the session-testnet seed test").decode()
        report["store"] = await net.storage_rpc(session, first, "store", {
            "pubkey": account.session_id, "timestamp": now_ms, "ttl": 600_000, "data": data, "namespace": 0})
        deadline = time.monotonic() + 15
        while True:
            ts = int(time.time() * 1000)
            status, body = await net.storage_rpc(session, last, "retrieve", {
                "pubkey": account.session_id, "pubkey_ed25519": account.ed25519_hex, "namespace": 0,
                "timestamp": ts, "signature": sign_request(account, retrieve_message(0, ts))})
            got = isinstance(body, dict) and any(m.get("data") == data for m in body.get("messages", []))
            if got or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        report["retrieve"] = {"from": last, "stored_on": first, "status": status, "body": body, "found": got}

        # what the seed observed: pings from all, and peer reports (reachability tests run ~every 10 s)
        deadline = time.monotonic() + OBSERVE_TIMEOUT
        while True:
            oxend = await net.seed_get(session, "/internal/v1/oxend")
            pinged = all(n["pings"]["count"] > 0 for n in oxend["nodes"])
            reported = all(n["peer_reports_sent"]["passed"] + n["peer_reports_sent"]["failed"] > 0
                           for n in oxend["nodes"])
            if (pinged and reported) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        report["oxend"] = oxend
        report["observe_seconds"] = round(OBSERVE_TIMEOUT - (deadline - time.monotonic()), 1)


async def guard(net: Net, report: dict[str, Any]) -> None:
    """Too few nodes: the first lists are held; once our nodes register, the servers go active."""
    await asyncio.sleep(GUARD_WAIT_S)
    async with aiohttp.ClientSession() as session:
        report["held_phase"] = {
            "oxend": await net.seed_get(session, "/internal/v1/oxend"),
            "active": [name for name in net.names if ACTIVE_LINE in net.log_of(name)],
            "logs": {name: interesting_lines(net.log_of(name)) for name in net.names},
        }
        for i in range(1, GUARD_PROOFS + 1):
            ident = Identity.from_seed(derive_seed(TESTNET_SEED, "node", f"py{i:02d}"))
            # a node without an OxenMQ port counts as "missing contact info" and sends the real
            # servers to public bootstrap nodes: our nodes must advertise one in a mixed testnet
            body = build_proof(ident, public_ip=f"127.61.0.{i}", storage_port=HTTPS_PORT, storage_lmq_port=22020,
                               admin_port=0, timestamp_ms=int(time.time() * 1000))
            async with session.post(f"http://127.0.0.1:{SEED_PORT}{PROOF_PATH}", json=body) as r:
                r.raise_for_status()
    t0 = time.monotonic()
    report["active_after_s"] = await wait_active(net)
    report["released_after_s"] = round(time.monotonic() - t0, 2)


async def main(binary: Path, work: Path, mode: str) -> int:
    nodes = GUARD_REAL if mode == "guard" else NODES
    report: dict[str, Any] = {"nodes": nodes, "mode": mode}
    links = loopback_only()
    report["links"] = links
    if links != ["lo"]:
        report["error"] = f"refusing to run: this network namespace has interfaces {links}, not just lo"
        (work / "report.json").write_text(json.dumps(report, indent=1))
        return 2
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    dh_pem = work / "dh.pem"  # RFC 7919 ffdhe2048: no generation (the server spends 5-130 s on its own)
    subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048",
                    "-out", str(dh_pem)], check=True, capture_output=True)
    net = Net(binary, work, nodes)
    try:
        net.start_seed()
        t0 = time.monotonic()
        net.start_servers(dh_pem)
        if mode == "guard":
            await guard(net, report)
        else:
            active = await wait_active(net)
            report["active_after_s"] = active
            report["bring_up_s"] = round(time.monotonic() - t0, 2)
            if len(active) == nodes:
                await exercise(net, report)
    except Exception as exc:  # noqa: BLE001 - reported to the test with the logs
        report["error"] = repr(exc)
    finally:
        report["exit_codes"] = net.stop()
        report["logs"] = {name: interesting_lines(net.log_of(name)) for name in net.names}
        seed_log = work / "seed.log"
        report["seed_log_tail"] = seed_log.read_text().splitlines()[-30:] if seed_log.exists() else []
        (work / "report.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "full")))
