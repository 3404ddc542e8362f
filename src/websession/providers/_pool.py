"""Connection pools for the SQL providers, written once for blocking and asyncio drivers.

Everything here is a plan (:mod:`websession._plans`) whose steps are calls to make:
functions of no arguments (a bound method, or a :func:`functools.partial`). :func:`run`
calls each, :func:`arun` calls it and awaits what it returns. A plan over a blocking
driver (PyMySQL, psycopg) therefore runs with :func:`run`, from any thread, and the same
plan over an asyncio driver (aiomysql, psycopg's async classes) with :func:`arun`, in one
event loop. The only other thing that differs between the modes is how a borrower waits
for a connection; :class:`Pool` picks that from its :class:`Connector`.

The contract, for a driver module:

* a :class:`Connector` says how to open, check and close its connections in one mode;
* ``Pool(connector, max_size=..., timeout=...)`` is a pool of its own; ``AppPool(...)``
  lends from a pool the application owns; both offer :class:`Lender`'s two plans, and the
  provider borrows through those and nothing else.

A borrower may give :meth:`Lender.acquire` a *deadline* (a :func:`time.monotonic` time,
the end of its operation): the wait for a free connection and the connect both end by
then, whatever the pool's own timeout, so an operation's deadline covers its borrowing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import operator
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from inspect import GEN_SUSPENDED, getgeneratorstate
from typing import Any, Generic, Protocol, TypeVar

from .._plans import Plan, adrive, drive

__all__ = [
    "CHECK_IDLE_AFTER",
    "AppPool",
    "BlockingPool",
    "Connector",
    "Lender",
    "Pool",
    "PoolClosed",
    "PoolTimeout",
    "arun",
    "call",
    "close_per_loop",
    "idle_socket_broken",
    "run",
    "seconds_left",
]

T = TypeVar("T")
C = TypeVar("C")

#: A connection given back less than this many seconds ago is lent again unchecked: the
#: check costs a system call per statement, and a server seldom drops a connection that
#: busy (if it does, that one request fails and the connection is discarded).
CHECK_IDLE_AFTER = 1.0


class PoolTimeout(TimeoutError):
    """No pooled connection became free within the pool's timeout."""


class PoolClosed(ConnectionError):
    """The pool was closed: the provider or application is shutting down."""


def seconds_left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (a :func:`time.monotonic` time; ``None``: no deadline).

    A deadline already past raises :class:`TimeoutError`: nothing more may be started.
    """
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the store operation ran out of time (operationTimeout)")
    return left


# -- running plans of calls ----------------------------------------------------------------


def run(plan: Plan[T]) -> T:
    """Run a plan of calls, blocking: each step is called."""
    try:
        return drive(plan, operator.call)
    except BaseException as exc:
        if getgeneratorstate(plan) != GEN_SUSPENDED:
            raise  # the plan itself raised: it is over
        return drive(_recovering(plan, exc), _guarded_call)


async def arun(plan: Plan[T]) -> T:
    """Run a plan of calls in the running event loop, awaiting what each call returns."""
    try:
        return await adrive(plan, operator.call)
    except BaseException as exc:  # cancellation too: the plan releases what it holds
        if getgeneratorstate(plan) != GEN_SUSPENDED:
            raise
        return await adrive(_recovering(plan, exc), _guarded_acall)


def call(function: Callable[..., Any], *args: Any) -> Plan[Any]:
    """A plan of one call: ``function(*args)``, awaited when run by :func:`arun`."""
    return (yield partial(function, *args))


# A call that fails leaves its plan suspended at the step that made it. The plan then
# continues as ordinary code would: the failure is raised inside it, there, so that it
# gives back what it holds with try/except, and so is any failure of the calls it makes
# while doing so. Failures are rare, so only then does this machinery come in.


class _Raised:
    """A call's exception, carried back to its plan to be raised there."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _recovering(plan: Plan[T], error: BaseException) -> Plan[T]:
    try:
        step = plan.throw(error)
        while True:
            answer = yield step
            step = plan.throw(answer.error) if type(answer) is _Raised else plan.send(answer)
    except StopIteration as done:
        result: T = done.value
        return result


