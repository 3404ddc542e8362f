"""The provider contracts.

Two contracts live here:

* :class:`Provider` and :class:`Store` are the seed's interfaces (beego's ``Provider`` and
  ``Store``) in snake_case. A provider written the seed's way — its own session class and
  provider class — satisfies them and can be registered.
* :class:`BaseProvider` is what websession's own providers subclass. A subclass does only
  its own I/O, through seven primitives over opaque :class:`Record` values; everything else
  (IDs, expiry, change tracking, merging of concurrent changes, cookies, codecs) lives in
  the engine and is shared. ``BaseProvider`` implements the seed interface on top of them.

The concurrency contract every ``BaseProvider`` keeps:

* ``create`` writes only if no live record has that ID, so a new ID can never overwrite one;
* ``update`` writes only if a live record exists *and* its version is the expected one, so a
  save can never resurrect a destroyed or regenerated session, and a save that raced with
  another is detected (the engine reloads, re-applies only its own changes and retries);
* every write is one atomic operation: a failure leaves the old record or the new one.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, Protocol, TypeVar, runtime_checkable

from ._options import parse_options

if TYPE_CHECKING:
    from .._config import ManagerConfig
    from .._core import Engine
    from .._session import SessionStore

__all__ = [
    "BaseProvider",
    "ClientSideProvider",
    "Provider",
    "Record",
    "Sealer",
    "Store",
    "parse_options",
]

P = ParamSpec("P")
T = TypeVar("T")


class Record(NamedTuple):
    """One stored session: opaque bytes, the time it may be dropped, and its version.

    ``expires_at`` is a Unix timestamp; a provider treats a record past it as absent and
    may delete it. ``version`` is chosen by the engine; a provider stores it as given and
    compares it in :meth:`BaseProvider.update`.
    """

    payload: bytes
    expires_at: float
    version: int
    #: Set by a provider whose :meth:`~BaseProvider.read` moved the deadline itself (see
    #: :attr:`BaseProvider.refreshes_on_read`): ``expires_at`` is then the new deadline.
    refreshed: bool = False


@runtime_checkable
class Store(Protocol):
    """One session, the seed's ``Store`` interface."""

    def set(self, key: str, value: Any) -> None:
        """Set a value."""
        ...

    def get(self, key: str, default: Any = None) -> Any:
        """Return a value, or ``default``."""
        ...

    def delete(self, key: str) -> None:
        """Remove a value."""
        ...

    def session_id(self) -> str:
        """Return the session's ID."""
        ...

    def session_release(self, headers: list[tuple[str, str]]) -> None:
        """Persist the session; append any response headers it needs to ``headers``."""
        ...

    def flush(self) -> None:
        """Remove every value."""
        ...


@runtime_checkable
class Provider(Protocol):
    """A session provider, the seed's ``Provider`` interface."""

    def session_init(self, max_lifetime: int, config: Any) -> None:
        """Configure the provider; ``config`` is the manager's ``providerConfig``."""
        ...

    def session_read(self, sid: str) -> Store:
        """Return the session ``sid``, creating it if it does not exist."""
        ...

    def session_exist(self, sid: str) -> bool:
        """Tell whether a live session ``sid`` exists."""
        ...

    def session_regenerate(self, old_sid: str, sid: str) -> Store:
        """Move session ``old_sid`` to the ID ``sid`` and return it."""
        ...

    def session_destroy(self, sid: str) -> None:
        """Delete session ``sid``."""
        ...

    def session_all(self) -> int:
        """Count live sessions."""
        ...

    def session_gc(self) -> None:
        """Remove expired sessions."""
        ...


