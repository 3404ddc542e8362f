"""The seed's (beego's) provider interface, both ways round.

* :class:`SeedAdapter` drives any :class:`~websession.BaseProvider` through the seed's
  seven ``Provider`` methods, with the seed's meanings: ``session_regenerate`` moves the
  data and deletes the old ID before it returns; ``session_destroy``, ``session_exist``,
  ``session_all`` and ``session_gc`` act at once.
* :class:`SeedEngine` runs a provider written the seed's way (its own ``Store`` and
  ``Provider`` classes, :class:`~websession.Provider`) under a :class:`~websession.Manager`.
  Such a provider keeps its own data model, so its sessions are used by delegation: every
  ``set``/``get``/``delete`` goes to its store object, and that store's
  ``session_release`` saves. It gets websession's cookies, ID checks and headers, but not
  what needs the :class:`~websession.BaseProvider` contract (lazy loads that cost nothing,
  merging of concurrent changes, idle and absolute expiry): those are up to the provider.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from ._config import ManagerConfig
from ._core import Engine, StoreEngine
from ._plans import Plan
from ._session import SessionStore
from ._state import SessionState
from .providers.base import BaseProvider, Provider, Record, Store

__all__ = ["SeedAdapter", "SeedEngine", "SeedSessionStore"]


class SeedAdapter:
    """A :class:`~websession.BaseProvider` seen through the seed's ``Provider`` interface.

    ``SeedAdapter(MemoryProvider())`` satisfies :class:`~websession.Provider`: code
    written for beego's providers can drive any websession provider.
    """

    def __init__(self, provider: BaseProvider) -> None:
        self.provider = provider
        self._engine: StoreEngine | None = None

    def session_init(self, max_lifetime: int, config: Any) -> None:
        """Configure the provider from ``providerConfig``; ``max_lifetime`` is the idle
        timeout of the sessions this adapter saves."""
        self.provider.configure(config)
        self._engine = StoreEngine(
            self.provider,
            ManagerConfig(gc_lifetime=max(1, max_lifetime), enable_set_cookie=False),
        )

    @property
    def engine(self) -> StoreEngine:
        """The engine over the provider (a default one if :meth:`session_init` was not
        called: one hour of idle time, no ``providerConfig``)."""
        if self._engine is None:
            self.session_init(3600, "")
        assert self._engine is not None
        return self._engine

    def session_read(self, sid: str) -> SessionStore:
        """The session ``sid``; an unknown ``sid`` gets a fresh ID when first used."""
        return self.engine.open(sid)

    def session_exist(self, sid: str) -> bool:
        """Whether a live, readable session ``sid`` exists."""
        engine = self.engine
        return engine.ids.is_valid(sid) and bool(engine.run(self._exists(engine, sid)))

    @staticmethod
    def _exists(engine: StoreEngine, sid: str) -> Plan[bool]:
        record: Record | None = yield engine.provider.read, (sid,)
        return engine.decode(record, time.time()) is not None

    def session_regenerate(self, old_sid: str, sid: str) -> SessionStore:
        """Move ``old_sid``'s data to ``sid`` now, deleting ``old_sid``, and return the
        session; if ``old_sid`` does not exist, an empty session under ``sid``."""
        engine = self.engine
        if not engine.ids.is_valid(sid):
            raise ValueError("sid does not have the shape of this manager's session IDs")
        if engine.ids.is_valid(old_sid) and engine.run(self._move(engine, old_sid, sid)):
            return engine.open(sid)
        return SessionStore(engine, SessionState(sid, False))

    @staticmethod
    def _move(engine: StoreEngine, old_sid: str, sid: str) -> Plan[bool]:
        record: Record | None = yield engine.provider.read, (old_sid,)
        if engine.decode(record, time.time()) is None or record is None:
            return False
        if not (yield engine.provider.create, (sid, record._replace(refreshed=False))):
            raise ValueError(f"cannot regenerate into {sid[:6]}…: a live session has that ID")
        yield engine.provider.delete, (old_sid,)
        return True

    def session_destroy(self, sid: str) -> None:
        """Delete session ``sid`` now."""
        engine = self.engine
        if engine.ids.is_valid(sid):
            engine.call(engine.provider.delete, sid)

    def session_all(self) -> int:
        """Count live sessions."""
        return self.engine.count()

    def session_gc(self) -> None:
        """Remove expired sessions."""
        self.engine.gc()


class SeedEngine(Engine):
    """The engine for a provider written the seed's way: sessions live in its own store
    objects, and every operation goes through its seven methods in a worker thread when
    called from async code."""

    blocking = True

    def __init__(self, provider: Provider, config: ManagerConfig) -> None:
        super().__init__(config, SeedSessionStore)
        self.provider = provider

    def open(self, sid: str | None, secure: bool = False,
             alternates: tuple[str, ...] = ()) -> SessionStore:
        """A session for a client-supplied ``sid``, read from the provider when first used
        (a seed-style provider is asked about ``sid`` only: ``alternates`` are ignored)."""
        if sid is not None and self.ids.is_valid(sid):
            state = SessionState(sid, True)
        else:
            state = SessionState(self.ids.new(), False)
        return SeedSessionStore(self, state, secure)

    def load(self, state: SessionState) -> None:
        """Find the session in the provider, or start one there under a fresh ID."""
        self.refuse_on_loop("session.aload()")
        sid = state.sid
        if not (state.from_client and self.provider.session_exist(sid)):
            sid = self.ids.new()
            state.announce(sid)
        state.attach(self.provider.session_read(sid))

    async def aload(self, state: SessionState) -> None:
        """:meth:`load` in a worker thread: a seed-style provider's calls may block."""
        await asyncio.to_thread(self.load, state)

    def release(self, state: SessionState) -> None:
        """Let the provider's store save itself."""
        self.release_into(state, [])

    def release_into(self, state: SessionState, headers: list[tuple[str, str]]) -> None:
        """Let the provider's store save itself, adding what it writes to ``headers``."""
        if state.handle is not None:
            self.refuse_on_loop("session.asession_release(headers)")
            state.handle.session_release(headers)

    async def arelease(self, state: SessionState) -> None:
        """:meth:`release` in a worker thread."""
        await asyncio.to_thread(self.release, state)

    def regenerate(self, state: SessionState, new_sid: str | None = None) -> str:
        """Move the session to a new ID through the provider's ``session_regenerate``."""
        self.refuse_on_loop("session.aregenerate_id()")
        if new_sid is None or not self.ids.is_valid(new_sid):
            new_sid = self.ids.new()
        state.attach(self.provider.session_regenerate(state.sid, new_sid))
        state.announce(new_sid)
        return new_sid

    def destroy(self, state: SessionState) -> None:
        """Destroy through the provider; later values start a new session."""
        self.refuse_on_loop("session.adestroy()")
        existed = state.handle is not None or state.from_client
        if existed:
            self.provider.session_destroy(state.sid)
        state.start_fresh(self.ids.new(), expire_cookie=existed)

    async def adestroy(self, state: SessionState) -> None:
        """:meth:`destroy` in a worker thread."""
        await asyncio.to_thread(self.destroy, state)

    def count(self) -> int:
        """Count through the seed interface."""
        self.refuse_on_loop("manager.aget_active_session()")
        return self.provider.session_all()

    async def acount(self) -> int:
        """:meth:`count` in a worker thread."""
        return await asyncio.to_thread(self.count)

    def gc(self) -> int:
        """Collect through the seed interface (it does not say how many went)."""
        self.refuse_on_loop("manager.agc()")
        self.provider.session_gc()
        return 0

    async def agc(self) -> int:
        """:meth:`gc` in a worker thread."""
        return await asyncio.to_thread(self.gc)


