"""Client-side caching for the Redis providers: a bounded cache of session records kept
true by Redis's server-assisted invalidation (``CLIENT TRACKING``, Redis 6+).

Each provider has one *tracking connection*, registered with ``CLIENT TRACKING ON
REDIRECT <itself> BCAST PREFIX <key_prefix>`` and subscribed to
``__redis__:invalidate``: the server sends it the name of every key under the prefix
that anyone changes (a write, a delete, an expiry, a flush), in the order it ran them.
Broadcast mode needs nothing from the data connections (no per-connection tracking to
redo when a pool reconnects); the price is that every process hears of every session
write, a few dozen bytes each.

Invalidations are applied on the request path: before a lookup, the cache reads what
the tracking socket holds (a non-blocking ``poll`` and ``recv``: no thread to wake per
message), so an invalidation that has reached this machine is applied before any hit.
A background thread only connects, pings a quiet connection every
:data:`PING_INTERVAL` (applying what came meanwhile) and reconnects.

What the cache guarantees (:class:`RecordCache`):

* A hit is served only while the tracking connection is known alive: it answered within
  :data:`LEASE` seconds. A closed or silent connection, a reconnect, a failover (the
  master the sentinels name changed) or a ``FLUSHALL`` flushes the cache, and nothing
  is cached again until tracking is re-established.
* A result (a read, or this process's own successful write) enters the cache only if no
  other command of this process on that key overlapped it and no invalidation that
  could be for a later change arrived while it was in flight; otherwise the key is
  evicted. An invalidation applied before a result can never be lost behind it.
* This process's own writes invalidate its cache too (broadcast mode cannot tell who
  wrote). A write that got no invalidation of its key during its flight therefore
  *expects* one: the next for that key is taken as its echo. Invalidations arrive in the
  order the server ran the writes, so the echo is for a write at or before the cached
  one; whenever that is not certain, the key is evicted instead.
* A stale entry can never lose an update: writes are compare-and-set on the version, a
  conflict evicts the key, and the engine's re-read then goes to the server.

Bounded by entries and bytes (least recently used goes first); :meth:`RecordCache.stats`
counts hits, misses, fills, evictions, invalidations and resets.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .._plans import Plan
from .base import Record

__all__ = ["LEASE", "PING_INTERVAL", "CacheSettings", "CachedPlans", "Commands", "RecordCache",
           "Tracker"]

T = TypeVar("T")

log = logging.getLogger("websession")

#: Seconds between pings of the tracking connection (and reads of it, if no request
#: reads it meanwhile).
PING_INTERVAL = 0.5
#: A hit needs the tracking connection to have been heard from this recently (seconds):
#: the most a silently dead connection can leave the cache serving.
LEASE = 2.0
#: What an entry costs beyond its payload and key (the record, the dict slot), in bytes.
_ENTRY_OVERHEAD = 200
_CHANNEL = b"__redis__:invalidate"
_PING = b"*1\r\n$4\r\nPING\r\n"
_INCOMPLETE: Any = object()
#: How every invalidation begins: a pub/sub message on the channel, then the key array.
_INVALIDATE = b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n" % (len(_CHANNEL), _CHANNEL)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """The ``client_cache`` options: whether to cache, and the cache's bounds."""

    enabled: bool = True
    max_entries: int = 10_000
    max_bytes: int = 64 * 1024 * 1024


class _Entry:
    """A cached record, when its idle refresh is due, its cost in bytes, and how many
    invalidations of this process's own writes are still to come for it."""

    __slots__ = ("expect", "record", "refresh_at", "size")

    def __init__(self, record: Record, refresh_at: float, size: int, expect: int) -> None:
        self.record = record
        # From then on the server's read moves the deadline: a read must go to it.
        self.refresh_at = refresh_at
        self.size = size
        self.expect = expect


class _Due:
    """The type of :data:`DUE`."""

    __slots__ = ()


