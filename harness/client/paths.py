"""Onion paths: building them by the production rules and keeping their failure counters.

Rules (session-desktop ``onionPath.ts`` and libsession-util ``OnionRequestRouter`` /
``SnodePool::get_unused_nodes``):

* ``path_count`` paths (2) of ``hops`` nodes (3); each path starts with its own guard node.
* Nodes already used by another path are not used again, and no two path nodes share a /24
  subnet (libsession's ``enforce_subnet_diversity``: the exclusion list is every node of every
  path) nor an IP address.
* A request never goes through a path that contains its destination.
* A path collects failures; at ``failure_threshold`` (3) it is dropped and a new one with a new
  guard is built.  A node dropped from the pool is repaired out of its path (replaced by a fresh
  node, as session-desktop's ``dropSnodeFromPath``); a dropped guard drops its path.

Small testnets cannot always satisfy every rule; the builder then relaxes them in this order and
records what it relaxed on the path (``OnionPath.relaxed``):

1. ``subnet_across_paths`` — /24 diversity only inside the path, not across paths;
2. ``shared_hops`` — the non-guard hops may also be used by another path (guards stay distinct);
3. ``no_subnet_diversity`` — only with ``subnet_diversity="auto"``: nodes may share a /24
   (e.g. every container of a Docker bridge network is in one /24); IPs stay distinct.

With ``subnet_diversity="strict"`` step 3 never happens; with ``"off"`` the /24 rule is not applied.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .errors import NoPathError
from .snode import Snode

SUBNET_STRICT = "strict"
SUBNET_AUTO = "auto"
SUBNET_OFF = "off"
SUBNET_MODES = (SUBNET_STRICT, SUBNET_AUTO, SUBNET_OFF)

_path_ids = itertools.count(1)


@dataclass
class OnionPath:
    hops: list[Snode]
    id: str = field(default_factory=lambda: f"P{next(_path_ids)}")
    failures: int = 0
    relaxed: tuple[str, ...] = ()

    @property
    def guard(self) -> Snode:
        return self.hops[0]

    def contains(self, ed25519: str) -> bool:
        return any(h.ed25519 == ed25519 for h in self.hops)

    def index_of(self, ed25519: str) -> int | None:
        for i, h in enumerate(self.hops):
            if h.ed25519 == ed25519:
                return i
        return None

    def refs(self) -> list[dict]:
        return [h.ref() for h in self.hops]

    def __str__(self) -> str:
        return f"{self.id}[{' -> '.join(str(h) for h in self.hops)}]"


def pick_hops(
    candidates: Sequence[Snode],
    count: int,
    *,
    rng: random.Random,
    exclude: Iterable[str] = (),
    used_ips: Iterable[str] = (),
    used_subnets: Iterable[str] | None = None,
    enforce_subnet: bool = True,
) -> list[Snode] | None:
    """``count`` random nodes with distinct IPs (and distinct /24s if ``enforce_subnet``), none
    in ``exclude`` (ed25519 keys), none on an IP of ``used_ips`` or a /24 of ``used_subnets``.

    Greedy over a shuffled list (optimal for all-distinct constraints); None if impossible.
    """
    ex = set(exclude)
    ips = set(used_ips)
    subnets = set(used_subnets or ())
    pool = [c for c in candidates if c.ed25519 not in ex]
    rng.shuffle(pool)
    chosen: list[Snode] = []
    for node in pool:
        if len(chosen) == count:
            break
        if node.ip in ips or any(node.ed25519 == c.ed25519 for c in chosen):
            continue
        if enforce_subnet and node.subnet24 in subnets:
            continue
        chosen.append(node)
        ips.add(node.ip)
        if enforce_subnet:
            subnets.add(node.subnet24)
    return chosen if len(chosen) == count else None


def build_path(
    candidates: Sequence[Snode],
    existing: Sequence[OnionPath],
    *,
    hops: int = 3,
    subnet_diversity: str = SUBNET_AUTO,
    rng: random.Random | None = None,
    exclude: Iterable[str] = (),
) -> OnionPath:
    """A new path that is valid next to ``existing`` paths (see module doc); NoPathError
    (saying what is missing) if even the most relaxed rules cannot be met."""
    if subnet_diversity not in SUBNET_MODES:
        raise ValueError(f"subnet_diversity must be one of {SUBNET_MODES}, got {subnet_diversity!r}")
    if hops < 1:
        raise ValueError(f"hops must be >= 1, got {hops}")
    rng = rng or random.Random()
    ex = set(exclude)
    used_nodes = {h.ed25519 for p in existing for h in p.hops}
    guards = {p.guard.ed25519 for p in existing}
    used_subnets = {h.subnet24 for p in existing for h in p.hops}
    used_ips_all = {h.ip for p in existing for h in p.hops}
    guard_ips = {p.guard.ip for p in existing}

    subnet_options = {SUBNET_STRICT: [True], SUBNET_AUTO: [True, False], SUBNET_OFF: [False]}
    for enforce in subnet_options[subnet_diversity]:
        relax_subnet = () if enforce or subnet_diversity == SUBNET_OFF else ("no_subnet_diversity",)
        # level 0: production: disjoint from other paths, subnets distinct across all paths
        chosen = pick_hops(candidates, hops, rng=rng, exclude=ex | used_nodes, used_ips=used_ips_all,
                           used_subnets=used_subnets, enforce_subnet=enforce)
        if chosen:
            return OnionPath(hops=chosen, relaxed=relax_subnet)
        # level 1: disjoint nodes, subnet diversity inside the path only
        if enforce:
            chosen = pick_hops(candidates, hops, rng=rng, exclude=ex | used_nodes, used_ips=used_ips_all,
                               enforce_subnet=True)
            if chosen:
                return OnionPath(hops=chosen, relaxed=("subnet_across_paths",))
        # level 2: a fresh guard; the other hops may be shared with other paths
        guard = pick_hops(candidates, 1, rng=rng, exclude=ex | used_nodes, used_ips=used_ips_all,
                          enforce_subnet=False)
        if guard:
            rest = pick_hops(candidates, hops - 1, rng=rng, exclude=ex | guards | {guard[0].ed25519},
                             used_ips={guard[0].ip} | guard_ips,
                             used_subnets={guard[0].subnet24} if enforce else None,
                             enforce_subnet=enforce)
            if rest is not None:
                relaxed = ("subnet_across_paths", "shared_hops") if enforce else ("shared_hops",)
                return OnionPath(hops=guard + rest, relaxed=relaxed + relax_subnet)

    subnets = len({c.subnet24 for c in candidates if c.ed25519 not in ex})
    ips = len({c.ip for c in candidates if c.ed25519 not in ex})
    usable = len([c for c in candidates if c.ed25519 not in ex])
    raise NoPathError(
        f"cannot build onion path #{len(existing) + 1} of {hops} hops: {usable} usable nodes "
        f"({ips} distinct IPs, {subnets} distinct /24 subnets) after excluding {len(ex)} failed "
        f"node(s) and the {len(guards)} guard(s) in use (subnet_diversity={subnet_diversity}); "
        f"a path needs {hops} nodes on distinct IPs plus a destination outside it")


class PathSet:
    """The client's onion paths and their failure counters (pure; no I/O)."""

    def __init__(self, *, count: int = 2, hops: int = 3, failure_threshold: int = 3,
                 subnet_diversity: str = SUBNET_AUTO, rng: random.Random | None = None) -> None:
        if count < 1:
            raise ValueError(f"path count must be >= 1, got {count}")
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if subnet_diversity not in SUBNET_MODES:
            raise ValueError(f"subnet_diversity must be one of {SUBNET_MODES}, got {subnet_diversity!r}")
        self.count = count
        self.hops = hops
        self.failure_threshold = failure_threshold
        self.subnet_diversity = subnet_diversity
        self._rng = rng or random.Random()
        self.paths: list[OnionPath] = []

    def __len__(self) -> int:
        return len(self.paths)

    def missing(self) -> int:
        return max(0, self.count - len(self.paths))

    def build(self, candidates: Sequence[Snode], exclude: Iterable[str] = ()) -> OnionPath:
        """A new path valid next to the current ones (not added: call :meth:`add`)."""
        return build_path(candidates, self.paths, hops=self.hops, subnet_diversity=self.subnet_diversity,
                          rng=self._rng, exclude=exclude)

    def add(self, path: OnionPath) -> None:
        self.paths.append(path)

    def remove(self, path: OnionPath) -> bool:
        before = len(self.paths)
        self.paths = [p for p in self.paths if p.id != path.id]
        return len(self.paths) != before

    def get(self, path_id: str) -> OnionPath | None:
        return next((p for p in self.paths if p.id == path_id), None)

    def nodes_in_use(self) -> set[str]:
        return {h.ed25519 for p in self.paths for h in p.hops}

    def choose(self, destination: str | None = None, avoid: Iterable[str] = ()) -> OnionPath | None:
        """A random path without ``destination``; paths whose id is in ``avoid`` only if no other
        one fits.  None if every path contains the destination."""
        fitting = [p for p in self.paths if destination is None or not p.contains(destination)]
        if not fitting:
            return None
        av = set(avoid)
        preferred = [p for p in fitting if p.id not in av]
        return self._rng.choice(preferred or fitting)

    def strike(self, path: OnionPath) -> bool:
        """One failure for a path; True if this reached the threshold and dropped it."""
        if self.get(path.id) is None:
            return False
        path.failures += 1
        if path.failures >= self.failure_threshold:
            self.remove(path)
            return True
        return False

    def repair(self, ed25519: str, candidates: Sequence[Snode],
               exclude: Iterable[str] = ()) -> list[tuple[OnionPath, str]]:
        """Take a dropped node out of every path containing it.

        A non-guard hop is replaced in place by a fresh node that keeps the path rules; a guard
        (or a hop that cannot be replaced) drops its path.  Returns [(path, "replaced" |
        "dropped")].
        """
        results: list[tuple[OnionPath, str]] = []
        for path in [p for p in self.paths if p.contains(ed25519)]:
            idx = path.index_of(ed25519)
            if idx is None:  # pragma: no cover - guarded by contains()
                continue
            if idx == 0:
                self.remove(path)
                results.append((path, "dropped"))
                continue
            others = [p for p in self.paths if p.id != path.id]
            keep = [h for h in path.hops if h.ed25519 != ed25519]
            ex = set(exclude) | {ed25519} | {h.ed25519 for h in keep} | {h.ed25519 for p in others for h in p.hops}
            enforce_options = {SUBNET_STRICT: [True], SUBNET_AUTO: [True, False], SUBNET_OFF: [False]}
            new = None
            for enforce in enforce_options[self.subnet_diversity]:
                new = pick_hops(candidates, 1, rng=self._rng, exclude=ex, used_ips={h.ip for h in keep},
                                used_subnets={h.subnet24 for h in keep}, enforce_subnet=enforce)
                if new is None:  # allow a hop shared with another path (not its guard)
                    guards = {p.guard.ed25519 for p in others}
                    ex2 = set(exclude) | {ed25519} | {h.ed25519 for h in keep} | guards
                    new = pick_hops(candidates, 1, rng=self._rng, exclude=ex2, used_ips={h.ip for h in keep},
                                    used_subnets={h.subnet24 for h in keep}, enforce_subnet=enforce)
                if new is not None:
                    break
            if new is None:
                self.remove(path)
                results.append((path, "dropped"))
                continue
            path.hops[idx] = new[0]
            results.append((path, "replaced"))
        return results