class SeedSessionStore(SessionStore):
    """A :class:`~websession.SessionStore` whose data lives in a seed-style provider's own
    store object."""

    __slots__ = ("_seed_engine",)

    def __init__(self, engine: Engine, state: SessionState, secure: bool = False) -> None:
        super().__init__(engine, state, secure)
        assert isinstance(engine, SeedEngine)
        self._seed_engine = engine

    def _ensure_loaded(self) -> SessionState:
        state = super()._ensure_loaded()
        if state.handle is None:  # a fresh session (or one after a destroy): a new store
            self._seed_engine.load(state)
        return state

    def _store(self) -> Store:
        handle: Store = self._ensure_loaded().handle
        return handle

    async def aload(self) -> None:
        """Load in a worker thread: a seed-style provider's calls may block."""
        await asyncio.to_thread(self._store)

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value for ``key`` (the seed's stores answer ``None`` when missing)."""
        value = self._store().get(key)
        return default if value is None else value

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` in the provider's store."""
        self._store().set(key, value)

    __setitem__ = set

    def delete(self, key: str) -> None:
        """Delete ``key`` from the provider's store."""
        self._store().delete(key)

    def flush(self) -> None:
        """Flush the provider's store."""
        self._store().flush()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._store().get(key) is not None

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.delete(key)

    def __iter__(self) -> Iterator[str]:
        store = self._store()
        keys = getattr(store, "keys", None)
        if keys is None:
            raise TypeError(f"{type(store).__name__} (a seed-style store) cannot list its keys")
        return iter(list(keys()))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @property
    def modified(self) -> bool:
        """Unknown for a seed-style store: its release decides what to write."""
        return False

    def set_lifetime(self, idle: float | None = None, absolute: float | None = None, *,
                     persistent: bool | None = None) -> None:
        """Refused: a seed-style provider keeps its own expiry."""
        raise TypeError("a seed-style provider keeps its own expiry: per-session lifetimes "
                        "need a websession.providers.BaseProvider")

    def session_release(self, headers: list[tuple[str, str]] | None = None) -> None:
        """Let the provider's store save itself, then add websession's headers."""
        self._seed_engine.release_into(self._state, headers if headers is not None else [])
        if headers is not None:
            self._engine.response_headers(self._state, headers, self._accessed, self._secure)

    async def asession_release(self, headers: list[tuple[str, str]] | None = None) -> None:
        """Run :meth:`session_release` in a worker thread."""
        await asyncio.to_thread(self.session_release, headers)

    def regenerate_id(self, new_sid: str | None = None) -> str:
        """Move the session to a new ID through the provider's ``session_regenerate``."""
        self._store()
        return self._engine.regenerate(self._state, new_sid)

    async def aregenerate_id(self, new_sid: str | None = None) -> str:
        """Run :meth:`regenerate_id` in a worker thread."""
        return await asyncio.to_thread(self.regenerate_id, new_sid)
