"""Local processes: the embedded default that needs no Docker.

Addressing: a testnet gets a free index X (1-254, allocated under the user's lock); the seed
listens on ``127.X.0.1:22023`` (HTTPS on 22024) and the Toxiproxy API on ``127.X.0.1:8474``.
Node ``i`` is advertised at ``127.X.i.1:22021`` (its own /24, so clients' subnet-diversity rules
hold): that is its Toxiproxy proxy, whose upstream is the node process itself on
``127.X.i.2:22021`` (admin interface on ``127.X.i.2:22030``). The dedicated proxy for traffic
from node ``j`` to node ``i`` (single-link faults, partitions) listens on ``127.X.i.(j+2)``.
Without proxies (``Topology.proxies=False``) node ``i`` listens on ``127.X.i.1`` itself. The
file server is advertised at ``127.X.0.3:22050`` (its proxy ``fileserver``) and runs at
``127.X.0.4`` (without proxies it is advertised there).
Linux routes all of 127.0.0.0/8 to the loopback interface, so no set-up is needed.

Processes are started in their own session so they outlive the shell that ran ``testnet up``;
each carries ``SESSION_TESTNET_DIR=<its state folder>`` in its environment so that ``down`` and
``clean`` only ever signal processes of that testnet (of that state home), even after PID reuse.

Our python nodes (``python -m nodes.snode`` of this checkout) are forked by the testnet's
launcher (:mod:`nodes.launcher`, itself a marked process of the testnet, started with the first
such node): it has imported the node's code once, so a node starts without importing anything
and shares that memory copy-on-write. Each node is still a process of its own, in its own session
(kill, pause, restart act on it alone). ``SESSION_TESTNET_LAUNCHER=0`` starts every node with a
fresh interpreter instead; so does a node of another revision (``python@REF``), and any node when
the launcher cannot be started (the reason is appended to the node's ``.stderr`` file).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nodes
from harness import nodekinds
from harness.backends.base import FILESERVER_HOST, Backend, BackendError, Reporter, fileserver_record
from harness.backends.follow_file import FollowedFile
from harness.state import NetworkState, NodeRecord, StateDir, list_networks, locked, stale_reason
from harness.topology import Topology, node_index
from nodes import launcher
from nodes.fileserver.config import FILESERVER_PORT
from nodes.protocol.constants import ADMIN_PORT, SEED_HTTPS_PORT, SEED_PORT, STORAGE_PORT

TOXIPROXY_PORT = 8474

ENV_MARK = "SESSION_TESTNET_DIR"
#: the folder the `nodes` package is imported from (a checkout, or site-packages of an installed
#: wheel): node processes get it on their PYTHONPATH, whatever their working directory
NODES_IMPORT_ROOT = Path(nodes.__file__).resolve().parents[1]
#: how often a followed log file is checked for new lines when it had none
FOLLOW_POLL_S = 0.1
#: ``0`` in the environment: start nodes with a fresh interpreter each, not by the launcher
ENV_LAUNCHER = "SESSION_TESTNET_LAUNCHER"
#: modules the launcher forks children for, and what it imports for them up front
LAUNCHED_MODULES = {"nodes.snode": ("nodes.snode.server",)}
#: what the launcher initialises once for them (``MODULE:FUNCTION``)
LAUNCHER_WARM_UP = ("nodes.common.tls:warm_up",)
#: how long a new launcher may take to import and listen (a loaded machine is slow)
LAUNCHER_START_S = 120.0


def launcher_enabled() -> bool:
    return os.environ.get(ENV_LAUNCHER, "1").strip().lower() not in ("0", "no", "false", "off")


def launcher_socket(statedir: Path) -> Path:
    """The launcher's socket of the testnet at ``statedir``: in a folder of this user only, with
    a short name (a state folder's own path may exceed the 107 bytes of a socket address)."""
    folder = Path(tempfile.gettempdir()) / f"session-testnet-{os.getuid()}-launchers"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{hashlib.sha256(str(statedir).encode()).hexdigest()[:20]}.sock"


def _proc_env(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            env[k.decode(errors="replace")] = v.decode(errors="replace")
    return env


def _is_ours(pid: int, mark: str) -> bool:
    """True if ``pid`` is a live (non-zombie) process started for the testnet whose state
    folder is ``mark``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return _proc_env(pid).get(ENV_MARK) == mark


def marked_pids(mark: str) -> list[int]:
    """Every live process of the testnet whose state folder is ``mark`` (its nodes, their
    launcher, the seed, Toxiproxy, …)."""
    return sorted(pid for pid, m in _all_marked().items() if m == mark and _is_ours(pid, mark))


def _all_marked() -> dict[int, str]:
    out = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            mark = _proc_env(int(p.name)).get(ENV_MARK)
            if mark:
                out[int(p.name)] = mark
    return out


def _bindable(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def _block_free(x: int, nodes: int) -> bool:
    """Nothing listens on block 127.x's seed, Toxiproxy or node addresses (a testnet of another
    state home may hold the block while its seed is down or not started yet)."""
    addresses = [(f"127.{x}.0.1", SEED_PORT), (f"127.{x}.0.1", TOXIPROXY_PORT),
                 (f"127.{x}.0.{FILESERVER_HOST}", FILESERVER_PORT),
                 (f"127.{x}.0.{FILESERVER_HOST + 1}", FILESERVER_PORT)]
    addresses += [(f"127.{x}.{i}.{j}", STORAGE_PORT) for i in range(1, nodes + 1) for j in (1, 2)]
    return all(_bindable(ip, port) for ip, port in addresses)


class ProcessBackend(Backend):
    kind = "process"

    # -- placement ---------------------------------------------------------------------------
    def _other_states(self) -> list[NetworkState]:
        """The state of every other process testnet of this state home."""
        out = []
        for name in list_networks(self.statedir.home):
            try:
                st = StateDir(name, self.statedir.home).load()
            except Exception:
                continue
            if st.backend == self.kind:
                out.append(st)
        return out

    def _allocate_index(self, nodes: int) -> int:
        """A free 127.X block (nothing listens on its seed, Toxiproxy or node addresses).
        Testnets of other state homes (another SESSION_TESTNET_HOME, a parallel test worker) may
        allocate at the same moment and bind their ports only later, so every allocation of this
        user is recorded, under a lock, in a reservation folder shared by all homes: a
        reservation holds while the testnet's state folder exists."""
        used = {st.net_index for st in self._other_states()}
        reservations = Path(tempfile.gettempdir()) / f"session-testnet-{os.getuid()}-127-blocks"
        reservations.mkdir(mode=0o700, exist_ok=True)
        with open(reservations / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for x in range(1, 255):
                if x in used:
                    continue
                try:
                    holder = Path((reservations / str(x)).read_text())
                except (FileNotFoundError, ValueError):
                    holder = None
                if holder is not None and holder != self.statedir.path and holder.is_dir():
                    continue  # another home's testnet has it (maybe not listening yet)
                if _block_free(x, nodes):
                    (reservations / str(x)).write_text(str(self.statedir.path))
                    return x
        raise BackendError("no free 127.X.0.0/16 block for a process testnet: run 'testnet clean'")

    def plan(self, topology: Topology, admin_token: str) -> NetworkState:
        x = self._allocate_index(min(topology.node_count, 254))
        seed_ip = f"127.{x}.0.1"
        state = NetworkState(
            name=topology.name, backend=self.kind, topology=topology.to_dict(),
            seed_url=f"http://{seed_ip}:{SEED_PORT}",
            seed_https_url=f"https://{seed_ip}:{SEED_HTTPS_PORT}",
            admin_token=admin_token, net_index=x,
            seed_runtime={"ip": seed_ip, "port": SEED_PORT, "https_port": SEED_HTTPS_PORT},
        )
        if topology.proxies:
            state.toxiproxy_url = f"http://{seed_ip}:{TOXIPROXY_PORT}"
        for name in topology.node_names():
            state.nodes.append(self._node_record(state, topology, name))
        if topology.fileserver:
            state.fileserver = fileserver_record(topology, f"127.{x}.0", proxied=topology.proxies)
        nodekinds.place_nodes(state, self._other_states())  # e.g. OxenMQ ports of real nodes
        return state

    def _node_record(self, state: NetworkState, topology: Topology, name: str) -> NodeRecord:
        i = node_index(name)
        if not 1 <= i <= 254:
            raise BackendError(f"node {name}: the process backend supports nodes sn01-sn254")
        ident = topology.node_identity(name)
        prefix = f"127.{state.net_index}.{i}"
        group = topology.node_group(name)
        kind = group.kind
        has_admin = nodekinds.group_kind(group).has_admin
        return NodeRecord(name=name, public_ip=f"{prefix}.1",
                          bind_ip=f"{prefix}.2" if topology.proxies else None,
                          proxy=name if topology.proxies else None,
                          storage_port=STORAGE_PORT, admin_port=ADMIN_PORT if has_admin else 0,
                          pubkey_ed25519=ident.ed25519_hex, pubkey_x25519=ident.x25519_hex,
                          kind=kind, revision=group.ref)

    def link_address(self, state: NetworkState, src: str, dst: str) -> str:
        j, i = node_index(src), node_index(dst)
        if j + 2 > 254:
            raise BackendError(f"no link address for {src}->{dst}: source index above 252")
        return f"127.{state.net_index}.{i}.{j + 2}"

    def plan_node(self, state: NetworkState, name: str) -> NodeRecord:
        return self._node_record(state, Topology.from_dict(state.topology), name)

    def data_dir(self, state: NetworkState, target: str) -> str:
        return str(self.statedir.data / target)

    def log_file(self, state: NetworkState, target: str) -> str | None:
        return str(self.statedir.logs / f"{target}.log")

    # -- lifecycle ---------------------------------------------------------------------------
    def _spawn(self, state: NetworkState, target: str, argv: list[str], *,
               python: bool = True, secrets: dict[str, str] | None = None) -> int:
        """Start ``argv`` (arguments of this interpreter when ``python``, else a program and its
        arguments) in its own session, marked as a process of this testnet."""
        Path(self.data_dir(state, target)).mkdir(parents=True, exist_ok=True)
        self.statedir.logs.mkdir(parents=True, exist_ok=True)
        # stdout/stderr (tracebacks before logging starts) go to a separate file
        output = self.statedir.logs / f"{target}.stderr"
        env = dict(os.environ)
        env[ENV_MARK] = str(self.statedir.path)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NODES_IMPORT_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        if (python and len(argv) >= 2 and argv[0] == "-m" and argv[1] in LAUNCHED_MODULES
                and "PYTHONPATH" not in (secrets or {}) and launcher_enabled()):
            env.update(secrets or {})  # to the child's os.environ only, never on a command line
            request = launcher.SpawnRequest(module=argv[1], args=argv[2:], env=env,
                                            cwd=str(self.statedir.path), output=str(output))
            try:
                return launcher.spawn(str(self._ensure_launcher(state)), request)
            except (launcher.LauncherError, BackendError) as e:
                with open(output, "a") as f:
                    f.write(f"harness: started with a fresh interpreter, not by the launcher: {e}\n")
        env.update(secrets or {})  # /proc/PID/environ is readable by the owner only, unlike argv
        out = open(output, "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen([sys.executable, *argv] if python else argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                    cwd=self.statedir.path)
        except OSError as e:
            raise BackendError(f"cannot start {target} of testnet {state.name!r}: {e}") from e
        finally:
            out.close()
        return proc.pid

    def _ensure_launcher(self, state: NetworkState) -> Path:
        """The socket of this testnet's launcher, started (and waited for) when none answers."""
        sock = launcher_socket(self.statedir.path)
        if launcher.alive(str(sock)):
            return sock
        # one launcher even when two harness processes start nodes of this testnet at once
        with open(sock.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if launcher.alive(str(sock)):
                return sock
            return self._start_launcher(state, sock)

    def _start_launcher(self, state: NetworkState, sock: Path) -> Path:
        argv = ["-m", "nodes.launcher", "--socket", str(sock)]
        for module, preload in LAUNCHED_MODULES.items():
            argv += ["--run", module, *(a for p in preload for a in ("--preload", p))]
        argv += [a for w in LAUNCHER_WARM_UP for a in ("--warm-up", w)]
        pid = self._spawn(state, "launcher", argv)
        mark = str(self.statedir.path)
        deadline = time.monotonic() + LAUNCHER_START_S
        while not launcher.alive(str(sock)):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it exited, or it would look alive
            if not _is_ours(pid, mark):
                raise BackendError(f"the node launcher of testnet {state.name!r} exited at start-up: "
                                   f"see {self.statedir.logs / 'launcher.stderr'}")
            if time.monotonic() > deadline:
                raise BackendError(f"the node launcher of testnet {state.name!r} did not listen on "
                                   f"{sock} within {LAUNCHER_START_S:.0f} s: see "
                                   f"{self.statedir.logs / 'launcher.stderr'}")
            time.sleep(0.05)
        return sock

    def start_seed(self, state: NetworkState, argv: list[str], env: dict[str, str]) -> None:
        ip, port = state.seed_runtime["ip"], state.seed_runtime["port"]
        if not _bindable(ip, port):
            raise BackendError(f"seed address {ip}:{port} is in use: is another testnet "
                               "running there? ('testnet status', 'testnet clean')")
        state.seed_runtime["pid"] = self._spawn(state, "seed", argv, secrets=env)

    def start_proxy(self, state: NetworkState) -> None:
        ip = state.seed_runtime["ip"]
        if not _bindable(ip, TOXIPROXY_PORT):
            raise BackendError(f"Toxiproxy address {ip}:{TOXIPROXY_PORT} is in use: is another "
                               "testnet running there? ('testnet status', 'testnet clean')")
        argv = ["-m", "nodes.toxiproxy", "--host", ip, "--port", str(TOXIPROXY_PORT)]
        state.toxiproxy_pid = self._spawn(state, "toxiproxy", argv)

    def start_udp_relay(self, state: NetworkState, relays: list[dict[str, str]]) -> None:
        config = self.statedir.path / "udp-relays.json"
        config.write_text(json.dumps({"relays": relays}, indent=1) + "\n")
        argv = ["-m", "nodes.udprelay", "--config", str(config),
                "--log-file", str(self.statedir.logs / "udprelay.log")]
        state.udprelay_pid = self._spawn(state, "udprelay", argv)

    def start_node(self, state: NetworkState, node: NodeRecord, argv: list[str],
                   env: dict[str, str]) -> None:
        if self.is_running(state, node.name):
            raise BackendError(f"node {node.name} of testnet {state.name!r} is already running "
                               f"(pid {node.runtime.get('pid')})")
        node.runtime["pid"] = self._spawn(state, node.name, argv,
                                          python=nodekinds.kind_class(node.kind).runs_python,
                                          secrets=env)
        node.runtime.pop("paused", None)

    def _pid(self, state: NetworkState, target: str) -> int | None:
        if target == "toxiproxy":
            pid = state.toxiproxy_pid
        elif target == "udprelay":
            pid = state.udprelay_pid
        else:
            rt = state.seed_runtime if target == "seed" else state.node(target).runtime
            pid = rt.get("pid")
        return pid if pid and _is_ours(pid, str(self.statedir.path)) else None

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass

    @staticmethod
    def _wait_gone(pids: list[int], mark: str, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        alive = pids
        while alive and time.monotonic() < deadline:
            for pid in alive:  # reap our own children so they do not linger as zombies
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            alive = [p for p in alive if _is_ours(p, mark)]
            if alive:
                time.sleep(0.05)
        return alive

    def stop_node(self, state: NetworkState, node: NodeRecord, *, kill: bool = False) -> None:
        pid = self._pid(state, node.name)
        if pid is None:
            return
        if node.runtime.pop("paused", None):
            self._signal(pid, signal.SIGCONT)
        self._signal(pid, signal.SIGKILL if kill else signal.SIGTERM)
        mark = str(self.statedir.path)
        if self._wait_gone([pid], mark, 10.0):
            self._signal(pid, signal.SIGKILL)
            self._wait_gone([pid], mark, 5.0)

    def pause_node(self, state: NetworkState, node: NodeRecord) -> None:
        pid = self._pid(state, node.name)
        if pid is None:
            raise BackendError(f"node {node.name} of testnet {state.name!r} is not running")
        self._signal(pid, signal.SIGSTOP)
        node.runtime["paused"] = True

    def unpause_node(self, state: NetworkState, node: NodeRecord) -> None:
        pid = self._pid(state, node.name)
        if pid is None:
            raise BackendError(f"node {node.name} of testnet {state.name!r} is not running")
        self._signal(pid, signal.SIGCONT)
        node.runtime.pop("paused", None)

    def destroy(self, state: NetworkState) -> None:
        self._kill_all(str(self.statedir.path))

    @classmethod
    def _kill_all(cls, mark: str) -> None:
        pids = [pid for pid, m in _all_marked().items() if m == mark]
        for pid in pids:  # paused processes must be continued to act on SIGTERM
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        left = cls._wait_gone(pids, mark, 8.0)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        left = cls._wait_gone(left, mark, 5.0)
        if left:
            raise BackendError(f"processes {left} of testnet {mark} did not exit after SIGKILL")
        sock = launcher_socket(Path(mark))  # the launcher's, if it had one (gone with it)
        sock.unlink(missing_ok=True)
        sock.with_suffix(".lock").unlink(missing_ok=True)

    # -- inspection --------------------------------------------------------------------------
    def is_running(self, state: NetworkState, target: str) -> bool:
        return self._pid(state, target) is not None

    def _log_paths(self, target: str) -> list[Path]:
        return [self.statedir.logs / f"{target}.stderr", self.statedir.logs / f"{target}.log"]

    def read_log(self, state: NetworkState, target: str, tail: int | None = None) -> str:
        chunks = []
        for p in self._log_paths(target):
            if p.exists():
                chunks.append(p.read_text(errors="replace"))
        text = "".join(c if c.endswith("\n") or not c else c + "\n" for c in chunks)
        if tail is not None:
            text = "\n".join(text.splitlines()[-tail:]) + "\n"
        return text

    def follow_log(self, state: NetworkState, target: str, *, tail: int | None = None,
                   stop: threading.Event | None = None) -> Iterator[str]:
        # a restarted process appends to the same files, so following them is following the
        # node across kill/restart; a file replaced or truncated by hand is read from its start
        stop = stop or threading.Event()
        files = [FollowedFile(p) for p in self._log_paths(target)]
        try:
            initial = [line for f in files for line in f.read_lines()]
            if tail is not None:
                initial = initial[-tail:] if tail > 0 else []
            yield from initial
            while True:
                gone = not self.statedir.state_file.exists()  # `down` removed the testnet
                new = [line for f in files for line in f.read_lines()]
                yield from new
                if gone or stop.is_set():
                    return
                if not new:
                    stop.wait(FOLLOW_POLL_S)
        finally:
            for f in files:
                f.close()

    # -- garbage collection ------------------------------------------------------------------
    @classmethod
    def sweep_stale(cls, report: Reporter) -> list[str]:

        removed = []
        with locked():
            marked = _all_marked()
            names = list_networks()
            for name in names:
                sd = StateDir(name)
                try:
                    st = sd.load()
                except Exception:
                    continue
                if st.backend != cls.kind:
                    continue
                # a stopped seed (the stop_seed fault, churn) is a testnet in use: only a testnet
                # none of whose processes runs any more (the machine rebooted, all killed) is
                # stale; sweeping a live one would hand its addresses to the next testnet
                running = str(sd.path) in marked.values()
                reason = stale_reason(st) or (
                    "none of its processes runs" if st.status == "up" and not running else None)
                if reason:
                    report(f"removing stale process testnet {name!r} ({reason})")
                    cls._kill_all(str(sd.path))
                    sd.remove()
                    removed.append(name)
            # processes of this state home whose testnet has no state (state removed by hand)
            root = StateDir("x").path.parent
            for mark in sorted(set(_all_marked().values())):
                folder = Path(mark)
                if folder.parent == root and not (folder / "state.json").exists():
                    report(f"killing orphan processes of testnet {folder.name!r}")
                    cls._kill_all(mark)
                    removed.append(folder.name)
        return removed
