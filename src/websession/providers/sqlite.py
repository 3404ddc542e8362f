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
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar

from ..exceptions import ConfigurationError
from ._options import DEFAULT_OPERATION_TIMEOUT, OPERATION_TIMEOUT_KEY, parse_operation_timeout
from .base import BaseProvider, Page, Record, parse_options

__all__ = ["SQLiteProvider"]

_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
GC_BATCH = 1000
T = TypeVar("T")
# What a statement's caller takes of its cursor.
_ONE: Callable[[sqlite3.Cursor], Any] = sqlite3.Cursor.fetchone
_ALL: Callable[[sqlite3.Cursor], list[Any]] = sqlite3.Cursor.fetchall
_ROWCOUNT: Callable[[sqlite3.Cursor], int] = attrgetter("rowcount")


class _Connection:
    """One thread's connection, and the lock held while it runs a statement: :meth:`close`
    (from another thread) takes it before closing, since closing a connection that
    another thread is running a statement on crashes CPython's sqlite3."""

    __slots__ = ("closed", "db", "in_use")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.in_use = threading.Lock()
        self.closed = False


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
        self._all: list[_Connection] = []
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

    def _db(self) -> _Connection:
        """This thread's connection."""
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA synchronous = NORMAL")
            conn = _Connection(db)
            with self._lock:
                if not self._ready:
                    self._setup(db)
                    self._ready = True
                self._all.append(conn)
            self._local.conn = conn
        return conn

    def _run(self, statement: str, params: tuple[Any, ...],
             fetch: Callable[[sqlite3.Cursor], T]) -> T:
        """Run one of :attr:`_sql`'s statements on this thread's connection; ``fetch``
        takes what is needed of its cursor."""
        sql = self._sql[statement]
        return self._using(lambda db: fetch(db.execute(sql, params)))

    def _using(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on this thread's connection, which no :meth:`close`
        closes meanwhile."""
        while True:
            conn = self._db()
            with conn.in_use:
                if not conn.closed:
                    return work(conn.db)
            # close() came between: this thread's next connection

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
        row = self._run("read", (sid, time.time()), _ONE)
        return None if row is None else Record(row[0], row[1], row[2])

    def create(self, sid: str, record: Record) -> bool:
        """INSERT, or replace an expired row; nothing if a live row exists."""
        return self._run("create", (sid, record.payload, record.expires_at, record.version,
                                    time.time()), _ROWCOUNT) == 1

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        """UPDATE only a live row at ``expected_version``."""
        return self._run("update", (record.payload, record.expires_at, record.version, sid,
                                    expected_version, time.time()), _ROWCOUNT) == 1

    def touch(self, sid: str, expires_at: float) -> bool:
        """Move a live row's deadline."""
        return self._run("touch", (expires_at, sid, time.time()), _ROWCOUNT) == 1

    def delete(self, sid: str) -> None:
        """DELETE the row."""
        self._run("delete", (sid,), _ROWCOUNT)

    def count(self) -> int:
        """Count live rows."""
        count: int = self._run("count", (time.time(),), _ONE)[0]
        return count

    def gc(self) -> int:
        """Delete expired rows, a batch (one short write transaction) at a time."""
        removed, now = 0, time.time()
        while True:  # (the connection is free between batches: close may come)
            deleted = self._run("gc", (now,), _ROWCOUNT)
            removed += deleted
            if deleted < GC_BATCH:
                return removed

    def bind(self, sid: str, user: str | None, cap: int) -> list[str]:
        """Set the row's user, then delete that user's rows past ``cap`` (newest kept),
        in one write transaction: concurrent logins from any process take turns."""
        now = time.time()

        def transaction(db: sqlite3.Connection) -> list[str]:
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

        return self._using(transaction)

    def sessions_of(self, user: str) -> list[tuple[str, Record]]:
        """The user's live rows through the user index, oldest binding first."""
        rows = self._run("sessions_of", (user, time.time()), _ALL)
        return [(row[0], Record(row[1], row[2], row[3])) for row in rows]

    def revoke_user(self, user: str, keep: str | None) -> list[str]:
        """Delete the user's rows except ``keep``: one statement."""
        rows = self._run("revoke_user", (user, keep), _ALL)
        return [row[0] for row in rows]

    def gc_ids(self) -> list[str]:
        """Delete expired rows in batches as :meth:`gc` does; return their IDs
        (``DELETE … RETURNING``, SQLite 3.35 and later)."""
        ids, now = [], time.time()
        while True:
            batch = [row[0] for row in self._run("gc_ids", (now,), _ALL)]
            ids += batch
            if len(batch) < GC_BATCH:
                return ids

    def scan(self, cursor: str | None, batch: int) -> Page:
        """Keyset pagination through the primary key: ``sid > cursor ORDER BY sid``, one
        index range read per batch however deep the walk is (no OFFSET)."""
        now = time.time()
        if cursor is None:
            rows = self._run("scan_first", (now, batch), _ALL)
        else:
            rows = self._run("scan", (cursor, now, batch), _ALL)
        page = [(row[0], Record(row[1], row[2], row[3])) for row in rows]
        return Page(page, page[-1][0] if len(page) == batch else None)

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            connections, self._all = self._all, []
        self._local = threading.local()
        for conn in connections:
            with conn.in_use:  # a statement another thread is running ends first
                conn.closed = True
                conn.db.close()
