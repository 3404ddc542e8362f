"""The memory provider: sessions in this process, for development, tests and single-process
servers. Thread-safe, and safe from an event loop since no primitive blocks."""

from __future__ import annotations

import heapq
import threading
import time
from collections import OrderedDict
from typing import Any

from ..exceptions import ConfigurationError
from .base import BaseProvider, Page, Record, parse_options

__all__ = ["MemoryProvider"]


class MemoryProvider(BaseProvider):
    """Sessions in a dict, with an expiry heap and an optional LRU bound.

    ``providerConfig`` may set ``maxSessions``: past it, the least recently used session is
    evicted. GC pops expired entries off a heap, so its cost follows the number of expired
    sessions, not the number of sessions.
    """

    blocking = False

    def __init__(self, max_sessions: int = 0) -> None:
        self.max_sessions = max_sessions
        self._records: OrderedDict[str, Record] = OrderedDict()
        # (expires_at, sid); an entry whose time no longer matches the record is stale.
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        # The user index: each bound session's user, and each user's sessions in the
        # order they were bound (a dict keeps insertion order: oldest first).
        self._bound: dict[str, str] = {}
        self._by_user: dict[str, dict[str, None]] = {}

    def configure(self, config: Any) -> None:
        """Read ``maxSessions`` (0 means unbounded) from ``providerConfig``."""
        options = parse_options(config, {"max_sessions": int}, provider="memory")
        max_sessions = options.get("max_sessions", self.max_sessions)
        if max_sessions < 0:  # the LRU bound would then evict every session at once
            raise ConfigurationError(
                f"providerConfig for 'memory': maxSessions must be 0 (unbounded) or more, "
                f"not {max_sessions}",
                key="maxSessions",
            )
        self.max_sessions = max_sessions

    def _live(self, sid: str, now: float) -> Record | None:
        record = self._records.get(sid)
        if record is None:
            return None
        if record.expires_at <= now:
            self._drop(sid)
            return None
        return record

    def _drop(self, sid: str) -> None:
        """Remove a record and its place in the user index (the lock is held)."""
        self._records.pop(sid, None)
        if self._bound:
            self._unbind(sid)

    def _unbind(self, sid: str) -> None:
        user = self._bound.pop(sid, None)
        if user is not None:
            sessions = self._by_user[user]
            del sessions[sid]
            if not sessions:
                del self._by_user[user]

    def _put(self, sid: str, record: Record, previous: Record | None) -> None:
        self._records[sid] = record
        if self.max_sessions:
            self._records.move_to_end(sid)
        # A session's deadline only moves later, so its heap entry may lag behind: GC
        # re-files an entry it finds early. Only a new record, or an earlier deadline,
        # needs an entry now; a write of a busy session costs no heap work.
        if previous is None or record.expires_at < previous.expires_at:
            heapq.heappush(self._heap, (record.expires_at, sid))
            if len(self._heap) > 2 * len(self._records) + 64:
                self._heap = [(r.expires_at, k) for k, r in self._records.items()]
                heapq.heapify(self._heap)
        if self.max_sessions and len(self._records) > self.max_sessions:
            self._drop(next(iter(self._records)))

    def _collect(self, now: float, ids: list[str] | None = None) -> int:
        removed = 0
        heap, records = self._heap, self._records
        while heap and heap[0][0] <= now:
            _, sid = heapq.heappop(heap)
            record = records.get(sid)
            if record is None:
                continue  # deleted or evicted earlier
            if record.expires_at <= now:
                self._drop(sid)
                removed += 1
                if ids is not None:
                    ids.append(sid)
            else:
                heapq.heappush(heap, (record.expires_at, sid))  # refreshed since filed
        return removed

    def read(self, sid: str) -> Record | None:
        """Return the live record, marking it recently used."""
        record = self._records.get(sid)  # a dict read is atomic: no lock needed to look
        if record is None:
            return None
        if record.expires_at <= time.time():
            with self._lock:
                self._live(sid, time.time())
            return None
        if self.max_sessions:
            with self._lock:
                if sid in self._records:
                    self._records.move_to_end(sid)
        return record

    def create(self, sid: str, record: Record) -> bool:
        """Insert unless a live record has this ID."""
        with self._lock:
            if self._live(sid, time.time()) is not None:
                return False
            self._put(sid, record, None)
            return True

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        """Replace the live record if its version matches."""
        # acquire/release, not ``with``: every save runs this, and on CPython 3.11 a with
        # statement (which looks up and calls __enter__ and __exit__) costs 2.5 times as much.
        lock = self._lock
        lock.acquire()
        try:
            current = self._records.get(sid)
            if (
                current is None
                or current.version != expected_version
                or current.expires_at <= time.time()
            ):
                return False
            self._put(sid, record, current)
            return True
        finally:
            lock.release()

    def touch(self, sid: str, expires_at: float) -> bool:
        """Move the live record's expiry."""
        with self._lock:
            current = self._live(sid, time.time())
            if current is None:
                return False
            self._put(sid, Record(current.payload, expires_at, current.version), current)
            return True

    def delete(self, sid: str) -> None:
        """Remove the record."""
        with self._lock:
            self._drop(sid)

    def count(self) -> int:
        """Count live sessions: expired ones are collected first, then ``len``."""
        with self._lock:
            self._collect(time.time())
            return len(self._records)

    def gc(self) -> int:
        """Remove expired sessions."""
        with self._lock:
            return self._collect(time.time())

    def gc_ids(self) -> list[str]:
        """Remove expired sessions; return their IDs."""
        ids: list[str] = []
        with self._lock:
            self._collect(time.time(), ids)
        return ids

    def scan(self, cursor: str | None, batch: int) -> Page:
        """Keyset pagination over the dict in ID order: the next ``batch`` IDs after the
        cursor (the last ID returned), found in one pass without sorting everything."""
        now = time.time()
        with self._lock:
            records = self._records
            after = (sid for sid in records if cursor is None or sid > cursor)
            chosen = heapq.nsmallest(batch, after)
            page = [(sid, records[sid]) for sid in chosen]
        live = [(sid, record) for sid, record in page if record.expires_at > now]
        return Page(live, chosen[-1] if len(chosen) == batch else None)

    def bind(self, sid: str, user: str | None, cap: int) -> list[str]:
        """Index ``sid`` under ``user`` and evict that user's oldest beyond ``cap``, all
        under the lock."""
        with self._lock:
            now = time.time()
            if self._live(sid, now) is None:
                return []
            if self._bound.get(sid) == user:
                return []  # already bound: keeps its place in the order
            self._unbind(sid)
            if user is None:
                return []
            self._bound[sid] = user
            sessions = self._by_user.setdefault(user, {})
            sessions[sid] = None
            live = [other for other in list(sessions) if self._live(other, now) is not None]
            evicted = live[:-cap] if 0 < cap < len(live) else []
            for other in evicted:
                self._drop(other)
            return evicted

    def sessions_of(self, user: str) -> list[tuple[str, Record]]:
        """The user's live sessions, oldest binding first."""
        with self._lock:
            now = time.time()
            records = ((sid, self._live(sid, now)) for sid in list(self._by_user.get(user, ())))
            return [(sid, record) for sid, record in records if record is not None]

    def revoke_user(self, user: str, keep: str | None) -> list[str]:
        """Delete the user's sessions except ``keep``."""
        with self._lock:
            doomed = [sid for sid in self._by_user.get(user, ()) if sid != keep]
            for sid in doomed:
                self._drop(sid)
            return doomed
