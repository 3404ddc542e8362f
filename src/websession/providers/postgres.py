"""The PostgreSQL provider: sessions in one table, through psycopg 3.

``Manager("postgresql", {"providerConfig": "postgresql://postgres@127.0.0.1/test"})``

``providerConfig`` is one of:

* a libpq connection string: a URL (``postgresql://user:password@host:port/dbname?...``)
  or ``key=value`` pairs (``host=127.0.0.1 dbname=test user=postgres``); an empty one uses
  libpq's defaults and ``PG*`` environment variables;
* a JSON object or a mapping: ``dsn``, ``table`` (default ``websession_sessions``, or
  ``schema.table``), ``maxConnections`` (default 10), ``poolTimeout`` (seconds to wait for
  a connection, default 5), ``operationTimeout`` (seconds one operation may take in all:
  pool wait, connect, statement; default 5), ``gcBatchSize`` (default 1000),
  ``createTable`` (default true), ``pool`` (a ``psycopg_pool.ConnectionPool`` the
  application owns) and ``asyncPool`` (a ``psycopg_pool.AsyncConnectionPool``; the
  provider never closes pools it did not open).

psycopg 3 serves both modes from one package, with the same method names, so one plan per
operation serves both. Connections (autocommit: every primitive is one statement, hence
one transaction) come from websession's bounded pools (:mod:`._pool`: one for blocking
calls, one per event loop for asyncio), which hand out the most recently used connection
first: psycopg_pool's pools hand them out in turn, so sequential requests wake a
different, cold server process for every statement, and they retry a failed reconnect with
growing delays, so a restarted server is taken back only seconds later. Here a failed
connect reaches the request at once, and before a borrowed connection is used its socket
is polled (no round trip): one the server closed while it sat idle — a restart,
``idle_session_timeout`` — is replaced instead of failing a request. Application-owned
psycopg_pool pools get the same check.

The table, created on first use unless ``createTable`` is false (under an advisory lock,
so processes starting together do not race)::

    CREATE TABLE IF NOT EXISTS websession_sessions (
        sid        varchar(320) COLLATE "C" PRIMARY KEY,  -- ASCII IDs, compared bytewise
        payload    bytea            NOT NULL,             -- the engine's opaque bytes
        expires_at double precision NOT NULL,             -- Unix seconds
        version    bigint           NOT NULL              -- compared by update
    );
    CREATE INDEX IF NOT EXISTS websession_sessions_expires_at
        ON websession_sessions (expires_at);              -- count and GC walk it
    ALTER TABLE websession_sessions                       -- the user index (bind())
        ADD COLUMN IF NOT EXISTS user_id text COLLATE "C",
        ADD COLUMN IF NOT EXISTS bound_at double precision;
    CREATE INDEX IF NOT EXISTS websession_sessions_user
        ON websession_sessions (user_id, bound_at);

A table made by an earlier version, without the user columns, gets them (and their
index) on first use, under the same advisory lock: adding a nullable column rewrites
nothing; building the index blocks writes to the table while it runs. With
``createTable`` false the table is left alone: saves go on unindexed, and
``sessions_of``/``revoke_user`` raise :class:`~websession.UnsupportedOperationError`
until the columns exist.

GC deletes ``gcBatchSize`` expired rows per statement, picked through the expiry index
with ``FOR UPDATE SKIP LOCKED``, so concurrent GC passes (several processes) share the
work instead of waiting on each other.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import Any

from .._plans import Plan
from ..exceptions import ConfigurationError, MissingDependencyError
from ._pool import AppPool, Connector, Lender, idle_socket_broken
from ._sql import CREATED, SQLProvider, Statements, Step, fetched, portable_statements
from .base import Record

try:
    import psycopg
    from psycopg import waiting
    from psycopg.conninfo import conninfo_to_dict
except ImportError:  # pragma: no cover - exercised by the missing-driver test
    raise MissingDependencyError("postgresql", "postgres", "psycopg") from None

__all__ = ["PostgresProvider"]

_CONNECT_TIMEOUT = 5  # seconds, unless the DSN says otherwise
_MIN_CONNECT_TIMEOUT = 2  # libpq's, and psycopg's: whole seconds, at least 2
_WAIT_INTERVAL = 0.1  # psycopg's: how often a blocking wait lets signals in


# psycopg waits on a statement without end, and on an interrupted (cancelled) asyncio
# wait sends the server a cancel request and waits again, up to 10 s more: from a stalled
# server neither ever comes. These connections' waits end by the deadline their
# operation set (SQLProvider._arm), and a cancelled one just stops: the connection is
# discarded. The blocking and asyncio classes are separate hierarchies whose wait is a
# plain method in one and a coroutine in the other, so each override is two lines.


def _until(deadline: float | None, timeout: float | None) -> float | None:
    if deadline is None:
        return timeout
    left = max(deadline - time.monotonic(), 0.001)
    return left if timeout is None or left < timeout else timeout


class _Connection(psycopg.Connection[Any]):
    """A blocking connection whose waits end by its operation's deadline."""

    deadline: float | None = None

    def wait(self, gen: Any, interval: float = _WAIT_INTERVAL,
             timeout: float | None = None) -> Any:
        return waiting.wait(gen, self.pgconn.socket, interval=interval,
                            timeout=_until(self.deadline, timeout))


