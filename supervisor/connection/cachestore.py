"""``CacheStore``: the client-side cache's entries, bounded, and the reads in flight.

An entry is a raw reply (before redis-py's response callback) under the command
that read it, filed under every key it depends on, and never kept past its
``expires`` (the cache's TTL, or the key's own expiry if sooner). Least recently
used entries go first once ``max_entries`` or ``max_bytes`` is reached.

A read on its way to the server is a ``Fetch``. An invalidation of one of its keys
before its reply is stored spoils it: the reply may predate the write, so it is
returned to its caller and never stored. A flush moves the store to a new
``epoch``, which spoils every read begun before it.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Final

__all__ = ("MISSING", "CacheStore", "Fetch", "estimate")

MISSING: Final = object()

Ident = tuple[Any, ...]

_ENTRY_OVERHEAD = 420
"""Bytes an entry costs beyond its reply and its keys: its record, the command it
answers, its place in the LRU order and in the per-key index, its expiry (measured
with ``tracemalloc`` on CPython 3.11: ``bench/cache.py``)."""


class Fetch:
    __slots__ = ("epoch", "keys", "spoiled", "t0")

    def __init__(self, keys: Sequence[bytes], epoch: int) -> None:
        self.keys = keys
        self.epoch = epoch
        self.spoiled = False


class _Entry:
    __slots__ = ("expires", "keys", "reply", "size")

    def __init__(self, reply: Any, keys: Sequence[bytes], size: int, expires: float) -> None:
        self.reply = reply
        self.keys = keys
        self.size = size
        self.expires = expires


def estimate(value: Any) -> int:
    """Bytes a reply holds, as CPython stores it (close, not exact)."""
    if isinstance(value, (bytes, str)):
        return 33 + len(value)
    if isinstance(value, (list, tuple)):
        return 56 + 8 * len(value) + sum(estimate(v) for v in value)
    if isinstance(value, dict):
        return 64 + 50 * len(value) + sum(estimate(k) + estimate(v) for k, v in value.items())
    if isinstance(value, (set, frozenset)):
        return 216 + 40 * len(value) + sum(estimate(v) for v in value)
    return 32


class CacheStore:
    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Ident, _Entry] = OrderedDict()
        self._by_key: dict[bytes, Ident | set[Ident]] = {}
        """The entries filed under each key: one ident, or a set when several."""
        self._pending: dict[bytes, list[Fetch]] = {}
        self.bytes = 0
        self.epoch = 0
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self.evictions = 0
        self.flushes: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, ident: Ident, now: float) -> Any:
        """The reply stored under ``ident``, or ``MISSING``."""
        entry = self._entries.get(ident)
        if entry is None:
            return MISSING
        if entry.expires <= now:
            self._remove(ident)
            return MISSING
        self._entries.move_to_end(ident)
        return entry.reply

    def begin(self, keys: Sequence[bytes]) -> Fetch:
        fetch = Fetch(keys, self.epoch)
        pending = self._pending
        for key in keys:
            waiting = pending.get(key)
            if waiting is None:
                pending[key] = [fetch]
            else:
                waiting.append(fetch)
        return fetch

    def end(self, fetch: Fetch) -> None:
        pending = self._pending
        for key in fetch.keys:
            waiting = pending.get(key)
            if waiting is None:
                continue
            try:
                waiting.remove(fetch)
            except ValueError:
                continue
            if not waiting:
                del pending[key]

    def put(
        self, fetch: Fetch, ident: Ident, keys: Sequence[bytes], reply: Any, expires: float
    ) -> bool:
        """Store ``reply`` unless an invalidation or a flush came after ``fetch`` began."""
        if fetch.spoiled or fetch.epoch != self.epoch:
            return False
        size = _ENTRY_OVERHEAD + estimate(reply) + 2 * sum(map(len, keys))
        if size > self.max_bytes:
            return False
        if ident in self._entries:
            self._remove(ident)
        self._entries[ident] = _Entry(reply, keys, size, expires)
        self.bytes += size
        by_key = self._by_key
        for key in keys:
            filed = by_key.get(key)
            if filed is None:
                by_key[key] = ident
            elif isinstance(filed, set):
                filed.add(ident)
            elif filed != ident:
                by_key[key] = {filed, ident}
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.evictions += 1
        return True

    def invalidate(self, keys: Iterable[bytes]) -> None:
        """The server (or a write through ``sup.client``) says these keys changed."""
        pending, by_key = self._pending, self._by_key
        for key in keys:
            self.invalidations += 1
            for fetch in pending.get(key, ()):
                fetch.spoiled = True
            filed = by_key.get(key)
            if filed is None:
                continue
            for ident in list(filed) if isinstance(filed, set) else (filed,):
                self._remove(ident)

    def flush(self, cause: str) -> int:
        """Drop every entry and spoil every read in flight; return how many entries went."""
        dropped = len(self._entries)
        self.epoch += 1
        self._entries.clear()
        self._by_key.clear()
        self.bytes = 0
        self.flushes[cause] += 1
        return dropped

    def _remove(self, ident: Ident) -> None:
        entry = self._entries.pop(ident)
        self.bytes -= entry.size
        by_key = self._by_key
        for key in entry.keys:
            filed = by_key.get(key)
            if filed is None:
                continue
            if not isinstance(filed, set):
                if filed == ident:
                    del by_key[key]
                continue
            filed.discard(ident)
            if len(filed) <= 1:
                if filed:
                    by_key[key] = next(iter(filed))
                else:
                    del by_key[key]
