"""The Redis providers' connections: the clients of each topology (one server, a cluster,
Sentinel), and sending one command in either mode.

redis-py keeps a blocking package (``redis``) and an asyncio mirror of it
(``redis.asyncio``) with the same layout and class names. A :class:`Driver` holds one
half, so each topology builds its clients once for both modes (:data:`SYNC`,
:data:`ASYNC`). A :class:`RedisClients` holds one configuration's clients — a blocking
one and one per running event loop, each made on first use, so configuring opens no
connection — and runs a provider's plans' steps: :meth:`~RedisClients.send` and
:meth:`~RedisClients.asend` are the only code that differs between the modes.

Each command has one deadline, ``operation_timeout`` from when it is sent: the wait for a
pooled connection, connecting, sending, receiving and redis-py's retries all end by then
(past it, a ``TimeoutError`` the provider reports as an outage). An asyncio command is
cancelled at its deadline (redis-py then drops the connection); a blocking one is given
what is left of it by its connection's socket timeout (:class:`_Bounded`). In both modes
redis-py retries only while the deadline allows (:class:`_StopsAtDeadline`).
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from operator import methodcaller
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import redis
import redis.asyncio as aredis
import redis.asyncio.cluster as acluster
import redis.asyncio.connection as aconnection
import redis.asyncio.retry as aretry
import redis.asyncio.sentinel as asentinel
import redis.cluster as scluster
import redis.connection as sconnection
import redis.retry as sretry
import redis.sentinel as ssentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import MaxConnectionsError, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._loops import LoopLocal, cancellable
from .._plans import Plan, adrive, drive
from ..exceptions import SessionModeError

if TYPE_CHECKING:
    from ._redis_config import RedisOptions

__all__ = [
    "ASYNC",
    "CLUSTER_UNAVAILABLE_ERRORS",
    "NO_OPTIONS",
    "SYNC",
    "UNAVAILABLE_ERRORS",
    "UNKNOWN_SCRIPT",
    "ClusterClients",
    "Driver",
    "RedisClients",
    "SentinelClients",
    "ServerClients",
    "Step",
]

#: A plan's step: ``execute_command``'s arguments and its keyword options (a target node).
Step = tuple[tuple[Any, ...], Mapping[str, Any]]
NO_OPTIONS: Mapping[str, Any] = {}
#: What sending a script the server does not know answers, so that a plan sends its source.
UNKNOWN_SCRIPT = object()
#: Seconds between tries for a connection while a pool is full.
_POOL_POLL = 0.002
#: The request path's commands, sent without ``execute_command`` where a topology allows.
_DIRECT = frozenset({"GET", "EVALSHA", "EVAL", "SET", "DEL"})
#: What :func:`_direct` answers to have a command sent the usual way.
_RETRY = object()
#: Errors redis-py's own retries cover: the command goes the usual way to meet them.
_RETRIED_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                   ConnectionError, TimeoutError, OSError)

# -- the deadline of a command ---------------------------------------------------------------

#: How far (seconds) a blocking command may run past its deadline rather than shorten its
#: socket's timeout. The socket timeout defaults to operation_timeout, so without it any
#: command would be "left with less" by the microseconds it has run, and pay a
#: settimeout (a system call) before each send and read, and another to undo it.
_SLACK = 0.01


#: The deadline (a :func:`time.monotonic` time) of the command this thread or task is
#: sending; 0: none.
_DEADLINE: ContextVar[float] = ContextVar("websession_redis_deadline", default=0.0)


def _out_of_time(what: str) -> RedisTimeoutError:
    return RedisTimeoutError(f"{what} within operation_timeout")


class _StopsAtDeadline:
    """redis-py's retries of a command, while its deadline allows.

    A backstop in asyncio too: a cancellation lost inside redis-py must not let its
    retries run on past the deadline. ``call_with_retry`` returns what redis-py's does,
    a coroutine in the asyncio half, so one override serves both.
    """

    def call_with_retry(self, do: Callable[[], Any], fail: Callable[..., Any],
                        is_retryable: Callable[[Exception], bool] | None = None,
                        with_failure_count: bool = False) -> Any:
        """Call ``do``, retrying what redis-py retries unless the deadline has passed."""
        def retryable(error: Exception) -> bool:
            at = _DEADLINE.get()
            if at and time.monotonic() >= at:
                return False
            return is_retryable is None or is_retryable(error)

        base: Any = super()  # redis-py's retry is untyped
        return base.call_with_retry(do, fail, retryable, with_failure_count)


class _BoundedRetry(_StopsAtDeadline, sretry.Retry):
    """The blocking half's :class:`_StopsAtDeadline`."""