class _AsyncConnection(psycopg.AsyncConnection[Any]):
    """The asyncio twin of :class:`_Connection`."""

    deadline: float | None = None

    async def wait(self, gen: Any, interval: float = _WAIT_INTERVAL,
                   timeout: float | None = None) -> Any:
        return await waiting.wait_async(gen, self.pgconn.socket, interval=interval,
                                        timeout=_until(self.deadline, timeout))


def _open(kind: Any, dsn: str, connect_timeout: float, timeout: float | None = None) -> Any:
    """``kind.connect`` (a coroutine, for asyncio), within ``timeout`` seconds if given."""
    if timeout is not None and timeout < connect_timeout:
        connect_timeout = timeout
    connect = partial(kind.connect, dsn, autocommit=True,
                      connect_timeout=max(_MIN_CONNECT_TIMEOUT, int(connect_timeout)))
    if connect_timeout >= _MIN_CONNECT_TIMEOUT or kind is _AsyncConnection:
        return connect()  # an asyncio connect is cancelled at the deadline
    return _connect_within(connect, connect_timeout)


def _connect_within(connect: Any, timeout: float) -> Any:
    """``connect()`` given only ``timeout`` seconds, less than psycopg can be told: it
    runs in a thread of its own, which closes the connection if it came too late."""
    outcome: list[Any] = []
    lock = threading.Lock()
    done = threading.Event()

    def attempt() -> None:
        try:
            result: Any = connect()
        except BaseException as exc:
            result = exc
        with lock:
            if not done.is_set():
                outcome.append(result)
                done.set()
                return
        if not isinstance(result, BaseException):
            result.close()  # nobody waits for it any more

    threading.Thread(target=attempt, name="websession-pg-connect", daemon=True).start()
    done.wait(timeout)
    with lock:
        done.set()
        if not outcome:
            raise psycopg.errors.ConnectionTimeout("connection timeout expired "
                                                   "(operationTimeout)")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


class _Link:
    """A pooled connection and the cursor kept with it: a cursor per statement would cost
    more (a copy of the adapters map each time) than the pool itself."""

    __slots__ = ("conn", "cursor")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.cursor = conn.cursor()


def _usable(link: _Link) -> bool:
    conn = link.conn
    if conn.closed:
        return False
    pgconn = conn.pgconn
    if pgconn.ssl_in_use:
        return True  # TLS records may wait on a healthy link: let a failure tell
    return not idle_socket_broken(pgconn.socket)


def _reusable(link: _Link, exc: BaseException) -> bool:
    # After an error the server reported, an autocommit connection is idle and in step;
    # one closed, or left mid-statement (a cancelled await), is not.
    conn = link.conn
    return not conn.closed and conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE


# psycopg's blocking and asyncio classes share their method names, so each plan below
# serves both modes: its calls are awaited when the plan runs in an event loop.


def _lend(take: Any, timeout: float | None) -> Plan[_Link]:
    """A connection from ``take`` (connect, or an application pool's getconn), within
    ``timeout`` seconds if given."""
    return _Link((yield partial(take, timeout=timeout)))


def _close(link: _Link) -> Plan[None]:
    yield link.conn.close


def _give_back(putconn: Any, link: _Link) -> Plan[None]:
    yield partial(putconn, link.conn)


def _connector(take: Any, *, asynchronous: bool) -> Connector[_Link]:
    return Connector(partial(_lend, take), _close, _usable, asynchronous=asynchronous)


