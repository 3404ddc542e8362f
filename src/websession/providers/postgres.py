"""The PostgreSQL provider: sessions in one table, through psycopg 3.

``Manager("postgresql", {"providerConfig": "postgresql://postgres@127.0.0.1/test"})``

``providerConfig`` is one of:

* a libpq connection string: a URL (``postgresql://user:password@host:port/dbname?...``)
  or ``key=value`` pairs (``host=127.0.0.1 dbname=test user=postgres``); an empty one uses
  libpq's defaults and ``PG*`` environment variables;
* a JSON object or a mapping: ``dsn``, ``table`` (default ``websession_sessions``, or
  ``schema.table``), ``maxConnections`` (default 10), ``poolTimeout`` (seconds to wait for
  a connection, default 5), ``gcBatchSize`` (default 1000), ``createTable`` (default
  true), ``pool`` (a ``psycopg_pool.ConnectionPool`` the application owns) and
  ``asyncPool`` (a ``psycopg_pool.AsyncConnectionPool``; the provider never closes pools
  it did not open).

psycopg 3 serves both modes from one package. Connections (autocommit: every primitive is
one statement, hence one transaction) come from websession's bounded pools
(:class:`~websession.providers._sql.Pool`, and one ``AsyncPool`` per event loop), which
hand out the most recently used connection first: psycopg_pool's pools hand them out in
turn, so sequential requests wake a different, cold server process for every statement,
and they retry a failed reconnect with growing delays, so a restarted server is taken
back only seconds later. Here a failed connect reaches the request at once, and before a
borrowed connection is used its socket is polled (no round trip): one the server closed
while it sat idle — a restart, ``idle_session_timeout`` — is replaced instead of failing a
request. Application-owned psycopg_pool pools get the same check.

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

GC deletes ``gcBatchSize`` expired rows per statement, picked through the expiry index
with ``FOR UPDATE SKIP LOCKED``, so concurrent GC passes (several processes) share the
work instead of waiting on each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError, MissingDependencyError
from ._sql import (
    AFFECTED,
    CREATED,
    ROW,
    AsyncPool,
    PerLoop,
    Plan,
    Pool,
    SQLProvider,
    Statements,
    Step,
    T,
    adrive,
    close_async_pool,
    drive,
    idle_socket_broken,
)

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
except ImportError:  # pragma: no cover - exercised by the missing-driver test
    raise MissingDependencyError("postgresql", "postgres", "psycopg") from None

if TYPE_CHECKING:
    import psycopg_pool

__all__ = ["PostgresProvider"]

_CONNECT_TIMEOUT = 5  # seconds, unless the DSN says otherwise


class _Link:
    """A pooled connection and the cursor kept with it: a cursor per statement would cost
    more (a copy of the adapters map each time) than the pool itself."""

    __slots__ = ("conn", "cursor")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.cursor = conn.cursor()


def _usable(link: _Link) -> bool:
    return _alive(link.conn)


def _alive(conn: Any) -> bool:
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


def _close(link: _Link) -> None:
    link.conn.close()


async def _aclose(link: _Link) -> None:
    await link.conn.close()


class _AppPool:
    """An application's ``psycopg_pool.ConnectionPool`` behind :class:`Pool`'s methods."""

    def __init__(self, pool: psycopg_pool.ConnectionPool[Any]) -> None:
        self.pool = pool

    def acquire(self) -> _Link:
        conn = self.pool.getconn()
        for _ in range(self.pool.max_size):  # dead idle ones: closed, handed back, replaced
            if _alive(conn):
                break
            conn.close()
            self.pool.putconn(conn)
            conn = self.pool.getconn()
        return _Link(conn)

    def release(self, link: _Link, *, discard: bool = False) -> None:
        if discard:
            link.conn.close()  # the pool replaces closed connections
        self.pool.putconn(link.conn)


class _AppAsyncPool:
    """An application's ``psycopg_pool.AsyncConnectionPool`` behind :class:`AsyncPool`'s."""

    def __init__(self, pool: psycopg_pool.AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def acquire(self) -> _Link:
        conn = await self.pool.getconn()
        for _ in range(self.pool.max_size):
            if _alive(conn):
                break
            await conn.close()
            await self.pool.putconn(conn)
            conn = await self.pool.getconn()
        return _Link(conn)

    async def release(self, link: _Link, *, discard: bool = False) -> None:
        if discard:
            await link.conn.close()
        await self.pool.putconn(link.conn)


def _outcome(cursor: Any, fetch: int, row: Any) -> Any:
    if fetch == ROW:
        return row
    if fetch == AFFECTED:
        return cursor.rowcount
    if fetch == CREATED:  # ON CONFLICT ... WHERE: no row when a live one was kept
        return cursor.rowcount == 1
    return None


def _execute(link: _Link, plan: Plan[T]) -> T:
    """Run ``plan``'s statements on a psycopg connection."""
    conn, cursor = link.conn, link.cursor

    def execute(step: Step) -> Any:
        sql, params, fetch = step
        cursor.execute(sql, params)
        if not conn.autocommit:  # an application's pool may not autocommit
            conn.commit()
        return _outcome(cursor, fetch, cursor.fetchone() if fetch == ROW else None)

    return drive(plan, execute)