#: What :meth:`RecordCache.get` answers for a cached record whose idle refresh is due.
DUE = _Due()


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
    command on a key and :meth:`finish` after it. The :class:`Tracker` hands it the
    tracking socket (:meth:`opened`), and calls :meth:`tick` and :meth:`lost`.
    """

    def __init__(self, settings: CacheSettings) -> None:
        self.max_entries = settings.max_entries
        self.max_bytes = settings.max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._bytes = 0
        # The tracking socket once handed over (non-blocking), its poller and what was
        # read of it but not yet parsed; None while tracking is not established.
        self._sock: Any = None
        self._poll: Any = None
        self._buffer = bytearray()
        self._wake: Callable[[], None] = _nothing
        #: monotonic time the tracking connection was last heard from.
        self.heard = 0.0
        self.hits = self.misses = self.fills = self.evictions = 0
        self.invalidations = self.resets = 0

    # -- the request path -----------------------------------------------------------------

    def get(self, key: str) -> Record | _Due | None:
        """The cached live record under ``key`` whose idle refresh is not yet due;
        :data:`DUE` if its refresh is due (the server's read must move the deadline);
        else ``None`` (read from the server)."""
        with self._lock:
            if self._sock is None:
                self.misses += 1
                return None
            if self._poll.poll(0) or self._buffer:
                self._drain()
            entry = self._entries.get(key)
            if entry is None or time.monotonic() - self.heard > LEASE:
                self.misses += 1
                return None
            if time.time() >= entry.refresh_at:
                self.misses += 1
                return DUE
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.record

    def begin(self, key: str) -> _Flight | None:
        """Note a command on ``key`` about to be sent; pass the result to :meth:`finish`."""
        with self._lock:
            if self._sock is None:
                return None
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
            else:  # two commands of ours on one key at once: trust neither result
                flight.count += 1
                flight.clean = False
            return flight

    def finish(self, key: str, flight: _Flight | None, record: Record | None = None,
               refresh_at: float = 0.0, wrote: bool = False) -> None:
        """The command on ``key`` begun with ``flight`` is over: cache ``record`` (the
        server's state after it; ``None``: unknown or absent) if nothing interfered, else
        evict the key. ``refresh_at``: when a read of it must go to the server again (its
        idle refresh is due). ``wrote``: the command changed the key (an echo will come)."""
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
            self._entries[key] = _Entry(record, refresh_at, size, expect)
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

    def opened(self, sock: Any, wake: Callable[[], None]) -> None:
        """Tracking is (re-)established on ``sock`` (already subscribed): start empty,
        read invalidations from it, and cache from now on. ``wake`` asks the tracker to
        reconnect at once (called when the socket is found closed)."""
        sock.setblocking(False)
        poll = select.poll()
        poll.register(sock, select.POLLIN)
        with self._lock:
            self._reset()
            self._sock, self._poll, self._wake = sock, poll, wake
            self.heard = time.monotonic()

    def tick(self, sock: Any) -> bool:
        """Read what ``sock`` holds and ping it; ``False`` if it is no longer the live
        tracking socket (lost, or silent past the lease)."""
        with self._lock:
            if self._sock is not sock:
                return False
            self._drain()
            if self._sock is not sock:
                return False
            if time.monotonic() - self.heard > LEASE:
                self._lose()
                return False
            try:
                sock.send(_PING)
            except (OSError, ssl.SSLError):
                self._lose()
                return False
            return True

    def lost(self, sock: Any = None) -> None:
        """Tracking on ``sock`` (any, if ``None``) is over: flush, and cache nothing until
        it is back."""
        with self._lock:
            if sock is None or self._sock is sock:
                self._lose()

    def _drain(self) -> None:
        # The lock is held. Read and apply every whole message the socket holds.
        sock, buffer = self._sock, self._buffer
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                break
            except (OSError, ssl.SSLError):
                data = b""
            if not data:  # closed: everything cached may have changed unseen
                self._lose()
                return
            buffer += data
            if len(data) < 65536 and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                break
        position = 0
        try:
            while True:
                message, end = _parse(buffer, position)
                if message is _INCOMPLETE:
                    break
                position = end
                self._message(message)
        except (ValueError, IndexError):  # not the protocol: start over
            self._lose()
            return
        del buffer[:position]

    def _message(self, message: Any) -> None:
        self.heard = time.monotonic()
        if isinstance(message, list) and message and message[0] == b"message":
            keys = message[2]
            if keys is None:  # FLUSHALL / FLUSHDB: tracking goes on
                self._reset()
            else:
                self._invalidate([key.decode() for key in keys])
        # Anything else is a pong: heard.

    def _invalidate(self, keys: Iterable[str]) -> None:
        flights = self._flights
        for key in keys:
            self.invalidations += 1
            entry = self._entries.get(key)
            if entry is not None and entry.expect:
                # The echo of a write of ours at or before the cached record (so, too,
                # for a command in flight: it began after that record was cached).
                entry.expect -= 1
                continue
            flight = flights.get(key)
            if flight is not None:
                flight.seen += 1
            self._evict(key)

    def _lose(self) -> None:
        self._reset()
        self._sock = self._poll = None
        self._buffer.clear()
        wake, self._wake = self._wake, _nothing
        wake()

    def _reset(self) -> None:
        self.resets += 1
        self._entries.clear()
        self._flights.clear()  # results in flight are not trusted either
        self._bytes = 0

    @property
    def live(self) -> bool:
        """Whether the cache is in use (tracking established and recently heard from)."""
        return self._sock is not None and time.monotonic() - self.heard <= LEASE

    def stats(self) -> dict[str, int | float | bool]:
        """Hits, misses, hit rate, fills, evictions, invalidations, resets (flushes), and
        the current entries and bytes."""
        with self._lock:
            if self._sock is not None:
                self._drain()
            lookups = self.hits + self.misses
            return {
                "live": self.live, "hits": self.hits, "misses": self.misses,
                "hit_rate": self.hits / lookups if lookups else 0.0, "fills": self.fills,
                "evictions": self.evictions, "invalidations": self.invalidations,
                "resets": self.resets, "entries": len(self._entries),
                "bytes": self._bytes,
            }


def _nothing() -> None:
    pass


def _parse(buffer: bytearray, position: int) -> tuple[Any, int]:
    """One RESP2 value from ``buffer`` at ``position``: ``(value, end)``, or
    ``(_INCOMPLETE, position)`` until the whole value is there. Only what a subscribed
    connection receives: arrays, bulk strings, integers, simple strings."""
    if buffer.startswith(_INVALIDATE, position):  # nearly every message: a flat loop
        keys = _bulk_strings(buffer, position + len(_INVALIDATE))
        if keys is not None:
            return keys, keys[-1]
    end = buffer.find(b"\r\n", position)
    if end < 0:
        return _INCOMPLETE, position
    kind, line, start = buffer[position], bytes(buffer[position + 1:end]), end + 2
    if kind == 42:  # *: an array
        count = int(line)
        if count < 0:
            return None, start
        items = []
        for _ in range(count):
            item, start = _parse(buffer, start)
            if item is _INCOMPLETE:
                return _INCOMPLETE, position
            items.append(item)
        return items, start
    if kind == 36:  # $: a bulk string
        size = int(line)
        if size < 0:
            return None, start
        if len(buffer) < start + size + 2:
            return _INCOMPLETE, position
        return bytes(buffer[start:start + size]), start + size + 2
    if kind in (43, 58):  # + or :
        return line, start
    raise ValueError(f"unexpected reply {bytes(buffer[position:end])!r}")


class Tracker:
    """The background thread that establishes a cache's tracking connection, pings it,
    and reconnects (the cache flushed) whenever it is lost.

    ``connect`` returns a new, connected redis-py (blocking, RESP2) ``Connection`` to
    the server the data goes to (for Sentinel, the current master); ``target`` names that
    server, and is asked again at every ping: when it changes (a failover), tracking
    starts over on the new one. The connection's socket is handed to the cache once
    subscribed (redis-py has read nothing on it beyond its own hand-shake's replies).
    """

    def __init__(self, cache: RecordCache, connect: Callable[[], Any], prefix: str,
                 target: Callable[[], Any]) -> None:
        self.cache = cache
        self._connect = connect
        self._target = target
        self._prefix = prefix.encode()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="websession-redis-tracking",
                                        daemon=True)
        self._thread.start()

    @property
    def current(self) -> bool:
        """Whether this tracker runs in this process (a fork leaves a thread behind)."""
        return self._pid == os.getpid()

    def stop(self) -> None:
        """Stop the thread (its connection closed) and flush the cache."""
        self._stop.set()
        self._wake.set()
        self.cache.lost()

    def _run(self) -> None:
        delay = 0.05
        while not self._stop.is_set():
            connection: Any = None
            sock: Any = None
            try:
                target = self._target()
                connection = self._connect()
                sock = connection._sock  # redis-py has no public name for it
                _subscribe(sock, self._prefix)
                if self._stop.is_set():
                    break
                self._wake.clear()
                self.cache.opened(sock, self._wake.set)
                delay = 0.05
                while not self._stop.is_set():
                    self._wake.wait(PING_INTERVAL)
                    if self._target() != target:
                        log.info("redis client-side cache: the master changed, flushed")
                        break
                    if not self.cache.tick(sock):
                        break
            except Exception as exc:  # any failure: flush and reconnect
                if not self._stop.is_set():
                    log.debug("redis client-side cache: tracking lost (%s)", exc)
            finally:
                self.cache.lost(sock)
                if connection is not None:
                    with contextlib.suppress(Exception):  # closing: nothing to report
                        connection.disconnect()
            self._stop.wait(delay)
            delay = min(delay * 2, 1.0)


def _bulk_strings(buffer: bytearray, position: int) -> list[Any] | None:
    """After an invalidation's head: ``[b"message", channel, keys, end]`` if its key
    array is whole and flat, else ``None`` (the general parser decides)."""
    end = buffer.find(b"\r\n", position)
    if end < 0 or buffer[position] != 42:
        return None
    count = int(buffer[position + 1:end])
    keys: list[bytes] = []
    start = end + 2
    for _ in range(count):
        end = buffer.find(b"\r\n", start)
        if end < 0 or buffer[start] != 36:
            return None
        size = int(buffer[start + 1:end])
        start = end + 2
        if size < 0 or len(buffer) < start + size + 2:
            return None
        keys.append(bytes(buffer[start:start + size]))
        start += size + 2
    return [b"message", _CHANNEL, keys, start]


def _subscribe(sock: Any, prefix: bytes) -> None:
    """Register broadcast tracking of ``prefix`` redirected to this connection itself, and
    subscribe it to the invalidations (blocking, on the connection's own timeout)."""
    buffer = bytearray()

    def reply() -> Any:
        while True:
            value, end = _parse(buffer, 0)
            if value is not _INCOMPLETE:
                del buffer[:end]
                return value
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed during the tracking hand-shake")
            buffer.extend(data)

    sock.sendall(_command(b"CLIENT", b"ID"))
    client_id = reply()
    sock.sendall(_command(b"CLIENT", b"TRACKING", b"ON", b"REDIRECT", client_id, b"BCAST",
                          b"PREFIX", prefix))
    if reply() != b"OK":  # an error reply does not parse: ValueError
        raise ConnectionError("CLIENT TRACKING was refused")
    sock.sendall(_command(b"SUBSCRIBE", _CHANNEL))
    reply()
    if buffer:
        raise ConnectionError("unexpected data after the tracking hand-shake")


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p)
                                             for p in parts)


# -- the primitives' plans, with the cache in front -------------------------------------------


@dataclass(frozen=True, slots=True)
class Commands:
    """A Redis provider's uncached plans and value format, for :class:`CachedPlans` to
    wrap: the read's raw reply, the record and idle span (ms) in it, when a record's idle
    refresh is due (given its deadline and span), the TTL (ms) of a deadline, and the
    writes (``create``/``update`` given the TTL they store with)."""

    read_reply: Callable[[str, bool], Plan[Any]]
    record_of: Callable[[Any], Record | None]
    span_of: Callable[[Any], int]
    refresh_at: Callable[[float, int], float]
    ttl_of: Callable[[float], int]
    create: Callable[[str, Record, int], Plan[bool]]
    update: Callable[[str, Record, int, int], Plan[bool]]
    touch: Callable[[str, float], Plan[bool]]
    delete: Callable[[str], Plan[None]]


class CachedPlans:
    """The primitives' plans with a client-side cache in front: a hit is a plan that
    sends nothing; every command on a key is a flight the cache checks before trusting
    its result. Tracking starts on first use, in this process (a fork starts its own,
    with an empty cache); ``connect`` and ``target`` are :class:`Tracker`'s."""

    def __init__(self, settings: CacheSettings, commands: Commands, prefix: str,
                 connect: Callable[[], Any], target: Callable[[], Any]) -> None:
        self.settings = settings
        self._commands = commands
        self._prefix = prefix
        self._connect = connect
        self._target = target
        self._tracker: Tracker | None = None

    def cache(self) -> RecordCache:
        """The running cache, tracking started (again, after a fork) if need be."""
        tracker = self._tracker
        if tracker is None or not tracker.current:
            # Racing first uses may each start one: the last wins, the others stop.
            tracker = Tracker(RecordCache(self.settings), self._connect, self._prefix,
                              self._target)
            previous, self._tracker = self._tracker, tracker
            if previous is not None and previous.current:
                previous.stop()
        return tracker.cache

    def stop(self) -> None:
        """Stop tracking (the cache is flushed); the next use starts it again."""
        tracker, self._tracker = self._tracker, None
        if tracker is not None and tracker.current:
            tracker.stop()

    def read(self, key: str) -> Plan[Record | None]:
        """A hit, or the read script with its result cached."""
        cache = self.cache()
        hit = cache.get(key)
        if isinstance(hit, Record):
            return hit
        flight = cache.begin(key)
        cached: tuple[Record | None, float, bool] = (None, 0.0, False)
        commands = self._commands
        try:
            # A copy whose refresh is due: the read script at once, not a GET first.
            reply = yield from commands.read_reply(key, hit is DUE)
            record = commands.record_of(reply)
            if record is not None:
                # A read that moved the deadline wrote the key: its echo will come.
                refreshed = record.refreshed
                due = commands.refresh_at(record.expires_at, commands.span_of(reply))
                cached = (record._replace(refreshed=False), due, refreshed)
            return record
        finally:
            cache.finish(key, flight, *cached)

    def create(self, key: str, record: Record) -> Plan[bool]:
        """``SET NX``; what it stored is cached."""
        ttl = self._commands.ttl_of(record.expires_at)
        return self._write(key, record, ttl, self._commands.create(key, record, ttl))

    def update(self, key: str, record: Record, expected_version: int) -> Plan[bool]:
        """The compare-and-set; what it stored is cached, a conflict evicts the key."""
        ttl = self._commands.ttl_of(record.expires_at)
        return self._write(key, record, ttl,
                           self._commands.update(key, record, expected_version, ttl))

    def touch(self, key: str, expires_at: float) -> Plan[bool]:
        """The touch script; the key is evicted."""
        return self._write(key, None, 0, self._commands.touch(key, expires_at))

    def delete(self, key: str) -> Plan[None]:
        """``DEL``; the key is evicted."""
        yield from self._write(key, None, 0, self._commands.delete(key))

    def _write(self, key: str, record: Record | None, ttl: int,
               plan: Plan[T]) -> Plan[T]:
        cache = self.cache()
        flight = cache.begin(key)
        stored = False
        try:
            result = yield from plan
            stored = bool(result)
            return result
        finally:
            due = 0.0 if record is None else self._commands.refresh_at(record.expires_at, ttl)
            cache.finish(key, flight, record if stored else None, due, stored)
