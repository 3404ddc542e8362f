"""What the SQL providers (MySQL/MariaDB and PostgreSQL) share.

Each primitive is one SQL statement, written once per dialect in :class:`Statements`, and
run by a *plan*: a generator that yields ``(sql, params, fetch)`` steps and returns the
primitive's result. A provider's sync and async drivers differ only in how they borrow a
connection and execute a step, so the logic of each primitive — parameters, result
mapping, GC batching — exists exactly once, whatever the mode or the database.

Everything compares against ``now`` computed in Python and passed as a parameter, so every
provider agrees with the engine's clock, whatever the database server's clock says.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import threading
import time
import weakref
from abc import abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from ..exceptions import ConfigurationError
from .base import BaseProvider, Record, parse_options

__all__ = [
    "AFFECTED",
    "CREATED",
    "DEFAULT_TABLE",
    "NOTHING",
    "ROW",
    "AsyncPool",
    "PerLoop",
    "Plan",
    "Pool",
    "PoolClosed",
    "PoolTimeout",
    "SQLProvider",
    "Statements",
    "Step",
    "adrive",
    "close_async_pool",
    "drive",
    "idle_socket_broken",
]

T = TypeVar("T")
P = TypeVar("P")
C = TypeVar("C")

#: What a step gives back to its plan: nothing, the first row (or ``None``), the number of
#: rows the statement affected, or whether a create statement stored its row.
NOTHING, ROW, AFFECTED, CREATED = range(4)

#: One statement: its SQL, its named parameters (``None``: sent as is, no placeholders),
#: and what the plan wants back.
Step = tuple[str, Mapping[str, Any] | None, int]
Plan = Generator[Step, Any, T]

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


def drive(plan: Plan[T], execute: Callable[[Step], Any]) -> T:
    """Run ``plan``, each of its steps through ``execute``; return the plan's result."""
    try:
        step = next(plan)
        while True:
            step = plan.send(execute(step))
    except StopIteration as done:
        result: T = done.value
        return result


async def adrive(plan: Plan[T], execute: Callable[[Step], Awaitable[Any]]) -> T:
    """Async twin of :func:`drive`: the same loop, awaiting each step."""
    try:
        step = next(plan)
        while True:
            step = plan.send(await execute(step))
    except StopIteration as done:
        result: T = done.value
        return result


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


def idle_socket_broken(fd: int) -> bool:
    """Whether an idle connection's socket has something to read.

    A database server says nothing to an idle client unless it is closing the connection
    (shutdown, restart, idle timeout, a killed session), so a readable socket means the
    connection is dead. One non-blocking system call: cheap enough for every borrow, and it
    lets a pool drop connections a restart broke before a request trips over them.
    """
    try:
        if _poll is not None:
            poller = _poll()
            poller.register(fd, _POLL_EVENTS)
            return bool(poller.poll(0))
        readable, _, errored = select.select([fd], [], [fd], 0)  # Windows: no poll()
        return bool(readable or errored)
    except (OSError, ValueError):
        return True


_poll = getattr(select, "poll", None)
_POLL_EVENTS = getattr(select, "POLLIN", 1) | getattr(select, "POLLPRI", 2)


class PoolTimeout(TimeoutError):
    """No pooled connection became free within the pool's timeout."""


class PoolClosed(ConnectionError):
    """The pool was closed: the provider or application is shutting down."""


#: A connection given back less than this many seconds ago is lent again unchecked: the
#: check costs a system call per statement, and a server seldom drops a connection that
#: busy (if it does, that one request fails and the connection is discarded).
CHECK_IDLE_AFTER = 1.0


