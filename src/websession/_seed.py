"""Running a provider written the seed's way (its own Store and Provider classes).

Such a provider keeps its own data model, so its sessions are used by delegation: every
``set``/``get``/``delete`` goes to its store object, and its ``session_release`` saves.
It gets websession's cookies, ID checks and headers, but not what needs the
:class:`~websession.providers.BaseProvider` contract (lazy loads that cost nothing, merging of
concurrent changes, idle and absolute expiry): those are up to the provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, NoReturn

from ._core import Engine
from ._session import SessionStore
from .providers.base import BaseProvider, Provider, Record, Store

__all__ = ["SeedBridge", "SeedSessionStore"]

_UNUSED = "seed-style sessions go through their own Store object"


class SeedBridge(BaseProvider):
    """Lets the manager's count and GC reach a seed-style provider through the engine."""

    def __init__(self, provider: Provider) -> None:
        self.seed = provider

    def read(self, sid: str) -> NoReturn:
        """Not used: seed-style sessions are read through their own store."""
        raise NotImplementedError(_UNUSED)

    def create(self, sid: str, record: Record) -> NoReturn:
        """Not used: seed-style sessions are saved by their own store."""
        raise NotImplementedError(_UNUSED)

    def update(self, sid: str, record: Record, expected_version: int) -> NoReturn:
        """Not used: seed-style sessions are saved by their own store."""
        raise NotImplementedError(_UNUSED)

    def touch(self, sid: str, expires_at: float) -> NoReturn:
        """Not used: seed-style providers handle their own expiry."""
        raise NotImplementedError(_UNUSED)

    def delete(self, sid: str) -> None:
        """Destroy through the seed interface."""
        self.seed.session_destroy(sid)

    def count(self) -> int:
        """Count through the seed interface."""
        return self.seed.session_all()

    def gc(self) -> int:
        """Collect through the seed interface (it does not say how many went)."""
        self.seed.session_gc()
        return 0


class SeedSessionStore(SessionStore):
    """A :class:`SessionStore` whose data lives in a seed-style provider's own store."""

    __slots__ = ("_seed", "_seed_provider")

    def __init__(self, engine: Engine, provider: Provider, sid: str, *, from_client: bool,
                 secure: bool = False, async_mode: bool = False) -> None:
        super().__init__(engine, sid, from_client=from_client, secure=secure,
                         async_mode=async_mode)
        self._seed_provider = provider
        self._seed: Store | None = None
        self._loaded = False

    def _store(self) -> Store:
        self._accessed = True
        if self._seed is None:
            if not (self._from_client and self._seed_provider.session_exist(self._sid)):
                self._sid = self._engine.ids.new()
                self._send_id = True
            self._seed = self._seed_provider.session_read(self._sid)
            self._loaded = True
        return self._seed

    def _ensure_loaded(self) -> None:
        self._store()

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

    def session_release(self, headers: list[tuple[str, str]] | None = None) -> None:
        """Let the provider's store save itself, then add websession's headers."""
        if self._seed is not None:
            self._seed.session_release(headers if headers is not None else [])
        if headers is not None:
            self._engine.response_headers(self, headers)

    async def asession_release(self, headers: list[tuple[str, str]] | None = None) -> None:
        """Run :meth:`session_release` in a worker thread."""
        await asyncio.to_thread(self.session_release, headers)

    def regenerate_id(self, new_sid: str | None = None) -> str:
        """Move the session to a new ID through the provider's ``session_regenerate``."""
        self._store()
        if new_sid is None or not self._engine.ids.is_valid(new_sid):
            new_sid = self._engine.ids.new()
        self._seed = self._seed_provider.session_regenerate(self._sid, new_sid)
        self._sid = new_sid
        self._send_id = True
        return new_sid

    async def aregenerate_id(self, new_sid: str | None = None) -> str:
        """Run :meth:`regenerate_id` in a worker thread."""
        return await asyncio.to_thread(self.regenerate_id, new_sid)

    def destroy(self) -> None:
        """Destroy through the provider; later values start a new session."""
        if self._seed is not None or self._from_client:
            self._seed_provider.session_destroy(self._sid)
            self._expire_cookie = True
        self._seed = None
        self._from_client = False
        self._send_id = False
        self._sid = self._engine.ids.new()

    async def adestroy(self) -> None:
        """Run :meth:`destroy` in a worker thread."""
        await asyncio.to_thread(self.destroy)

