"""The MySQL / MariaDB provider: sessions in one InnoDB table.

``Manager("mysql", {"providerConfig": "root:@tcp(127.0.0.1:3306)/test?charset=utf8mb4"})``

``providerConfig`` is one of:

* the seed's Go DSN, ``[user[:password]@][tcp|unix[(address)]]/dbname[?param=value&...]``,
  parsed as go-sql-driver/mysql parses it;
* a URL, ``mysql://user:password@host:port/dbname?param=value`` (or ``mariadb://``);
* a JSON object or a mapping: ``dsn``, ``table`` (default ``websession_sessions``),
  ``maxConnections`` (default 10), ``poolTimeout`` (seconds to wait for a free connection,
  default 5), ``gcBatchSize`` (default 1000), ``createTable`` (default true), ``pool`` (a
  :class:`MySQLPool` the application owns) and ``asyncPool`` (an ``aiomysql.Pool`` the
  application owns; the provider never closes pools it did not open).

DSN parameters: ``charset``, ``collation`` (accepted; every column is binary),
``timeout`` / ``connect_timeout``, ``readTimeout`` / ``read_timeout``, ``writeTimeout`` /
``write_timeout`` (Go durations such as ``5s``, or seconds), ``tls`` (``true``,
``skip-verify``, ``preferred``, ``false``: the default, as in Go), ``unix_socket``, and
Go driver switches that mean nothing here (``parseTime``, ``loc``, ...), which are ignored.

Drivers: PyMySQL (pure Python, maintained, no C toolchain needed; mysqlclient is faster
but needs the MySQL client library to build) for blocking calls, and aiomysql (built on
PyMySQL's protocol code, so both modes share error classes and escaping) for asyncio.
Connections come from websession's bounded pools — :class:`MySQLPool` for blocking calls,
one ``AsyncPool`` per event loop — which hand out the most recently used connection first,
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
        PRIMARY KEY (sid),
        KEY websession_sessions_expires_at (expires_at)  -- count and GC walk it
    ) ENGINE=InnoDB

``create`` is ``INSERT … ON DUPLICATE KEY UPDATE`` whose every column keeps the old value
while the old row is live; when it does, the statement also calls ``LAST_INSERT_ID(1)``,
which the server reports back in its reply, so "kept a live row" is told from "inserted,
or replaced an expired row" in the same round trip, whatever the connection's
``FOUND_ROWS`` flag.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..exceptions import ConfigurationError, MissingDependencyError
from ._sql import (
    AFFECTED,
    CREATED,
    ROW,
    AsyncPool,
    PerLoop,
    Plan,
    Pool,
    PoolClosed,
    PoolTimeout,
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
    import pymysql  # type: ignore[import-untyped, unused-ignore]
    from pymysql.constants import CLIENT  # type: ignore[import-untyped, unused-ignore]
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

# Every connection: one statement per transaction, and no gap locks (see the docstring).
_INIT_COMMAND = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
# UPDATE reports matched rows, not changed ones: a touch to the same deadline is a success.
_CLIENT_FLAGS = CLIENT.FOUND_ROWS
# InnoDB rolled the statement back whole: running it again is safe.
_ER_LOCK_DEADLOCK = 1213
_DEADLOCK_ATTEMPTS = 3

# go-sql-driver/mysql switches that change nothing for a session table.
_IGNORED_PARAMS = frozenset(
    name.lower() for name in (
        "allowAllFiles", "allowCleartextPasswords", "allowFallbackToPlaintext",
        "allowNativePasswords", "allowOldPasswords", "checkConnLiveness", "clientFoundRows",
        "collation", "columnsWithAlias", "compress", "connectionAttributes",
        "interpolateParams", "loc", "maxAllowedPacket", "multiStatements", "parseTime",
        "rejectReadOnly", "serverPubKey", "strict", "timeTruncate",
    )
)
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                   "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class MySQLParams:
    """Connection settings read from a DSN, for PyMySQL and aiomysql alike."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = ""
    password: str = field(default="", repr=False)
    database: str = ""
    unix_socket: str | None = None
    charset: str = "utf8mb4"
    connect_timeout: float | None = 5.0
    read_timeout: float | None = None
    write_timeout: float | None = None
    ssl: ssl.SSLContext | None = field(default=None, compare=False)

    def kwargs(self, *, asynchronous: bool) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect`` or ``aiomysql.connect``."""
        kwargs: dict[str, Any] = {
            "host": self.host, "port": self.port, "user": self.user or None,
            "password": self.password,
            "unix_socket": self.unix_socket, "charset": self.charset,
            "connect_timeout": self.connect_timeout, "autocommit": True,
            "client_flag": _CLIENT_FLAGS, "init_command": _INIT_COMMAND, "ssl": self.ssl,
        }
        if asynchronous:
            kwargs["db"] = self.database or None
        else:
            kwargs["database"] = self.database or None
            kwargs["read_timeout"] = self.read_timeout
            kwargs["write_timeout"] = self.write_timeout
            # PyMySQL would try TLS unasked; Go's driver, and aiomysql, use it when asked.
            kwargs["ssl_disabled"] = self.ssl is None
        return kwargs


def _bad(dsn: str, problem: str) -> ConfigurationError:
    # Never echo the DSN itself: it may hold a password.
    return ConfigurationError(f"providerConfig: invalid MySQL DSN: {problem}", key="dsn")


def _seconds(dsn: str, name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _GO_DURATION.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match[1]) * _DURATION_UNITS[match[2]]
            pos = match.end()
        if pos != len(value) or not value:
            raise _bad(dsn, f"{name}={value!r} is not a duration such as 5s or 500ms") from None
    if seconds < 0:
        raise _bad(dsn, f"{name} must not be negative")
    return seconds


def _tls(dsn: str, value: str) -> ssl.SSLContext | None:
    mode = value.lower()
    if mode in ("false", "0", ""):
        return None
    if mode in ("true", "1"):
        return ssl.create_default_context()
    if mode in ("skip-verify", "preferred"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    raise _bad(dsn, f"tls={value!r}: use true, skip-verify, preferred or false (named TLS "
                    "configurations are a Go feature; pass an SSL context in a pool instead)")


def _apply_params(dsn: str, query: str, settings: dict[str, Any]) -> None:
    for name, value in parse_qsl(query, keep_blank_values=True):
        key = name.lower().replace("_", "")
        if key == "charset":
            settings["charset"] = value.split(",")[0].strip()
            if not settings["charset"]:
                raise _bad(dsn, "charset is empty")
        elif key in ("timeout", "connecttimeout"):
            settings["connect_timeout"] = _seconds(dsn, name, value) or None  # 0: none
        elif key == "readtimeout":
            settings["read_timeout"] = _seconds(dsn, name, value) or None
        elif key == "writetimeout":
            settings["write_timeout"] = _seconds(dsn, name, value) or None
        elif key in ("tls", "ssl"):
            settings["ssl"] = _tls(dsn, value)
        elif key in ("unixsocket", "socket"):
            settings["unix_socket"] = value
        elif key not in _IGNORED_PARAMS:
            raise _bad(dsn, f"unknown parameter {name!r} (known: charset, timeout, "
                            "readTimeout, writeTimeout, tls, unix_socket)")


def _host_port(dsn: str, address: str) -> tuple[str, int]:
    host, port = address, "3306"
    if address.startswith("["):  # [IPv6]:port
        end = address.find("]")
        if end < 0:
            raise _bad(dsn, "unclosed '[' in the address")
        host, rest = address[1:end], address[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise _bad(dsn, "expected ':port' after ']'")
            port = rest[1:]
    elif address.count(":") == 1:
        host, port = address.split(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(dsn, f"port {port!r} is not a number from 1 to 65535")
    return host or "127.0.0.1", int(port)


def _parse_url(dsn: str) -> MySQLParams:
    try:
        url = urlsplit(dsn)
        port = url.port
    except ValueError as exc:
        raise _bad(dsn, str(exc)) from None
    settings: dict[str, Any] = {
        "host": url.hostname or "127.0.0.1",
        "port": port or 3306,
        "user": unquote(url.username or ""),
        "password": unquote(url.password or ""),
        "database": unquote(url.path.lstrip("/")),
    }
    if "/" in settings["database"]:
        raise _bad(dsn, "the database name must not contain '/'")
    _apply_params(dsn, url.query, settings)
    return MySQLParams(**settings)


def _parse_go(dsn: str) -> MySQLParams:
    # As go-sql-driver/mysql's ParseDSN: the last '/' ends the address (passwords and
    # socket paths may hold '/'); the last '@' before it ends the credentials, whose
    # first ':' splits user from password; "net(address)" sits between them.
    slash = dsn.rfind("/")
    if slash < 0:
        raise _bad(dsn, "no '/' before the database name (expected "
                        "user:password@tcp(host:port)/dbname)")
    head, tail = dsn[:slash], dsn[slash + 1:]
    settings: dict[str, Any] = {}
    at = head.rfind("@")
    if at >= 0:
        user, _, password = head[:at].partition(":")
        settings["user"], settings["password"] = user, password
    net_address = head[at + 1:]
    net, paren, address = net_address.partition("(")
    if paren:
        if not address.endswith(")"):
            raise _bad(dsn, "the address must be closed by ')' right before '/'"
                            if ")" not in address else
                            "unescaped ')' or '/' in the address or a parameter value")
        address = address[:-1]
    net = net or "tcp"
    if net in ("tcp", "tcp4", "tcp6"):
        if address:
            settings["host"], settings["port"] = _host_port(dsn, address)
    elif net == "unix":
        settings["unix_socket"] = address or "/tmp/mysql.sock"
    else:
        raise _bad(dsn, f"unknown network {net!r} (use tcp or unix)")
    database, _, query = tail.partition("?")
    settings["database"] = unquote(database)
    _apply_params(dsn, query, settings)
    return MySQLParams(**settings)


def parse_dsn(dsn: str) -> MySQLParams:
    """Read a Go DSN or a ``mysql://`` URL; a malformed one is a :class:`ConfigurationError`."""
    if not isinstance(dsn, str) or not dsn.strip():
        raise ConfigurationError("providerConfig: the MySQL DSN is empty", key="dsn")
    dsn = dsn.strip()
    scheme = dsn.partition("://")[0].lower() if "://" in dsn else ""
    if scheme:
        if scheme not in ("mysql", "mariadb", "mysql+pymysql"):
            raise _bad(dsn, f"unknown URL scheme {scheme!r} (use mysql:// or a Go DSN)")
        return _parse_url(dsn)
    return _parse_go(dsn)


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