class BaseProvider(ABC):
    """Base class of storage providers: implement the primitives, inherit the rest.

    Subclasses implement :meth:`read`, :meth:`create`, :meth:`update`, :meth:`touch`,
    :meth:`delete`, :meth:`count` and :meth:`gc`. Their async twins (``aread`` …) run the
    sync primitive directly when :attr:`blocking` is false (the memory provider) and in a
    worker thread otherwise; a provider with a native async driver overrides them.
    """

    #: Whether the sync primitives block on I/O. A non-blocking provider may be used from
    #: an event loop through its sync methods.
    blocking: bool = True
    #: Driver exceptions that mean "the store is unreachable"; the engine turns them into
    #: :class:`~websession.StoreUnavailableError`.
    unavailable_errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    #: Whether :meth:`read` itself moves a live record's deadline to now + the idle
    #: timeout (Redis ``GETEX``), so a read-only request needs no separate :meth:`touch`.
    #: The engine still enforces the absolute lifetime when it decodes the record.
    refreshes_on_read: bool = False
    #: Whether the session lives in the client (the cookie provider): the engine then
    #: seals each change into a new cookie value instead of writing to a store.
    client_side: bool = False

    _seed_engine: Engine | None = None

    # -- configuration ----------------------------------------------------------------

    def configure(self, config: Any) -> None:
        """Apply the manager's ``providerConfig``; this default accepts only an empty one."""
        parse_options(config, {}, provider=type(self).__name__)

    def adjust_config(self, config: ManagerConfig) -> ManagerConfig:
        """Return the manager's settings as this provider needs them (called once, after
        :meth:`session_init`). The cookie provider's own cookie options decide its cookie."""
        return config

    # -- the primitives ---------------------------------------------------------------

    @abstractmethod
    def read(self, sid: str) -> Record | None:
        """Return the live record ``sid``, or ``None`` if it is absent or expired."""

    @abstractmethod
    def create(self, sid: str, record: Record) -> bool:
        """Store ``record`` under a new ``sid``; return ``False`` if a live one exists."""

    @abstractmethod
    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        """Replace the live record ``sid`` if its version is ``expected_version``.

        Return ``False``, writing nothing, if the record is absent, expired or at another
        version.
        """

    @abstractmethod
    def touch(self, sid: str, expires_at: float) -> bool:
        """Move the live record's expiry to ``expires_at``; ``False`` if it is absent."""

    @abstractmethod
    def delete(self, sid: str) -> None:
        """Remove record ``sid`` if it exists."""

    @abstractmethod
    def count(self) -> int:
        """Return the number of live records."""

    @abstractmethod
    def gc(self) -> int:
        """Remove expired records; return how many were removed (if known, else 0)."""

    def close(self) -> None:  # noqa: B027 - most providers hold nothing to release
        """Release connections or files the provider holds."""

    # -- async twins ------------------------------------------------------------------

    async def _offload(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if not self.blocking:
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    def aread(self, sid: str) -> Awaitable[Record | None]:
        """Async twin of :meth:`read`."""
        return self._offload(self.read, sid)

    def acreate(self, sid: str, record: Record) -> Awaitable[bool]:
        """Async twin of :meth:`create`."""
        return self._offload(self.create, sid, record)

    def aupdate(self, sid: str, record: Record, expected_version: int) -> Awaitable[bool]:
        """Async twin of :meth:`update`."""
        return self._offload(self.update, sid, record, expected_version)

    def atouch(self, sid: str, expires_at: float) -> Awaitable[bool]:
        """Async twin of :meth:`touch`."""
        return self._offload(self.touch, sid, expires_at)

    def adelete(self, sid: str) -> Awaitable[None]:
        """Async twin of :meth:`delete`."""
        return self._offload(self.delete, sid)

    def acount(self) -> Awaitable[int]:
        """Async twin of :meth:`count`."""
        return self._offload(self.count)

    def agc(self) -> Awaitable[int]:
        """Async twin of :meth:`gc`."""
        return self._offload(self.gc)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await self._offload(self.close)

    # -- the seed's Provider interface, over the primitives ---------------------------

    def session_init(self, max_lifetime: int, config: Any) -> None:
        """Seed interface: configure from ``providerConfig``; ``max_lifetime`` is the idle
        timeout used by :meth:`session_read` when the provider is used without a manager."""
        from .._config import ManagerConfig
        from .._core import Engine

        self.configure(config)
        self._seed_engine = Engine(
            self, ManagerConfig(gc_lifetime=max(1, max_lifetime), enable_set_cookie=False)
        )

    def _engine(self) -> Engine:
        if self._seed_engine is None:
            self.session_init(3600, "")
        assert self._seed_engine is not None
        return self._seed_engine

    def session_read(self, sid: str) -> SessionStore:
        """Seed interface: the session ``sid`` (a fresh one if ``sid`` is unknown)."""
        return self._engine().open(sid)

    def session_exist(self, sid: str) -> bool:
        """Seed interface: whether a live session ``sid`` exists."""
        engine = self._engine()
        return engine.ids.is_valid(sid) and engine.exists(sid)

    def session_regenerate(self, old_sid: str, sid: str) -> SessionStore:
        """Seed interface: move ``old_sid``'s data to ``sid`` (done when it is released)."""
        store = self._engine().open(old_sid)
        store.regenerate_id(sid)
        return store

    def session_destroy(self, sid: str) -> None:
        """Seed interface: delete session ``sid``."""
        self._engine().open(sid).destroy()

    def session_all(self) -> int:
        """Seed interface: count live sessions."""
        count: int = self._engine().run_op("count")
        return count

    def session_gc(self) -> None:
        """Seed interface: remove expired sessions."""
        self._engine().run_op("gc")


@runtime_checkable
class Sealer(Protocol):
    """What the engine needs from a client-side provider besides :meth:`BaseProvider.read`."""

    def seal(self, record: Record) -> str:
        """Return ``record`` as an authenticated, encrypted cookie value."""
        ...

    def valid_token(self, token: str) -> bool:
        """Tell whether ``token`` has the shape of a value :meth:`seal` makes."""
        ...


class ClientSideProvider(BaseProvider):
    """Base of providers that keep the whole session in the client.

    The cookie value is the record, sealed: :meth:`seal` makes it, :meth:`read` (through
    :meth:`unseal`) opens it and returns ``None`` for anything forged, damaged or expired.
    There is no store to write to, so ``create``/``update``/``touch`` are never called by
    the engine; ``delete`` cannot revoke a cookie the client keeps (destroy expires it);
    ``count`` and ``gc`` have nothing to see and return 0, as in the seed.
    """

    blocking = False
    client_side = True

    @abstractmethod
    def seal(self, record: Record) -> str:
        """Return ``record`` as an authenticated, encrypted cookie value."""

    @abstractmethod
    def unseal(self, token: str) -> Record | None:
        """Open a value made by :meth:`seal`; ``None`` if forged, damaged or expired."""

    def valid_token(self, token: str) -> bool:
        """Tell whether ``token`` may be a sealed value (cheap shape check)."""
        return bool(token)

    def read(self, sid: str) -> Record | None:
        """Open the sealed cookie value ``sid``."""
        return self.unseal(sid)

    def _no_store(self, *args: Any) -> bool:
        raise TypeError(f"{type(self).__name__} keeps sessions in the client: nothing to write")

    def create(self, sid: str, record: Record) -> bool:
        """Not used: a client-side session is sealed, not stored."""
        return self._no_store(sid, record)

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        """Not used: a client-side session is sealed, not stored."""
        return self._no_store(sid, record, expected_version)

    def touch(self, sid: str, expires_at: float) -> bool:
        """Not used: a client-side session is re-sealed with its new deadline."""
        return self._no_store(sid, expires_at)

    def delete(self, sid: str) -> None:
        """Nothing to delete: the client holds the session (destroy expires the cookie)."""

    def count(self) -> int:
        """Unknowable for sessions held by clients: 0, as in the seed."""
        return 0

    def gc(self) -> int:
        """Nothing to collect: expiry is inside each sealed value."""
        return 0
