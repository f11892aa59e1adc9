"""The scenario families of the packaged suites (each one a pytest marker), and the marker of
scenarios that need the built-in client. A leaf module: the pytest plugin registers the markers
from here without importing the scenarios."""

from __future__ import annotations

#: family (pytest marker) -> the property of the network its scenarios check
FAMILIES: dict[str, str] = {
    "delivery": "what a client stores reaches its recipient, once, intact; the storage RPC's "
                "rules (size, TTL, delete, expire, auth) hold on every swarm member",
    "churn": "nodes dying, restarting, joining, leaving and freezing lose no acknowledged message",
    "latency": "slow, jittery and bandwidth-capped links delay delivery within stated bounds; "
               "clients route around nodes slower than their timeout",
    "partitions": "cut networks keep every acknowledged message retrievable and deliver after "
                  "healing",
    "censorship": "misbehaving or blocked nodes cannot stop delivery while an honest path and an "
                  "honest swarm member exist",
    "privacy": "no node learns who talks to whom (node observations)",
    "clock": "clients and nodes with skewed clocks agree on time (406/425 resync) and deliver",
    "attachments": "files sent through the file server over onion paths arrive intact (digest "
                   "verified) within its size limit, survive its death and latency, and neither "
                   "it nor any node learns who uploaded what",
}

#: marker of a scenario that needs the built-in client (paths, raw storage RPC, observations
#: keyed by its records): skipped when ``--testnet-client`` names another client
BUILTIN_CLIENT_MARKER = "builtin_client"

#: marker of what a scenario needs of the nodes (``node_capabilities("partition", …)``: fault
#: families, ``observations``, ``join``): skipped on node kinds that lack one (``--nodes``)
CAPABILITY_MARKER = "node_capabilities"

__all__ = ["BUILTIN_CLIENT_MARKER", "CAPABILITY_MARKER", "FAMILIES"]
