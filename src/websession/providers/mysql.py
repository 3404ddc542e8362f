"""The MySQL / MariaDB provider: sessions in one InnoDB table.

``Manager("mysql", {"providerConfig": "root:@tcp(127.0.0.1:3306)/test?charset=utf8mb4"})``

``providerConfig`` is one of:

* the seed's Go DSN, ``[user[:password]@][tcp|unix[(address)]]/dbname[?param=value&...]``,
  parsed as go-sql-driver/mysql parses it;
* a URL, ``mysql://user:password@host:port/dbname?param=value`` (or ``mariadb://``);
* a JSON object or a mapping: ``dsn``, ``table`` (default ``websession_sessions``),
  ``maxConnections`` (default 10), ``poolTimeout`` (seconds to wait for a free connection,
  default 5), ``operationTimeout`` (seconds one operation may take in all: pool wait,
  connect, statement; default 5), ``gcBatchSize`` (default 1000), ``createTable``
  (default true), ``pool`` (a :class:`MySQLPool` the application owns) and ``asyncPool``
  (an ``aiomysql.Pool`` the application owns; the provider never closes pools it did not
  open).

DSN parameters: ``charset``, ``collation`` (accepted; every column is binary),
``timeout`` / ``connect_timeout``, ``readTimeout`` / ``read_timeout``, ``writeTimeout`` /
``write_timeout`` (Go durations such as ``5s``, or seconds), ``tls`` (``true``,
``skip-verify``, ``preferred``, ``false``: the default, as in Go), ``unix_socket``, and
Go driver switches that mean nothing here (``parseTime``, ``loc``, ...), which are ignored.
A session operation's reads and writes are bounded by what is left of its
``operationTimeout`` instead of ``readTimeout``/``writeTimeout``, which still bound a
:class:`MySQLPool`'s connections used directly.

Drivers: PyMySQL (pure Python, maintained, no C toolchain needed; mysqlclient is faster
but needs the MySQL client library to build) for blocking calls, and aiomysql (built on
PyMySQL's protocol code, so both modes share error classes and escaping) for asyncio.
Connections come from websession's bounded pools (:mod:`._pool`: one for blocking calls,
one per event loop for asyncio), which hand out the most recently used connection first,
report a failed connect at once, and replace a connection the server closed while it sat
idle (restart, ``wait_timeout``) before a request trips over it. Connections run in
autocommit at READ COMMITTED: every primitive is one statement, hence one transaction,
and no gap locks, so GC never blocks requests on live sessions.

The table, created on first use unless ``createTable`` is false::

    CREATE TABLE IF NOT EXISTS websession_sessions (
        sid        VARBINARY(320) NOT NULL,  -- prefix (<= 64) + hex (<= 256): ASCII, compared
                                             -- bytewise, 320 bytes of key in any charset
        payload    LONGBLOB       NOT NULL,  -- the engine's opaque bytes
        expires_at DOUBLE         NOT NULL,  -- Unix seconds, exact to the microsecond
        version    BIGINT         NOT NULL,  -- compared by update (compare-and-set)
        user_id    VARBINARY(320) NULL,      -- the user it is bound to (bind())
        bound_at   DOUBLE         NULL,      -- when: the cap evicts the oldest
        PRIMARY KEY (sid),
        KEY websession_sessions_expires_at (expires_at),  -- count and GC walk it
        KEY websession_sessions_user (user_id, bound_at)
    ) ENGINE=InnoDB

A table made by an earlier version, without the user columns, gets them and their index
on first use (one ``ALTER TABLE``: MariaDB 10.3+ and MySQL 8 add the columns in place and
build the index online; a process that loses the race to add them finds them there).
With ``createTable`` false the table is left alone: saves go on unindexed, and
``sessions_of``/``revoke_user`` raise :class:`~websession.UnsupportedOperationError` until
the columns exist. User IDs are at most 320 bytes.

``create`` is ``INSERT … ON DUPLICATE KEY UPDATE`` whose every column keeps the old value
while the old row is live; when it does, the statement also calls ``LAST_INSERT_ID(1)``,
which the server reports back in its reply, so "kept a live row" is told from "inserted,
or replaced an expired row" in the same round trip, whatever the connection's
``FOUND_ROWS`` flag.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from .._loops import cancellable
from .._plans import Plan
from ..exceptions import ConfigurationError, MissingDependencyError
from ._mysql_dsn import MySQLParams, parse_dsn
from ._pool import (
    AppPool,
    BlockingPool,
    Connector,
    Lender,
    PoolClosed,
    PoolTimeout,
    call,
    idle_socket_broken,
)
from ._sql import CREATED, SQLProvider, Statements, Step, fetched, portable_statements
from .base import Record

try:
    import pymysql  # type: ignore[import-untyped, unused-ignore]
    from pymysql.converters import (  # type: ignore[import-untyped, unused-ignore]
        escape_float,
        escape_int,
    )
except ImportError:  # pragma: no cover - exercised by the missing-driver test
    raise MissingDependencyError("mysql", "mysql", "pymysql") from None

__all__ = [
    "MySQLParams",
    "MySQLPool",
    "MySQLProvider",
    "PoolClosed",
    "PoolTimeout",
    "parse_dsn",
]

# InnoDB rolled the statement back whole: running it again is safe.
_ER_LOCK_DEADLOCK = 1213
_DEADLOCK_ATTEMPTS = 3


def _usable(conn: Any) -> bool:
    sock = conn._sock  # PyMySQL keeps no public handle on its socket
    if sock is None:
        return False
    if isinstance(sock, ssl.SSLSocket):
        return True  # TLS records (session tickets) may wait there on a healthy link
    return not idle_socket_broken(sock.fileno())


def _aio_usable(conn: Any) -> bool:
    # The event loop reads an aiomysql socket all the time, so look at what it read: the
    # same test aiomysql's own pool makes (a server that hangs up may send an error first).
    reader = conn._reader
    return not (conn.closed or reader.at_eof() or reader.exception() is not None
                or getattr(reader, "eof_received", False))


def _close(conn: Any) -> None:
    conn.close()


async def _aio_close(conn: Any) -> None:
    conn.close()  # aiomysql closes at once; the pool's plan awaits every close


def _reusable(conn: Any, exc: BaseException) -> bool:
    # The server answered with an error about the statement: the connection is in step.
    # Anything else (lost connection, timeout, cancellation mid-read) leaves it unknown.
    return isinstance(exc, pymysql.err.ProgrammingError | pymysql.err.IntegrityError
                      | pymysql.err.DataError | pymysql.err.NotSupportedError)


def _hex(value: bytes) -> str:
    return f"X'{value.hex()}'"  # a binary string, as PyMySQL itself sends bytes


# aiomysql 0.3.2 cannot escape bytes with PyMySQL >= 1.2.3 (it calls a helper PyMySQL
# replaced by a placeholder string: aio-libs/aiomysql#1080), so parameters are rendered
# here, for both drivers, into the SQL text PyMySQL would send: numbers by its own
# converters called directly (its generic dispatch costs more than the conversion), the
# rest (strings, whose escaping depends on the server's SQL mode) by the connection.
_LITERALS: dict[type, Callable[[Any], str]] = {bytes: _hex, float: escape_float, int: escape_int}


class Rows(tuple[tuple[Any, ...], ...]):
    """A parameter rendered as the rows of a multi-row ``VALUES``: ``(a, b), (c, d)``."""

    __slots__ = ()


def _literal(conn: Any, value: Any) -> str:
    literal = _LITERALS.get(type(value))
    return conn.escape(value) if literal is None else literal(value)


def _render(conn: Any, sql: str, params: Mapping[str, Any] | None) -> str:
    if params is None:
        return sql
    literals = {}
    for name, value in params.items():
        if type(value) is Rows:
            literals[name] = ", ".join(
                "(" + ", ".join([_literal(conn, item) for item in row]) + ")" for row in value)
        elif type(value) is list:  # the right-hand side of IN
            literals[name] = "(" + ", ".join([_literal(conn, item) for item in value]) + ")"
        else:
            literals[name] = _literal(conn, value)
    return sql % literals


def _statement(conn: Any, step: Step) -> Plan[Any]:
    """Run one statement on a PyMySQL or an aiomysql connection (a plan of calls)."""
    sql, params, fetch = step
    cursor = yield conn.cursor
    query = _render(conn, sql, params)
    attempt = 1
    while True:
        try:
            yield partial(cursor.execute, query)
            break
        except pymysql.err.OperationalError as exc:
            # A deadlock victim: InnoDB rolled the statement back whole, so running it
            # again is safe. Anything else is for the caller.
            if exc.args[0] != _ER_LOCK_DEADLOCK or attempt == _DEADLOCK_ATTEMPTS:
                raise
            attempt += 1
    if not conn.get_autocommit():  # an application's pool may not autocommit
        yield conn.commit
    if fetch == CREATED:  # see the module docstring: LAST_INSERT_ID(1) means "kept"
        return cursor.lastrowid == 0
    return (yield from fetched(cursor, fetch))


def _aiomysql() -> Any:
    try:
        import aiomysql  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise MissingDependencyError("mysql", "mysql", "aiomysql") from None
    return aiomysql


def _shorter(limit: float | None, timeout: float | None) -> float | None:
    return limit if timeout is None or (limit is not None and limit < timeout) else timeout


def _connect(connect: Callable[..., Any], kwargs: dict[str, Any],
             timeout: float | None) -> Plan[Any]:
    """Open a connection, within ``timeout`` seconds if given: the TCP connect, and for
    PyMySQL the hand-shake's reads and writes (asyncio connects are cancelled instead)."""
    if timeout is not None:
        kwargs = {**kwargs, "connect_timeout": _shorter(kwargs["connect_timeout"], timeout)}
        for name in ("read_timeout", "write_timeout"):
            if name in kwargs:
                kwargs[name] = _shorter(kwargs[name], timeout)
    return (yield partial(connect, **kwargs))


