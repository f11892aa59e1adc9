"""Client settings.  Defaults follow session-desktop / libsession-util unless noted."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from nodes.protocol.constants import TTL_MAX_PUBLIC_MS
from nodes.protocol.onion import ENC_AES_GCM, parse_enc_type

from .paths import SUBNET_AUTO, SUBNET_MODES

POLL_ONE = "one"
POLL_ALL = "all"
POLL_SAMPLE = "sample"
POLL_MODES = (POLL_SAMPLE, POLL_ONE, POLL_ALL)
#: members polled at once by ``poll_mode="sample"`` (session-desktop RETRIEVE_SNODES_COUNT)
RETRIEVE_SNODES_COUNT = 2


@dataclass(frozen=True)
class ClientConfig:
    #: onion layer cipher: "aes-gcm" (session-desktop) or "xchacha20" (libsession); per call too
    enc_type: str = ENC_AES_GCM
    #: nodes per onion path (guard + 2) and number of paths, each with its own guard
    path_hops: int = 3
    path_count: int = 2
    #: session-desktop snodeFailureThreshold / pathFailureThreshold
    node_failure_threshold: int = 3
    path_failure_threshold: int = 3
    #: /24 rule for path nodes: "strict", "auto" (relax when the network cannot satisfy it,
    #: e.g. one Docker bridge /24) or "off"
    subnet_diversity: str = SUBNET_AUTO
    #: test a new guard with a direct ``info`` request before using it (desktop testGuardNode,
    #: libsession's edge connectivity check)
    test_guards: bool = True
    #: seconds for that direct request, and for the one to a node on every failed route
    #: (PathPolicy.route_failed)
    guard_test_timeout: float = 3.0
    #: one onion request (guard's answer), seconds
    request_timeout: float = 10.0
    seed_timeout: float = 10.0
    #: attempts per request (first try + retries) and exponential backoff between them
    max_attempts: int = 4
    retry_backoff: float = 0.1
    retry_backoff_max: float = 2.0
    #: TTL of 1-to-1 messages (session-desktop: 14 days for visible messages)
    message_ttl_ms: int = TTL_MAX_PUBLIC_MS
    #: namespaces polled by receive() (1-to-1 messages live in namespace 0)
    namespaces: tuple[int, ...] = (0,)
    #: receive(): poll a "sample" of RETRIEVE_SNODES_COUNT random members at once and merge
    #: (session-desktop swarmPolling.ts: a member can be out of sync with its swarm), "one"
    #: member (older desktop: sticky, the one with a last hash) or "all" members
    poll_mode: str = POLL_SAMPLE
    #: wait_for() poll period, seconds (desktop polls its own swarm every 5 s when active)
    poll_interval: float = 1.0
    #: retrieve pages followed while the node says "more"
    max_retrieve_pages: int = 10
    #: verify the per-member store results (signed hashes) and require this many valid
    #: confirmations; None = a majority of the recipient's swarm as we know it
    verify_store: bool = True
    store_confirmations: int | None = None
    #: nodes of a failed path are kept out of new paths for this long (s)
    path_quarantine: float = 60.0
    #: drop a node that is on every failed route (504s naming nobody) and on none that worked
    #: (a small-network aid, PathPolicy.route_failed); it misjudges a live node that only some
    #: relays cannot reach (a partition between it and its peers), so a client that must keep
    #: polling such a node turns it off
    drop_route_suspects: bool = True
    #: refresh the node pool from the seed when older than this (s) or smaller than needed
    pool_max_age: float = 300.0
    pool_min_refresh_interval: float = 2.0
    #: forget a cached swarm after this many seconds (a 421 replaces it anyway)
    swarm_cache_ttl: float = 600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "enc_type", parse_enc_type(self.enc_type))
        if self.path_hops < 1 or self.path_count < 1:
            raise ValueError("path_hops and path_count must be >= 1")
        if self.node_failure_threshold < 1 or self.path_failure_threshold < 1:
            raise ValueError("failure thresholds must be >= 1")
        if self.subnet_diversity not in SUBNET_MODES:
            raise ValueError(f"subnet_diversity must be one of {SUBNET_MODES}, got {self.subnet_diversity!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.poll_mode not in POLL_MODES:
            raise ValueError(f"poll_mode must be one of {', '.join(POLL_MODES)}, got {self.poll_mode!r}")
        for name in ("request_timeout", "seed_timeout", "guard_test_timeout", "poll_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.store_confirmations is not None and self.store_confirmations < 1:
            raise ValueError("store_confirmations must be >= 1 or None")
        object.__setattr__(self, "namespaces", tuple(self.namespaces))

    def with_overrides(self, **overrides: Any) -> ClientConfig:
        names = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown client setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return replace(self, **overrides)