def _guarded_call(step: Callable[[], Any]) -> Any:
    try:
        return step()
    except BaseException as exc:
        return _Raised(exc)


async def _guarded_acall(step: Callable[[], Any]) -> Any:
    try:
        return await step()
    except BaseException as exc:
        return _Raised(exc)


# -- what a pool needs from a driver ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connector(Generic[C]):
    """How one driver, in one mode, opens, checks and closes the connections a pool lends.

    ``connect`` and ``close`` return plans of calls (:func:`call` makes one from a driver
    function); ``asynchronous`` says whether they are run by :func:`arun` (an asyncio
    driver) or :func:`run`. ``connect`` is given the seconds it may take (``None``: the
    driver's own timeout). ``usable`` tells, without I/O, whether an idle connection is
    still open at the server's end.
    """

    connect: Callable[[float | None], Plan[C]]
    close: Callable[[C], Plan[None]]
    usable: Callable[[C], bool]
    asynchronous: bool


class Lender(Protocol[C]):
    """What a provider borrows connections through: its own :class:`Pool`, or an
    :class:`AppPool` over the application's.

    The ``try_`` methods are the common case done at once, without a plan: a borrower
    calls them first and runs the plan only when they decline.
    """

    def try_acquire(self) -> C | None:
        """A connection at once, or ``None``: then run :meth:`acquire`."""
        ...

    def acquire(self, deadline: float | None = None) -> Plan[C]:
        """Borrow a connection (a plan), by ``deadline`` if one is given (a
        :func:`time.monotonic` time); give it back with :meth:`release`."""
        ...

    def try_release(self, conn: C) -> bool:
        """Give a healthy connection back at once; ``False``: run :meth:`release`."""
        ...

    def release(self, conn: C, *, discard: bool = False) -> Plan[None]:
        """Give a connection back (a plan); ``discard`` closes it (it failed in use)."""
        ...


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


# -- waiting for a connection: the one thing the modes do differently ---------------------


class _Threads:
    """Blocking pools: a waiter is a held lock, and waking it releases the lock."""

    @staticmethod
    def waiter() -> Any:
        lock = threading.Lock()
        lock.acquire()
        return lock

    @staticmethod
    def wake(waiter: Any) -> bool:
        waiter.release()
        return True

    @staticmethod
    def wait(waiter: Any, timeout: float) -> bool:
        return bool(waiter.acquire(timeout=timeout))


