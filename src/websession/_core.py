"""The engine: everything about a session that is not I/O, written once for both modes.

:class:`Engine` holds what every kind of session shares: IDs, records and their expiry,
regeneration, and the response headers. Two engines build on it, one per way of keeping a
session:

* :class:`StoreEngine` keeps sessions in a store (a :class:`~websession.BaseProvider`'s
  seven primitives). An operation of several store calls is a *plan* (see
  :mod:`websession._plans`) yielding ``(primitive, args)`` steps; the sync executor calls
  the provider's primitives and the async one their ``a``-prefixed twins, so expiry,
  merging of concurrent changes and regeneration exist exactly once, and the provider's
  driver errors become :class:`~websession.StoreUnavailableError` in one place. An
  operation of one call (a read, and most saves: see :data:`Step`) makes it directly,
  translating errors the same way, and starts a plan only for what remains.
* :class:`~websession._sealing.SealEngine` keeps them in the cookie, sealed by a
  :class:`~websession.providers.ClientSideProvider`.

The engine decides; each session's :class:`~websession._state.SessionState` remembers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._ids import SessionIDs
from ._ops import Counters, Events, SessionInfo
from ._plans import Plan, adrive, drive
from ._session import SessionStore
from ._state import Lifetime, SessionState
from .codecs import DecodeError
from .cookies import dump_cookie
from .exceptions import (
    SessionConflictError,
    SessionModeError,
    StoreUnavailableError,
    UnsupportedOperationError,
)
from .providers.base import BaseProvider, Page, Record

if TYPE_CHECKING:
    from ._config import ManagerConfig

__all__ = ["Engine", "StoreEngine"]

log = logging.getLogger("websession")

# Seconds a record's creation time may lie ahead of this machine's clock (clock skew
# between servers sharing a store); beyond that the record is damaged.
CLOCK_SLACK = 300.0
# Enough for heavy contention on one session; each retry re-reads and re-applies.
MAX_SAVE_ATTEMPTS = 200
# A read-only request refreshes the idle deadline only once this fraction of the idle
# timeout has passed since the last write, so busy sessions are not written on every read.
REFRESH_FRACTION = 0.1
# A record's payload: the creation time as a big-endian double, then the codec's bytes.
# A session with a lifetime of its own starts with a zero byte (never the first byte of a
# real timestamp), then the creation time, its idle timeout and absolute lifetime (0: the
# manager's) and its cookie's persistence (-1 the manager's, 0 browser session, 1 kept).
_CREATED = struct.Struct(">d")
_OWN_LIFETIME = struct.Struct(">xdddb")
_INFINITY = math.inf
_new_tuple = tuple.__new__
_running_loop = asyncio._get_running_loop  # C: None off an event loop's thread
_clock = time.perf_counter
_PERSIST = {None: -1, False: 0, True: 1}
_PERSISTED = {-1: None, 0: False, 1: True}
_MANAGERS = (None, None, None)

T = TypeVar("T")

#: A decoded record: creation time, data, and the session's own lifetime if it has one.
Decoded = tuple[float, dict[str, Any], Lifetime | None]

_PRIMITIVES = ("read", "create", "update", "touch", "delete", "count", "gc")
# The optional abilities: a provider without them raises UnsupportedOperationError.
_OPTIONAL = ("scan", "gc_ids", "bind", "sessions_of", "revoke_user", "create_many")
#: "The save leaves the session's user binding as it is."
_UNCHANGED: Any = object()
# One store operation in this many is timed: the first, then every 16th. Reading the clock
# twice costs more than the rest of the counting, and a sample gives the same mean latency.
_UNTIMED = 15

#: A save that is one store call, made directly rather than as a plan:
#: ``(primitive, args, then, context)``. The engine calls ``primitive(*args)`` (or its
#: async twin), then ``then(state, answer, args, context)``, which records the outcome and
#: returns the plan for whatever remains (a lost race's re-read and retry, an ID
#: collision, a user to bind), or ``None``. Most saves are one call that succeeds and
#: never start a plan, whose end (a generator's ``StopIteration``) costs more than the
#: call itself with a fast store.
Step = tuple[Callable[..., Any], tuple[Any, ...], Callable[..., "Plan[None] | None"], Any]


class Engine(ABC):
    """Session logic shared by every way of keeping sessions, for one manager's settings."""

    #: Whether the operations block on I/O (async code must then use the ``a`` twins).
    blocking: bool = False

    def __init__(self, config: ManagerConfig,
                 session_class: type[SessionStore] = SessionStore) -> None:
        self.config = config
        #: The class of the sessions :meth:`open` makes (a framework adapter's subclass).
        self.session_class = session_class
        self.codec = config.codec
        self.ids = SessionIDs(config.session_id_length, config.session_id_prefix)
        self.idle = float(config.idle_timeout)
        self.absolute = float(config.absolute_lifetime)
        self.refresh_step = self.idle * REFRESH_FRACTION
        #: The manager's cookies have a Max-Age (then every save or refresh sends it again,
        #: sliding it with the server's deadline).
        self.cookie_lasts = bool(config.cookie_life_time)
        #: Whether a client-supplied ID has the shape this engine issues (chosen once:
        #: this runs on every request that sends a cookie).
        self.valid_client_id: Callable[[str], object] = self.ids.matches
        #: What the engine counted (read by ``Manager.stats``) and who listens to it.
        self.counters = Counters()
        self.events = Events()

    # -- opening ----------------------------------------------------------------------

    def open(self, sid: str | None, secure: bool = False,
             alternates: tuple[str, ...] = ()) -> SessionStore:
        """A session for a client-supplied ``sid``; a malformed one gets a fresh ID at once.

        ``alternates``: other well-formed IDs the request sent (duplicate cookies), tried
        in order when ``sid`` does not load.
        """
        if sid is not None and self.valid_client_id(sid):
            state = SessionState(sid, True, False, alternates)
        else:  # a malformed cookie must be dropped; no cookie, nothing to drop
            state = SessionState(self.ids.new(), False, sid is not None)
        return self.session_class(self, state, secure)

    def refuse_on_loop(self, twin: str, hint: str = "") -> None:
        """Raise :class:`SessionModeError` naming ``twin`` if this engine's I/O would block
        a running event loop (sync code in worker threads is fine)."""
        if self.blocking and _running_loop() is not None:
            raise SessionModeError(
                f"this session's provider does I/O and this thread runs an event loop: "
                f"use `await {twin}` instead{hint}, or call it from a worker thread"
            )

    # -- records ----------------------------------------------------------------------

    def record(self, state: SessionState, data: dict[str, Any], created: float, version: int,
               now: float) -> Record:
        """The record that stores ``data`` as ``version`` of ``state``'s session created at
        ``created``, its idle deadline counted from ``now``.

        Its payload: the creation time (and the session's own lifetime, if it has one),
        then the codec's bytes. These ride in front of the codec's bytes: the codec sees
        only the application's data, and expiry needs no second lookup.
        """
        lifetime = state.lifetime
        if lifetime is None:
            payload = _CREATED.pack(created) + self.codec.encode(data)
        else:
            idle, absolute, persistent = lifetime
            payload = _OWN_LIFETIME.pack(created, idle or 0.0, absolute or 0.0,
                                         _PERSIST[persistent]) + self.codec.encode(data)
        # Built by tuple.__new__: a NamedTuple's own __new__ is Python code, and costs
        # as much again on every save.
        return _new_tuple(Record, (payload, self.deadline(state, created, now), version, False))

    def decode(self, record: Record | None, now: float) -> Decoded | None:
        """What a live record holds; ``None`` if absent, expired or damaged."""
        if record is None or record.expires_at <= now:
            return None
        payload = record.payload
        try:
            if payload[0]:  # the first byte of a real timestamp, never 0
                (created,) = _CREATED.unpack_from(payload)
                lifetime: Lifetime | None = None
                data = self.codec.decode(payload[8:])
                end = created + self.absolute
            else:
                created, idle, absolute, persist = _OWN_LIFETIME.unpack_from(payload)
                lifetime = (idle or None, absolute or None, _PERSISTED[persist])
                if lifetime == _MANAGERS:
                    lifetime = None
                data = self.codec.decode(payload[_OWN_LIFETIME.size:])
                end = created + (absolute or self.absolute)
        except (DecodeError, struct.error, TypeError, KeyError, IndexError):
            log.warning("a damaged session record was read: it counts as no session")
            return None  # damaged or foreign: an empty session, never an error page
        except Exception:  # a third-party codec's own failure: the same, never a 500
            log.warning("a session record the codec could not decode was read: it counts "
                        "as no session", exc_info=True)
            return None
        # A creation time that is not a time (NaN, infinite, in the future) would disable
        # the absolute lifetime (NaN fails every comparison).
        if not now < end < _INFINITY or created > now + CLOCK_SLACK:
            return None
        return created, data, lifetime

    def idle_timeout(self, state: SessionState) -> float:
        """``state``'s idle timeout: its own, or the manager's."""
        lifetime = state.lifetime
        return self.idle if lifetime is None or not lifetime[0] else lifetime[0]

    def absolute_lifetime(self, state: SessionState) -> float:
        """``state``'s absolute lifetime: its own, or the manager's."""
        lifetime = state.lifetime
        return self.absolute if lifetime is None or not lifetime[1] else lifetime[1]

    def persistent(self, state: SessionState) -> bool | None:
        """Whether ``state``'s cookie persists (``None``: the manager's settings decide)."""
        lifetime = state.lifetime
        return None if lifetime is None else lifetime[2]

    def deadline(self, state: SessionState, created: float, now: float) -> float:
        """The idle deadline from ``now``, capped by the absolute lifetime."""
        if state.lifetime is None:  # the usual session: the manager's lifetime
            end = created + self.absolute
            idle_end = now + self.idle
        else:
            end = created + self.absolute_lifetime(state)
            idle_end = now + self.idle_timeout(state)
        return idle_end if idle_end < end else end

    def absolute_deadline(self, state: SessionState) -> float:
        """When ``state``'s session ends however busy it is (0 if not yet saved)."""
        return state.created + self.absolute_lifetime(state) if state.created else 0.0

    def refresh_due(self, state: SessionState, deadline: float) -> bool:
        """Whether moving the idle deadline to ``deadline`` is worth a write: once a tenth
        of the idle timeout has passed, so busy sessions are not written on every read."""
        step = (self.refresh_step if state.lifetime is None
                else self.idle_timeout(state) * REFRESH_FRACTION)
        return deadline - state.expires_at >= step

    def slides_cookie(self, state: SessionState) -> bool:
        """Whether the cookie has a Max-Age that must move with the server's deadline."""
        lifetime = state.lifetime
        if lifetime is None or lifetime[2] is None:
            return self.cookie_lasts
        return lifetime[2]

    def adopt(self, state: SessionState, record: Record | None) -> bool:
        """Take a record read for ``state`` and return ``True``; or, if it is unknown,
        expired or damaged, move to the next ID the client sent and return ``False`` (read
        again), and with none left continue as a fresh session, dropping the client's
        dead cookie, and return ``True``."""
        decoded = self.decode(record, time.time())
        if decoded is None or record is None:
            if state.try_alternate():
                return False
            state.start_fresh(self.ids.new(), expire_cookie=state.from_client)
        else:
            state.adopt(decoded, record)
        return True

    def user_of(self, data: dict[str, Any]) -> str | None:
        """The user session data names (under ``userKey``), as the index keeps it."""
        user = data.get(self.config.user_key)
        return None if user is None else str(user)

    def info(self, sid: str, record: Record | None, now: float) -> SessionInfo | None:
        """What an operator sees of a stored record; ``None`` if it is not live."""
        decoded = self.decode(record, now)
        if decoded is None or record is None:
            return None
        return SessionInfo(sid, decoded[0], record.expires_at, len(record.payload),
                           record.version, decoded[1], self.user_of(decoded[1]))

    def infos(self, page: Page) -> list[SessionInfo]:
        """The live sessions of a page of :meth:`scan`, as an operator sees them."""
        now = time.time()
        infos = [self.info(sid, record, now) for sid, record in page.records]
        return [info for info in infos if info is not None]

    # -- operations -------------------------------------------------------------------

    #: Why :meth:`scan` cannot list this engine's sessions.
    cannot_scan = "this manager's provider cannot list its sessions"
    #: Whether :meth:`scan` works.
    can_scan = False

    def scan(self, cursor: str | None, batch: int) -> Page:
        """A batch of the walk over every stored session (see ``BaseProvider.scan``)."""
        raise UnsupportedOperationError(self.cannot_scan)

    async def ascan(self, cursor: str | None, batch: int) -> Page:
        """Async twin of :meth:`scan`."""
        raise UnsupportedOperationError(self.cannot_scan)

    def inspect(self, sid: str) -> SessionInfo | None:
        """The live session ``sid`` as an operator sees it, or ``None``."""
        raise UnsupportedOperationError(self.cannot_scan)

    async def ainspect(self, sid: str) -> SessionInfo | None:
        """Async twin of :meth:`inspect`."""
        raise UnsupportedOperationError(self.cannot_scan)

    #: Why this engine cannot find sessions by user.
    cannot_bind = "this manager's provider cannot index sessions by user"

    def sessions_of(self, user: str) -> list[SessionInfo]:
        """The live sessions bound to ``user``, oldest binding first."""
        raise UnsupportedOperationError(self.cannot_bind)

    async def asessions_of(self, user: str) -> list[SessionInfo]:
        """Async twin of :meth:`sessions_of`."""
        raise UnsupportedOperationError(self.cannot_bind)

    def revoke_user(self, user: str, keep: str | None) -> int:
        """Delete ``user``'s sessions except ``keep``; return how many."""
        raise UnsupportedOperationError(self.cannot_bind)

    async def arevoke_user(self, user: str, keep: str | None) -> int:
        """Async twin of :meth:`revoke_user`."""
        raise UnsupportedOperationError(self.cannot_bind)

    @abstractmethod
    def load(self, state: SessionState) -> None:
        """Read ``state``'s session."""

    @abstractmethod
    async def aload(self, state: SessionState) -> None:
        """Async twin of :meth:`load`."""

    @abstractmethod
    def release(self, state: SessionState) -> None:
        """Save what ``state`` changed, or refresh its deadline when due."""

    @abstractmethod
    async def arelease(self, state: SessionState) -> None:
        """Async twin of :meth:`release`."""

    @abstractmethod
    def destroy(self, state: SessionState) -> None:
        """Delete ``state``'s session and continue with a fresh, empty one."""

    @abstractmethod
    async def adestroy(self, state: SessionState) -> None:
        """Async twin of :meth:`destroy`."""

    @abstractmethod
    def count(self) -> int:
        """Count live sessions."""

    @abstractmethod
    async def acount(self) -> int:
        """Async twin of :meth:`count`."""

    @abstractmethod
    def gc(self) -> int:
        """Remove expired sessions; return how many, where known."""

    @abstractmethod
    async def agc(self) -> int:
        """Async twin of :meth:`gc`."""

    #: Whether the store's read moves a due idle deadline itself (then a read-only
    #: request writes nothing).
    refreshes_on_read = False

    def pending(self, state: SessionState) -> bool:
        """Whether releasing ``state`` has something to do: the decisions :meth:`release`
        makes, without acting on them (see ``SessionStore.pending``)."""
        if not state.loaded:
            return False
        if state.changes or state.cleared or state.forced or state.mutated_keys():
            return True
        if state.is_new:
            return bool(state.data) or state.old_sid is not None
        if state.refresh_checked:
            return False
        if self.refreshes_on_read:
            return state.refreshed
        return self.refresh_due(state, self.deadline(state, state.created, time.time()))

    def regenerate(self, state: SessionState, new_sid: str | None = None) -> str:
        """Give ``state`` a new ID now; the data moves to it, and the old ID is deleted,
        when it is saved. No I/O: the session must already be loaded."""
        if new_sid is not None and not self.ids.is_valid(new_sid):
            raise ValueError("new_sid does not have the shape of this manager's session IDs")
        state.rotate(new_sid or self.ids.new())
        return state.sid

    @staticmethod
    def doomed_ids(state: SessionState) -> list[str]:
        """The IDs destroying ``state`` must delete: the current one if it may be stored,
        and one a regeneration left behind."""
        current = state.sid if not state.is_new or not state.loaded else None
        return [sid for sid in (state.old_sid, current) if sid is not None]

    def forget(self, state: SessionState, deleted: bool) -> None:
        """After a destroy: continue with a fresh session, dropping the client's cookie."""
        state.start_fresh(self.ids.new(), expire_cookie=state.from_client or deleted)

    # -- response headers -------------------------------------------------------------

    def max_age(self, state: SessionState) -> int | None:
        """The cookie's Max-Age for ``state`` (``None``: a browser-session cookie)."""
        persistent = self.persistent(state)
        if persistent is None:
            return self.config.cookie_life_time or None
        if not persistent:
            return None
        return max(1, int(state.expires_at - time.time()))  # as long as the server keeps it

    def cookie(self, value: str | None, secure: bool, max_age: int | None = None) -> str:
        """The ``Set-Cookie`` value carrying ``value`` (kept ``max_age`` seconds, or for the
        browser session), or deleting the cookie if ``value`` is ``None``."""
        cfg = self.config
        return dump_cookie(
            cfg.cookie_name,
            "" if value is None else value,
            max_age=0 if value is None else max_age,
            path=cfg.cookie_path,
            domain=cfg.domain or None,
            secure=cfg.secure or secure,
            httponly=not cfg.disable_http_only,
            samesite=cfg.cookie_same_site,
        )

    #: Whether the cookie is the session itself (then it is sent even if the manager's
    #: ``enableSetCookie`` is off).
    cookie_is_session = False

    def response_headers(self, state: SessionState, headers: list[tuple[str, str]],
                         accessed: bool, secure: bool) -> None:
        """Append the headers the response needs after ``state`` was released."""
        if accessed:
            headers.append(("Vary", "Cookie"))
        if not (state.send_id or state.expire_cookie):
            return
        cfg = self.config
        deleting = not state.send_id
        if cfg.enable_set_cookie or self.cookie_is_session:
            headers.append(("Set-Cookie", self.cookie(
                None if deleting else state.sid, secure, self.max_age(state))))
        if cfg.enable_sid_in_http_header:
            headers.append((cfg.session_name_in_http_header, "" if deleting else state.sid))
        # A response that carries the ID must never be cached: no-store replaces whatever
        # caching the application asked for.
        headers[:] = [h for h in headers if h[0].lower() != "cache-control"]
        headers.append(("Cache-Control", "no-store"))
        state.headers_sent()

    def watch_expired(self) -> Callable[[], None] | None:
        """Start reporting sessions the store expires by itself (``expired`` events);
        return what stops it, or ``None`` if the store cannot (GC reports instead)."""
        return None

    def close(self) -> None:  # noqa: B027 - an engine with nothing to release
        """Release what the engine's provider holds."""

    async def aclose(self) -> None:  # noqa: B027
        """Async twin of :meth:`close`."""