class _AsyncBoundedRetry(_StopsAtDeadline, aretry.Retry):
    """The asyncio half's :class:`_StopsAtDeadline`."""


class _Bounded:
    """A blocking connection whose reads and writes end by its command's deadline.

    Its socket keeps the configured timeout while that fits in what is left, give or take
    :data:`_SLACK` (the common case: no system call is added); a command left with less
    (after a pool wait, or a retry) gets only what is left.
    """

    _shortened = False

    def _bound(self) -> None:
        at = _DEADLINE.get()
        if not at:
            return
        this: Any = self  # redis-py's connections are untyped
        left = at - time.monotonic()
        if left <= 0:
            raise _out_of_time("no reply")
        sock = this._sock
        if left < (this.socket_timeout or left + 1) - _SLACK:
            if sock is not None:
                sock.settimeout(left)
                self._shortened = True
        elif self._shortened:
            if sock is not None:
                sock.settimeout(this.socket_timeout)
            self._shortened = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """Send, within the command's deadline."""
        self._bound()
        base: Any = super()
        base.send_packed_command(command, check_health)
        self._bound()  # a connect in between set the configured timeout

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """Read the reply, within the command's deadline."""
        self._bound()
        base: Any = super()
        return base.read_response(*args, **kwargs)


class _BoundedConnection(_Bounded, sconnection.Connection):
    """:class:`_Bounded` over TCP."""


class _BoundedSSLConnection(_Bounded, sconnection.SSLConnection):
    """:class:`_Bounded` over TLS."""


class _BoundedUnixConnection(_Bounded, sconnection.UnixDomainSocketConnection):
    """:class:`_Bounded` over a unix socket."""


_BOUNDED: dict[type, type] = {
    sconnection.Connection: _BoundedConnection,
    sconnection.SSLConnection: _BoundedSSLConnection,
    sconnection.UnixDomainSocketConnection: _BoundedUnixConnection,
}


# -- redis-py's two halves ----------------------------------------------------------------


class Driver(NamedTuple):
    """One half of redis-py: what a topology builds that mode's clients from."""

    #: ``redis`` or ``redis.asyncio``: ``Redis``, ``ConnectionPool``.
    redis: Any
    #: Its connection module: ``SSLConnection``, ``UnixDomainSocketConnection``.
    connection: Any
    #: Its retry module: ``Retry``.
    retry: Any
    #: Its cluster module: ``RedisCluster``, ``ClusterNode``.
    cluster: Any
    #: Its sentinel module: ``Sentinel``.
    sentinel: Any
    #: A sentinel-managed pool that waits for a free connection instead of failing.
    sentinel_pool: type
    #: Sentinel-managed connections that ask the sentinels on every reconnect.
    sentinel_connection: type
    sentinel_ssl_connection: type
    #: Closes a client (returning an awaitable, in asyncio).
    close: Callable[[Any], Any]


# redis-py reconnects a dropped connection inside its retry loop to the address it had
# (redis/redis-py#3874), so after a failover a write first tries the demoted master, gets
# READONLY, and fails once its retries are spent; reconnecting through connect(), which
# asks the sentinels, finds the new master instead. The blocking and asyncio classes are
# separate hierarchies whose send_packed_command is a plain method in one and a coroutine
# in the other, so one mixin cannot override both: each override is three lines.


