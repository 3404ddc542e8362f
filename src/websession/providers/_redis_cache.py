"""Client-side caching for the Redis providers: a bounded cache of session records kept
true by Redis's server-assisted invalidation (``CLIENT TRACKING``, Redis 6+).

One background thread per provider holds one *tracking connection*: it registers
``CLIENT TRACKING ON REDIRECT <itself> BCAST PREFIX <key_prefix>`` and subscribes to
``__redis__:invalidate``, so the server tells it the name of every key under the prefix
that anyone changes (a write, a delete, an expiry, a flush), in the order the server ran
them. It needs nothing from the data connections (no per-connection tracking, nothing to
redo when a pool reconnects), which is why broadcast mode is used: every process hears
of every session write, a few dozen bytes each.

What the cache guarantees (:class:`RecordCache`):

* A hit is served only while the tracking connection is known alive: it answered within
  :data:`LEASE` seconds (it is pinged every :data:`PING_INTERVAL`). A lost or silent
  connection, a reconnect, a failover (Sentinel kills its clients) or a ``FLUSHALL``
  flushes the cache, and nothing is cached again until tracking is re-established.
* A result (a read, or this process's own successful write) enters the cache only if no
  invalidation of that key arrived while its command was in flight and no other command
  on that key from this process overlapped it; otherwise the key is evicted. So an
  invalidation processed before the result can never be lost behind it.
* This process's own writes invalidate its cache too (broadcast mode cannot tell who
  wrote). Each successful write therefore *expects* one invalidation: the next one for
  that key is taken as its own echo. Invalidations arrive in the order the server ran the
  writes, and a write is counted only when none for the key arrived during its flight,
  so the echo is always for a write at or before the cached one; any doubt evicts.
* A stale entry can never lose an update: writes are compare-and-set on the version, a
  conflict evicts the key, and the engine's re-read then goes to the server.

Bounded by entries and bytes (least recently used goes first); :meth:`RecordCache.stats`
counts hits, misses, fills, evictions, invalidations and resets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .base import Record

__all__ = ["LEASE", "PING_INTERVAL", "CacheSettings", "RecordCache", "Tracker"]

log = logging.getLogger("websession")

#: Seconds between pings of an otherwise quiet tracking connection.
PING_INTERVAL = 0.5
#: A hit needs the tracking connection to have been heard from this recently (seconds):
#: the most a silently dead connection can leave the cache serving.
LEASE = 2.0
#: What an entry costs beyond its payload and key (the record, the dict slot), in bytes.
_ENTRY_OVERHEAD = 200
_CHANNEL = "__redis__:invalidate"


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The ``client_cache`` options: whether to cache, and the cache's bounds."""

    enabled: bool = True
    max_entries: int = 10_000
    max_bytes: int = 64 * 1024 * 1024


