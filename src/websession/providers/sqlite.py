"""The SQLite provider: the embedded persistent default, on the standard library's sqlite3.

``Manager("sqlite", {..., "ProviderConfig": "./sessions.db"})`` — a database file, or an
object ``{"path": "./sessions.db", "table": "websession_sessions", "operationTimeout": 5}``.
``operationTimeout`` (seconds or a Go duration, default 5) is how long a statement waits
for another connection's write lock (SQLite's busy timeout) before it fails with
:class:`~websession.StoreUnavailableError`.

Schema, created if absent::

    CREATE TABLE websession_sessions (
        sid        TEXT PRIMARY KEY,
        payload    BLOB NOT NULL,
        expires_at REAL NOT NULL,   -- Unix time
        version    INTEGER NOT NULL,
        user_id    TEXT,           -- the user the session is bound to (bind())
        bound_at   REAL            -- when, to evict the oldest past maxSessionsPerUser
    ) WITHOUT ROWID;
    CREATE INDEX websession_sessions_expires ON websession_sessions (expires_at);
    CREATE INDEX websession_sessions_user ON websession_sessions (user_id, bound_at);

A table made before the user columns existed gets them added at start-up.

The database runs in WAL mode, so readers never wait for the writer; each thread has its
own connection in autocommit mode, each primitive is one statement (atomic on its own),
and a busy timeout lets writers from other threads and processes take turns. GC deletes
through the expiry index in batches, so it never holds the write lock for long; counting
is one indexed query.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from typing import Any

from ..exceptions import ConfigurationError
from ._options import DEFAULT_OPERATION_TIMEOUT, OPERATION_TIMEOUT_KEY, parse_operation_timeout
from .base import BaseProvider, Page, Record, parse_options

__all__ = ["SQLiteProvider"]

_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
GC_BATCH = 1000


class SQLiteProvider(BaseProvider):
    """Sessions in an SQLite database file; safe across threads and processes.

    ``busy_timeout`` (``operationTimeout`` in ``providerConfig``) is the longest a
    statement waits for the write lock.
    """

    unavailable_errors = (sqlite3.OperationalError,)

    def __init__(self, path: str = "", *, table: str = "websession_sessions",
                 busy_timeout: float = DEFAULT_OPERATION_TIMEOUT) -> None:
        self.path = path
        self.table = table
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._ready = False
        if path:
            self._check()

    def configure(self, config: Any) -> None:
        """A database path (as the seed's file provider takes a directory), or an object."""
        if isinstance(config, str) and not config.lstrip().startswith("{"):
            self.path = config or self.path
        else:
            options = parse_options(config, {"path": str, "table": str,
                                             OPERATION_TIMEOUT_KEY: (int, float, str)},
                                    provider="sqlite")
            self.path = options.get("path", self.path)
            self.table = options.get("table", self.table)
            if OPERATION_TIMEOUT_KEY in options:
                self.busy_timeout = parse_operation_timeout(
                    options[OPERATION_TIMEOUT_KEY], where="providerConfig for 'sqlite'")
        self._check()

    def _check(self) -> None:
        if not self.path:
            raise ConfigurationError("providerConfig for 'sqlite': give a database file",
                                     key="providerConfig")
        if not _TABLE.fullmatch(self.table):
            raise ConfigurationError(f"providerConfig for 'sqlite': bad table name "
                                     f"{self.table!r}", key="table")
        t = self.table
        self._sql = {
            "read": f"SELECT payload, expires_at, version FROM {t} "
                    "WHERE sid = ? AND expires_at > ?",
            "create": f"INSERT INTO {t} (sid, payload, expires_at, version) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT (sid) DO UPDATE SET payload = excluded.payload, "
                      "expires_at = excluded.expires_at, version = excluded.version, "
                      f"user_id = NULL, bound_at = NULL WHERE {t}.expires_at <= ?",
            "update": f"UPDATE {t} SET payload = ?, expires_at = ?, version = ? "
                      "WHERE sid = ? AND version = ? AND expires_at > ?",
            "touch": f"UPDATE {t} SET expires_at = ? WHERE sid = ? AND expires_at > ?",
            "delete": f"DELETE FROM {t} WHERE sid = ?",
            "count": f"SELECT COUNT(*) FROM {t} WHERE expires_at > ?",
            "scan_first": f"SELECT sid, payload, expires_at, version FROM {t} "
                          "WHERE expires_at > ? ORDER BY sid LIMIT ?",
            "scan": f"SELECT sid, payload, expires_at, version FROM {t} "
                    "WHERE sid > ? AND expires_at > ? ORDER BY sid LIMIT ?",
            "bind": f"UPDATE {t} SET user_id = ?, bound_at = ? "
                    "WHERE sid = ? AND expires_at > ? AND user_id IS NOT ?",
            "evict": f"DELETE FROM {t} WHERE sid IN (SELECT sid FROM {t} "
                     "WHERE user_id = ? AND expires_at > ? "
                     "ORDER BY bound_at DESC, sid LIMIT -1 OFFSET ?) RETURNING sid",
            "sessions_of": f"SELECT sid, payload, expires_at, version FROM {t} "
                           "WHERE user_id = ? AND expires_at > ? ORDER BY bound_at, sid",
            "revoke_user": f"DELETE FROM {t} WHERE user_id = ? AND sid IS NOT ? "
                           "RETURNING sid",
            "gc": f"DELETE FROM {t} WHERE sid IN "
                  f"(SELECT sid FROM {t} WHERE expires_at <= ? LIMIT {GC_BATCH})",
            "gc_ids": f"DELETE FROM {t} WHERE sid IN "
                      f"(SELECT sid FROM {t} WHERE expires_at <= ? LIMIT {GC_BATCH}) "
                      "RETURNING sid",
        }

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA synchronous = NORMAL")
            with self._lock:
                if not self._ready:
                    self._setup(db)
                    self._ready = True
                self._all.append(db)
            self._local.db = db
        return db

    def _setup(self, db: sqlite3.Connection) -> None:
        # WAL is a property of the database file: set once, it holds for every later
        # connection. Switching takes a lock that the busy timeout does not wait for, so
        # another process starting at the same moment is waited out here.
        t = self.table
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute(
                    f"CREATE TABLE IF NOT EXISTS {t} (sid TEXT PRIMARY KEY, "
                    "payload BLOB NOT NULL, expires_at REAL NOT NULL, "
                    "version INTEGER NOT NULL, user_id TEXT, bound_at REAL) WITHOUT ROWID"
                )
                columns = {row[1] for row in db.execute(f"PRAGMA table_info({t})")}
                for column, kind in (("user_id", "TEXT"), ("bound_at", "REAL")):
                    if column not in columns:  # a table from before per-user sessions
                        db.execute(f"ALTER TABLE {t} ADD COLUMN {column} {kind}")
                db.execute(f"CREATE INDEX IF NOT EXISTS {t}_expires ON {t} (expires_at)")
                db.execute(f"CREATE INDEX IF NOT EXISTS {t}_user ON {t} (user_id, bound_at)")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def read(self, sid: str) -> Record | None:
        """One indexed SELECT."""
        row = self._db().execute(self._sql["read"], (sid, time.time())).fetchone()
        return None if row is None else Record(row[0], row[1], row[2])

    def create(self, sid: str, record: Record) -> bool:
        """INSERT, or replace an expired row; nothing if a live row exists."""
        cursor = self._db().execute(
            self._sql["create"],
            (sid, record.payload, record.expires_at, record.version, time.time()),
        )
        return cursor.rowcount == 1

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        """UPDATE only a live row at ``expected_version``."""
        cursor = self._db().execute(
            self._sql["update"],
            (record.payload, record.expires_at, record.version, sid, expected_version,
             time.time()),
        )
        return cursor.rowcount == 1

    def touch(self, sid: str, expires_at: float) -> bool:
        """Move a live row's deadline."""
        cursor = self._db().execute(self._sql["touch"], (expires_at, sid, time.time()))
        return cursor.rowcount == 1

    def delete(self, sid: str) -> None:
        """DELETE the row."""
        self._db().execute(self._sql["delete"], (sid,))

    def count(self) -> int:
        """Count live rows."""
        count: int = self._db().execute(self._sql["count"], (time.time(),)).fetchone()[0]
        return count

    def gc(self) -> int:
        """Delete expired rows, a batch (one short write transaction) at a time."""
        db, removed, now = self._db(), 0, time.time()
        while True:
            deleted = db.execute(self._sql["gc"], (now,)).rowcount
            removed += deleted
            if deleted < GC_BATCH:
                return removed

    def bind(self, sid: str, user: str | None, cap: int) -> list[str]:
        """Set the row's user, then delete that user's rows past ``cap`` (newest kept),
        in one write transaction: concurrent logins from any process take turns."""
        db, now = self._db(), time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            bound = db.execute(self._sql["bind"], (user, now, sid, now, user)).rowcount
            evicted: list[str] = []
            if bound and user is not None and cap > 0:
                evicted = [row[0] for row in
                           db.execute(self._sql["evict"], (user, now, cap)).fetchall()]
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return evicted

    def sessions_of(self, user: str) -> list[tuple[str, Record]]:
        """The user's live rows through the user index, oldest binding first."""
        rows = self._db().execute(self._sql["sessions_of"], (user, time.time())).fetchall()
        return [(row[0], Record(row[1], row[2], row[3])) for row in rows]

    def revoke_user(self, user: str, keep: str | None) -> list[str]:
        """Delete the user's rows except ``keep``: one statement."""
        rows = self._db().execute(self._sql["revoke_user"], (user, keep)).fetchall()
        return [row[0] for row in rows]

    def gc_ids(self) -> list[str]:
        """Delete expired rows in batches as :meth:`gc` does; return their IDs
        (``DELETE … RETURNING``, SQLite 3.35 and later)."""
        db, ids, now = self._db(), [], time.time()
        while True:
            batch = [row[0] for row in db.execute(self._sql["gc_ids"], (now,)).fetchall()]
            ids += batch
            if len(batch) < GC_BATCH:
                return ids

    def scan(self, cursor: str | None, batch: int) -> Page:
        """Keyset pagination through the primary key: ``sid > cursor ORDER BY sid``, one
        index range read per batch however deep the walk is (no OFFSET)."""
        now = time.time()
        if cursor is None:
            rows = self._db().execute(self._sql["scan_first"], (now, batch)).fetchall()
        else:
            rows = self._db().execute(self._sql["scan"], (cursor, now, batch)).fetchall()
        page = [(row[0], Record(row[1], row[2], row[3])) for row in rows]
        return Page(page, page[-1][0] if len(page) == batch else None)

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            connections, self._all = self._all, []
        for db in connections:
            db.close()
        self._local = threading.local()