class _SentinelConnection(_Bounded, ssentinel.SentinelManagedConnection):
    """Asks the sentinels for the master on every reconnect, retries included."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        this: Any = self  # redis-py's connection methods are untyped
        if not this._sock:
            this.connect()
        base: Any = super()
        base.send_packed_command(command, check_health)


class _SentinelSSLConnection(_SentinelConnection, ssentinel.SentinelManagedSSLConnection):
    """:class:`_SentinelConnection` over TLS."""


class _AsyncSentinelConnection(asentinel.SentinelManagedConnection):
    """The asyncio twin of :class:`_SentinelConnection`."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        this: Any = self
        if not this.is_connected:
            await this.connect()
        await super().send_packed_command(command, check_health)


class _AsyncSentinelSSLConnection(_AsyncSentinelConnection,
                                  asentinel.SentinelManagedSSLConnection):
    """:class:`_AsyncSentinelConnection` over TLS."""


class _BlockingSentinelPool(ssentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """A sentinel-managed pool that waits for a free connection instead of failing."""


class _AsyncBlockingSentinelPool(asentinel.SentinelConnectionPool,
                                 aredis.BlockingConnectionPool):
    """The asyncio twin of :class:`_BlockingSentinelPool`."""


#: The blocking half.
SYNC = Driver(redis, sconnection, sretry, scluster, ssentinel, _BlockingSentinelPool,
              _SentinelConnection, _SentinelSSLConnection, methodcaller("close"))
#: The asyncio half.
ASYNC = Driver(aredis, aconnection, aretry, acluster, asentinel, _AsyncBlockingSentinelPool,
               _AsyncSentinelConnection, _AsyncSentinelSSLConnection, methodcaller("aclose"))


def _connection_class(driver: Driver, connection_class: type) -> type:
    """The class of ``driver``'s connections to use for ``connection_class``: blocking
    ones are bounded by their command's deadline (asyncio ones are cancelled at it)."""
    if driver is SYNC:
        return _BOUNDED.get(connection_class, connection_class)
    return connection_class

#: redis-py's errors that mean "the store is unreachable" (see BaseProvider).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes MasterNotFoundError, auth failures
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,  # LOADING: a restarted server reading its data
    redis.exceptions.ReadOnlyError,  # a demoted master that we still talk to
    redis.exceptions.ClusterDownError,  # CLUSTERDOWN / MASTERDOWN
    # maxmemory reached: writes are refused (whole: a script stops at its first write).
    redis.exceptions.OutOfMemoryError,
    ConnectionError,
    TimeoutError,
)
#: A cluster's too: "cannot be connected", slots not covered (its client's own errors).
CLUSTER_UNAVAILABLE_ERRORS = (*UNAVAILABLE_ERRORS, redis.exceptions.RedisClusterException)

_SYNC_TYPES = (SYNC.redis.Redis, SYNC.cluster.RedisCluster, SYNC.sentinel.Sentinel)
_ASYNC_TYPES = (ASYNC.redis.Redis, ASYNC.cluster.RedisCluster, ASYNC.sentinel.Sentinel)

@functools.cache
def _driver_info() -> Any:
    """What our connections tell the server of their library (``CLIENT SETINFO``), made
    once. redis-py 7 and later make it for each connection a pool opens unless given one
    (its ``Redis`` client gives one; a pool made alone, as ours are, does not): a read of
    the package's metadata, ~3.5 ms a connection, 0.2 s for 64 opened at once. ``None``
    before redis-py 7, whose connections compute their defaults once."""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:
        return None
    return DriverInfo()


# -- one configuration's clients ----------------------------------------------------------


class _LoopClient:
    """One event loop's asyncio client, made on its first command there, the bound on
    its commands in flight where its pool does not wait by itself, and its request path's
    shelf (see :class:`_Shelf`)."""

    __slots__ = ("client", "limit", "shelf")

    def __init__(self) -> None:
        self.client: Any = None
        self.limit: asyncio.Semaphore | None = None
        self.shelf: _Shelf | None = None