class _Entry:
    """A cached record, its idle span (ms), its cost in bytes, and how many invalidations
    of this process's own writes are still to come for it."""

    __slots__ = ("expect", "record", "refresh_at", "size")

    def __init__(self, record: Record, span: int, size: int, expect: int) -> None:
        self.record = record
        # The server's read moves the deadline once a tenth of the span has passed; from
        # then on a read must go to the server.
        self.refresh_at = record.expires_at - (span - span // 10) / 1000
        self.size = size
        self.expect = expect


class _Flight:
    """Commands of this process on one key, in flight: whether another overlapped them,
    and how many invalidations of the key arrived meanwhile."""

    __slots__ = ("clean", "count", "seen")

    def __init__(self) -> None:
        self.count = 1
        self.clean = True
        self.seen = 0


class RecordCache:
    """Session records this process read or wrote, kept true by invalidations.

    The request path calls :meth:`get` (a hit, or ``None``), :meth:`begin` before a
    command on a key and :meth:`finish` after it; the :class:`Tracker` calls
    :meth:`invalidate`, :meth:`opened` and :meth:`lost`.
    """

    def __init__(self, settings: CacheSettings) -> None:
        self.max_entries = settings.max_entries
        self.max_bytes = settings.max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._bytes = 0
        self._live = False
        #: monotonic time the tracking connection was last heard from.
        self.heard = 0.0
        self.hits = self.misses = self.fills = self.evictions = 0
        self.invalidations = self.resets = 0

    # -- the request path -----------------------------------------------------------------

    def get(self, key: str) -> Record | None:
        """The cached live record under ``key`` whose idle refresh is not yet due; else
        ``None`` (read from the server)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not self._live or time.monotonic() - self.heard > LEASE:
                self.misses += 1
                return None
            if time.time() >= entry.refresh_at:  # refresh due (or past the deadline)
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.record

    def begin(self, key: str) -> _Flight | None:
        """Note a command on ``key`` about to be sent; pass the result to :meth:`finish`."""
        with self._lock:
            if not self._live:
                return None
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
            else:  # two commands of ours on one key at once: trust neither result
                flight.count += 1
                flight.clean = False
            return flight

    def finish(self, key: str, flight: _Flight | None, record: Record | None = None,
               span: int = 0, wrote: bool = False) -> None:
        """The command on ``key`` begun with ``flight`` is over: cache ``record`` (the
        server's state after it; ``None``: unknown or absent) if nothing interfered, else
        evict the key. ``wrote``: the command changed the key (an echo will come)."""
        if flight is None:
            return
        with self._lock:
            if self._flights.get(key) is not flight:  # the cache was reset meanwhile
                return
            flight.count -= 1
            if not flight.count:
                del self._flights[key]
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            # Invalidations arrive in the order the server ran the writes. One that came
            # during a read may be for a later write: the result is not trusted. During a
            # write of ours, the first may be its own echo (or an earlier write's), never
            # a later write's, which would come after the echo: a second is not trusted.
            seen = flight.seen
            if record is None or not flight.clean or seen > wrote:
                if old is not None:
                    self.evictions += 1
                return
            # A write's echo is still to come unless one arrived meanwhile (then the next
            # one evicts, whatever it is: never trust an echo that may have gone by); the
            # echoes of earlier writes still to come precede it.
            expect = (old.expect if old is not None else 0) + wrote - seen
            size = len(record.payload) + len(key) + _ENTRY_OVERHEAD
            self._entries[key] = _Entry(record, span, size, expect)
            self._bytes += size
            self.fills += 1
            self._trim()

    def discard(self, key: str) -> None:
        """Forget ``key`` (a conflict: the engine's re-read must go to the server)."""
        with self._lock:
            self._evict(key)

    def _evict(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
            self.evictions += 1

    def _trim(self) -> None:
        entries = self._entries
        while len(entries) > self.max_entries or self._bytes > self.max_bytes:
            _, old = entries.popitem(last=False)
            self._bytes -= old.size
            self.evictions += 1

    # -- the tracking connection's side ---------------------------------------------------

    def invalidate(self, keys: Iterable[str] | None) -> None:
        """Someone changed ``keys`` (``None``: the whole database was flushed)."""
        with self._lock:
            self.heard = time.monotonic()
            if keys is None:
                self._reset(self._live)
                return
            flights = self._flights
            for key in keys:
                self.invalidations += 1
                entry = self._entries.get(key)
                if entry is not None and entry.expect:
                    # The echo of a write of ours at or before the cached record (so,
                    # too, for a command in flight: it began after that record).
                    entry.expect -= 1
                    continue
                flight = flights.get(key)
                if flight is not None:
                    flight.seen += 1
                self._evict(key)

    def alive(self) -> None:
        """The tracking connection answered."""
        self.heard = time.monotonic()

    def opened(self) -> None:
        """Tracking is (re-)established: start empty, and cache from now on."""
        with self._lock:
            self.heard = time.monotonic()
            self._reset(True)

    def lost(self) -> None:
        """Tracking is lost: flush, and cache nothing until it is back."""
        with self._lock:
            self._reset(False)

    def _reset(self, live: bool) -> None:
        self.resets += 1
        self._entries.clear()
        self._flights.clear()  # results in flight are not trusted either
        self._bytes = 0
        self._live = live

    @property
    def live(self) -> bool:
        """Whether the cache is in use (tracking established and recently heard from)."""
        return self._live and time.monotonic() - self.heard <= LEASE

    def stats(self) -> dict[str, int | float | bool]:
        """Hits, misses, hit rate, fills, evictions, invalidations, resets, and the
        current entries and bytes."""
        with self._lock:
            lookups = self.hits + self.misses
            return {
                "live": self.live, "hits": self.hits, "misses": self.misses,
                "hit_rate": self.hits / lookups if lookups else 0.0, "fills": self.fills,
                "evictions": self.evictions, "invalidations": self.invalidations,
                "resets": self.resets, "entries": len(self._entries),
                "bytes": self._bytes,
            }


class Tracker:
    """The background thread holding a cache's tracking connection: it connects, registers
    broadcast tracking of ``prefix``, applies invalidations, pings a quiet connection, and
    on any failure flushes the cache and reconnects.

    ``connect`` returns a new, connected redis-py (blocking) ``Connection`` to the server
    the data goes to (for Sentinel, the current master); ``target`` names that server,
    and is asked again at every ping: when it changes (a failover), tracking starts over
    on the new one.
    """

    def __init__(self, cache: RecordCache, connect: Callable[[], Any], prefix: str,
                 target: Callable[[], Any]) -> None:
        self.cache = cache
        self._connect = connect
        self._target = target
        self._prefix = prefix
        self._stop = threading.Event()
        self._connection: Any = None
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="websession-redis-tracking",
                                        daemon=True)
        self._thread.start()

    @property
    def current(self) -> bool:
        """Whether this tracker runs in this process (a fork leaves a thread behind)."""
        return self._pid == os.getpid()

    def stop(self) -> None:
        """Stop the thread and close its connection; the cache is flushed."""
        self._stop.set()
        self.cache.lost()
        _disconnect(self._connection)

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            try:
                self._track()
                delay = 0.05
            except Exception as exc:
                self.cache.lost()
                if not self._stop.is_set():
                    log.debug("redis client-side cache: tracking lost (%s)", exc)
            finally:
                connection, self._connection = self._connection, None
                _disconnect(connection)
            self._stop.wait(delay)
            delay = min(delay * 2, 1.0)

    def _track(self) -> None:
        target = self._target()
        connection = self._connection = self._connect()
        if self._stop.is_set():
            return
        cache = self.cache
        connection.send_command("CLIENT", "ID")
        client_id = connection.read_response()
        connection.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST",
                                "PREFIX", self._prefix)
        connection.read_response()
        connection.send_command("SUBSCRIBE", _CHANNEL)
        connection.read_response()
        cache.opened()
        while not self._stop.is_set():
            if connection.can_read(timeout=PING_INTERVAL):
                message = connection.read_response()
                if _text(message[0]) == "message":
                    keys = message[2]
                    cache.invalidate(None if keys is None else [_text(k) for k in keys])
                else:  # a pong
                    cache.alive()
            elif time.monotonic() - cache.heard > LEASE:
                raise ConnectionError("the tracking connection stopped answering")
            elif self._target() != target:
                raise ConnectionError("the master changed")
            else:
                connection.send_command("PING")


def _disconnect(connection: Any) -> None:
    if connection is not None:
        with contextlib.suppress(Exception):  # closing: nothing to report
            connection.disconnect()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