async def _aio_connect(**kwargs: Any) -> Any:
    # aiomysql opens its socket with asyncio.wait_for, which on Python 3.11 loses a
    # cancellation at the deadline that comes as the socket opens; the hand-shake then
    # waits for a stalled server with no deadline at all.
    return await cancellable(_aiomysql().connect(**kwargs), _close)


def _connector(params: MySQLParams, *, asynchronous: bool) -> Connector[Any]:
    """How to open PyMySQL (blocking) or aiomysql (asyncio) connections with ``params``."""
    if asynchronous:
        connect = partial(_connect, _aio_connect, params.kwargs(asynchronous=True))
        return Connector(connect, partial(call, _aio_close), _aio_usable, asynchronous=True)
    connect = partial(_connect, pymysql.connect, params.kwargs(asynchronous=False))
    return Connector(connect, partial(call, _close), _usable, asynchronous=False)


def _arm(conn: Any, deadline: float) -> None:
    # PyMySQL applies these to its socket before each read and write (asyncio ones are
    # cancelled at the deadline instead).
    if isinstance(conn, pymysql.connections.Connection):
        conn._read_timeout = conn._write_timeout = max(deadline - time.monotonic(), 0.001)


async def _acquire_within(pool: Any, limit: float, timeout: float | None) -> Any:
    # aiomysql waits for a free connection forever; a bounded wait is an outage.
    async with asyncio.timeout(_shorter(limit, timeout)):
        return await pool.acquire()