class RedisClients(ABC):
    """One provider configuration's clients, and sending a command through them.

    Subclasses build a client of either half of redis-py (:meth:`make`) for their
    topology, say which client of the application's serves as it is (:meth:`own`) and
    what closing one takes (:meth:`closing`).
    """

    #: Whether asyncio commands need a semaphore: the pool fails, rather than waits, when
    #: full.
    bounded_async: ClassVar[bool] = True
    #: Whether the request path's commands may go straight over a pooled connection (one
    #: server behind one pool: not a cluster).
    direct: ClassVar[bool] = True
    #: Whether the request path keeps the connections it used between its commands (see
    #: :class:`_Shelf`): only over a pool that fails, rather than waits, when full, so
    #: that a caller finding it full can have them given back first.
    shelves: ClassVar[bool] = True
    #: Whether asyncio connections keep a socket timeout as long as the deadline, in case
    #: the cancellation at the deadline is lost.
    socket_timeout_backstop: ClassVar[bool] = False

    def __init__(self, options: RedisOptions, owner: str) -> None:
        """``owner`` names the provider in errors."""
        self.options = options
        self._owner = owner
        self._lock = threading.Lock()
        self._client: Any = None
        self._shelf: _Shelf | None = None  # the blocking client's
        self._aclients = LoopLocal(_LoopClient)
        # An application's client serves its own mode. The other mode reaches a sync one
        # through a thread; an asyncio one is bound to its loop, so sync calls are refused.
        self.sync_only = isinstance(options.client, _SYNC_TYPES)
        self._async_only = isinstance(options.client, _ASYNC_TYPES)
        # An application's client may hold one connection of its own: not bypassed.
        self._direct = self.direct and options.client is None

    @abstractmethod
    def make(self, driver: Driver) -> Any:
        """A new client of ``driver``'s half for these servers."""

    def own(self) -> Any:
        """The application's client for these servers, if it gave one, else ``None``."""
        return self.options.client

    def closing(self, client: Any) -> Plan[None]:
        """What closing ``client`` takes: a plan whose steps are the clients to close."""
        yield client

    def connection_kwargs(self, driver: Driver) -> dict[str, Any]:
        """The connection arguments every topology passes to redis-py."""
        options = self.options
        kwargs = {
            "username": options.username,
            "password": options.password,
            "socket_timeout": options.socket_timeout,
            "socket_connect_timeout": options.connect_timeout,
            "health_check_interval": options.health_check_interval,
            "retry": (_BoundedRetry if driver is SYNC else _AsyncBoundedRetry)(
                ExponentialBackoff(cap=0.5, base=0.05), options.max_retries),
            "connection_class": _connection_class(driver, driver.connection.Connection),
            **options.connection,
        }
        for name in ("socket_timeout", "socket_connect_timeout"):  # a URL's too
            if not 0 < (kwargs[name] or 0) <= options.operation_timeout:
                kwargs[name] = options.operation_timeout
        if not {"driver_info", "lib_name", "lib_version"} & set(kwargs):
            driver_info = _driver_info()
            if driver_info is not None:
                kwargs["driver_info"] = driver_info
        if (driver is ASYNC and not self.socket_timeout_backstop
                and kwargs["socket_timeout"] == options.operation_timeout):
            # Every asyncio command is cancelled at its deadline (asend), so a socket
            # timeout as long never fires first; redis-py would still arm a timer for
            # each read and a task and a timer for each write.
            kwargs["socket_timeout"] = None
        return kwargs

    def sync(self) -> Any:
        """The blocking client."""
        client = self._client
        if client is None:
            if self._async_only:
                raise SessionModeError(
                    f"{self._owner} was given only an asyncio client: use the async API "
                    "(the ASGI middleware, the a-prefixed methods) or give it a sync client"
                )
            with self._lock:
                if self._client is None:
                    own = self.own()
                    self._client = self.make(SYNC) if own is None else own
                    self._shelf = self._new_shelf(self._client)
                client = self._client
        return client

    def _new_shelf(self, client: Any) -> _Shelf | None:
        """The request path's way to ``client``'s pool, if it goes straight over one."""
        return _Shelf(client.connection_pool, self.shelves) if self._direct else None

    def _in_loop(self) -> _LoopClient:
        entry = self._aclients.get()
        if entry.client is None:
            own = self.own()
            if own is not None:
                entry.client = own
            else:
                entry.client = self.make(ASYNC)
                entry.shelf = self._new_shelf(entry.client)
                if self.bounded_async:
                    entry.limit = asyncio.Semaphore(self.options.pool_size)
        return entry

    def async_client(self) -> Any:
        """The client the async API uses: the running loop's, or the application's sync
        one."""
        return self.sync() if self.sync_only else self._in_loop().client

    def tracking_connection(self) -> Any:
        """A new, connected blocking connection to the server the blocking client sends
        to (the master, for Sentinel), outside its pool: the client-side cache's
        tracking connection (see :mod:`._redis_cache`)."""
        pool = self.sync().connection_pool
        # RESP2, whatever the data connections speak: invalidations then come as plain
        # pub/sub messages, read the same way by every redis-py version. (redis-py 8's
        # maintenance notifications, a pool-level handler, need RESP3: left out.)
        kwargs = {name: value for name, value in pool.connection_kwargs.items()
                  if not name.startswith("maint_notifications")}
        connection = pool.connection_class(**kwargs, protocol=2)
        connection.connect()
        return connection

    def tracking_target(self) -> Any:
        """Where the data goes now, as :meth:`tracking_connection` would connect: a
        tracking connection elsewhere is stale. One server: always the same."""
        return None

    # -- sending one command --------------------------------------------------------------

    def send(self, step: Step) -> Any:
        """Send one command with the blocking client; return its reply."""
        command, options = step
        start = time.monotonic()
        deadline = start + self.options.operation_timeout
        token = _DEADLINE.set(deadline)
        try:
            client = self.sync()
            shelf = self._shelf
            if shelf is not None and command[0] in _DIRECT:
                reply = drive(_direct(shelf, command), _call)
                if reply is not _RETRY:
                    return reply
            while True:
                try:
                    return client.execute_command(*command, **options)
                except NoScriptError:
                    return UNKNOWN_SCRIPT
                except MaxConnectionsError:
                    # Raised while taking a connection: the command was not sent. Pools
                    # fail, rather than wait, when full: a waiting pool (or a semaphore)
                    # costs every command a lock round, while a full pool is rare. Only
                    # then does a caller wait, polling, for up to poolTimeout; the
                    # request path's shelved connections go back to the pool first, and
                    # while there were some it tries again at once.
                    now = time.monotonic()
                    if now - start >= self.options.pool_timeout or now >= deadline:
                        raise self._pool_exhausted() from None
                    if shelf is None or not drive(_unshelve(shelf)):
                        time.sleep(_POOL_POLL)
        finally:
            _DEADLINE.reset(token)

    async def asend(self, step: Step) -> Any:
        """Send one command with the running loop's client; return its reply."""
        if self.sync_only:
            return await asyncio.to_thread(self.send, step)
        command, options = step
        entry = self._in_loop()
        limit = entry.limit
        token = _DEADLINE.set(time.monotonic() + self.options.operation_timeout)
        try:
            async with asyncio.timeout(self.options.operation_timeout) as within:
                await self.prepare(entry.client)
                if limit is None:
                    return await self.execute(entry, command, options)
                if limit.locked():  # wait for a free slot, as a blocking pool waits
                    try:
                        async with asyncio.timeout(self.options.pool_timeout):
                            await limit.acquire()
                    except TimeoutError:
                        if within.expired():
                            raise
                        raise self._pool_exhausted() from None
                else:
                    await limit.acquire()
                try:
                    return await self.execute(entry, command, options)
                finally:
                    limit.release()
        except NoScriptError:
            return UNKNOWN_SCRIPT
        except TimeoutError:
            if not within.expired():
                raise
            raise _out_of_time("no reply") from None
        finally:
            _DEADLINE.reset(token)

    async def execute(self, entry: _LoopClient, command: tuple[Any, ...],
                      options: Mapping[str, Any]) -> Any:
        """Send ``command`` with a loop's asyncio client; its reply."""
        shelf = entry.shelf
        if shelf is not None and command[0] in _DIRECT:
            reply = await adrive(_direct(shelf, command), _acall)
            if reply is not _RETRY:
                return reply
        while True:
            try:
                return await entry.client.execute_command(*command, **options)
            except MaxConnectionsError:
                # Within the semaphore's bound, the pool is full only while the request
                # path holds connections on its shelf: give them back, and try again
                # (until the shelf is empty, or the deadline cancels the loop: the shelf
                # fills again only while other tasks run, so each turn awaits).
                if shelf is None or not await adrive(_unshelve(shelf), _await):
                    raise

    async def prepare(self, client: Any) -> None:  # noqa: B027 - an optional hook
        """What an asyncio client needs before its command, within the command's deadline
        (a cluster's topology); by default nothing."""

    def _pool_exhausted(self) -> redis.exceptions.ConnectionError:
        return redis.exceptions.ConnectionError(
            f"no free connection within pool_timeout {self.options.pool_timeout:g} s or "
            f"operation_timeout {self.options.operation_timeout:g} s "
            f"(poolsize {self.options.pool_size})"
        )

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the blocking client, unless it is the application's."""
        with self._lock:
            client, self._client, self._shelf = self._client, None, None
        if client is not None and client is not self.options.client:
            drive(self.closing(client), SYNC.close)

    async def aclose(self) -> None:
        """Close the running loop's client, unless it is the application's."""
        entry = self._aclients.get()
        client, entry.client, entry.limit, entry.shelf = entry.client, None, None, None
        if client is not None and client is not self.options.client:
            await adrive(self.closing(client), ASYNC.close)