class Pool(Generic[C]):
    """A bounded, thread-safe pool of blocking connections, most recently used first.

    At most ``max_size`` connections exist at once; a caller waits up to ``timeout``
    seconds for a free one, then gets :class:`PoolTimeout`. A failure to connect reaches
    the caller at once (an outage is reported now, not after a timeout). Reusing the
    warmest connection keeps one server process busy instead of waking each in turn. A
    connection that sat idle is checked with ``usable`` first and replaced if the server
    closed it meanwhile; one the caller discards (it failed in use) is closed, never reused.
    """

    def __init__(self, connect: Callable[[], C], *, max_size: int, timeout: float,
                 usable: Callable[[C], bool], close: Callable[[C], None]) -> None:
        self.max_size = max_size
        self.timeout = timeout
        self._connect = connect
        self._usable = usable
        self._close = close
        # A stack of (connection, when it was given back): the warmest one on top.
        self._idle: list[tuple[C, float]] = []
        self._size = 0  # connections open or opening, idle or borrowed
        self._waiting = 0
        self._cond = threading.Condition(threading.Lock())
        self._closed = False

    def acquire(self) -> C:
        """Borrow a connection; give it back with :meth:`release`."""
        try:
            # The common case without the lock: list.pop is atomic, and a connection
            # popped is ours (its slot was counted when it was opened).
            entry: tuple[C, float] | None = self._idle.pop()
        except IndexError:
            entry = self._wait_for_slot()
        # The slot is ours: check the idle connection, or connect, outside the lock.
        try:
            conn = None
            while entry is not None:
                conn, since = entry
                if time.monotonic() - since < CHECK_IDLE_AFTER or self._usable(conn):
                    break
                self._discard(conn)
                conn = None
                with self._cond:
                    if self._idle:  # the dead one's slot goes; the next one has its own
                        self._size -= 1
                        entry = self._idle.pop()
                    else:  # connect anew in the dead one's slot
                        entry = None
            if conn is None:
                if self._closed:
                    raise PoolClosed("the session store's connection pool is closed")
                conn = self._connect()
            return conn
        except BaseException:
            self._free_slot()
            raise

    def _wait_for_slot(self) -> tuple[C, float] | None:
        """An idle connection, or ``None``: a slot to open a new one in."""
        with self._cond:
            # Counted before looking, under the lock: a release that appends after the
            # look sees the count, and its notify waits for the lock, so for the wait.
            self._waiting += 1
            try:
                deadline = None
                while True:
                    if self._closed:
                        raise PoolClosed("the session store's connection pool is closed")
                    if self._idle:
                        return self._idle.pop()
                    if self._size < self.max_size:
                        self._size += 1
                        return None
                    if deadline is None:
                        deadline = time.monotonic() + self.timeout
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._cond.wait(remaining):
                        raise PoolTimeout(f"all {self.max_size} connections stayed in use "
                                          f"for {self.timeout:g} s")
            finally:
                self._waiting -= 1

    def release(self, conn: C, *, discard: bool = False) -> None:
        """Give a connection back; ``discard`` closes it instead (it failed in use)."""
        if discard or self._closed:
            self._discard(conn)
            self._free_slot()
            return
        self._idle.append((conn, time.monotonic()))  # atomic; waiters are woken under the lock
        if self._waiting:
            with self._cond:
                self._cond.notify()
        if self._closed:  # closed between the check above and the append
            self._drain()

    def close(self) -> None:
        """Close idle connections now, and borrowed ones as they come back."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._drain()

    def _drain(self) -> None:
        idle = []
        with self._cond:
            while self._idle:
                idle.append(self._idle.pop()[0])
            self._size -= len(idle)
        for conn in idle:
            self._discard(conn)

    def _free_slot(self) -> None:
        with self._cond:
            self._size -= 1
            if self._waiting:
                self._cond.notify()

    def _discard(self, conn: C) -> None:
        with contextlib.suppress(Exception):  # it may be broken: closing is a courtesy
            self._close(conn)


class AsyncPool(Generic[C]):
    """The asyncio twin of :class:`Pool`, for one event loop (see :class:`PerLoop`)."""

    def __init__(self, connect: Callable[[], Awaitable[C]], *, max_size: int, timeout: float,
                 usable: Callable[[C], bool], close: Callable[[C], Awaitable[None]]) -> None:
        self.max_size = max_size
        self.timeout = timeout
        self._connect = connect
        self._usable = usable
        self._close = close
        self._idle: list[tuple[C, float]] = []  # as in Pool
        self._size = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def acquire(self) -> C:
        """Borrow a connection; give it back with :meth:`release`."""
        deadline = None
        while True:
            if self._closed:
                raise PoolClosed("the session store's connection pool is closed")
            if self._idle:
                conn, since = self._idle.pop()
                if time.monotonic() - since < CHECK_IDLE_AFTER or self._usable(conn):
                    return conn
                self._size -= 1
                await self._discard(conn)
                continue
            if self._size < self.max_size:
                self._size += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._size -= 1
                    self._wake()
                    raise
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.timeout
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, but leaving: pass the turn on
                if isinstance(exc, TimeoutError):
                    raise PoolTimeout(f"all {self.max_size} connections stayed in use for "
                                      f"{self.timeout:g} s") from None
                raise

    async def release(self, conn: C, *, discard: bool = False) -> None:
        """Give a connection back; ``discard`` closes it instead (it failed in use)."""
        if discard or self._closed:
            self._size -= 1
            self._wake()
            await self._discard(conn)
            return
        self._idle.append((conn, time.monotonic()))
        self._wake()

    async def close(self) -> None:
        """Close idle connections now, and borrowed ones as they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._size -= len(idle)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        for conn, _ in idle:
            await self._discard(conn)

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _discard(self, conn: C) -> None:
        with contextlib.suppress(Exception):  # it may be broken: closing is a courtesy
            await self._close(conn)


