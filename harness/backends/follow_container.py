"""Following a container's log (``testnet logs -f`` on the docker and swarm backends).

A container's log stream ends when the container stops; :func:`follow_container_log` outlives
that: a restart (same container) or a re-creation (new container, same name) is picked up by
polling for the container and re-attaching after the last line seen. The process backend follows
its log files instead (:mod:`harness.backends.follow_file`).
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Callable, Iterator
from typing import Any

import docker.errors  # binds `docker` too (a plain `import docker` is misfiled next to docker/)
import requests.exceptions


def follow_container_log(find: Callable[[], Any | None], gone: Callable[[], bool], *,
                         tail: int | None = None,
                         stop: threading.Event | None = None) -> Iterator[str]:
    """Lines of the container ``find()`` returns (None: not there now), its last ``tail`` lines
    first (all without), then new ones as they are written, until ``stop`` is set or ``gone()``
    says the testnet is down while there is no container."""
    # A container's log stream ends when the container stops; a restart (same container,
    # `start_node`) or a re-creation (new container, same name) is picked up by polling the
    # container's state and re-attaching with `since=` the last line's engine timestamp
    # (lines at or before it are skipped, so nothing repeats). `stop` closes the open stream.
    stop = stop or threading.Event()
    last: tuple[int, int] | None = None  # (epoch seconds, nanoseconds) of the last line
    attached = False

    def stamp(raw: bytes) -> tuple[tuple[int, int] | None, str]:
        ts, _, text = raw.decode("utf-8", errors="replace").partition(" ")
        try:  # RFC 3339 with nanoseconds: 2026-01-01T10:00:00.123456789Z
            whole, _, frac = ts.rstrip("Z").partition(".")
            secs = int(datetime.datetime.fromisoformat(whole + "+00:00").timestamp())
            return (secs, int((frac + "000000000")[:9])), text
        except ValueError:
            return None, raw.decode("utf-8", errors="replace")

    while not stop.is_set():
        c = find()
        if c is None and gone():
            return  # the testnet is down
        if c is None or (attached and not c.attrs["State"].get("Running")):
            stop.wait(0.5)  # not created yet, or stopped: wait for the (re)start
            continue
        kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "stream": True,
                                  "follow": True, "timestamps": True}
        if not attached:
            kwargs["tail"] = "all" if tail is None else tail
        elif last is not None:
            kwargs["since"] = last[0] + last[1] / 1e9
        try:
            stream = c.logs(**kwargs)
        except docker.errors.NotFound:
            continue  # removed meanwhile: poll again
        attached = True
        done = threading.Event()

        def close_on_stop(s: Any = stream, done: threading.Event = done) -> None:
            while not done.wait(0.2):
                if stop.is_set():
                    with contextlib.suppress(Exception):  # already closed: fine
                        s.close()
                    return

        threading.Thread(target=close_on_stop, daemon=True).start()
        buf = b""
        try:
            for chunk in stream:
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    ts, text = stamp(raw)
                    if ts is not None and last is not None and ts <= last:
                        continue
                    last = ts or last
                    yield text
        except (OSError, ValueError, requests.exceptions.RequestException):
            if stop.is_set():
                return
        finally:  # also when the consumer closes this generator
            done.set()
            with contextlib.suppress(Exception):
                stream.close()
        if buf:
            yield stamp(buf)[1]
        stop.wait(0.1)  # the stream ended: the container stopped (or stop was set)