# -- the request path's commands, straight over a pooled connection -------------------------
#
# redis-py's execute_command spends about a quarter of a command's CPU on what these
# commands do not need (reply callbacks, events, per-command retry set-up, general
# packing). _direct takes a connection (from its shelf, else from the pool), sends, reads
# and shelves it again, as a plan run by either mode; each step's failure comes back as a
# _Failed value, so that the plan cleans up whatever the mode. Anything unusual (a full
# pool, a dropped connection) answers _RETRY, and the command goes the usual way, with
# redis-py's retries.


class _Shelf:
    """One pool's connections that the request path took and keeps between its commands.

    Taking a connection from the pool and giving it back costs about 15 µs a command
    (redis-py's lock, fork checks, metrics and events, and a probe of the socket for
    unread data: three system calls); from the shelf, a list's pop and append. A
    connection is shelved only once its reply has been read whole, so none holds unread
    data; one the server closed meanwhile fails its next command before any reply, and
    that command goes the usual way (a fresh connection, redis-py's retries). The pool
    still counts shelved connections as in use, so ``poolsize`` bounds them; a caller
    finding the pool full has them given back (:func:`_unshelve`). Without ``keeps``
    (a pool that waits when full, where nobody could ask for them back), or over
    connections that re-authenticate when released (a streaming credential provider),
    every connection goes back to the pool; so does one redis-py marked to reconnect.
    """

    __slots__ = ("__weakref__", "idle", "pool")

    def __init__(self, pool: Any, keeps: bool) -> None:
        self.pool = pool
        keeps = keeps and pool.connection_kwargs.get("credential_provider") is None
        self.idle: list[Any] | None = [] if keeps else None
        _SHELVES.add(self)