class PerLoop(Generic[P]):
    """One async connection pool per event loop, opened on first use in that loop.

    asyncio pools belong to the loop they were opened in; an application has one loop,
    but tests and ``asyncio.run`` per job make a new one each time.
    """

    __slots__ = ("_close", "_open", "_opening", "_pools")

    def __init__(
        self,
        open_pool: Callable[[], Coroutine[Any, Any, P]],
        close_pool: Callable[[P], Coroutine[Any, Any, None]],
    ) -> None:
        self._open = open_pool
        self._close = close_pool
        self._pools: dict[asyncio.AbstractEventLoop, P] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Future[P]] = {}

    async def get(self) -> P:
        """The running loop's pool."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = await self._open_in(loop)
        return pool

    async def _open_in(self, loop: asyncio.AbstractEventLoop) -> P:
        opening = self._opening.get(loop)
        if opening is None:
            # A closed loop can run nothing, so its pool cannot be closed cleanly any more:
            # forget it (its sockets close when collected). Close pools with aclose().
            for old in [old for old in self._pools if old.is_closed()]:
                del self._pools[old]
            opening = self._opening[loop] = asyncio.ensure_future(self._open())

            def done(future: asyncio.Future[P]) -> None:
                self._opening.pop(loop, None)
                if not future.cancelled() and future.exception() is None:
                    self._pools[loop] = future.result()

            opening.add_done_callback(done)
        # Shielded: a cancelled request must not cancel an opening other requests await.
        pool = await asyncio.shield(opening)
        self._pools[loop] = pool
        return pool

    async def aclose(self) -> None:
        """Close every pool: the running loop's here, the others in their own loops."""
        loop = asyncio.get_running_loop()
        pools, self._pools = self._pools, {}
        for owner, pool in pools.items():
            if owner is loop:
                await self._close(pool)
            else:
                self._close_in(owner, pool)

    def close(self) -> None:
        """Close every pool from synchronous code, each in its own loop where possible."""
        pools, self._pools = self._pools, {}
        for owner, pool in pools.items():
            self._close_in(owner, pool)

    def _close_in(self, loop: asyncio.AbstractEventLoop, pool: P) -> None:
        if loop.is_closed():
            return  # nothing can run there any more; its sockets are gone or going
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._close(pool), loop)
            try:
                current = asyncio.get_running_loop()
            except RuntimeError:
                current = None
            if current is not loop:  # another thread's loop: wait for it, briefly
                future.result(timeout=10)
            return
        loop.run_until_complete(self._close(pool))


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


async def close_async_pool(pool: AsyncPool[Any]) -> None:
    """Close one of a :class:`PerLoop`'s pools."""
    await pool.close()


