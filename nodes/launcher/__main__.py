"""``python -m nodes.launcher --socket PATH --run MODULE [--preload MODULE …]``: the fork server
of :mod:`nodes.launcher`. Children may run the ``--run`` modules (as ``python -m MODULE`` would);
the ``--preload`` modules (e.g. what ``MODULE.__main__`` imports) are imported here once, before
the first fork. Serves until SIGTERM/SIGINT, then removes its socket."""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import random
import runpy
import signal
import socket
import sys
import traceback
from pathlib import Path
from types import FrameType

from nodes.launcher import LauncherError, SpawnRequest, encode_reply, read_line

#: how long a connection may take to send its request
REQUEST_TIMEOUT_S = 10.0


def _exit_code(e: SystemExit) -> int:
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1


def run_child(req: SpawnRequest, ready_fd: int) -> int:
    """In the forked child: become the process ``req`` asks for and run it; its exit code."""
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    out = os.open(req.output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    os.close(null)
    os.chdir(req.cwd)
    os.environ.clear()
    os.environ.update(req.env)
    random.seed()  # not the launcher's (and so every sibling's) sequence
    with contextlib.suppress(OSError):  # `ps -e`/`top` show "snode", not the launcher's "python3"
        Path("/proc/self/comm").write_text(req.module.rsplit(".", 1)[-1][:15])
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    sys.argv = [req.module, *req.args]
    try:
        runpy.run_module(req.module, run_name="__main__", alter_sys=True)
        return 0
    except SystemExit as e:
        return _exit_code(e)
    except BaseException:  # noqa: BLE001 - reported as a traceback in the log, as python would
        traceback.print_exc()
        return 1


def serve_one(conn: socket.socket, listener: socket.socket, runnable: set[str]) -> None:
    """Answer one connection: fork the child it asks for (or say why not)."""
    conn.settimeout(REQUEST_TIMEOUT_S)
    try:
        line = read_line(conn)
    except (LauncherError, OSError):
        return  # a liveness check, or a client that went away
    try:
        req = SpawnRequest.decode(line)
        if req.module not in runnable:
            raise ValueError(f"module {req.module!r} is not one this launcher runs "
                             f"({', '.join(sorted(runnable))})")
        if not Path(req.cwd).is_dir():
            raise ValueError(f"working directory {req.cwd} does not exist")
    except ValueError as e:
        conn.sendall(encode_reply(error=str(e)))
        return
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into the server loop
        code = 1
        try:
            os.close(r)
            conn.close()
            listener.close()
            code = run_child(req, w)
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(w)
    try:
        started = os.read(r, 1) == b"1"
    finally:
        os.close(r)
    if started:
        conn.sendall(encode_reply(pid=pid))
    else:
        conn.sendall(encode_reply(error=f"child {pid} failed before it ran {req.module} "
                                        f"(see {req.output})"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nodes.launcher", description=__doc__)
    p.add_argument("--socket", required=True, type=Path, help="Unix socket to serve on")
    p.add_argument("--run", action="append", required=True, metavar="MODULE",
                   help="a module children may run as __main__ (repeatable)")
    p.add_argument("--preload", action="append", default=[], metavar="MODULE",
                   help="a module to import once here, shared by all children (repeatable); not "
                        "MODULE.__main__ itself, which each child runs afresh")
    p.add_argument("--warm-up", action="append", default=[], metavar="MODULE:FUNCTION",
                   help="a function to call once here, after the imports (repeatable): it "
                        "initialises what every child would (e.g. a library's native state)")
    args = p.parse_args(argv)
    for name in [*args.run, *args.preload]:
        importlib.import_module(name)
    for spec in args.warm_up:
        module, sep, func = spec.partition(":")
        if not sep:
            p.error(f"--warm-up {spec!r}: expected MODULE:FUNCTION")
        getattr(importlib.import_module(module), func)()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps exited children

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    # what is imported now stays shared: keep the collector off those pages in the children
    gc.collect()
    gc.freeze()
    path = args.socket
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        listener.listen(64)
        print(f"launcher: serving {', '.join(args.run)} on {path}", flush=True)
        while True:
            conn, _ = listener.accept()
            with conn:
                serve_one(conn, listener, set(args.run))
    finally:
        listener.close()
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
