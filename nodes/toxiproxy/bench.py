"""Overhead of the Toxiproxy server with no toxic: round-trip latency and throughput, through a
proxy versus direct to the same upstream.

:func:`run_bench` starts (each as its own process, so no two share an event loop or the GIL)
an upstream test server and, unless ``toxiproxy_url`` names one already running, a
``python -m nodes.toxiproxy``; it creates one proxy and measures, with blocking sockets on
127.0.0.1 (TCP_NODELAY):

* latency: ``echoes`` round trips of ``payload`` bytes on one connection (after a warm-up),
  direct and through the proxy → median / p99 / mean in µs, and the difference;
* throughput: ``transfer_mb`` MB (10^6 bytes) downloaded (upstream → client) and uploaded
  (client → upstream) on one connection each, direct and through the proxy → MB/s.

``python -m nodes.toxiproxy.bench [--echoes N] [--mb M] [--url URL]`` prints the result as JSON.
An external ``toxiproxy_url`` must be able to reach the upstream test server on 127.0.0.1
(same host / network namespace).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import requests

_BLOCK = bytes(range(256)) * 1024  # 256 KiB of payload to send repeatedly


# -- upstream test server (runs in its own process) ----------------------------------------------

async def _upstream_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        mode = await reader.readexactly(1)
        if mode == b"E":  # echo until EOF
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        elif mode == b"D":  # send N bytes, then close
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
            view = memoryview(_BLOCK)
            while n > 0:
                k = min(n, len(_BLOCK))
                writer.write(view[:k])
                await writer.drain()
                n -= k
        elif mode == b"U":  # receive N bytes, then answer "K"
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
            while n > 0:
                data = await reader.read(min(n, 1 << 20))
                if not data:
                    return
                n -= len(data)
            writer.write(b"K")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve_upstream() -> None:
    server = await asyncio.start_server(_upstream_handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), done.set)  # exits when the parent closes our stdin
    await done.wait()
    server.close()


# -- helpers --------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _process(args: list[str], *, stdout: int | None = subprocess.DEVNULL) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=stdout, stderr=subprocess.DEVNULL,
                            text=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    try:
        yield proc
    finally:
        with suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_api(url: str, deadline: float) -> str:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            r = requests.get(url + "/version", timeout=1)
            if r.status_code == 200:
                try:
                    return str(r.json()["version"])
                except (ValueError, KeyError, TypeError):
                    return r.text.strip()
        except requests.RequestException as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"Toxiproxy API at {url} did not answer /version in time ({last})")


def _connect(port: int, mode: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(mode)
    return s


def _recv_exactly(s: socket.socket, n: int) -> None:
    while n > 0:
        data = s.recv(min(n, 1 << 20))
        if not data:
            raise ConnectionError("connection closed before all bytes arrived")
        n -= len(data)


def _percentile(sorted_values: list[float], q: float) -> float:
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


def _latency(port: int, echoes: int, payload: int, warmup: int = 50) -> dict[str, float]:
    msg = b"p" * payload
    samples: list[float] = []
    with _connect(port, b"E") as s:
        for i in range(warmup + echoes):
            t0 = time.perf_counter_ns()
            s.sendall(msg)
            _recv_exactly(s, payload)
            if i >= warmup:
                samples.append((time.perf_counter_ns() - t0) / 1000.0)
    samples.sort()
    return {"median": round(statistics.median(samples), 1), "p99": round(_percentile(samples, 0.99), 1),
            "mean": round(statistics.fmean(samples), 1)}


def _download(port: int, nbytes: int) -> float:
    with _connect(port, b"D" + struct.pack("!Q", nbytes)) as s:
        t0 = time.perf_counter()
        _recv_exactly(s, nbytes)
        return nbytes / 1e6 / (time.perf_counter() - t0)


def _upload(port: int, nbytes: int) -> float:
    with _connect(port, b"U" + struct.pack("!Q", nbytes)) as s:
        view = memoryview(_BLOCK)
        t0 = time.perf_counter()
        left = nbytes
        while left > 0:
            k = min(left, len(_BLOCK))
            s.sendall(view[:k])
            left -= k
        _recv_exactly(s, 1)
        return nbytes / 1e6 / (time.perf_counter() - t0)


def _median_of(repeats: int, fn: Any, port: int, nbytes: int) -> float:
    return round(float(statistics.median(fn(port, nbytes) for _ in range(max(1, repeats)))), 1)


# -- the benchmark --------------------------------------------------------------------------------

def run_bench(*, echoes: int = 1000, payload: int = 32, transfer_mb: float = 50.0, repeats: int = 3,
              toxiproxy_url: str | None = None, startup_timeout: float = 20.0) -> dict[str, Any]:
    """Measure the proxy's added latency and its throughput against direct connections.

    Returns ``{"server", "echoes", "payload_bytes", "rtt_us": {"direct"|"proxy": {"median",
    "p99", "mean"}}, "added_rtt_us": {"median", "p99"}, "transfer_bytes", "repeats",
    "throughput_mb_s": {"direct"|"proxy": {"download", "upload"}}, "throughput_ratio":
    {"download", "upload"}, "duration_s"}`` (MB = 10^6 bytes, µs per round trip; each
    throughput is the median of `repeats` transfers).
    """
    t_start = time.monotonic()
    nbytes = int(transfer_mb * 1e6)
    py = sys.executable
    with _process([py, "-m", "nodes.toxiproxy.bench", "--serve-upstream"], stdout=subprocess.PIPE) as up:
        assert up.stdout is not None
        line = up.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"benchmark upstream server did not start (got {line!r})")
        up_port = int(line)
        own = toxiproxy_url is None
        api_port = _free_port()
        url = toxiproxy_url.rstrip("/") if toxiproxy_url else f"http://127.0.0.1:{api_port}"
        cmd = [py, "-m", "nodes.toxiproxy", "--host", "127.0.0.1", "--port", str(api_port),
               "--log-level", "warn"]
        with _process(cmd) if own else _nullcontext():
            version = _wait_api(url, time.monotonic() + startup_timeout)
            name = f"bench_{os.getpid()}_{int(time.time() * 1000) % 100000}"
            r = requests.post(url + "/proxies", json={"name": name, "listen": "127.0.0.1:0",
                                                      "upstream": f"127.0.0.1:{up_port}"}, timeout=10)
            if r.status_code != 201:
                raise RuntimeError(f"creating the benchmark proxy failed: HTTP {r.status_code} {r.text}")
            proxy_port = int(r.json()["listen"].rsplit(":", 1)[1])
            try:
                rtt = {"direct": _latency(up_port, echoes, payload),
                       "proxy": _latency(proxy_port, echoes, payload)}
                thr = {target: {"download": _median_of(repeats, _download, port, nbytes),
                                "upload": _median_of(repeats, _upload, port, nbytes)}
                       for target, port in (("direct", up_port), ("proxy", proxy_port))}
            finally:
                with suppress(requests.RequestException):
                    requests.delete(f"{url}/proxies/{name}", timeout=10)
    return {
        "server": version,
        "echoes": echoes,
        "payload_bytes": payload,
        "rtt_us": rtt,
        "added_rtt_us": {"median": round(rtt["proxy"]["median"] - rtt["direct"]["median"], 1),
                         "p99": round(rtt["proxy"]["p99"] - rtt["direct"]["p99"], 1)},
        "transfer_bytes": nbytes,
        "repeats": repeats,
        "throughput_mb_s": thr,
        "throughput_ratio": {d: round(thr["proxy"][d] / thr["direct"][d], 3) for d in ("download", "upload")},
        "duration_s": round(time.monotonic() - t_start, 2),
    }


@contextmanager
def _nullcontext() -> Iterator[None]:
    yield None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nodes.toxiproxy.bench", description=__doc__.split("\n")[0])
    p.add_argument("--echoes", type=int, default=1000)
    p.add_argument("--payload", type=int, default=32)
    p.add_argument("--mb", type=float, default=50.0, help="MB (10^6 bytes) per throughput transfer")
    p.add_argument("--repeats", type=int, default=3, help="transfers per throughput figure (median)")
    p.add_argument("--url", default=None, help="measure an already running Toxiproxy at this URL")
    p.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_upstream:
        asyncio.run(_serve_upstream())
        return 0
    print(json.dumps(run_bench(echoes=args.echoes, payload=args.payload, transfer_mb=args.mb,
                               repeats=args.repeats, toxiproxy_url=args.url), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
