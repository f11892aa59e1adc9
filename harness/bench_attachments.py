"""Attachment throughput: upload and download through 3-hop onion paths vs straight to the file
server, on a running testnet.

    python -m harness.bench_attachments -n NET [--size-mb 1 --size-mb 5] [--runs 3] [--json]

For each size: the built-in client uploads an encrypted attachment through an onion path (the
exit node forwards to the file server) and downloads it back (MAC and digest verified), and the
same encrypted blob is POSTed to / fetched from the file server directly over HTTP. Reported:
the median seconds and MB/s (of plaintext bytes) of each, per direction, and the ratio. The
encryption itself is timed apart (``encrypt_s``) and is part of the onion upload figure, as it
is of a real send.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from typing import Any

import aiohttp
import click

from harness.client import Account, SessionClient
from harness.client.attachments import FileServer
from harness.client.cli import seed_url_for
from harness.client.cli_attachments import file_server_for
from harness.cliutil import friendly_errors, json_option, name_option
from nodes.protocol.attachment import decrypt_attachment, encrypt_attachment

MB = 1_000_000


async def _direct(session: aiohttp.ClientSession, fs: FileServer, blob: bytes) -> tuple[float, float]:
    t0 = time.perf_counter()
    async with session.post(f"{fs.base_url}/file", data=blob,
                            headers={"Content-Type": "application/octet-stream"}) as r:
        body = await r.json(content_type=None)
        if r.status != 200:
            raise RuntimeError(f"direct upload to {fs.base_url}: {r.status} {body}")
    up = time.perf_counter() - t0
    t0 = time.perf_counter()
    async with session.get(fs.file_url(body["id"])) as r:
        got = await r.read()
        if r.status != 200 or got != blob:
            raise RuntimeError(f"direct download from {fs.base_url}: {r.status}, "
                               f"{len(got)} of {len(blob)} bytes")
    return up, time.perf_counter() - t0


async def measure(seed_url: str, fs: FileServer, sizes: list[int], runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"file_server": fs.base_url, "runs": runs, "sizes": []}
    async with SessionClient(seed_url, Account.generate(), file_server=fs,
                             request_timeout=30.0) as client, aiohttp.ClientSession() as session:
        await client.bootstrap()
        for size in sizes:
            rows: dict[str, list[float]] = {k: [] for k in (
                "encrypt_s", "onion_up_s", "onion_down_s", "direct_up_s", "direct_down_s")}
            for _ in range(runs):
                data = os.urandom(size)
                t0 = time.perf_counter()
                enc = encrypt_attachment(data)
                rows["encrypt_s"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ref = await client.upload_attachment(data, file_name="bench.bin")
                rows["onion_up_s"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                if await client.download_attachment(ref) != data:
                    raise RuntimeError("onion download returned other bytes")
                rows["onion_down_s"].append(time.perf_counter() - t0)
                up, down = await _direct(session, fs, enc.blob)
                decrypt_attachment(enc.blob, key=enc.key, digest=enc.digest, size=enc.size)
                rows["direct_up_s"].append(up)
                rows["direct_down_s"].append(down)
            med = {k: statistics.median(v) for k, v in rows.items()}
            entry: dict[str, Any] = {"bytes": size, **{k: round(v, 4) for k, v in med.items()}}
            for k in ("onion_up", "onion_down", "direct_up", "direct_down"):
                entry[f"{k}_mbps"] = round(size / MB / med[f"{k}_s"], 2)
            entry["onion_vs_direct_up"] = round(med["onion_up_s"] / med["direct_up_s"], 1)
            entry["onion_vs_direct_down"] = round(med["onion_down_s"] / med["direct_down_s"], 1)
            out["sizes"].append(entry)
    return out


@click.command("bench-attachments")
@name_option
@click.option("--seed-url", default=None, help="Seed URL of a network not started here.")
@click.option("--file-server", "fs_url", default=None, metavar="URL")
@click.option("--file-server-key", "fs_key", default=None, metavar="HEX")
@click.option("--size-mb", "sizes", type=click.FloatRange(min=0.001, max=10), multiple=True,
              help="Attachment size in MB (repeatable) [default: 0.1, 1, 5].")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True)
@json_option('{"file_server", "runs", "sizes": [{"bytes", "encrypt_s", "onion_up_s", '
             '"onion_down_s", "direct_up_s", "direct_down_s", "*_mbps", "onion_vs_direct_*"}]}')
@friendly_errors
def main(name: str, seed_url: str | None, fs_url: str | None, fs_key: str | None,
         sizes: tuple[float, ...], runs: int, as_json: bool) -> None:
    """Upload/download throughput through 3 onion hops vs direct to the file server."""
    fs = file_server_for(name, fs_url, fs_key)
    result = asyncio.run(measure(seed_url or seed_url_for(name), fs,
                                 [int(s * MB) for s in (sizes or (0.1, 1.0, 5.0))], runs))
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"file server {result['file_server']}, median of {runs} run(s), MB/s of plaintext")
    click.echo(f"{'size':>10} {'onion up':>9} {'direct up':>10} {'onion down':>11} "
               f"{'direct down':>12} {'encrypt':>8}")
    for e in result["sizes"]:
        click.echo(f"{e['bytes'] / MB:>8.2f}MB {e['onion_up_mbps']:>9} {e['direct_up_mbps']:>10} "
                   f"{e['onion_down_mbps']:>11} {e['direct_down_mbps']:>12} {e['encrypt_s']:>7.3f}s")


if __name__ == "__main__":  # pragma: no cover
    main()
