#!/usr/bin/env python3
"""A node of your own for session-testnet, in its smallest form: it reads the node contract
(docs/nodes.md, "Your own node") from its environment and runs our storage node with it.

    testnet up --nodes 6:command=examples/nodes/snode_wrapper.py

Every address, port and folder comes from SESSION_TESTNET_* variables; the secrets (key seed,
join token, admin token) stay in the environment, which our node reads itself, so they never
appear on a command line. Replace the exec with your own implementation: it must listen on
LISTEN_IP:STORAGE_PORT (HTTPS), and join the seed at SEED_URL with signed proofs for
PUBLIC_IP:STORAGE_PORT.
"""

from __future__ import annotations

import os
import sys

PREFIX = "SESSION_TESTNET_"


def need(name: str) -> str:
    value = os.environ.get(PREFIX + name)
    if value is None:
        sys.exit(f"snode_wrapper: ${PREFIX}{name} is not set: the testnet harness starts this "
                 "program with the node contract in its environment (docs/nodes.md)")
    return value


def main() -> None:
    argv = [sys.executable, "-m", "nodes.snode",
            "--name", need("NODE_NAME"),
            "--ip", need("LISTEN_IP"),
            "--public-ip", need("PUBLIC_IP"),
            "--port", need("STORAGE_PORT"),
            "--seed-url", need("SEED_URL"),
            "--data-dir", need("DATA_DIR"),
            "--proof-interval", need("PROOF_INTERVAL"),
            "--poll-interval", need("POLL_INTERVAL")]
    if need("ADMIN_PORT") != "0":  # the group declared the admin interface
        argv += ["--admin-port", need("ADMIN_PORT")]
    if need("RATE_LIMIT") not in ("0", "0.0"):
        argv += ["--rate-limit", need("RATE_LIMIT")]
    if need("LOG_FILE"):
        argv += ["--log-file", need("LOG_FILE")]
    os.execv(sys.executable, argv)  # the environment (and with it the secrets) carries over


if __name__ == "__main__":
    main()