async def _aio_close(conn: Any) -> None:
    conn.close()


def _reusable(conn: Any, exc: BaseException) -> bool:
    # The server answered with an error about the statement: the connection is in step.
    # Anything else (lost connection, timeout, cancellation mid-read) leaves it unknown.
    return isinstance(exc, pymysql.err.ProgrammingError | pymysql.err.IntegrityError
                      | pymysql.err.DataError | pymysql.err.NotSupportedError)


class MySQLPool(Pool[Any]):
    """A bounded, thread-safe pool of PyMySQL connections (see :class:`Pool`).

    The provider opens one of its own; an application may own one instead, and share it
    between providers: ``{"pool": MySQLPool(dsn, max_size=20)}``. It closes it itself.
    """

    def __init__(self, dsn: str | MySQLParams, *, max_size: int = 10,
                 timeout: float = 5.0) -> None:
        self.params = dsn if isinstance(dsn, MySQLParams) else parse_dsn(dsn)
        kwargs = self.params.kwargs(asynchronous=False)
        super().__init__(lambda: pymysql.connect(**kwargs), max_size=max_size,
                         timeout=timeout, usable=_usable, close=_close)


def _close(conn: Any) -> None:
    conn.close()


class _AppAsyncPool:
    """An application's ``aiomysql.Pool`` behind :class:`AsyncPool`'s two methods."""

    def __init__(self, pool: Any, timeout: float) -> None:
        self.pool = pool
        self.timeout = timeout

    async def acquire(self) -> Any:
        # aiomysql waits for a free connection forever; a bounded wait is an outage.
        async with asyncio.timeout(self.timeout):
            return await self.pool.acquire()

    async def release(self, conn: Any, *, discard: bool = False) -> None:
        if discard:
            conn.close()  # the pool drops closed connections
        await self.pool.release(conn)