def _statement(link: _Link, step: Step) -> Plan[Any]:
    """Run one statement on a psycopg connection (a plan of calls)."""
    sql, params, fetch = step
    conn, cursor = link.conn, link.cursor
    yield partial(cursor.execute, sql, params)
    if not conn.autocommit:  # an application's pool may not autocommit
        yield conn.commit
    if fetch == CREATED:  # ON CONFLICT ... WHERE: no row when a live one was kept
        return cursor.rowcount == 1
    return (yield from fetched(cursor, fetch))


def _arm(link: _Link, deadline: float) -> None:
    conn = link.conn
    if type(conn) is _Connection or type(conn) is _AsyncConnection:  # not an app pool's
        conn.deadline = deadline


def _quote(parts: tuple[str, ...]) -> str:
    return ".".join(f'"{part}"' for part in parts)


class PostgresProvider(SQLProvider):
    """Sessions in a PostgreSQL table; see the module documentation."""

    provider_name = "postgresql"
    unavailable_errors = (
        psycopg.OperationalError,  # cannot connect, connection lost, admin shutdown;
        # psycopg_pool.PoolTimeout and PoolClosed derive from it
        ConnectionError,
        TimeoutError,
    )

    def default_dsn(self) -> str:
        """libpq's defaults (``PGHOST``, ``PGUSER``... or a local socket)."""
        return ""

    def make_statements(self, table: tuple[str, ...]) -> Statements:
        """PostgreSQL's statements for ``table``."""
        t = _quote(table)
        index = f'"{table[-1]}_expires_at"'
        live = "sid = %(sid)s AND expires_at > %(now)s"
        expired = "expires_at <= %(now)s"
        lock_key = ".".join(table).replace("'", "")  # identifiers: nothing to escape
        # The user columns, added to a table of an earlier version too: a nullable column
        # without a default is a change to the catalog only, however large the table; the
        # index is built under the advisory lock, blocking writes while it builds.
        add_users = (
            f'ALTER TABLE {t} ADD COLUMN IF NOT EXISTS user_id text COLLATE "C", '
            "ADD COLUMN IF NOT EXISTS bound_at double precision; "
            f'CREATE INDEX IF NOT EXISTS "{table[-1]}_user" ON {t} (user_id, bound_at)'
        )
        return Statements(
            exists="SELECT to_regclass(%(table)s)",
            exists_params={"table": t},
            # Several statements and no parameters: one simple query, one transaction, so
            # the advisory lock serialises concurrent first starts until they commit.
            setup=(
                f"SELECT pg_advisory_xact_lock(hashtext('websession:{lock_key}')); "
                f"CREATE TABLE IF NOT EXISTS {t} ("
                'sid varchar(320) COLLATE "C" PRIMARY KEY, payload bytea NOT NULL, '
                "expires_at double precision NOT NULL, version bigint NOT NULL); "
                f"CREATE INDEX IF NOT EXISTS {index} ON {t} (expires_at); {add_users}"
            ),
            read=f"SELECT payload, expires_at, version FROM {t} WHERE {live}",
            create=(
                f"INSERT INTO {t} AS s (sid, payload, expires_at, version) "
                "VALUES (%(sid)s, %(payload)s, %(expires_at)s, %(version)s) "
                "ON CONFLICT (sid) DO UPDATE SET payload = EXCLUDED.payload, "
                "expires_at = EXCLUDED.expires_at, version = EXCLUDED.version "
                "WHERE s.expires_at <= %(now)s"
            ),
            update=(
                f"UPDATE {t} SET payload = %(payload)s, expires_at = %(expires_at)s, "
                f"version = %(version)s WHERE {live} AND version = %(expected)s"
            ),
            touch=f"UPDATE {t} SET expires_at = %(expires_at)s WHERE {live}",
            delete=f"DELETE FROM {t} WHERE sid = %(sid)s",
            count=f"SELECT count(*) FROM {t} WHERE expires_at > %(now)s",
            # Rows by physical address (a TID scan); the outer condition repeats the inner
            # one so that no live row can ever be deleted, whatever happened in between.
            gc=(
                f"DELETE FROM {t} WHERE ctid = ANY(ARRAY("
                f"SELECT ctid FROM {t} WHERE {expired} ORDER BY expires_at "
                f"LIMIT %(batch)s FOR UPDATE SKIP LOCKED)) AND {expired}"
            ),
            **portable_statements(t),
            has_users=(
                "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%(table)s) "
                "AND attname = 'user_id' AND NOT attisdropped"
            ),
            add_users=(
                f"SELECT pg_advisory_xact_lock(hashtext('websession:{lock_key}')); {add_users}"
            ),
            lock_user="SELECT pg_advisory_xact_lock(hashtext(%(lock)s))",
            bind=(
                f"UPDATE {t} SET user_id = %(user)s::text, bound_at = %(now)s WHERE {live} "
                "AND user_id IS DISTINCT FROM %(user)s::text"
            ),
            revoke_select=(
                f"SELECT sid FROM {t} WHERE user_id = %(user)s "
                "AND sid IS DISTINCT FROM %(keep)s::text FOR UPDATE"
            ),
            delete_sids=f"DELETE FROM {t} WHERE sid = ANY(%(sids)s)",
            delete_expired_sids=f"DELETE FROM {t} WHERE sid = ANY(%(sids)s) AND {expired}",
            count_sids=f"SELECT count(*) FROM {t} WHERE sid = ANY(%(sids)s)",
            # Arrays, one per column: one statement, and one plan, for any batch size.
            create_many=(
                f"INSERT INTO {t} (sid, payload, expires_at, version, user_id, bound_at) "
                "SELECT * FROM unnest("
                "%(sids)s::text[], %(payloads)s::bytea[], %(expires)s::float8[], "
                "%(versions)s::int8[], %(users)s::text[], %(bound)s::float8[]) "
                "ON CONFLICT (sid) DO NOTHING"
            ),
        )

    def many_params(self, records: list[tuple[str, Record, str | None]],
                    now: float) -> dict[str, Any]:
        """One array per column (``unnest`` zips them into rows)."""
        return {
            "sids": [sid for sid, _, _ in records],
            "payloads": [record.payload for _, record, _ in records],
            "expires": [record.expires_at for _, record, _ in records],
            "versions": [record.version for _, record, _ in records],
            "users": [user for _, _, user in records],
            "bound": [None if user is None else now for _, _, user in records],
        }

    def check_dsn(self, dsn: str) -> None:
        """Parse ``dsn`` with libpq; a malformed one is a :class:`ConfigurationError`."""
        try:
            conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(
                f"providerConfig: invalid PostgreSQL DSN: {exc}", key="dsn"
            ) from None

    def connector(self, dsn: str, *, asynchronous: bool) -> Connector[Any]:
        """psycopg connections to ``dsn`` (autocommit), blocking or asyncio."""
        try:
            given = float(conninfo_to_dict(dsn).get("connect_timeout") or 0)
        except ValueError:
            raise ConfigurationError("providerConfig: the DSN's connect_timeout must be a "
                                     "number of seconds", key="dsn") from None
        # libpq: 0 or less is no timeout; our operations have one anyway.
        connect_timeout = given if given > 0 else _CONNECT_TIMEOUT
        kind = _AsyncConnection if asynchronous else _Connection
        return _connector(partial(_open, kind, dsn, connect_timeout),
                          asynchronous=asynchronous)

    def adopt_pool(self, pool: Any, *, asynchronous: bool) -> Lender[Any]:
        """Lend from a ``psycopg_pool.ConnectionPool`` (``AsyncConnectionPool`` for async)."""
        try:
            import psycopg_pool
        except ImportError:  # only an application's own pool needs it
            raise MissingDependencyError("postgresql", "postgres", "psycopg_pool") from None
        kind = psycopg_pool.AsyncConnectionPool if asynchronous else psycopg_pool.ConnectionPool
        if not isinstance(pool, kind):
            key = "asyncPool" if asynchronous else "pool"
            raise ConfigurationError(
                f"providerConfig: {key} must be a psycopg_pool.{kind.__name__}, not "
                f"{type(pool).__name__}", key=key)
        # Dead idle connections are closed and handed back: psycopg_pool replaces them.
        return AppPool(_connector(pool.getconn, asynchronous=asynchronous),
                       put=partial(_give_back, pool.putconn), tries=pool.max_size)

    # The driver's halves of SQLProvider's borrowing, as plain functions above.
    _statement = staticmethod(_statement)
    _reusable = staticmethod(_reusable)
    _arm = staticmethod(_arm)
