"""A fork server ("zygote") for node processes: ``python -m nodes.launcher --socket PATH
--preload nodes.snode`` imports the preloaded modules once, then forks one child per request
made on its Unix socket. A child is an ordinary node process of its own (own session, own PID,
own log file), as if started with ``python -m MODULE ARGS`` in environment ENV, but it shares the
launcher's imported code and data copy-on-write: no per-node import time, far less memory.

Protocol: one request per connection, one JSON line each way.

* request ``{"module": "nodes.snode", "args": [...], "env": {...}, "cwd": DIR, "output": FILE}``:
  run ``module`` (one of the preloaded ones) as ``__main__`` with ``sys.argv = [module, *args]``,
  ``os.environ = env``, working directory ``cwd``, stdout and stderr appended to ``output``,
  stdin from ``/dev/null``, in a new session (its PID is its process group);
* reply ``{"pid": PID}`` once the child runs in its session, or ``{"error": "what failed"}``.

The launcher is itself started with the testnet's marker in its environment, and
``/proc/PID/environ`` of a forked child shows the environment its process was exec'd with, the
launcher's: so every child carries the marker too (``down``/``clean`` find them), while the
secrets of ``env`` stay in the child's ``os.environ`` only, never on a command line. The
launcher lets the kernel reap its children (``SIGCHLD`` ignored), so they never linger as
zombies. The socket lives in a folder only its user can open.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass

#: the largest request or reply line read (argv and an environment)
MAX_LINE = 1 << 20


class LauncherError(RuntimeError):
    """The launcher is unreachable or refused a request (the message says which)."""


@dataclass
class SpawnRequest:
    module: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    output: str

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> SpawnRequest:
        """Parse a request line; raises ValueError naming what is wrong."""
        try:
            d = json.loads(line)
        except ValueError as e:
            raise ValueError(f"request is not JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError("request must be a JSON object")
        for key, typ in (("module", str), ("args", list), ("env", dict), ("cwd", str), ("output", str)):
            if not isinstance(d.get(key), typ):
                raise ValueError(f"request needs {key!r} as a {typ.__name__}")
        if not all(isinstance(a, str) for a in d["args"]):
            raise ValueError("'args' must be strings")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in d["env"].items()):
            raise ValueError("'env' must map strings to strings")
        return cls(module=d["module"], args=d["args"], env=d["env"], cwd=d["cwd"], output=d["output"])


def encode_reply(pid: int | None = None, error: str | None = None) -> bytes:
    return json.dumps({"pid": pid} if error is None else {"error": error}).encode() + b"\n"


def decode_reply(line: bytes) -> int:
    """The child's PID from a reply line; raises LauncherError for a refusal or garbage."""
    try:
        d = json.loads(line)
    except ValueError:
        raise LauncherError(f"launcher answered garbage: {line[:200]!r}") from None
    if isinstance(d, dict) and isinstance(d.get("pid"), int) and d["pid"] > 0:
        return int(d["pid"])
    if isinstance(d, dict) and isinstance(d.get("error"), str):
        raise LauncherError(f"launcher refused: {d['error']}")
    raise LauncherError(f"launcher answered garbage: {line[:200]!r}")


def read_line(sock: socket.socket) -> bytes:
    """One line (without its newline) from ``sock``; raises LauncherError at EOF or when over
    :data:`MAX_LINE`."""
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise LauncherError("connection closed before a complete line")
        buf += chunk
        if len(buf) > MAX_LINE:
            raise LauncherError(f"line longer than {MAX_LINE} bytes")
    return bytes(buf[:-1])


def spawn(socket_path: str, request: SpawnRequest, timeout: float = 30.0) -> int:
    """Ask the launcher at ``socket_path`` to start ``request``; its PID."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(socket_path)
            s.sendall(request.encode())
            return decode_reply(read_line(s))
    except OSError as e:
        raise LauncherError(f"launcher at {socket_path} unreachable: {e}") from None


def alive(socket_path: str) -> bool:
    """True if a launcher accepts connections at ``socket_path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            s.connect(socket_path)
    except OSError:
        return False
    return True