async def _aexecute(link: _Link, plan: Plan[T]) -> T:
    """Run ``plan``'s statements on an async psycopg connection."""
    conn, cursor = link.conn, link.cursor

    async def execute(step: Step) -> Any:
        sql, params, fetch = step
        await cursor.execute(sql, params)
        if not conn.autocommit:
            await conn.commit()
        return _outcome(cursor, fetch, await cursor.fetchone() if fetch == ROW else None)

    return await adrive(plan, execute)


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

    def __init__(self, dsn: str | None = None, **options: Any) -> None:
        self._own_pool: Pool[_Link] | None = None
        self._async_pools: PerLoop[AsyncPool[_Link]] = PerLoop(
            self._open_async_pool, close_async_pool
        )
        self._app_pool: _AppPool | None = None
        self._app_async_pool: _AppAsyncPool | None = None
        super().__init__(dsn, **options)

    # -- configuration ----------------------------------------------------------------

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
                f"CREATE INDEX IF NOT EXISTS {index} ON {t} (expires_at)"
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
        )

    def check_dsn(self, dsn: str) -> None:
        """Parse ``dsn`` with libpq; a malformed one is a :class:`ConfigurationError`."""
        try:
            conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(
                f"providerConfig: invalid PostgreSQL DSN: {exc}", key="dsn"
            ) from None

    def check_pool(self, pool: Any, *, asynchronous: bool) -> Any:
        """Accept a ``psycopg_pool.ConnectionPool`` (``AsyncConnectionPool`` for async)."""
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
        if isinstance(pool, psycopg_pool.AsyncConnectionPool):
            self._app_async_pool = _AppAsyncPool(pool)
        elif isinstance(pool, psycopg_pool.ConnectionPool):
            self._app_pool = _AppPool(pool)
        return pool

    def _connect_options(self, dsn: str) -> dict[str, Any]:
        options: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in conninfo_to_dict(dsn):
            options["connect_timeout"] = _CONNECT_TIMEOUT
        return options

    # -- blocking I/O -----------------------------------------------------------------

    def _sync_pool(self) -> Pool[Any]:
        """The application's pool, or our own."""
        if self._app_pool is not None:
            return self._app_pool  # type: ignore[return-value]
        with self._lock:
            if self._own_pool is None:
                dsn = self._need_dsn("sync")
                options = self._connect_options(dsn)
                self._own_pool = Pool(
                    lambda: _Link(psycopg.Connection.connect(dsn, **options)),
                    max_size=self.max_connections, timeout=self.pool_timeout,
                    usable=_usable, close=_close,
                )
            return self._own_pool

    # -- asyncio I/O ------------------------------------------------------------------

    async def _open_async_pool(self) -> AsyncPool[_Link]:
        dsn = self._need_dsn("async")
        options = self._connect_options(dsn)

        async def connect() -> _Link:
            return _Link(await psycopg.AsyncConnection.connect(dsn, **options))

        return AsyncPool(connect, max_size=self.max_connections, timeout=self.pool_timeout,
                         usable=_usable, close=_aclose)

    # The drivers' halves of SQLProvider's borrowing, as plain functions above.
    _execute = staticmethod(_execute)
    _aexecute = staticmethod(_aexecute)
    _reusable = staticmethod(_reusable)

