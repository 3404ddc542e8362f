"""What the SQL providers (MySQL/MariaDB and PostgreSQL) share.

Each primitive is one SQL statement, written once per dialect in :class:`Statements`, and
run by a *plan* (:mod:`websession._plans`) on a borrowed connection: the plan hands each
:data:`Step` — ``(sql, params, fetch)`` — to the driver's statement plan
(:meth:`SQLProvider._statement`), a plan of calls to the connection, and returns the
primitive's result. Borrowing is a plan over the pools of :mod:`._pool` too, so everything
— parameters, result mapping, GC batching, borrowing, creating the table once — exists
once, for both modes and both databases: :func:`~._pool.run` runs it blocking,
:func:`~._pool.arun` in an event loop.

Everything compares against ``now`` computed in Python and passed as a parameter, so every
provider agrees with the engine's clock, whatever the database server's clock says.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import threading
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar

from .._loops import LoopLocal
from .._plans import Plan
from ..exceptions import ConfigurationError, UnsupportedOperationError
from ._options import DEFAULT_OPERATION_TIMEOUT, parse_operation_timeout
from ._pool import Connector, Lender, Pool, arun, close_per_loop, run
from .base import BaseProvider, Page, Record, parse_options

__all__ = [
    "AFFECTED",
    "CREATED",
    "DEFAULT_TABLE",
    "NOTHING",
    "ROW",
    "ROWS",
    "SQLProvider",
    "Statements",
    "Step",
    "portable_statements",
]

T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S", bound="SQLProvider")

#: What a step gives back to its plan: nothing, the first row (or ``None``), the number of
#: rows the statement affected, whether a create statement stored its row, or every row.
NOTHING, ROW, AFFECTED, CREATED, ROWS = range(5)

#: One statement: its SQL, its named parameters (``None``: sent as is, no placeholders),
#: and what the plan wants back.
Step = tuple[str, Mapping[str, Any] | None, int]


def fetched(cursor: Any, fetch: int) -> Plan[Any]:
    """What ``fetch`` asks of a DB-API ``cursor`` that ran a statement: its first row,
    every row, the number of rows affected, or nothing. (``CREATED`` is each driver's
    own: the drivers tell a kept row in different ways.)"""
    if fetch == ROW:
        return (yield cursor.fetchone)
    if fetch == ROWS:
        return (yield cursor.fetchall)
    if fetch == AFFECTED:
        return cursor.rowcount
    return None


#: One of :class:`SQLProvider`'s plans: ``plan(provider, conn, *args, **kwargs)``.
_PlanOn = Callable[..., Plan[T]]

DEFAULT_TABLE = "websession_sessions"
# Short enough that "<table>_expires_at" fits the 64-byte identifier limit of both servers.
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}")


@dataclass(frozen=True, slots=True)
class Statements:
    """A dialect's SQL for one table: the schema, and one statement per primitive.

    Parameters are named: ``sid``, ``payload``, ``expires_at``, ``version``, ``expected``,
    ``now`` and ``batch``. ``exists`` (with ``exists_params``) finds the table, so that
    ``setup`` runs only when it is missing (some drivers turn "already exists" notes into
    warnings and extra round trips).
    """

    exists: str
    exists_params: Mapping[str, Any]
    setup: str
    read: str
    create: str
    update: str
    touch: str
    delete: str
    count: str
    gc: str
    # -- the operations of issue 13: listing, the user index, batch creation ----------
    #: Finds the user columns (same parameters as ``exists``); ``add_users`` adds them
    #: and their index to a table made before they existed.
    has_users: str = ""
    add_users: str = ""
    #: Keyset pagination: ``batch`` live rows in ``sid`` order (after ``after``).
    scan_first: str = ""
    scan: str = ""
    #: Serialise the binds of one user (``lock``): ``lock_user`` inside the transaction,
    #: ``unlock_user`` (if the lock outlives it) after.
    lock_user: str = ""
    unlock_user: str = ""
    #: Bind a live row to ``user`` (``None``: to nobody) unless it already is.
    bind: str = ""
    #: A user's live sessions newest binding first (sids only), and oldest first (rows).
    user_sids: str = ""
    sessions_of: str = ""
    #: Lock the sids of ``user``'s rows other than ``keep`` (for revoke_user).
    revoke_select: str = ""
    #: Lock up to ``batch`` expired sids (for gc_ids).
    expired_select: str = ""
    #: Delete the rows named in ``sids`` (``expired_sids``: only those expired by ``now``).
    delete_sids: str = ""
    delete_expired_sids: str = ""
    #: How many of the rows named in ``sids`` exist.
    count_sids: str = ""
    #: Insert many rows at once, skipping IDs that exist (see ``SQLProvider.many_params``).
    create_many: str = ""


def portable_statements(t: str) -> dict[str, Any]:
    """The operations' statements both dialects write alike, for the quoted table ``t``."""
    rows = "sid, payload, expires_at, version"
    return {
        # Keyset pagination through the primary key: no OFFSET, however deep the walk.
        "scan_first": f"SELECT {rows} FROM {t} WHERE expires_at > %(now)s ORDER BY sid "
                      "LIMIT %(batch)s",
        "scan": f"SELECT {rows} FROM {t} WHERE sid > %(after)s AND expires_at > %(now)s "
                "ORDER BY sid LIMIT %(batch)s",
        "user_sids": f"SELECT sid FROM {t} WHERE user_id = %(user)s AND expires_at > %(now)s "
                     "ORDER BY bound_at DESC, sid",
        "sessions_of": f"SELECT {rows} FROM {t} WHERE user_id = %(user)s "
                       "AND expires_at > %(now)s ORDER BY bound_at, sid",
        "expired_select": f"SELECT sid FROM {t} WHERE expires_at <= %(now)s "
                          "ORDER BY expires_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED",
    }


