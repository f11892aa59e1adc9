"""Swarm space, swarm lookup and swarm assignment (PROTOCOL.md §2).

``swarm_space`` / ``swarm_for`` are what clients and storage nodes use to find the swarm that
owns an account.  ``assign_swarms`` is what the seed runs on every membership change; it
re-implements oxen-core's ``calc_swarm_changes`` (src/cryptonote_core/service_node_swarm.cpp,
constants in service_node_rules.h, RNG helper in src/common/random.cpp) so that a testnet's
swarms grow, split and dissolve the way production swarms do.

oxen-core behaviours reproduced by ``assign_swarms``:

* Input map: ``swarm id -> [node pubkeys]`` built from the *active* nodes only; the order of
  nodes inside each list is ascending pubkey (oxen-core uses its node-table iteration order; we
  fix it to sorted order so the result depends on the inputs only).  Nodes without a swarm
  (``UNASSIGNED_SWARM``) are taken out first, in ascending pubkey order.
* RNG: ``std::mt19937_64`` seeded with the first 8 bytes of the block hash read as a
  little-endian u64 (``memcpy`` of the hash in ``update_swarms``); every bounded draw uses
  ``tools::uniform_distribution_portable`` (rejection sampling below
  ``max - max % n``, then ``x / (secureMax / n)``).
* Step 0: no swarm at all -> create swarm ``get_new_swarm_id({}) == 0``.
* Step 1 (assign): for each unassigned node, sort swarms by size (ties keep ascending id order),
  take the 25th percentile index ``25 * (n - 1) // 100``, extend it to the last swarm of that same
  size, pick one of swarms ``[0, upper]`` uniformly, append the node, then run the new-swarm step.
* Step 2 (Robin Hood): the size snapshot taken once before the round; for each swarm (smallest
  first) still below MIN: threshold = ``max(MIN, size at 75th percentile index - 1)``; the pool
  is every node of every swarm larger than the threshold (pool order: swarms by ascending id,
  nodes in list order), the available excess Σ(size − MIN) over those swarms; stop the whole
  round as soon as excess < the swarm's deficit; otherwise move one random pool node into the
  poor swarm, repeat until it reaches MIN.
* Step 3 (new swarms): only when no swarm is below MIN; while Σmax(size − MIN, 0) ≥
  ``NEW_SWARM_SIZE + IDEAL_SWARM_MARGIN * #swarms``, draw NEW_SWARM_SIZE nodes one at a time from
  the pool of swarms larger than MIN (pool rebuilt after every draw) and create a swarm whose id
  is the midpoint of the largest gap between sorted ids, the wrap-around gap counted as
  ``MAX_ID - last + first + 1`` with ``MAX_ID = 2**64 - 2`` (first gap wins ties; the second swarm
  after 0 is 0x7FFFFFFFFFFFFFFF).
* Step 4 (dissolution): while more than one swarm exists and some swarm (lowest id first) is
  below MIN, remove it and re-assign its nodes (in their list order) like step 1 but at the 0th
  percentile, i.e. to the smallest swarms.

Documented differences:

* oxen-core sorts swarm sizes with ``std::sort`` (not stable).  We use a stable sort by size over
  swarms in ascending-id order; libstdc++'s ``std::sort`` is an insertion sort (stable) for up to
  16 elements, so results agree with libstdc++ for testnets of at most 16 swarms.
* oxen-core checks "more than one swarm" once before step 4 and would index an empty map if the
  last remaining swarm were also dissolved; we re-check it on every iteration and keep the last
  swarm even if it is below MIN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nodes.protocol.keys import SessionID

U64_MASK = 0xFFFF_FFFF_FFFF_FFFF
UNASSIGNED_SWARM = 0xFFFF_FFFF_FFFF_FFFF
MAX_SWARM_ID = UNASSIGNED_SWARM - 1  # oxen-core MAX_ID

# oxen-core service_node_rules.h
FILL_SWARM_LOWER_PERCENTILE = 25
DECOMMISSIONED_REDISTRIBUTION_LOWER_PERCENTILE = 0
STEALING_SWARM_UPPER_PERCENTILE = 75


# --------------------------------------------------------------------------------------------
# swarm space / swarm lookup
# --------------------------------------------------------------------------------------------

def _key_bytes(pubkey: SessionID | str | bytes | bytearray) -> bytes:
    """The 32 key bytes of a Session ID given as SessionID, 66 hex chars or 33 raw bytes."""
    if isinstance(pubkey, SessionID):
        return pubkey.raw
    if isinstance(pubkey, str):
        return SessionID.parse(pubkey).raw
    if isinstance(pubkey, (bytes, bytearray)):
        if len(pubkey) != 33:
            raise ValueError(f"raw Session ID must be 33 bytes (prefix + 32-byte key), got {len(pubkey)}")
        return bytes(pubkey[1:])
    raise TypeError(f"expected SessionID, 66-hex str or 33 bytes, got {type(pubkey).__name__}")


def swarm_space(pubkey: SessionID | str | bytes | bytearray) -> int:
    """Swarm-space position of an account: XOR of the four big-endian u64 chunks of its key."""
    key = _key_bytes(pubkey)
    res = 0
    for i in range(0, 32, 8):
        res ^= int.from_bytes(key[i:i + 8], "big")
    return res


def swarm_for(space: int, swarm_ids: Iterable[int]) -> int:
    """The swarm id owning swarm-space position `space` (PROTOCOL.md §2).

    UNASSIGNED ids are ignored; raises ValueError if no swarm id remains.
    """
    if not 0 <= space <= U64_MASK:
        raise ValueError(f"swarm space value must be a u64, got {space}")
    ids = sorted({i for i in swarm_ids if i != UNASSIGNED_SWARM})
    if not ids:
        raise ValueError("no swarms known: cannot map an account to a swarm (is the network up?)")
    if len(ids) == 1:
        return ids[0]
    # first id >= space (bisect by hand to keep it dependency free)
    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if ids[mid] < space:
            lo = mid + 1
        else:
            hi = mid
    right = ids[lo] if lo < len(ids) else ids[0]
    left = ids[lo - 1] if lo > 0 else ids[-1]
    dright = (right - space) & U64_MASK
    dleft = (space - left) & U64_MASK
    return right if dright < dleft else left


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SwarmParams:
    """Swarm sizing constants (oxen-core MIN_SWARM_SIZE, IDEAL_SWARM_MARGIN, NEW_SWARM_SIZE).

    EXCESS_BASE is MIN_SWARM_SIZE as in oxen-core.
    """

    min_swarm_size: int = 5
    ideal_swarm_margin: int = 2
    new_swarm_size: int = 7

    def __post_init__(self) -> None:
        for name in ("min_swarm_size", "ideal_swarm_margin", "new_swarm_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"SwarmParams.{name} must be an int, got {v!r}")
        if self.min_swarm_size < 1:
            raise ValueError(f"min_swarm_size must be >= 1, got {self.min_swarm_size}")
        if self.ideal_swarm_margin < 0:
            raise ValueError(f"ideal_swarm_margin must be >= 0, got {self.ideal_swarm_margin}")
        if self.new_swarm_size < self.min_swarm_size:
            raise ValueError(
                f"new_swarm_size ({self.new_swarm_size}) must be >= min_swarm_size ({self.min_swarm_size}),"
                " otherwise a freshly created swarm would be dissolved at once")


PRODUCTION = SwarmParams()


# --------------------------------------------------------------------------------------------
# RNG
# --------------------------------------------------------------------------------------------

class MT19937_64:  # noqa: N801 - named after std::mt19937_64
    """Bit-exact std::mt19937_64 (64-bit Mersenne Twister, Matsumoto & Nishimura 2004)."""

    _N = 312
    _M = 156
    _MATRIX_A = 0xB502_6F5A_A966_19E9
    _UPPER = 0xFFFF_FFFF_8000_0000
    _LOWER = 0x0000_0000_7FFF_FFFF
    DEFAULT_SEED = 5489

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        mt = [0] * self._N
        mt[0] = seed & U64_MASK
        for i in range(1, self._N):
            prev = mt[i - 1]
            mt[i] = (6364136223846793005 * (prev ^ (prev >> 62)) + i) & U64_MASK
        self._mt = mt
        self._idx = self._N

    def _twist(self) -> None:
        mt, n, m = self._mt, self._N, self._M
        for i in range(n):
            x = (mt[i] & self._UPPER) | (mt[(i + 1) % n] & self._LOWER)
            xa = x >> 1
            if x & 1:
                xa ^= self._MATRIX_A
            mt[i] = mt[(i + m) % n] ^ xa
        self._idx = 0

    def next_u64(self) -> int:
        if self._idx >= self._N:
            self._twist()
        y = self._mt[self._idx]
        self._idx += 1
        y ^= (y >> 29) & 0x5555_5555_5555_5555
        y ^= (y << 17) & 0x71D6_7FFF_EDA6_0000
        y ^= (y << 37) & 0xFFF7_EEE0_0000_0000
        y ^= y >> 43
        return y & U64_MASK

    __call__ = next_u64


def uniform_distribution_portable(rng: MT19937_64, n: int) -> int:
    """oxen-core tools::uniform_distribution_portable: a uniform value in [0, n)."""
    if n <= 0:
        raise ValueError(f"uniform_distribution_portable needs n > 0, got {n}")
    secure_max = U64_MASK - U64_MASK % n
    while True:
        x = rng.next_u64()
        if x < secure_max:
            return x // (secure_max // n)


# --------------------------------------------------------------------------------------------
# assignment (oxen-core calc_swarm_changes)
# --------------------------------------------------------------------------------------------

def new_swarm_id(ids: Iterable[int]) -> int:
    """oxen-core get_new_swarm_id: midpoint of the largest gap between existing ids (wrapping)."""
    all_ids = sorted(ids)
    if not all_ids:
        return 0
    max_dist = 0
    best = 0
    for idx in range(len(all_ids) - 1):
        dist = all_ids[idx + 1] - all_ids[idx]
        if dist > max_dist:
            max_dist, best = dist, idx
    # 0 and MAX_ID are treated as one apart
    dist = MAX_SWARM_ID - all_ids[-1] + all_ids[0] + 1
    if dist > max_dist:
        max_dist, best = dist, len(all_ids) - 1
    diff = max_dist // 2
    to_max = MAX_SWARM_ID - all_ids[best]
    if diff > to_max:
        return diff - to_max - 1
    return all_ids[best] + diff


class _Calc:
    """State of one calc_swarm_changes run (swarm map kept sorted by id like std::map)."""

    def __init__(self, swarms: dict[int, list[str]], rng: MT19937_64, params: SwarmParams) -> None:
        self.swarms = swarms
        self.rng = rng
        self.min = params.min_swarm_size
        self.margin = params.ideal_swarm_margin
        self.new_size = params.new_swarm_size

    def _ids(self) -> list[int]:
        return sorted(self.swarms)

    def sorted_sizes(self) -> list[tuple[int, int]]:
        """[(swarm_id, size)] by size; equal sizes in ascending id order (see module doc)."""
        return sorted(((sid, len(self.swarms[sid])) for sid in self._ids()), key=lambda e: e[1])

    def excess_pool(self, threshold: int) -> tuple[list[tuple[str, int]], int]:
        """Nodes of swarms larger than `threshold` and their excess Σ(size − MIN)."""
        pool: list[tuple[str, int]] = []
        excess = 0
        if threshold < self.min:
            return pool, excess
        for sid in self._ids():
            members = self.swarms[sid]
            if len(members) > threshold:
                excess += len(members) - self.min
                pool.extend((pk, sid) for pk in members)
        return pool, excess

    def pick(self, pool: list[tuple[str, int]]) -> tuple[str, int]:
        return pool[uniform_distribution_portable(self.rng, len(pool))]

    def total_excess(self) -> int:
        return sum(max(len(m) - self.min, 0) for m in self.swarms.values())

    def create_new_swarms_from_excess(self) -> None:
        if any(len(m) < self.min for m in self.swarms.values()):
            return
        while self.total_excess() >= self.new_size + self.margin * len(self.swarms):
            chosen: list[str] = []
            while len(chosen) < self.new_size:
                pool, _ = self.excess_pool(self.min)
                if not pool:  # cannot happen with validated params; oxen-core logs and gives up
                    return
                pk, sid = self.pick(pool)
                chosen.append(pk)
                self.swarms[sid].remove(pk)
            sid = new_swarm_id(self.swarms)
            if sid in self.swarms:  # oxen-core: "this is a bug!", the new swarm is dropped
                raise AssertionError(f"new swarm id {sid:#x} already exists")
            self.swarms[sid] = chosen

    def assign(self, nodes: list[str], percentile: int) -> None:
        for pk in nodes:
            sizes = self.sorted_sizes()
            pidx = percentile * (len(sizes) - 1) // 100
            pval = sizes[pidx][1]
            upper = len(sizes) - 1
            for i in range(pidx, len(sizes)):
                if sizes[i][1] > pval:
                    upper = i - 1
                    break
            sid = sizes[uniform_distribution_portable(self.rng, upper + 1)][0]
            self.swarms[sid].append(pk)
            self.create_new_swarms_from_excess()

    def robin_hood(self) -> None:
        sizes = self.sorted_sizes()  # snapshot, as in oxen-core
        for sid, size in sizes:
            if size >= self.min:
                break
            poor = self.swarms[sid]
            insufficient = False
            while True:
                pidx = STEALING_SWARM_UPPER_PERCENTILE * (len(sizes) - 1) // 100
                threshold = max(self.min, sizes[pidx][1] - 1)
                pool, excess = self.excess_pool(threshold)
                insufficient = excess < self.min - len(poor)
                if insufficient:
                    break
                pk, from_sid = self.pick(pool)
                self.swarms[from_sid].remove(pk)
                poor.append(pk)
                if len(poor) >= self.min:
                    break
            if insufficient:
                break

    def dissolve_small(self) -> None:
        while len(self.swarms) > 1:
            small = next((sid for sid in self._ids() if len(self.swarms[sid]) < self.min), None)
            if small is None:
                break
            members = self.swarms.pop(small)
            self.assign(members, DECOMMISSIONED_REDISTRIBUTION_LOWER_PERCENTILE)


def block_seed(block_hash: bytes) -> int:
    """The RNG seed of a block: its first 8 bytes as a little-endian u64."""
    if len(block_hash) < 8:
        raise ValueError(f"block hash must have at least 8 bytes, got {len(block_hash)}")
    return int.from_bytes(block_hash[:8], "little")


def assign_swarms(current: Mapping[str, int], active: Iterable[str], block_hash: bytes,
                  params: SwarmParams = PRODUCTION) -> dict[str, int]:
    """New swarm assignment of every active node (oxen-core calc_swarm_changes; see module doc).

    `current`: previous assignment (ed25519 hex -> swarm id); nodes not in `active` are dropped;
    active nodes missing from `current` or mapped to UNASSIGNED_SWARM are new.  Pure function.
    """
    active_sorted = sorted(set(active))
    if not active_sorted:
        return {}
    swarms: dict[int, list[str]] = {}
    unassigned: list[str] = []
    for pk in active_sorted:
        sid = current.get(pk, UNASSIGNED_SWARM)
        if not 0 <= sid <= U64_MASK:
            raise ValueError(f"swarm id of {pk} is not a u64: {sid}")
        if sid == UNASSIGNED_SWARM:
            unassigned.append(pk)
        else:
            swarms.setdefault(sid, []).append(pk)

    calc = _Calc(swarms, MT19937_64(block_seed(block_hash)), params)
    if not calc.swarms:
        calc.swarms[new_swarm_id(())] = []
    calc.assign(unassigned, FILL_SWARM_LOWER_PERCENTILE)
    calc.robin_hood()
    calc.create_new_swarms_from_excess()
    calc.dissolve_small()

    return {pk: sid for sid, members in calc.swarms.items() for pk in members}