class StoreEngine(Engine):
    """Sessions kept in a store, through a :class:`~websession.BaseProvider`."""

    def __init__(self, provider: BaseProvider, config: ManagerConfig,
                 session_class: type[SessionStore] = SessionStore) -> None:
        super().__init__(config, session_class)
        self.provider = provider
        self.blocking = provider.blocking
        self.user_key = config.user_key
        self.cap = config.max_sessions_per_user
        self._errors = provider.unavailable_errors
        # Plans name a primitive by its sync method; the async executor maps it to its twin.
        self._read = provider.read
        self._create = provider.create
        self._update = provider.update
        self._touch = provider.touch
        self._delete = provider.delete
        self._count = provider.count
        self._gc = provider.gc
        # Fewer than 30 instance attributes in all: past that CPython stops sharing the
        # instance dict's keys and every `self.x` on the hot path gets slower. The
        # optional abilities are reached through self.provider, off the hot path.
        #: Whether saves index sessions by the user in ``config.user_key``.
        self.binds_users = provider.can_bind
        self.refreshes_on_read = provider.refreshes_on_read
        self._twins: dict[Callable[..., Any], Callable[..., Awaitable[Any]]] = {
            getattr(provider, name): getattr(provider, "a" + name)
            for name in (*_PRIMITIVES, *_OPTIONAL)
        }

    # -- running plans ------------------------------------------------------------------

    @property
    def can_scan(self) -> bool:  # type: ignore[override]
        """Whether the provider can list its sessions."""
        return self.provider.can_scan

    @property
    def cannot_scan(self) -> str:  # type: ignore[override]
        """Why the provider cannot list its sessions."""
        return (f"the {type(self.provider).__name__} provider cannot list its sessions "
                "(it does not implement scan())")

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        self.counters.unavailable += 1
        return StoreUnavailableError(
            f"session store {type(self.provider).__name__} is unavailable: {exc}"
        )

    async def _acall(self, step: tuple[Any, ...]) -> Any:
        # Plans name the sync primitive; the async executor awaits its twin.
        return await self._twins[step[0]](*step[1])

    def run(self, plan: Plan[T]) -> T:
        """Run ``plan`` with the provider's blocking primitives."""
        return drive(plan, None, self._errors, self._unavailable)

    async def arun(self, plan: Plan[T]) -> T:
        """Run ``plan`` with the provider's async primitives."""
        if not self.blocking:  # nothing would ever suspend: skip the awaits
            return drive(plan, None, self._errors, self._unavailable)
        return await adrive(plan, self._acall, self._errors, self._unavailable)

    def call(self, primitive: Callable[..., T], *args: Any) -> T:
        """Call one primitive, its driver errors translated as :meth:`run` translates
        them: an operation of one step needs no plan (ending a plan costs more than the
        call of a fast store)."""
        try:
            return primitive(*args)
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    async def acall(self, primitive: Callable[..., T], *args: Any) -> T:
        """Async twin of :meth:`call`: the primitive's async twin, awaited."""
        if not self.blocking:  # nothing would ever suspend: skip the await
            return self.call(primitive, *args)
        # Against a store across the network a plan's cost is noise: the one driver.
        return await adrive(self._one(primitive, args), self._acall, self._errors,
                            self._unavailable)

    @staticmethod
    def _one(primitive: Callable[..., T], args: tuple[Any, ...]) -> Plan[T]:
        result: T = yield primitive, args
        return result

    # -- operations -------------------------------------------------------------------

    def load(self, state: SessionState) -> None:
        """Read ``state`` from the store."""
        if self.blocking:
            self.refuse_on_loop("session.aload()", " first (the ASGI middleware and the "
                                "framework adapters do it for you; then use the session "
                                "without awaiting)")
        counters = self.counters
        start = 0.0 if counters.loads & _UNTIMED else _clock()
        # The one step of every request that uses its session: called directly, its driver
        # errors translated as the drivers translate them.
        while True:
            try:
                record = self._read(state.sid)
            except self._errors as exc:
                raise self._unavailable(exc) from exc
            if self.adopt(state, record):
                break
        counters.loads += 1
        if start:
            counters.timed_load(_clock() - start)

    async def aload(self, state: SessionState) -> None:
        """Async twin of :meth:`load`."""
        counters = self.counters
        start = 0.0 if counters.loads & _UNTIMED else _clock()
        while not self.adopt(state, await self.acall(self._read, state.sid)):
            pass  # a stale duplicate cookie: the next ID the client sent
        counters.loads += 1
        if start:
            counters.timed_load(_clock() - start)

    def release(self, state: SessionState) -> None:
        """Save what ``state`` changed (create, compare-and-set update, or a refresh)."""
        save = self._release(state)
        if save is None:
            return
        if self.blocking and _running_loop() is not None:
            self.refuse_on_loop("session.asession_release(headers)")
        counters = self.counters
        start = 0.0 if counters.writes & _UNTIMED else _clock()
        if isinstance(save, tuple):  # one store call: made here, :meth:`call` inlined
            primitive, args, then, context = save
            try:
                answer = primitive(*args)
            except self._errors as exc:
                raise self._unavailable(exc) from exc
            plan = then(state, answer, args, context)
        else:
            plan = save
        if plan is not None:
            drive(plan, None, self._errors, self._unavailable)
        counters.writes += 1
        if start:
            counters.timed_write(_clock() - start)

    async def arelease(self, state: SessionState) -> None:
        """Async twin of :meth:`release`."""
        save = self._release(state)
        if save is None:
            return
        counters = self.counters
        start = 0.0 if counters.writes & _UNTIMED else _clock()
        if isinstance(save, tuple):
            primitive, args, then, context = save
            plan = then(state, await self.acall(primitive, *args), args, context)
        else:
            plan = save
        if plan is not None:
            await self.arun(plan)
        counters.writes += 1
        if start:
            counters.timed_write(_clock() - start)

    def destroy(self, state: SessionState) -> None:
        """Delete ``state``'s session now and continue with a fresh one."""
        self.refuse_on_loop("session.adestroy()")
        self.run(self._destroy(state))

    async def adestroy(self, state: SessionState) -> None:
        """Async twin of :meth:`destroy`."""
        await self.arun(self._destroy(state))

    def count(self) -> int:
        """Count live sessions."""
        self.refuse_on_loop("manager.aget_active_session()")
        return int(self.call(self._count))

    async def acount(self) -> int:
        """Async twin of :meth:`count`."""
        return await self.acall(self._count)

    def gc(self) -> int:
        """Remove expired sessions; return how many, where the store says."""
        self.refuse_on_loop("manager.agc()")
        return self._expired(self.run(self._collect()))

    async def agc(self) -> int:
        """Async twin of :meth:`gc`."""
        return self._expired(await self.arun(self._collect()))

    def _collect(self) -> Plan[int | list[str]]:
        # The IDs cost a list; they are asked for only when someone listens.
        if self.provider.reports_expired and self.events.wants("expired"):
            ids: list[str] = yield self.provider.gc_ids, ()
            return ids
        removed: int = yield self._gc, ()
        return removed

    def watch_expired(self) -> Callable[[], None] | None:
        """Start the provider's report of the sessions its store expires by itself (Redis
        keyspace notifications), counted and fired as GC's are; ``None`` if it has none."""
        if not self.provider.can_watch_expired:
            return None
        return self.provider.watch_expired(self._expired)

    def _expired(self, removed: int | list[str]) -> int:
        count, ids = (removed, None) if isinstance(removed, int) else (len(removed), removed)
        self.counters.expired += count
        if count and self.events.active:
            self.events.fire("expired", count, ids)
        return count

    def scan(self, cursor: str | None, batch: int) -> Page:
        """A batch of the walk over every stored session (see ``BaseProvider.scan``)."""
        self.refuse_on_loop("manager.aiter_sessions()")
        return self.call(self.provider.scan, cursor, batch)

    async def ascan(self, cursor: str | None, batch: int) -> Page:
        """Async twin of :meth:`scan`."""
        return await self.acall(self.provider.scan, cursor, batch)

    def sessions_of(self, user: str) -> list[SessionInfo]:
        """The live sessions bound to ``user``, oldest binding first."""
        self.refuse_on_loop("manager.asessions_of()")
        return self.infos(Page(self.call(self.provider.sessions_of, user), None))

    async def asessions_of(self, user: str) -> list[SessionInfo]:
        """Async twin of :meth:`sessions_of`."""
        return self.infos(Page(await self.acall(self.provider.sessions_of, user), None))

    def revoke_user(self, user: str, keep: str | None) -> int:
        """Delete ``user``'s sessions except ``keep``; return how many."""
        self.refuse_on_loop("manager.arevoke_user()")
        return self._destroyed(self.call(self.provider.revoke_user, user, keep))

    async def arevoke_user(self, user: str, keep: str | None) -> int:
        """Async twin of :meth:`revoke_user`."""
        return self._destroyed(await self.acall(self.provider.revoke_user, user, keep))

    def import_records(self, records: list[tuple[str, Record, str | None]]) -> int:
        """Store records copied from another store, under their own IDs and bound to
        their users; an ID already here is left as it is, so re-running an interrupted
        copy finishes it without duplicates. Return how many were created."""
        self.refuse_on_loop("manager.amigrate()")
        return self.run(self._import(records))

    async def aimport_records(self, records: list[tuple[str, Record, str | None]]) -> int:
        """Async twin of :meth:`import_records`."""
        return await self.arun(self._import(records))

    def _import(self, records: list[tuple[str, Record, str | None]]) -> Plan[int]:
        if self.provider.can_create_many:  # a batch in a round trip or two
            if not self.binds_users:
                records = [(sid, record, None) for sid, record, _ in records]
            many: int = yield self.provider.create_many, (records,)
            return many
        created = 0
        for sid, record, user in records:
            if (yield self._create, (sid, record)):
                created += 1
            if user is not None and self.binds_users:  # again on a rerun: binding is
                yield self.provider.bind, (sid, user, 0)         # idempotent, and may be missing
        return created

    def _destroyed(self, sids: list[str]) -> int:
        self.counters.destroyed += len(sids)
        if self.events.active:
            for sid in sids:
                self.events.fire("destroyed", sid)
        return len(sids)

    def _binding(self, state: SessionState) -> Any:
        """The user a new record (a new session, or a regenerated one) must be bound to
        (``None``: to nobody), or :data:`_UNCHANGED`."""
        user = self.user_of(state.data)
        # A new record's ID (a regenerated one too) was never indexed: binding it to
        # nobody would be a wasted round trip on every login.
        return _UNCHANGED if user is None else user

    def _bound(self, sid: str, user: Any) -> Plan[None]:
        if user is not _UNCHANGED:
            evicted: list[str] = yield self.provider.bind, (sid, user, self.cap)
            if evicted:
                self._destroyed(evicted)

    def inspect(self, sid: str) -> SessionInfo | None:
        """The live session ``sid`` as an operator sees it, or ``None``."""
        if not self.ids.is_valid(sid):
            return None
        self.refuse_on_loop("manager.ainspect()")
        return self.info(sid, self.call(self._read, sid), time.time())

    async def ainspect(self, sid: str) -> SessionInfo | None:
        """Async twin of :meth:`inspect`."""
        if not self.ids.is_valid(sid):
            return None
        return self.info(sid, await self.acall(self._read, sid), time.time())

    def close(self) -> None:
        """Close the provider."""
        self.provider.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await self.provider.aclose()

    # -- the plans --------------------------------------------------------------------

    def _release(self, state: SessionState) -> Step | Plan[None] | None:
        """What saving ``state`` takes: ``None`` when the store need not be touched; a
        :data:`Step` (one store call: most saves); or a plan."""
        if not state.loaded:
            return None  # never used: no store access at all
        if state.snapshots:
            state.collect_mutations()
        if state.is_new:
            if state.old_sid is None:
                if not (state.data or state.forced):
                    return None  # an empty session is stored only when asked
                if not self.binds_users or self._binding(state) is _UNCHANGED:
                    return self._creating(state, time.time())
            return self._save_new(state, time.time())
        if state.changes or state.cleared or state.forced:
            data, version = state.data, state.version
            return (self._update, (state.sid, self.record(state, data, state.created, version + 1,
                                                        time.time()),
                                   version), self._updated, data)
        if state.refresh_checked:
            return None  # a later release in the same request: the deadline is current
        if self.refreshes_on_read:
            # The read itself moved the deadline when it was due; a persistent cookie
            # must move with it.
            state.refresh_done(send_id=state.refreshed and self.slides_cookie(state))
            return None
        expires_at = self.deadline(state, state.created, time.time())
        if self.refresh_due(state, expires_at):
            return self._touch, (state.sid, expires_at), self._touched, None
        state.refresh_done()
        return None

    def _touched(self, state: SessionState, moved: bool, args: tuple[str, float],
                 context: None) -> None:
        """After the refresh: the deadline moved, or the session is gone."""
        if moved:
            self.counters.refreshes += 1
            state.deadline_moved(args[1], send_id=self.slides_cookie(state))
        else:
            state.refresh_done()

    def _updated(self, state: SessionState, won: bool, args: tuple[str, Record, int],
                 data: dict[str, Any]) -> Plan[None] | None:
        """After the compare-and-set update that saves ``data``: commit it, and return the
        plan that binds the session to the user it now names, if the save changed it; or,
        if it lost, the plan that merges and tries again."""
        if not won:
            return self._merge(state)
        # The merged data may hold another request's user.
        rebind = self.binds_users and (self.user_key in state.changes or state.cleared)
        sid, record, _ = args
        # A changed lifetime changes the cookie too (a Max-Age added or dropped).
        state.committed(data, record,
                        state.lifetime_set or (self.cookie_lasts if state.lifetime is None
                                               else self.slides_cookie(state)))
        self.counters.saves += 1
        return self._bound(sid, self.user_of(data)) if rebind else None

    def _merge(self, state: SessionState) -> Plan[None]:
        """The update lost a race, or the session is gone: re-read, re-apply only this
        request's changes and try again; never re-create a session destroyed or
        regenerated meanwhile."""
        now = time.time()
        counters = self.counters
        for _ in range(1, MAX_SAVE_ATTEMPTS):
            counters.conflicts += 1
            current: Record | None = yield self._read, (state.sid,)
            decoded = self.decode(current, now)
            if decoded is None or current is None:
                state.start_fresh(self.ids.new(), expire_cookie=False)
                return
            counters.retries += 1
            data, version = state.reapply(decoded[1]), current.version
            state.concurrent_lifetime(decoded[2])
            args = (state.sid, self.record(state, data, state.created, version + 1, now), version)
            if (yield self._update, args):
                rebind = self._updated(state, True, args, data)
                if rebind is not None:
                    yield from rebind
                return
        counters.conflicts += 1
        raise SessionConflictError(
            f"gave up saving a session after {MAX_SAVE_ATTEMPTS} concurrent-update conflicts"
        )

    def _creating(self, state: SessionState, now: float) -> Step:
        """A new session, bound to nobody and replacing none: one create."""
        record = self.record(state, state.data, now, 1, now)
        return self._create, (state.sid, record), self._created, now

    def _created(self, state: SessionState, created: bool, args: tuple[str, Record],
                 now: float) -> Plan[None] | None:
        """After the create of a new session."""
        if created:
            self._stored(state, args[1], now, fresh=True)
            return None
        state.new_id(self.ids.new())  # an ID collision: 2**-128, but never overwrite
        return self._save_new(state, now)

    def _stored(self, state: SessionState, record: Record, now: float, *, fresh: bool) -> None:
        """A new record holds ``state``'s session (``fresh``: a new session, not one moved
        to a new ID)."""
        state.stored(state.sid, now, record)
        if fresh:
            self.counters.created += 1
            if self.events.active:
                self.events.fire("created", state.sid)

    def _save_new(self, state: SessionState, now: float) -> Plan[None]:
        """A new record for ``state``: a new session, or a regenerated one (the old ID is
        deleted after the new one is stored), and its user binding."""
        user = self._binding(state) if self.binds_users else _UNCHANGED
        old_sid = state.retire_old_sid()
        stored = bool(state.data or state.forced)  # an empty session is stored only when asked
        if stored:
            record = self.record(state, state.data, now, 1, now)
            while not (yield self._create, (state.sid, record)):
                state.new_id(self.ids.new())  # an ID collision: 2**-128, but never overwrite
            self._stored(state, record, now, fresh=old_sid is None)
        elif old_sid is not None:
            state.dropped()  # the old session goes and nothing replaces it
        if old_sid is not None:
            yield self._delete, (old_sid,)
            self.counters.regenerated += 1
            if self.events.active:
                self.events.fire("regenerated", state.sid, old_sid)
        if user is not _UNCHANGED and stored:
            # After the old ID is gone, so a regeneration never counts twice toward the cap.
            yield from self._bound(state.sid, user)

    def _destroy(self, state: SessionState) -> Plan[None]:
        doomed = self.doomed_ids(state)
        for sid in doomed:
            yield self._delete, (sid,)
        if doomed:
            self.counters.destroyed += 1
            if self.events.active:
                self.events.fire("destroyed", doomed[-1])
        self.forget(state, bool(doomed))