class MySQLPool(BlockingPool[Any]):
    """A bounded, thread-safe pool of PyMySQL connections (see :class:`~._pool.Pool`).

    The provider opens one of its own; an application may own one instead, and share it
    between providers: ``{"pool": MySQLPool(dsn, max_size=20)}``. It closes it itself.
    """

    def __init__(self, dsn: str | MySQLParams, *, max_size: int = 10,
                 timeout: float = 5.0) -> None:
        params = dsn if isinstance(dsn, MySQLParams) else parse_dsn(dsn)
        super().__init__(_connector(params, asynchronous=False), max_size=max_size,
                         timeout=timeout)
        self.params = params

    def acquire(self) -> Any:
        """Borrow a connection, with the DSN's read and write timeouts (a provider's last
        operation may have left its deadline's); give it back with :meth:`release`."""
        conn = super().acquire()
        conn._read_timeout, conn._write_timeout = (self.params.read_timeout,
                                                   self.params.write_timeout)
        return conn


def _quote(parts: tuple[str, ...]) -> str:
    return ".".join(f"`{part}`" for part in parts)


class MySQLProvider(SQLProvider):
    """Sessions in a MySQL or MariaDB table; see the module documentation."""

    provider_name = "mysql"
    unavailable_errors = (
        pymysql.err.OperationalError,  # cannot connect, lost connection, server shutdown
        pymysql.err.InterfaceError,  # a connection closed under us
        ConnectionError,  # PoolClosed
        TimeoutError,  # PoolTimeout, and asyncio timeouts
    )

    def make_statements(self, table: tuple[str, ...]) -> Statements:
        """MySQL's statements for ``table``."""
        t = _quote(table)
        index = f"`{table[-1]}_expires_at`"
        live = "sid = %(sid)s AND expires_at > %(now)s"
        expired = "expires_at <= %(now)s"
        where_table = (
            "WHERE TABLE_NAME = %(table)s AND TABLE_SCHEMA = COALESCE(%(schema)s, DATABASE())"
        )
        # The user columns; a table of an earlier version gets them added. MariaDB 10.3+
        # and MySQL 8 add a nullable column in place (instantly), and build the index
        # online: requests go on meanwhile.
        add_users = (
            f"ALTER TABLE {t} ADD COLUMN user_id VARBINARY(320) NULL, "
            f"ADD COLUMN bound_at DOUBLE NULL, ADD KEY `{table[-1]}_user` (user_id, bound_at)"
        )
        return Statements(
            exists=(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_NAME = %(table)s AND "
                "TABLE_SCHEMA = COALESCE(%(schema)s, DATABASE())"
            ),
            exists_params={"table": table[-1], "schema": table[0] if len(table) > 1 else None},
            setup=(
                f"CREATE TABLE IF NOT EXISTS {t} ("
                "sid VARBINARY(320) NOT NULL, payload LONGBLOB NOT NULL, "
                "expires_at DOUBLE NOT NULL, version BIGINT NOT NULL, "
                "user_id VARBINARY(320) NULL, bound_at DOUBLE NULL, "
                f"PRIMARY KEY (sid), KEY {index} (expires_at), "
                f"KEY `{table[-1]}_user` (user_id, bound_at)) ENGINE=InnoDB"
            ),
            read=f"SELECT payload, expires_at, version FROM {t} WHERE {live}",
            # Columns are assigned left to right and later ones see earlier ones' new
            # values, so expires_at, which every condition reads, goes last. Parameters,
            # not VALUES(), which MySQL 8 deprecates (and the row alias MariaDB lacks).
            create=(
                f"INSERT INTO {t} (sid, payload, expires_at, version) "
                "VALUES (%(sid)s, %(payload)s, %(expires_at)s, %(version)s) "
                f"ON DUPLICATE KEY UPDATE payload = IF({expired}, %(payload)s, payload), "
                f"version = IF({expired}, %(version)s, IF(LAST_INSERT_ID(1), version, version)), "
                f"expires_at = IF({expired}, %(expires_at)s, expires_at)"
            ),
            update=(
                f"UPDATE {t} SET payload = %(payload)s, expires_at = %(expires_at)s, "
                f"version = %(version)s WHERE {live} AND version = %(expected)s"
            ),
            touch=f"UPDATE {t} SET expires_at = %(expires_at)s WHERE {live}",
            delete=f"DELETE FROM {t} WHERE sid = %(sid)s",
            count=f"SELECT COUNT(*) FROM {t} WHERE expires_at > %(now)s",
            gc=f"DELETE FROM {t} WHERE {expired} ORDER BY expires_at LIMIT %(batch)s",
            **portable_statements(t),
            has_users=(
                f"SELECT 1 FROM information_schema.COLUMNS {where_table} "
                "AND COLUMN_NAME = 'user_id'"
            ),
            add_users=add_users,
            # A named lock per user (a hash: names are at most 64 characters), held until
            # unlock_user: concurrent logins of one user take turns.
            lock_user="SELECT GET_LOCK(CONCAT('ws:', SHA1(%(lock)s)), 10)",
            unlock_user="SELECT RELEASE_LOCK(CONCAT('ws:', SHA1(%(lock)s)))",
            bind=(
                f"UPDATE {t} SET user_id = %(user)s, bound_at = %(now)s WHERE {live} "
                "AND NOT (user_id <=> %(user)s)"
            ),
            revoke_select=(
                f"SELECT sid FROM {t} WHERE user_id = %(user)s AND NOT (sid <=> %(keep)s) "
                "FOR UPDATE"
            ),
            delete_sids=f"DELETE FROM {t} WHERE sid IN %(sids)s",
            delete_expired_sids=f"DELETE FROM {t} WHERE sid IN %(sids)s AND {expired}",
            count_sids=f"SELECT COUNT(*) FROM {t} WHERE sid IN %(sids)s",
            # An existing ID keeps its row (a no-op update: INSERT IGNORE would also turn
            # errors into warnings).
            create_many=(
                f"INSERT INTO {t} (sid, payload, expires_at, version, user_id, bound_at) "
                "VALUES %(rows)s "
                "ON DUPLICATE KEY UPDATE sid = sid"
            ),
        )

    def many_params(self, records: list[tuple[str, Record, str | None]],
                    now: float) -> dict[str, Any]:
        """The rows of a multi-row ``VALUES``."""
        return {"rows": Rows((sid, record.payload, record.expires_at, record.version, user,
                              None if user is None else now)
                             for sid, record, user in records)}

    def check_dsn(self, dsn: str) -> None:
        """Parse ``dsn``; a malformed one is a :class:`ConfigurationError`."""
        parse_dsn(dsn)

    def connector(self, dsn: str, *, asynchronous: bool) -> Connector[Any]:
        """PyMySQL connections to ``dsn``, or aiomysql ones for asyncio."""
        return _connector(parse_dsn(dsn), asynchronous=asynchronous)

    def adopt_pool(self, pool: Any, *, asynchronous: bool) -> Lender[Any]:
        """Lend from a :class:`MySQLPool`, or for async use from an ``aiomysql.Pool``."""
        if not asynchronous:
            if not isinstance(pool, MySQLPool):
                raise ConfigurationError(
                    f"providerConfig: pool must be a websession.providers.mysql.MySQLPool, "
                    f"not {type(pool).__name__}", key="pool")
            return pool.pool
        if not isinstance(pool, _aiomysql().Pool):
            raise ConfigurationError(
                f"providerConfig: asyncPool must be an aiomysql.Pool, not "
                f"{type(pool).__name__}", key="asyncPool")
        take = Connector(partial(call, _acquire_within, pool, self.pool_timeout),
                         partial(call, _aio_close), _aio_usable, asynchronous=True)
        return AppPool(take, put=partial(call, pool.release), tries=pool.maxsize)

    # The driver's halves of SQLProvider's borrowing, as plain functions above.
    _statement = staticmethod(_statement)
    _reusable = staticmethod(_reusable)
    _arm = staticmethod(_arm)