def _outcome(cursor: Any, fetch: int, row: Any) -> Any:
    if fetch == ROW:
        return row
    if fetch == AFFECTED:
        return cursor.rowcount
    if fetch == CREATED:  # see the module docstring: LAST_INSERT_ID(1) means "kept"
        return cursor.lastrowid == 0
    return None


def _retry(exc: Exception, attempt: int) -> bool:
    # A deadlock victim: InnoDB rolled the statement back whole, so running it again is
    # safe. Anything else is for the caller.
    return (isinstance(exc, pymysql.err.OperationalError)
            and exc.args[0] == _ER_LOCK_DEADLOCK and attempt < _DEADLOCK_ATTEMPTS)


def _execute(conn: Any, plan: Plan[T]) -> T:
    """Run ``plan``'s statements on a PyMySQL connection."""
    cursor = conn.cursor()

    def execute(step: Step) -> Any:
        sql, params, fetch = step
        attempt = 1
        while True:
            try:
                cursor.execute(sql, params)
                break
            except Exception as exc:
                if not _retry(exc, attempt):
                    raise
                attempt += 1
        return _outcome(cursor, fetch, cursor.fetchone() if fetch == ROW else None)

    return drive(plan, execute)


def _render(conn: Any, sql: str, params: Mapping[str, Any] | None) -> str:
    # aiomysql 0.3.2 cannot escape bytes with PyMySQL >= 1.2.3 (it calls a helper PyMySQL
    # replaced by a placeholder string: aio-libs/aiomysql#1080), so parameters are
    # rendered here, bytes as the hex literal PyMySQL itself now sends.
    if params is None:
        return sql
    return sql % {
        name: f"_binary X'{value.hex()}'" if type(value) is bytes else conn.escape(value)
        for name, value in params.items()
    }