class SQLProvider(BaseProvider):
    """The primitives of a SQL provider as plans, over a subclass's drivers.

    A subclass supplies its dialect (:meth:`make_statements`), checks its DSN
    (:meth:`check_dsn`) and application-owned pools (:meth:`check_pool`), and runs plans
    with :meth:`_run` (blocking) and :meth:`_arun` (asyncio).
    """

    #: The registry name, for messages.
    provider_name: ClassVar[str] = "sql"

    table: str
    statements: Statements
    _own_pool: Pool[Any] | None
    _async_pools: PerLoop[Any]
    _app_async_pool: Any
    max_connections: int
    pool_timeout: float
    gc_batch_size: int
    create_table: bool

    _OPTIONS: ClassVar[dict[str, type]] = {
        "dsn": str,
        "table": str,
        "max_connections": object,
        "pool_timeout": object,
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
        gc_batch_size: int = 1000,
        create_table: bool = True,
        pool: Any = None,
        async_pool: Any = None,
    ) -> None:
        self.dsn: str | None = None
        self.pool: Any = None
        self.async_pool: Any = None
        self._lock = threading.Lock()
        self._setup_lock = threading.Lock()
        self._setup_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._apply({
            "dsn": dsn, "table": table, "max_connections": max_connections,
            "pool_timeout": pool_timeout, "gc_batch_size": gc_batch_size,
            "create_table": create_table, "pool": pool, "async_pool": async_pool,
        })

    # -- configuration ----------------------------------------------------------------

    def configure(self, config: Any) -> None:
        """Apply ``providerConfig``: a DSN, a JSON object or a mapping of options.

        Options: ``dsn``, ``table``, ``maxConnections``, ``poolTimeout`` (seconds),
        ``gcBatchSize``, ``createTable``, and ``pool`` / ``asyncPool`` (pools the
        application owns and closes). An empty ``providerConfig`` keeps the settings the
        provider was constructed with.
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
        if self._pools_open():
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
        if "gc_batch_size" in options:
            self.gc_batch_size = _positive("gcBatchSize", options["gc_batch_size"])
        if "create_table" in options:
            self.create_table = bool(options["create_table"])
        if "table" in options or "create_table" in options:
            self._ready = not self.create_table  # a new table is checked on first use
        if options.get("dsn") is not None:
            self.check_dsn(options["dsn"])
            self.dsn = options["dsn"]
        if options.get("pool") is not None:
            self.pool = self.check_pool(options["pool"], asynchronous=False)
        if options.get("async_pool") is not None:
            self.async_pool = self.check_pool(options["async_pool"], asynchronous=True)

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
    def check_pool(self, pool: Any, *, asynchronous: bool) -> Any:
        """Return ``pool`` if it is an application-owned pool this provider can use."""

    def _pools_open(self) -> bool:
        """Whether the provider has opened a pool of its own yet."""
        return self._own_pool is not None or bool(self._async_pools._pools)

    @abstractmethod
    def _sync_pool(self) -> Pool[Any]:
        """The pool blocking calls borrow from: the application's, or one of our own."""

    async def _async_pool(self) -> Any:
        """The application's async pool, or the running loop's own (both offer
        ``acquire``/``release`` as :class:`AsyncPool` does)."""
        return self._app_async_pool or await self._async_pools.get()

    @abstractmethod
    def _execute(self, conn: Any, plan: Plan[T], /) -> T:
        """Run ``plan``'s statements on a connection of the sync driver."""

    @abstractmethod
    async def _aexecute(self, conn: Any, plan: Plan[T], /) -> T:
        """Run ``plan``'s statements on a connection of the async driver."""

    @abstractmethod
    def _reusable(self, conn: Any, exc: BaseException, /) -> bool:
        """Whether ``conn`` is still in step with its server after ``exc``."""

    # -- borrowing connections ----------------------------------------------------------

    def _run(self, plan: Plan[T]) -> T:
        """Run ``plan`` on a borrowed connection, blocking."""
        pool = self._sync_pool()
        conn = pool.acquire()
        try:
            if not self._ready:
                with self._setup_lock:  # concurrent first calls create the table once
                    if not self._ready:
                        self._execute(conn, self._setup())
                        self._ready = True
            result = self._execute(conn, plan)
        except BaseException as exc:
            pool.release(conn, discard=not self._reusable(conn, exc))
            raise
        pool.release(conn)
        return result

    async def _arun(self, plan: Plan[T]) -> T:
        """Run ``plan`` on a borrowed connection of the running loop's pool."""
        pool = await self._async_pool()
        conn = await pool.acquire()
        try:
            if not self._ready:
                async with self._async_setup_lock():
                    if not self._ready:
                        await self._aexecute(conn, self._setup())
                        self._ready = True
            result = await self._aexecute(conn, plan)
        except BaseException as exc:
            await pool.release(conn, discard=not self._reusable(conn, exc))
            raise
        await pool.release(conn)
        return result

    def _async_setup_lock(self) -> asyncio.Lock:
        # An asyncio.Lock belongs to one event loop; each loop that uses us gets its own.
        loop = asyncio.get_running_loop()
        with self._lock:
            lock = self._setup_locks.get(loop)
            if lock is None:
                lock = self._setup_locks[loop] = asyncio.Lock()
            return lock

    def close(self) -> None:
        """Close the pools this provider opened (never the application's)."""
        with self._lock:
            pool, self._own_pool = self._own_pool, None
        if pool is not None:
            pool.close()
        self._async_pools.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        with self._lock:
            pool, self._own_pool = self._own_pool, None
        if pool is not None:
            pool.close()  # closing idle connections does not block
        await self._async_pools.aclose()

    # -- the plans ----------------------------------------------------------------------

    def _setup(self) -> Plan[None]:
        """Create the table and its index if they are missing (once per provider)."""
        found = yield self.statements.exists, self.statements.exists_params, ROW
        if found is None or found[0] is None:
            yield self.statements.setup, None, NOTHING

    def _read(self, sid: str) -> Plan[Record | None]:
        row = yield self.statements.read, {"sid": sid, "now": time.time()}, ROW
        if row is None:
            return None
        payload, expires_at, version = row
        return Record(payload if type(payload) is bytes else bytes(payload), expires_at, version)

    def _create(self, sid: str, record: Record) -> Plan[bool]:
        created: bool = yield self.statements.create, {
            "sid": sid, "payload": record.payload, "expires_at": record.expires_at,
            "version": record.version, "now": time.time(),
        }, CREATED
        return created

    def _update(self, sid: str, record: Record, expected_version: int) -> Plan[bool]:
        affected: int = yield self.statements.update, {
            "sid": sid, "payload": record.payload, "expires_at": record.expires_at,
            "version": record.version, "expected": expected_version, "now": time.time(),
        }, AFFECTED
        return affected == 1

    def _touch(self, sid: str, expires_at: float) -> Plan[bool]:
        affected: int = yield self.statements.touch, {
            "sid": sid, "expires_at": expires_at, "now": time.time(),
        }, AFFECTED
        return affected == 1

    def _delete(self, sid: str) -> Plan[None]:
        yield self.statements.delete, {"sid": sid}, NOTHING

    def _count(self) -> Plan[int]:
        row = yield self.statements.count, {"now": time.time()}, ROW
        return int(row[0])

    def _gc(self) -> Plan[int]:
        # Bounded batches, each its own transaction, walking the expiry index: a pass over
        # a million expired rows never holds many locks, or any for long. Sessions that
        # expire during the pass are left for the next one.
        params = {"now": time.time(), "batch": self.gc_batch_size}
        removed = 0
        while True:
            affected: int = yield self.statements.gc, params, AFFECTED
            removed += affected
            if affected < self.gc_batch_size:
                return removed

    # -- the primitives -----------------------------------------------------------------

    def read(self, sid: str) -> Record | None:
        """Return the live record: one ``SELECT`` by primary key."""
        return self._run(self._read(sid))

    def create(self, sid: str, record: Record) -> bool:
        """Insert, or replace an expired row; one upsert that keeps a live row untouched."""
        return self._run(self._create(sid, record))

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        """Replace the live row at ``expected_version``: one conditional ``UPDATE``."""
        return self._run(self._update(sid, record, expected_version))

    def touch(self, sid: str, expires_at: float) -> bool:
        """Move the live row's expiry: one conditional ``UPDATE``."""
        return self._run(self._touch(sid, expires_at))

    def delete(self, sid: str) -> None:
        """Delete the row."""
        self._run(self._delete(sid))

    def count(self) -> int:
        """Count live rows through the expiry index."""
        return self._run(self._count())

    def gc(self) -> int:
        """Delete expired rows in batches of ``gcBatchSize``; return how many went."""
        return self._run(self._gc())

    def aread(self, sid: str) -> Awaitable[Record | None]:
        """Async twin of :meth:`read`."""
        return self._arun(self._read(sid))

    def acreate(self, sid: str, record: Record) -> Awaitable[bool]:
        """Async twin of :meth:`create`."""
        return self._arun(self._create(sid, record))

    def aupdate(self, sid: str, record: Record, expected_version: int) -> Awaitable[bool]:
        """Async twin of :meth:`update`."""
        return self._arun(self._update(sid, record, expected_version))

    def atouch(self, sid: str, expires_at: float) -> Awaitable[bool]:
        """Async twin of :meth:`touch`."""
        return self._arun(self._touch(sid, expires_at))

    def adelete(self, sid: str) -> Awaitable[None]:
        """Async twin of :meth:`delete`."""
        return self._arun(self._delete(sid))

    def acount(self) -> Awaitable[int]:
        """Async twin of :meth:`count`."""
        return self._arun(self._count())

    def agc(self) -> Awaitable[int]:
        """Async twin of :meth:`gc`."""
        return self._arun(self._gc())