#: Every shelf, for a forked child to empty (its connections are the parent's sockets).
_SHELVES: weakref.WeakSet[_Shelf] = weakref.WeakSet()


def _empty_shelves() -> None:
    for shelf in list(_SHELVES):
        if shelf.idle is not None:
            shelf.idle.clear()


os.register_at_fork(after_in_child=_empty_shelves)


def _unshelve(shelf: _Shelf) -> Plan[bool]:
    """Give the shelved connections back to the pool; whether there were any. Steps are
    ``(function, args)``."""
    idle = shelf.idle
    given = False
    while idle:
        try:
            connection = idle.pop()
        except IndexError:  # another thread took the last one
            break
        yield shelf.pool.release, (connection,)
        given = True
    return given


class _Failed(NamedTuple):
    error: BaseException


def _call(step: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    try:
        return step[0](*step[1])
    except BaseException as exc:  # handed to the plan, which cleans up and re-raises
        return _Failed(exc)


async def _acall(step: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    try:
        return await step[0](*step[1])
    except BaseException as exc:  # handed to the plan, which cleans up and re-raises
        return _Failed(exc)


async def _await(step: tuple[Callable[..., Any], tuple[Any, ...]]) -> Any:
    return await step[0](*step[1])


def _direct(shelf: _Shelf, command: tuple[Any, ...]) -> Plan[Any]:
    pool, idle = shelf.pool, shelf.idle
    connection = None
    if idle:
        try:
            connection = idle.pop()
        except IndexError:  # another thread took the last one
            connection = None
    if connection is None:
        connection = yield pool.get_connection, ()
        if connection.__class__ is _Failed:
            if isinstance(connection.error, MaxConnectionsError):
                return _RETRY  # the command was not sent: the usual way waits for one
            raise connection.error
    reply = yield connection.send_packed_command, ([_pack(command)],)
    if reply.__class__ is not _Failed:
        reply = yield connection.read_response, ()
    if reply.__class__ is _Failed:
        error = reply.error
        if isinstance(error, NoScriptError):
            reply = UNKNOWN_SCRIPT
        elif not isinstance(error, redis.exceptions.ResponseError):  # else the link is fine
            # Dropped, timed out or interrupted: a reply may be left unread.
            yield connection.disconnect, ()
            if isinstance(error, _RETRIED_ERRORS):
                reply = _RETRY
            idle = None  # disconnected: back to the pool, which reconnects it
    if idle is None or _should_reconnect(connection):
        yield pool.release, (connection,)
    else:
        idle.append(connection)
    if reply.__class__ is _Failed:
        raise reply.error
    return reply


def _should_reconnect(connection: Any) -> bool:
    """Whether redis-py marked ``connection`` to reconnect (a server's maintenance notice,
    redis-py 6 and later), which the pool's release does."""
    marked = getattr(connection, "should_reconnect", None)
    return marked is not None and bool(marked())


def _pack(command: tuple[Any, ...]) -> bytes:
    """``command`` as RESP: its arguments are str, bytes or int (redis-py's general
    packing, for any type and encoding, costs several times more)."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = arg.encode() if arg.__class__ is str else b"%d" % arg if arg.__class__ is int \
            else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class ServerClients(RedisClients):
    """Clients of one server, from a pool bounded by ``poolsize``."""

    def make(self, driver: Driver) -> Any:
        """A ``Redis`` client over its own pool."""
        options = self.options
        kwargs = self.connection_kwargs(driver)
        kwargs.update(max_connections=options.pool_size, db=options.db)
        if options.unix_socket:
            kwargs.update(path=options.unix_socket,
                          connection_class=_connection_class(
                              driver, driver.connection.UnixDomainSocketConnection))
        else:
            kwargs["host"], kwargs["port"] = options.addresses[0]
            if options.ssl:
                kwargs["connection_class"] = _connection_class(
                    driver, driver.connection.SSLConnection)
        return driver.redis.Redis.from_pool(driver.redis.ConnectionPool(**kwargs))


class ClusterClients(RedisClients):
    """Clients of a Redis Cluster, discovered from its seed nodes."""

    direct = False  # a command goes to the node its key's slot names
    socket_timeout_backstop = True  # its client can lose a cancellation (see execute)

    def __init__(self, options: RedisOptions, owner: str) -> None:
        super().__init__(options, owner)
        self._initialized: weakref.WeakSet[Any] = weakref.WeakSet()
        self._init_locks = LoopLocal(asyncio.Lock)

    def make(self, driver: Driver) -> Any:
        """A ``RedisCluster`` client."""
        options = self.options
        kwargs = self.connection_kwargs(driver)
        (host, port), *others = options.addresses
        kwargs.update(
            startup_nodes=[driver.cluster.ClusterNode(h, p) for h, p in others],
            # One more than the in-flight bound: a topology refresh borrows a connection.
            max_connections=options.pool_size + 1,
        )
        if options.ssl or driver is not SYNC:
            del kwargs["connection_class"]  # the node's default: SSL's with ssl=True
            kwargs.update(host=host, port=port, ssl=options.ssl)
        else:
            # The nodes' connections take a class only when the client was given a URL:
            # the blocking ones are bounded by the deadline then, the topology refresh
            # after a timeout (a connection to every node) included.
            kwargs["url"] = f"redis://{host}:{port}"
        return driver.cluster.RedisCluster(**kwargs)

    async def execute(self, entry: _LoopClient, command: tuple[Any, ...],
                      options: Mapping[str, Any]) -> Any:
        """Send ``command`` in a task of its own, waited for until the deadline only.

        redis-py's asyncio cluster client can lose the cancellation that ends a command at
        its deadline, then retry it (its retries are its own loop, which no retry object
        bounds) for seconds more; the request must not wait for that.
        """
        return await cancellable(entry.client.execute_command(*command, **options))

    async def prepare(self, client: Any) -> None:
        """Learn the cluster's topology first, once per client."""
        if client not in self._initialized:
            # Commands racing into a cold asyncio cluster client each start its
            # initialisation, and one that fails makes the others' half-open
            # connections fail too: initialise once per client, the rest wait.
            async with self._init_locks.get():
                if client not in self._initialized:
                    await client.initialize()
                    self._initialized.add(client)


class SentinelClients(RedisClients):
    """Clients of the master that the sentinels name, following it over failovers."""

    bounded_async = False  # its pools wait for a free connection
    shelves = False  # ... and could not ask for shelved ones back

    def own(self) -> Any:
        """The application's master client, if it gave one (a ``Sentinel`` it gave is
        asked for the master instead)."""
        client = self.options.client
        return client if isinstance(client, SYNC.redis.Redis | ASYNC.redis.Redis) else None

    def make(self, driver: Driver) -> Any:
        """The master's client, from a ``Sentinel`` of ours or the application's."""
        options = self.options
        sentinel = options.client
        if sentinel is None:
            bound = options.operation_timeout
            sentinel = driver.sentinel.Sentinel(list(options.addresses), sentinel_kwargs={
                "socket_timeout": min(options.socket_timeout or bound, bound),
                "socket_connect_timeout": min(options.connect_timeout or bound, bound),
                "password": options.sentinel_password,
                # A sentinel that does not answer: ask the next one at once.
                "retry": driver.retry.Retry(ExponentialBackoff(cap=0.1, base=0.01), 0),
            })
        kwargs = self.connection_kwargs(driver)
        kwargs.update(db=options.db, max_connections=options.pool_size,
                      timeout=min(options.pool_timeout, options.operation_timeout),
                      connection_class=(driver.sentinel_ssl_connection if options.ssl
                                        else driver.sentinel_connection))
        return sentinel.master_for(options.master_name,
                                   connection_pool_class=driver.sentinel_pool, **kwargs)

    def tracking_target(self) -> Any:
        """The master's address, as the sentinels name it now."""
        pool = self.sync().connection_pool
        find = getattr(pool, "get_master_address", None)  # not on an application's Redis
        return None if find is None else find()

    def closing(self, client: Any) -> Plan[None]:
        """The master's client, then the sentinels' clients if we made the ``Sentinel``."""
        yield client
        sentinel = client.connection_pool.sentinel_manager
        if sentinel is not self.options.client:
            yield from sentinel.sentinels
