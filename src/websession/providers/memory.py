"""The memory provider: sessions in this process, for development, tests and single-process
servers. Thread-safe, and safe from an event loop since no primitive blocks."""

from __future__ import annotations

import heapq
import threading
import time
from collections import OrderedDict
from typing import Any

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

    def configure(self, config: Any) -> None:
        """Read ``maxSessions`` (0 means unbounded) from ``providerConfig``."""
        options = parse_options(config, {"max_sessions": int}, provider="memory")
        self.max_sessions = options.get("max_sessions", self.max_sessions)

    def _live(self, sid: str, now: float) -> Record | None:
        record = self._records.get(sid)
        if record is None:
            return None
        if record.expires_at <= now:
            del self._records[sid]
            return None
        return record

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
            self._records.popitem(last=False)

    def _collect(self, now: float, ids: list[str] | None = None) -> int:
        removed = 0
        heap, records = self._heap, self._records
        while heap and heap[0][0] <= now:
            _, sid = heapq.heappop(heap)
            record = records.get(sid)
            if record is None:
                continue  # deleted or evicted earlier
            if record.expires_at <= now:
                del records[sid]
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
        with self._lock:
            current = self._records.get(sid)
            if (
                current is None
                or current.version != expected_version
                or current.expires_at <= time.time()
            ):
                return False
            self._put(sid, record, current)
            return True

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
            self._records.pop(sid, None)

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