async def _aexecute(conn: Any, plan: Plan[T]) -> T:
    """Run ``plan``'s statements on an aiomysql connection."""
    cursor = await conn.cursor()
    # An application's pool may not autocommit: end each statement's transaction then.
    autocommit = conn.get_autocommit()

    async def execute(step: Step) -> Any:
        sql, params, fetch = step
        query = _render(conn, sql, params)
        attempt = 1
        while True:
            try:
                await cursor.execute(query)
                break
            except Exception as exc:
                if not _retry(exc, attempt):
                    raise
                attempt += 1
        if not autocommit:
            await conn.commit()
        return _outcome(cursor, fetch, await cursor.fetchone() if fetch == ROW else None)

    return await adrive(plan, execute)


def _aiomysql() -> Any:
    try:
        import aiomysql  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise MissingDependencyError("mysql", "mysql", "aiomysql") from None
    return aiomysql


def _quote(parts: tuple[str, ...]) -> str:
    return ".".join(f"`{part}`" for part in parts)


class MySQLProvider(SQLProvider):
    """Sessions in a MySQL or MariaDB table; see the module documentation."""

    provider_name = "mysql"
    unavailable_errors = (
        pymysql.err.OperationalError,  # cannot connect, lost connection, server shutdown
        pymysql.err.InterfaceError,  # a connection closed under us
        ConnectionError,
        TimeoutError,  # PoolTimeout, and asyncio timeouts
    )

    def __init__(self, dsn: str | None = None, **options: Any) -> None:
        self._own_pool: MySQLPool | None = None
        self._async_pools: PerLoop[AsyncPool[Any]] = PerLoop(
            self._open_async_pool, close_async_pool)
        self._app_async_pool: _AppAsyncPool | None = None
        super().__init__(dsn, **options)

    # -- configuration ----------------------------------------------------------------

    def make_statements(self, table: tuple[str, ...]) -> Statements:
        """MySQL's statements for ``table``."""
        t = _quote(table)
        index = f"`{table[-1]}_expires_at`"
        live = "sid = %(sid)s AND expires_at > %(now)s"
        expired = "expires_at <= %(now)s"
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
                f"PRIMARY KEY (sid), KEY {index} (expires_at)) ENGINE=InnoDB"
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
        )

    def check_dsn(self, dsn: str) -> None:
        """Parse ``dsn``; a malformed one is a :class:`ConfigurationError`."""
        parse_dsn(dsn)

    def check_pool(self, pool: Any, *, asynchronous: bool) -> Any:
        """Accept a :class:`MySQLPool`, or for async use an ``aiomysql.Pool``."""
        if asynchronous:
            if not isinstance(pool, _aiomysql().Pool):
                raise ConfigurationError(
                    f"providerConfig: asyncPool must be an aiomysql.Pool, not "
                    f"{type(pool).__name__}", key="asyncPool")
            self._app_async_pool = _AppAsyncPool(pool, self.pool_timeout)
        elif not isinstance(pool, MySQLPool):
            raise ConfigurationError(
                f"providerConfig: pool must be a websession.providers.mysql.MySQLPool, not "
                f"{type(pool).__name__}", key="pool")
        return pool

    # -- blocking I/O -----------------------------------------------------------------

    def _sync_pool(self) -> Pool[Any]:
        """The application's :class:`MySQLPool`, or our own."""
        if self.pool is not None:
            return self.pool  # type: ignore[no-any-return]
        with self._lock:
            if self._own_pool is None:
                self._own_pool = MySQLPool(self._need_dsn("sync"), max_size=self.max_connections,
                                           timeout=self.pool_timeout)
            return self._own_pool

    # -- asyncio I/O ------------------------------------------------------------------

    async def _open_async_pool(self) -> AsyncPool[Any]:
        aiomysql = _aiomysql()
        kwargs = parse_dsn(self._need_dsn("async")).kwargs(asynchronous=True)

        async def connect() -> Any:
            return await aiomysql.connect(**kwargs)

        return AsyncPool(connect, max_size=self.max_connections, timeout=self.pool_timeout,
                         usable=_aio_usable, close=_aio_close)

    # The drivers' halves of SQLProvider's borrowing, as plain functions above.
    _execute = staticmethod(_execute)
    _aexecute = staticmethod(_aexecute)
    _reusable = staticmethod(_reusable)