def split_table(name: str) -> tuple[str, ...]:
    """Check a table name (``table`` or ``schema.table``) and return its parts.

    Only plain identifiers are accepted, so a name can be quoted into SQL safely.
    """
    parts = tuple(name.split("."))
    if not 1 <= len(parts) <= 2 or not all(_IDENT.fullmatch(part) for part in parts):
        raise ConfigurationError(
            f"providerConfig: table {name!r} must be a name, or schema.name, of at most 48 "
            "letters, digits or underscores (not starting with a digit)",
            key="table",
        )
    return parts


def _positive(name: str, value: Any, kind: type = int) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(
            f"providerConfig: {name} must be a positive number, got {value!r}", key=name
        )
    if kind is int and not isinstance(value, int):
        raise ConfigurationError(
            f"providerConfig: {name} must be a whole number, got {value!r}", key=name
        )
    return kind(value)


def _primitive(
    plan: Callable[Concatenate[S, Any, P], Plan[T]],
) -> tuple[Callable[Concatenate[S, P], T], Callable[Concatenate[S, P], Awaitable[T]]]:
    """A primitive and its async twin, both running ``plan`` on a borrowed connection
    (they share its docstring)."""
    name = plan.__name__.lstrip("_")

    def blocking(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(plan, args, kwargs)

    def awaitable(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        return self._arun(plan, args, kwargs)

    blocking.__name__ = blocking.__qualname__ = name
    blocking.__doc__ = plan.__doc__
    awaitable.__name__ = awaitable.__qualname__ = f"a{name}"
    awaitable.__doc__ = f"Async twin of :meth:`{name}`."
    return blocking, awaitable


class SQLProvider(BaseProvider):
    """The primitives of a SQL provider as plans, over a subclass's driver.

    A subclass says what its database and driver need, and none of it changes the
    provider: its dialect (:meth:`make_statements`), whether a DSN is well formed
    (:meth:`check_dsn`), how to open connections (:meth:`connector`), how to lend from a
    pool the application owns (:meth:`adopt_pool`), how to run one statement
    (:meth:`_statement`) and whether a connection survived a failure (:meth:`_reusable`).
    The rest — options, pools (the application's, or our own: one blocking, one per event
    loop), creating the table once, closing — is here, for both modes at once.
    """

    #: The registry name, for messages.
    provider_name: ClassVar[str] = "sql"

    table: str
    statements: Statements
    max_connections: int
    pool_timeout: float
    operation_timeout: float
    gc_batch_size: int
    create_table: bool

    _OPTIONS: ClassVar[dict[str, type]] = {
        "dsn": str,
        "table": str,
        "max_connections": object,
        "pool_timeout": object,
        "operation_timeout": object,
        "gc_batch_size": object,
        "create_table": bool,
        "pool": object,
        "async_pool": object,
    }

    def __init__(
        self,
        dsn: str | None = None,
        *,
        table: str = DEFAULT_TABLE,
        max_connections: int = 10,
        pool_timeout: float = 5.0,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        gc_batch_size: int = 1000,
        create_table: bool = True,
        pool: Any = None,
        async_pool: Any = None,
    ) -> None:
        self.dsn: str | None = None
        #: The application's pools, as given (never closed by the provider).
        self.pool: Any = None
        self.async_pool: Any = None
        self._app_pool: Lender[Any] | None = None
        self._app_async_pool: Lender[Any] | None = None
        self._own_pool: Pool[Any] | None = None
        self._async_pools: LoopLocal[Pool[Any]] = LoopLocal(self._open_async_pool)
        self._in_use = False  # a pool of our own is open: too late to configure
        self._lock = threading.Lock()
        self._setup_lock = threading.Lock()
        self._async_setup_locks: LoopLocal[asyncio.Lock] = LoopLocal(asyncio.Lock)
        self._apply({
            "dsn": dsn, "table": table, "max_connections": max_connections,
            "pool_timeout": pool_timeout, "operation_timeout": operation_timeout,
            "gc_batch_size": gc_batch_size,
            "create_table": create_table, "pool": pool, "async_pool": async_pool,
        })

    # -- configuration ----------------------------------------------------------------

    def configure(self, config: Any) -> None:
        """Apply ``providerConfig``: a DSN, a JSON object or a mapping of options.

        Options: ``dsn``, ``table``, ``maxConnections``, ``poolTimeout`` (seconds),
        ``operationTimeout`` (seconds one operation may take in all — pool wait, connect,
        statement, default 5 — past which it fails with
        :class:`~websession.StoreUnavailableError`), ``gcBatchSize``, ``createTable``, and
        ``pool`` / ``asyncPool`` (pools the application owns and closes). An empty
        ``providerConfig`` keeps the settings the provider was constructed with.
        """
        if config in ("", None):
            if self.dsn is None and self.pool is None and self.async_pool is None:
                self._apply({"dsn": self.default_dsn()})
            return
        if isinstance(config, str) and not config.lstrip().startswith("{"):
            config = {"dsn": config}
        options = parse_options(config, self._OPTIONS, provider=self.provider_name)
        self._apply(options)

    def _apply(self, options: Mapping[str, Any]) -> None:
        if self._in_use:
            raise ConfigurationError(
                f"{type(self).__name__} is in use: configure it before its first request"
            )
        if "table" in options:
            self.table = options["table"]
            self.statements = self.make_statements(split_table(self.table))
        if "max_connections" in options:
            self.max_connections = _positive("maxConnections", options["max_connections"])
        if "pool_timeout" in options:
            self.pool_timeout = _positive("poolTimeout", options["pool_timeout"], float)
        if "operation_timeout" in options:
            self.operation_timeout = parse_operation_timeout(options["operation_timeout"],
                                                             where="providerConfig")
        if "gc_batch_size" in options:
            self.gc_batch_size = _positive("gcBatchSize", options["gc_batch_size"])
        if "create_table" in options:
            self.create_table = bool(options["create_table"])
        if "table" in options or "create_table" in options:
            self._ready = not self.create_table  # a new table is checked on first use
            self._has_users: bool | None = None  # whether it has the user columns
        if options.get("dsn") is not None:
            self.check_dsn(options["dsn"])
            self.dsn = options["dsn"]
        if options.get("pool") is not None:
            self._app_pool = self.adopt_pool(options["pool"], asynchronous=False)
            self.pool = options["pool"]
        if options.get("async_pool") is not None:
            self._app_async_pool = self.adopt_pool(options["async_pool"], asynchronous=True)
            self.async_pool = options["async_pool"]

    def _need_dsn(self, mode: str) -> str:
        if self.dsn is None:
            raise ConfigurationError(
                f"the {self.provider_name!r} provider has no {mode} pool: give providerConfig "
                f"a DSN, or a {'asyncPool' if mode == 'async' else 'pool'}",
                key="providerConfig",
            )
        return self.dsn

    # -- what a subclass provides ---------------------------------------------------------

    def default_dsn(self) -> str:
        """The DSN used when ``providerConfig`` is empty; by default there is none."""
        raise ConfigurationError(
            f"the {self.provider_name!r} provider needs providerConfig: a DSN or a JSON "
            "object with one",
            key="providerConfig",
        )

    @abstractmethod
    def make_statements(self, table: tuple[str, ...]) -> Statements:
        """The dialect's statements for ``table`` (already checked)."""

    @abstractmethod
    def check_dsn(self, dsn: str) -> None:
        """Raise :class:`ConfigurationError` naming what is wrong with ``dsn``."""

    @abstractmethod
    def connector(self, dsn: str, *, asynchronous: bool) -> Connector[Any]:
        """How the driver opens connections to ``dsn``, blocking or asyncio."""

    @abstractmethod
    def adopt_pool(self, pool: Any, *, asynchronous: bool) -> Lender[Any]:
        """A lender over ``pool``, an application-owned pool this driver can use; a
        :class:`ConfigurationError` (naming ``pool`` or ``asyncPool``) if it is not one."""

    @abstractmethod
    def _statement(self, conn: Any, step: Step, /) -> Plan[Any]:
        """Run one statement on a connection: a plan of calls to the driver."""

    @abstractmethod
    def _reusable(self, conn: Any, exc: BaseException, /) -> bool:
        """Whether ``conn`` is still in step with its server after ``exc``."""

    @abstractmethod
    def many_params(self, records: list[tuple[str, Record, str | None]],
                    now: float) -> dict[str, Any]:
        """The parameters of :attr:`Statements.create_many` for ``records``."""

    def lock_name(self, user: str) -> str:
        """The name of the lock that serialises ``user``'s binds in this table."""
        return f"websession:{self.table}:{user}"

    def _arm(self, conn: Any, deadline: float, /) -> None:
        """Bound what ``conn`` does next by ``deadline`` (a :func:`time.monotonic` time),
        for a driver whose waits only it can bound; an asyncio driver's are bounded by
        cancellation, so by default nothing is done."""

    # -- borrowing connections ----------------------------------------------------------

    # One deadline per operation, operationTimeout from its start: the pool's wait, a
    # connect and the statements all end by then. Blocking drivers are bounded by what
    # each step is given (the pool's wait, the connect timeout, _arm); asyncio ones by
    # cancellation at the deadline, and a connection cancelled mid-statement is discarded.

    def _run(self, plan: _PlanOn[T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """Run ``plan`` on a borrowed connection, blocking."""
        deadline = time.monotonic() + self.operation_timeout
        return run(self._borrowing(self._sync_lender(), self._setup_lock, deadline, plan,
                                   args, kwargs))

    async def _arun(self, plan: _PlanOn[T], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> T:
        """Run ``plan`` on a borrowed connection of the running loop's pool."""
        deadline = time.monotonic() + self.operation_timeout
        try:
            async with asyncio.timeout(self.operation_timeout) as within:
                return await arun(self._borrowing(
                    self._async_lender(), self._async_setup_locks.get(), deadline, plan,
                    args, kwargs))
        except TimeoutError:
            if not within.expired():
                raise
            raise TimeoutError(f"no answer within operationTimeout "
                               f"({self.operation_timeout:g} s)") from None

    def _borrowing(self, lender: Lender[Any], setup_lock: Any, deadline: float,
                   plan: _PlanOn[T], args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Plan[T]:
        """``plan(self, conn, *args, **kwargs)`` on a connection from ``lender``, given back
        (discarded if it failed mid-statement) whatever happens; the table is created first
        if need be. All of it ends by ``deadline``."""
        conn = lender.try_acquire()
        if conn is None:
            conn = yield from lender.acquire(deadline)
        try:
            self._arm(conn, deadline)
            if not self._ready:
                yield from self._set_up(conn, setup_lock)
            result = yield from plan(self, conn, *args, **kwargs)
        except BaseException as exc:
            yield from lender.release(conn, discard=not self._reusable(conn, exc))
            raise
        if not lender.try_release(conn):
            yield from lender.release(conn)
        return result

    def _set_up(self, conn: Any, lock: Any) -> Plan[None]:
        yield lock.acquire  # concurrent first calls create the table once
        try:
            if not self._ready:
                yield from self._setup(conn)
                self._ready = True
        finally:
            lock.release()

    def _sync_lender(self) -> Lender[Any]:
        """The pool blocking calls borrow from: the application's, or our own."""
        lender = self._app_pool or self._own_pool
        if lender is None:
            with self._lock:
                if self._own_pool is None:
                    connector = self.connector(self._need_dsn("sync"), asynchronous=False)
                    self._own_pool = Pool(connector, max_size=self.max_connections,
                                          timeout=self.pool_timeout)
                    self._in_use = True
                lender = self._own_pool
        return lender

    def _async_lender(self) -> Lender[Any]:
        """The application's async pool, or the running loop's own."""
        return self._app_async_pool or self._async_pools.get()

    def _open_async_pool(self) -> Pool[Any]:
        connector = self.connector(self._need_dsn("async"), asynchronous=True)
        pool = Pool(connector, max_size=self.max_connections, timeout=self.pool_timeout)
        self._in_use = True
        return pool

    def close(self) -> None:
        """Close the pools this provider opened (never the application's)."""
        self._close_pools()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`: the running loop's pools are closed before it returns."""
        for closing in self._close_pools():
            await asyncio.wrap_future(closing)

    def _close_pools(self) -> list[concurrent.futures.Future[None]]:
        with self._lock:
            pool, self._own_pool = self._own_pool, None
        if pool is not None:
            run(pool.close())  # closing idle connections does not block
        pending = close_per_loop(self._async_pools.take_all())
        self._in_use = False
        return pending

    # -- the plans ----------------------------------------------------------------------

    def _setup(self, conn: Any) -> Plan[None]:
        """Create the table and its index if they are missing (once per provider); add
        the user columns to a table made before they existed."""
        statements = self.statements
        found = yield from self._statement(conn, (statements.exists, statements.exists_params, ROW))
        if found is None or found[0] is None:
            yield from self._statement(conn, (statements.setup, None, NOTHING))
            self._has_users = True
        else:
            yield from self._add_users(conn)

    def _read(self, conn: Any, sid: str) -> Plan[Record | None]:
        """Return the live record: one ``SELECT`` by primary key."""
        row = yield from self._statement(
            conn, (self.statements.read, {"sid": sid, "now": time.time()}, ROW))
        if row is None:
            return None
        payload, expires_at, version = row
        return Record(payload if type(payload) is bytes else bytes(payload), expires_at, version)

    def _create(self, conn: Any, sid: str, record: Record) -> Plan[bool]:
        """Insert, or replace an expired row; one upsert that keeps a live row untouched."""
        created: bool = yield from self._statement(conn, (self.statements.create, {
            "sid": sid, "payload": record.payload, "expires_at": record.expires_at,
            "version": record.version, "now": time.time(),
        }, CREATED))
        return created

    def _update(self, conn: Any, sid: str, record: Record, expected_version: int) -> Plan[bool]:
        """Replace the live row at ``expected_version``: one conditional ``UPDATE``."""
        affected: int = yield from self._statement(conn, (self.statements.update, {
            "sid": sid, "payload": record.payload, "expires_at": record.expires_at,
            "version": record.version, "expected": expected_version, "now": time.time(),
        }, AFFECTED))
        return affected == 1

    def _touch(self, conn: Any, sid: str, expires_at: float) -> Plan[bool]:
        """Move the live row's expiry: one conditional ``UPDATE``."""
        affected: int = yield from self._statement(conn, (self.statements.touch, {
            "sid": sid, "expires_at": expires_at, "now": time.time(),
        }, AFFECTED))
        return affected == 1

    def _delete(self, conn: Any, sid: str) -> Plan[None]:
        """Delete the row."""
        yield from self._statement(conn, (self.statements.delete, {"sid": sid}, NOTHING))

    def _count(self, conn: Any) -> Plan[int]:
        """Count live rows through the expiry index."""
        row = yield from self._statement(conn, (self.statements.count, {"now": time.time()}, ROW))
        return int(row[0])

    def _gc(self, conn: Any) -> Plan[int]:
        """Delete expired rows in batches of ``gcBatchSize``; return how many went."""
        # Bounded batches, each its own transaction, walking the expiry index: a pass over
        # a million expired rows never holds many locks, or any for long. Sessions that
        # expire during the pass are left for the next one.
        params = {"now": time.time(), "batch": self.gc_batch_size}
        removed = 0
        while True:
            # A pass may be long; each batch (one statement) is one operation's worth.
            self._arm(conn, time.monotonic() + self.operation_timeout)
            affected: int = yield from self._statement(conn, (self.statements.gc, params, AFFECTED))
            removed += affected
            if affected < self.gc_batch_size:
                return removed

    # -- the operations (issue 13): listing, the user index, batch creation ---------------
    #
    # A statement that needs several steps to be one (bind's count-and-evict, revoke's and
    # gc_ids' select-then-delete) runs in a transaction opened with BEGIN on the
    # autocommit connection, rolled back if a step fails.

    def _add_users(self, conn: Any) -> Plan[None]:
        """Add the user columns and their index to a table made before they existed
        (nothing if it has them); another process doing it at the same moment is fine."""
        statements = self.statements
        found = yield from self._statement(
            conn, (statements.has_users, statements.exists_params, ROW))
        if found is None:
            try:
                yield from self._statement(conn, (statements.add_users, None, NOTHING))
            except Exception:
                again = yield from self._statement(
                    conn, (statements.has_users, statements.exists_params, ROW))
                if again is None:  # not a race with another process: a real failure
                    raise
        self._has_users = True

    def _users_ready(self, conn: Any) -> Plan[bool]:
        """Whether the table has the user columns (checked once, for a table the
        provider does not manage: ``createTable`` false)."""
        if self._has_users is None:
            statements = self.statements
            found = yield from self._statement(
                conn, (statements.has_users, statements.exists_params, ROW))
            self._has_users = found is not None
        return self._has_users

    def _need_users(self, conn: Any) -> Plan[None]:
        if not (yield from self._users_ready(conn)):
            raise UnsupportedOperationError(
                f"table {self.table} has no user_id column (made before per-user sessions, "
                "and createTable is false): add the columns as the provider's "
                "documentation shows, or set createTable true")

    def _in_transaction(self, conn: Any, body: Plan[T]) -> Plan[T]:
        """Run ``body`` between BEGIN and COMMIT on ``conn``; roll back if it fails."""
        yield from self._statement(conn, ("BEGIN", None, NOTHING))
        try:
            result = yield from body
        except Exception:
            # A connection the server answered with an error goes back to the pool: not in
            # this transaction. (One left mid-statement, or cancelled, is discarded.)
            with contextlib.suppress(Exception):  # broken: the borrowing plan discards it
                yield from self._statement(conn, ("ROLLBACK", None, NOTHING))
            raise
        yield from self._statement(conn, ("COMMIT", None, NOTHING))
        return result

    def _delete_sids(self, conn: Any, sids: list[str]) -> Plan[None]:
        if sids:
            yield from self._statement(conn, (self.statements.delete_sids, {"sids": sids},
                                              NOTHING))

    @staticmethod
    def _sid(value: Any) -> str:
        return value if type(value) is str else bytes(value).decode("ascii")  # VARBINARY

    @classmethod
    def _row_record(cls, row: Any) -> tuple[str, Record]:
        sid, payload, expires_at, version = row
        return cls._sid(sid), Record(payload if type(payload) is bytes else bytes(payload),
                                     expires_at, version)

    def _scan(self, conn: Any, cursor: str | None, batch: int) -> Plan[Page]:
        """Keyset pagination through the primary key: ``sid > cursor ORDER BY sid``, one
        index range read per batch however deep the walk is (no OFFSET)."""
        statements, now = self.statements, time.time()
        if cursor is None:
            step: Step = (statements.scan_first, {"now": now, "batch": batch}, ROWS)
        else:
            step = (statements.scan, {"after": cursor, "now": now, "batch": batch}, ROWS)
        rows = yield from self._statement(conn, step)
        page = [self._row_record(row) for row in rows]
        return Page(page, page[-1][0] if len(page) == batch else None)

    def _bind(self, conn: Any, sid: str, user: str | None, cap: int) -> Plan[list[str]]:
        """Set the row's user, then delete that user's rows past ``cap`` (the newest
        kept), in one transaction holding a lock on the user: concurrent logins of one
        user, from any process, take turns."""
        if not (yield from self._users_ready(conn)):
            return []  # a table without the user columns: nothing to index (see _need_users)
        statements, now = self.statements, time.time()
        params = {"sid": sid, "user": user, "now": now}
        if user is None:
            yield from self._statement(conn, (statements.bind, params, AFFECTED))
            return []
        lock = {"lock": self.lock_name(user)}
        try:
            evicted = yield from self._in_transaction(conn, self._bind_and_evict(
                conn, params, lock, cap))
        finally:
            if statements.unlock_user:
                yield from self._statement(conn, (statements.unlock_user, lock, ROW))
        return evicted

    def _bind_and_evict(self, conn: Any, params: dict[str, Any], lock: dict[str, Any],
                        cap: int) -> Plan[list[str]]:
        statements = self.statements
        locked = yield from self._statement(conn, (statements.lock_user, lock, ROW))
        if locked is not None and locked[0] == 0:  # MySQL's GET_LOCK timed out
            raise TimeoutError(f"another login of this user held its lock in {self.table}")
        bound = yield from self._statement(conn, (statements.bind, params, AFFECTED))
        if not bound or cap <= 0:
            return []
        rows = yield from self._statement(conn, (statements.user_sids, params, ROWS))
        evicted = [self._sid(row[0]) for row in rows[cap:]]
        yield from self._delete_sids(conn, evicted)
        return evicted

    def _sessions_of(self, conn: Any, user: str) -> Plan[list[tuple[str, Record]]]:
        """The user's live rows through the user index, oldest binding first."""
        yield from self._need_users(conn)
        rows = yield from self._statement(
            conn, (self.statements.sessions_of, {"user": user, "now": time.time()}, ROWS))
        return [self._row_record(row) for row in rows]

    def _revoke_user(self, conn: Any, user: str, keep: str | None) -> Plan[list[str]]:
        """Delete the user's rows except ``keep``; return their IDs."""
        yield from self._need_users(conn)
        return (yield from self._in_transaction(conn, self._select_and_delete(
            conn, (self.statements.revoke_select, {"user": user, "keep": keep}, ROWS))))

    def _select_and_delete(self, conn: Any, select: Step) -> Plan[list[str]]:
        rows = yield from self._statement(conn, select)
        sids = [self._sid(row[0]) for row in rows]
        yield from self._delete_sids(conn, sids)
        return sids

    def _gc_ids(self, conn: Any) -> Plan[list[str]]:
        """What :meth:`gc` does, a locked batch at a time, returning the removed IDs."""
        params = {"now": time.time(), "batch": self.gc_batch_size}
        ids: list[str] = []
        while True:
            batch = yield from self._in_transaction(conn, self._select_and_delete(
                conn, (self.statements.expired_select, params, ROWS)))
            ids += batch
            if len(batch) < self.gc_batch_size:
                return ids

    def _create_many(self, conn: Any, records: list[tuple[str, Record, str | None]]) -> Plan[int]:
        """Store many records at once, bound to their users, skipping IDs that have a live
        row (an expired one is replaced): three statements, whatever the batch's size."""
        if not records:
            return 0
        now = time.time()
        if any(user is not None for _, _, user in records):
            yield from self._need_users(conn)
        statements = self.statements
        params = {"sids": [sid for sid, _, _ in records], "now": now}
        yield from self._statement(conn, (statements.delete_expired_sids, params, NOTHING))
        # What was there is counted first: MySQL's count of rows affected by an insert
        # that skips existing IDs depends on the connection's FOUND_ROWS flag.
        found = yield from self._statement(conn, (statements.count_sids, params, ROW))
        yield from self._statement(
            conn, (statements.create_many, self.many_params(records, now), NOTHING))
        return len(records) - int(found[0])

    scan, ascan = _primitive(_scan)
    bind, abind = _primitive(_bind)
    sessions_of, asessions_of = _primitive(_sessions_of)
    revoke_user, arevoke_user = _primitive(_revoke_user)
    gc_ids, agc_ids = _primitive(_gc_ids)
    create_many, acreate_many = _primitive(_create_many)

    # -- the primitives: each plan, blocking and awaitable --------------------------------

    read, aread = _primitive(_read)
    create, acreate = _primitive(_create)
    update, aupdate = _primitive(_update)
    touch, atouch = _primitive(_touch)
    delete, adelete = _primitive(_delete)
    count, acount = _primitive(_count)
    gc, agc = _primitive(_gc)
