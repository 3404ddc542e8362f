"""The provider contracts.

Two contracts live here:

* :class:`Provider` and :class:`Store` are the seed's interfaces (beego's ``Provider`` and
  ``Store``) in snake_case. A provider written the seed's way — its own session class and
  provider class — satisfies them and can be registered.
* :class:`BaseProvider` is what websession's own store providers subclass. A subclass does
  only its own I/O, through seven primitives over opaque :class:`Record` values; everything
  else (IDs, expiry, change tracking, merging of concurrent changes, cookies, codecs) lives
  in the engine and is shared. :mod:`websession.seed` drives any of them through the seed's
  interface.
* :class:`ClientSideProvider` is what a provider that keeps the session in the client
  subclasses: it seals a record into a cookie value and opens it again; it has no store.

The concurrency contract every ``BaseProvider`` keeps:

* ``create`` writes only if no live record has that ID, so a new ID can never overwrite one;
* ``update`` writes only if a live record exists *and* its version is the expected one, so a
  save can never resurrect a destroyed or regenerated session, and a save that raced with
  another is detected (the engine reloads, re-applies only its own changes and retries);
* every write is one atomic operation: a failure leaves the old record or the new one.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, Protocol, TypeVar, runtime_checkable

from ..exceptions import UnsupportedOperationError
from ._options import parse_options

if TYPE_CHECKING:
    from .._config import ManagerConfig

__all__ = [
    "BaseProvider",
    "ClientSideProvider",
    "Configurable",
    "Page",
    "Provider",
    "Record",
    "Store",
    "dump_versioned",
    "load_versioned",
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


class Page(NamedTuple):
    """One batch of a walk over every live session (:meth:`BaseProvider.scan`)."""

    #: ``(sid, record)`` pairs of live sessions, at most the batch size asked for.
    records: list[tuple[str, Record]]
    #: Where the next batch starts; ``None`` when the walk is over. Opaque to callers.
    cursor: str | None


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


def dump_versioned(record: Record) -> bytes:
    """A record as ``version:deadline:payload`` bytes, the layout key-value stores keep
    (the deadline as a float's repr, so it reads back exactly)."""
    return b"%d:%s:" % (record.version, repr(record.expires_at).encode()) + record.payload


def load_versioned(value: bytes, refreshed: bool = False) -> Record | None:
    """A value made by :func:`dump_versioned` as a live record; ``None`` if it is past
    its deadline or not in that layout."""
    version, _, rest = value.partition(b":")
    deadline, sep, payload = rest.partition(b":")
    if not sep or not version.isdigit():
        return None
    try:
        expires_at = float(deadline)
    except ValueError:
        return None
    if not expires_at > time.time():  # NaN too
        return None
    return Record(payload, expires_at, int(version), refreshed)


class Configurable:
    """What every websession provider has: settings from ``providerConfig``, and a close."""

    #: Whether the provider's calls block on I/O. A non-blocking provider may be used from
    #: an event loop through its sync methods.
    blocking: bool = True

    def configure(self, config: Any) -> None:
        """Apply the manager's ``providerConfig``; this default accepts only an empty one."""
        parse_options(config, {}, provider=type(self).__name__)

    def adjust_config(self, config: ManagerConfig) -> ManagerConfig:
        """Return the manager's settings as this provider needs them (called once, after
        :meth:`configure`). The cookie provider's own cookie options decide its cookie."""
        return config

    def close(self) -> None:
        """Release connections or files the provider holds."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if self.blocking:
            await asyncio.to_thread(self.close)
        else:
            self.close()


class BaseProvider(Configurable, ABC):
    """Base class of storage providers: implement the primitives, inherit the rest.

    Subclasses implement :meth:`read`, :meth:`create`, :meth:`update`, :meth:`touch`,
    :meth:`delete`, :meth:`count` and :meth:`gc`. Their async twins (``aread`` …) run the
    sync primitive directly when :attr:`blocking` is false (the memory provider) and in a
    worker thread otherwise; a provider with a native async driver overrides them.
    """

    #: Driver exceptions that mean "the store is unreachable"; the engine turns them into
    #: :class:`~websession.StoreUnavailableError`.
    unavailable_errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    #: Whether :meth:`read` itself moves a live record's deadline to now + the idle
    #: timeout when it is due (Redis ``GETEX``-style), reporting it in
    #: :attr:`Record.refreshed`, so a read-only request needs no separate :meth:`touch`.
    #: The engine still enforces the absolute lifetime when it decodes the record.
    refreshes_on_read: bool = False

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

    def stats(self) -> dict[str, int | float]:
        """Counters the provider keeps itself (a client-side cache's hits, say), merged
        into ``Manager.stats()``; none by default."""
        return {}

    # -- an optional ability ----------------------------------------------------------

    def scan(self, cursor: str | None, batch: int) -> Page:
        """Return up to ``batch`` live sessions after ``cursor`` (``None``: from the start).

        Optional: the CLI's ``list`` and ``show`` and :meth:`Manager.iter_sessions` use it.
        The contract is keyset pagination: the cursor names the last session returned (how
        is the provider's business), so a session live for the whole walk is returned
        exactly once however many are created or deleted meanwhile, memory stays flat, and
        a walk can be resumed from any cursor it returned. A page may hold fewer than
        ``batch`` records (even none) before the end; only a ``None`` cursor ends it.
        """
        raise UnsupportedOperationError(
            f"the {type(self).__name__} provider cannot list its sessions (it has no scan())"
        )

    def gc_ids(self) -> list[str]:
        """Optional: what :meth:`gc` does, returning the removed sessions' IDs. The
        engine calls it instead of :meth:`gc` only when someone listens to ``expired``."""
        raise UnsupportedOperationError(
            f"the {type(self).__name__} provider cannot report expired IDs (no gc_ids())"
        )

    def bind(self, sid: str, user: str | None, cap: int) -> list[str]:
        """Optional (with :meth:`sessions_of` and :meth:`revoke_user`): index the live
        session ``sid`` under ``user`` (``None``: under nobody), and if ``cap`` is positive
        and the user now has more than ``cap`` live sessions, delete the ones bound
        longest ago. Return the deleted IDs. One atomic step, so concurrent logins of one
        user never leave more than ``cap``; nothing is bound if ``sid`` is not live."""
        raise UnsupportedOperationError(
            f"the {type(self).__name__} provider cannot index sessions by user (no bind())"
        )

    def sessions_of(self, user: str) -> list[tuple[str, Record]]:
        """The live sessions bound to ``user``, oldest binding first."""
        raise UnsupportedOperationError(
            f"the {type(self).__name__} provider cannot index sessions by user"
        )

    def revoke_user(self, user: str, keep: str | None) -> list[str]:
        """Delete every session bound to ``user`` except ``keep``; return their IDs."""
        raise UnsupportedOperationError(
            f"the {type(self).__name__} provider cannot index sessions by user"
        )

    def create_many(self, records: list[tuple[str, Record, str | None]]) -> int:
        """Optional: what :meth:`create` does for each ``(sid, record, user)``, in as few
        round trips as the store allows, binding each record that names a user to it (as
        :meth:`bind` with no cap; ignored by a provider without a user index). An ID that
        has a live record keeps it (a provider whose create and bind are separate steps
        adds the binding again, so that a rerun completes an interrupted batch). Return
        how many records were stored. ``migrate`` uses it."""
        raise UnsupportedOperationError(
            f"the {type(self).__name__} provider cannot create in batches (no create_many())"
        )

    def watch_expired(self, on_expired: Callable[[list[str]], object]) -> Callable[[], None]:
        """Optional: call ``on_expired(ids)`` from a thread of the provider's own whenever
        the store itself expires sessions (Redis keyspace notifications); return a function
        that stops watching. The manager starts it when someone subscribes to
        ``expired``."""
        raise UnsupportedOperationError(
            f"the {type(self).__name__} provider cannot report sessions the store expires"
        )

    @property
    def can_create_many(self) -> bool:
        """Whether this provider implements :meth:`create_many`."""
        return type(self).create_many is not BaseProvider.create_many

    @property
    def can_watch_expired(self) -> bool:
        """Whether this provider implements :meth:`watch_expired`."""
        return type(self).watch_expired is not BaseProvider.watch_expired

    @property
    def can_bind(self) -> bool:
        """Whether this provider implements :meth:`bind` and the per-user methods."""
        return type(self).bind is not BaseProvider.bind

    @property
    def reports_expired(self) -> bool:
        """Whether this provider implements :meth:`gc_ids`."""
        return type(self).gc_ids is not BaseProvider.gc_ids

    @property
    def can_scan(self) -> bool:
        """Whether this provider implements :meth:`scan`."""
        return type(self).scan is not BaseProvider.scan

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

    def abind(self, sid: str, user: str | None, cap: int) -> Awaitable[list[str]]:
        """Async twin of :meth:`bind`."""
        return self._offload(self.bind, sid, user, cap)

    def asessions_of(self, user: str) -> Awaitable[list[tuple[str, Record]]]:
        """Async twin of :meth:`sessions_of`."""
        return self._offload(self.sessions_of, user)

    def arevoke_user(self, user: str, keep: str | None) -> Awaitable[list[str]]:
        """Async twin of :meth:`revoke_user`."""
        return self._offload(self.revoke_user, user, keep)

    def agc_ids(self) -> Awaitable[list[str]]:
        """Async twin of :meth:`gc_ids`."""
        return self._offload(self.gc_ids)

    def ascan(self, cursor: str | None, batch: int) -> Awaitable[Page]:
        """Async twin of :meth:`scan`."""
        return self._offload(self.scan, cursor, batch)

    def acreate_many(self, records: list[tuple[str, Record, str | None]]) -> Awaitable[int]:
        """Async twin of :meth:`create_many`."""
        return self._offload(self.create_many, records)


class ClientSideProvider(Configurable, ABC):
    """Base of providers that keep the whole session in the client: a *sealer*.

    The cookie value is the record, sealed: :meth:`seal` makes it, :meth:`unseal` opens it
    and returns ``None`` for anything forged, damaged or expired. There is no store: the
    engine seals every change into a new cookie value, a destroy can only expire the
    cookie (a copy the client kept stays valid until its deadline), and live sessions
    cannot be counted or collected (0, as in the seed).
    """

    blocking = False

    @abstractmethod
    def seal(self, record: Record) -> str:
        """Return ``record`` as an authenticated, encrypted cookie value."""

    @abstractmethod
    def unseal(self, token: str) -> Record | None:
        """Open a value made by :meth:`seal`; ``None`` if forged, damaged or expired."""

    def valid_token(self, token: str) -> bool:
        """Tell whether ``token`` may be a sealed value (cheap shape check)."""
        return bool(token)