class _Tasks:
    """asyncio pools: a waiter is a future of the pool's loop."""

    @staticmethod
    def waiter() -> Any:
        return asyncio.get_running_loop().create_future()

    @staticmethod
    def wake(waiter: Any) -> bool:
        if waiter.done():  # cancelled: its task stopped waiting
            return False
        waiter.set_result(True)
        return True

    @staticmethod
    async def wait(waiter: Any, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            return False
        return True


# -- the pool -----------------------------------------------------------------------------


class Pool(Generic[C]):
    """A bounded pool of one driver's connections, most recently used first.

    At most ``max_size`` connections exist at once; a borrower waits up to ``timeout``
    seconds (or until its own deadline, if sooner) for a free one, then gets
    :class:`PoolTimeout`. A failure to connect reaches
    the borrower at once (an outage is reported now, not after a timeout). Reusing the
    warmest connection keeps one server process busy instead of waking each in turn. A
    connection that sat idle is checked with the connector's ``usable`` first and replaced
    if the server closed it meanwhile; one the borrower discards (it failed in use) is
    closed, never reused.

    :meth:`acquire`, :meth:`release` and :meth:`close` return plans, run as the
    connector's mode says: a blocking pool serves every thread, an asyncio pool the one
    event loop it is used in. :meth:`try_acquire` and :meth:`try_release` are their
    common case, done at once.
    """

    def __init__(self, connector: Connector[C], *, max_size: int, timeout: float) -> None:
        self.max_size = max_size
        self.timeout = timeout
        self._connector = connector
        self._waiting = _Tasks if connector.asynchronous else _Threads
        # A stack of (connection, when it was given back): the warmest one on top.
        self._idle: list[tuple[C, float]] = []
        self._size = 0  # connections open or opening, idle or borrowed
        self._waiters: deque[Any] = deque()
        self._lock = threading.Lock()  # never held across a step
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def try_acquire(self) -> C | None:
        """The connection given back last, if that was moments ago; else ``None``."""
        # Without the lock: list.pop is atomic, and a connection popped is ours (its slot
        # was counted when it was opened).
        try:
            entry = self._idle.pop()
        except IndexError:
            return None
        if time.monotonic() - entry[1] < CHECK_IDLE_AFTER:
            return entry[0]
        self._idle.append(entry)  # acquire() checks it
        return None

    def acquire(self, deadline: float | None = None) -> Plan[C]:
        """Borrow a connection (a plan), by ``deadline`` if one is given; give it back with
        :meth:`release`."""
        conn = self.try_acquire()
        if conn is not None:
            return conn
        try:
            entry: tuple[C, float] | None = self._idle.pop()
        except IndexError:
            entry = yield from self._wait_for_slot(deadline)
        # The slot is ours: check the idle connection, or connect, outside the lock.
        try:
            while entry is not None:
                conn, since = entry
                if time.monotonic() - since < CHECK_IDLE_AFTER or self._connector.usable(conn):
                    return conn
                yield from self._close(conn)
                with self._lock:
                    if self._idle:  # the dead one's slot goes; the next one has its own
                        self._size -= 1
                        entry = self._idle.pop()
                    else:  # connect anew in the dead one's slot
                        entry = None
            if self._closed:
                raise PoolClosed("the session store's connection pool is closed")
            return (yield from self._connector.connect(seconds_left(deadline)))
        except BaseException:
            self._free_slot()
            raise

    def _wait_for_slot(self, until: float | None) -> Plan[tuple[C, float] | None]:
        """An idle connection, or ``None``: a slot to open a new one in."""
        deadline = time.monotonic() + self.timeout
        if until is not None and until < deadline:
            deadline = until  # the operation's own deadline comes first
        while True:
            with self._lock:
                if self._closed:
                    raise PoolClosed("the session store's connection pool is closed")
                if self._idle:
                    return self._idle.pop()
                if self._size < self.max_size:
                    self._size += 1
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timed_out()
                waiter = self._waiting.waiter()
                self._waiters.append(waiter)
                # A release appends without the lock, then looks for waiters: one that
                # appended after the look above and before this waiter was counted would
                # wake nobody, so look again.
                if self._idle:
                    self._waiters.pop()
                    return self._idle.pop()
            try:
                woken = yield partial(self._waiting.wait, waiter, remaining)
            except BaseException:
                self._leave(waiter)
                raise
            if not woken:
                self._leave(waiter)
                raise self._timed_out()

    def _timed_out(self) -> PoolTimeout:
        return PoolTimeout(f"all {self.max_size} connections stayed in use until the "
                           f"deadline (poolTimeout {self.timeout:g} s, or operationTimeout)")

    def try_release(self, conn: C) -> bool:
        """Give a connection back to the idle ones; ``False`` if the pool is closed."""
        if self._closed:
            return False
        entry = (conn, time.monotonic())
        self._idle.append(entry)  # atomic; waiters are woken under the lock
        if self._waiters or self._closed:
            with self._lock:
                if self._closed:  # closed since the check above: it is not idle after all
                    try:
                        self._idle.remove(entry)
                    except ValueError:  # drained, hence closed, already
                        return True
                    return False
                self._wake_one()
        return True

    def release(self, conn: C, *, discard: bool = False) -> Plan[None]:
        """Give a connection back (a plan); ``discard`` closes it (it failed in use)."""
        if discard or not self.try_release(conn):
            try:
                yield from self._close(conn)
            finally:
                self._free_slot()

    def close(self) -> Plan[None]:
        """Close idle connections now, and borrowed ones as they come back (a plan)."""
        with self._lock:
            self._closed = True
            while self._waiters:  # each looks again, and finds the pool closed
                self._waiting.wake(self._waiters.popleft())
        yield from self._drain()

    def _drain(self) -> Plan[None]:
        idle = []
        with self._lock:
            while self._idle:
                idle.append(self._idle.pop()[0])
            self._size -= len(idle)
        for conn in idle:
            yield from self._close(conn)

    def _leave(self, waiter: Any) -> None:
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:  # woken as it gave up: pass the turn on
                self._wake_one()

    def _wake_one(self) -> None:
        # Called with the lock held.
        while self._waiters:
            if self._waiting.wake(self._waiters.popleft()):
                return

    def _free_slot(self) -> None:
        with self._lock:
            self._size -= 1
            self._wake_one()

    def _close(self, conn: C) -> Plan[None]:
        with contextlib.suppress(Exception):  # it may be broken: closing is a courtesy
            yield from self._connector.close(conn)


class BlockingPool(Generic[C]):
    """A :class:`Pool` of blocking connections behind plain methods, for an application
    to own and share between providers (``MySQLPool`` is one)."""

    def __init__(self, connector: Connector[C], *, max_size: int, timeout: float) -> None:
        if connector.asynchronous:
            raise TypeError("a BlockingPool needs a blocking connector")
        #: The pool itself, whose plans providers run.
        self.pool = Pool(connector, max_size=max_size, timeout=timeout)

    @property
    def max_size(self) -> int:
        """At most this many connections exist at once."""
        return self.pool.max_size

    @property
    def timeout(self) -> float:
        """Seconds a borrower waits for a free connection."""
        return self.pool.timeout

    def acquire(self) -> C:
        """Borrow a connection; give it back with :meth:`release`."""
        return run(self.pool.acquire())

    def release(self, conn: C, *, discard: bool = False) -> None:
        """Give a connection back; ``discard`` closes it instead (it failed in use)."""
        run(self.pool.release(conn, discard=discard))

    def close(self) -> None:
        """Close idle connections now, and borrowed ones as they come back."""
        run(self.pool.close())


class AppPool(Generic[C]):
    """A pool the application owns (psycopg_pool's, aiomysql's), as a :class:`Lender`.

    The connector's ``connect`` takes a connection from that pool and ``put`` hands one
    back; the application opens and closes the pool itself. A connection found dead is
    closed and handed back — the pool replaces closed ones — up to ``tries`` times.
    """

    def __init__(self, connector: Connector[C], *, put: Callable[[C], Plan[None]],
                 tries: int) -> None:
        self._connector = connector
        self._put = put
        self._tries = tries

    def try_acquire(self) -> None:
        """Always ``None``: taking from the application's pool is a plan."""
        return None

    def try_release(self, conn: C) -> bool:
        """Always ``False``: handing back to the application's pool is a plan."""
        return False

    def acquire(self, deadline: float | None = None) -> Plan[C]:
        """Take a live connection from the application's pool (a plan), by ``deadline``
        if one is given."""
        connector = self._connector
        conn = yield from connector.connect(seconds_left(deadline))
        for _ in range(self._tries):
            if connector.usable(conn):
                break
            yield from connector.close(conn)
            yield from self._put(conn)
            conn = yield from connector.connect(seconds_left(deadline))
        return conn

    def release(self, conn: C, *, discard: bool = False) -> Plan[None]:
        """Hand a connection back (a plan); ``discard`` closes it first."""
        if discard:
            yield from self._connector.close(conn)
        yield from self._put(conn)


def close_per_loop(
    pools: Mapping[asyncio.AbstractEventLoop, Pool[Any]],
) -> list[concurrent.futures.Future[None]]:
    """Close asyncio pools, each in its own event loop. The calling thread's running loop
    cannot be waited for here: its pools' closing is scheduled there and returned."""
    try:
        current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    pending = []
    for loop, pool in pools.items():
        if loop.is_closed():
            continue  # nothing can run there any more; its sockets are gone or going
        closing = arun(pool.close())
        if not loop.is_running():
            loop.run_until_complete(closing)
            continue
        future = asyncio.run_coroutine_threadsafe(closing, loop)
        if loop is current:
            pending.append(future)
        else:  # another thread's loop: wait for it, briefly
            future.result(timeout=10)
    return pending
