"""SessionStore: one request's view of one session. Dict-like, tracks what changed, no I/O
of its own: loading and saving are plans run by the engine."""

from __future__ import annotations

import copy
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from .exceptions import SessionModeError

if TYPE_CHECKING:
    from ._core import Engine

__all__ = ["SessionStore"]

_MISSING: Any = object()
#: Marks a key deleted in :attr:`SessionStore._changes`.
DELETED: Any = object()
# Values that can change in place without a __setitem__; snapshotted on first read so a
# mutation such as ``session["cart"].append(x)`` is still saved.
_MUTABLE = (list, dict, set, bytearray)
_SCALARS = frozenset({str, int, float, bool, type(None)})


class SessionStore(MutableMapping[str, Any]):
    """One session, as one request sees it.

    Works as a dict (``session["user"] = "ann"``) and with the seed's calls (``set``,
    ``get``, ``delete``, ``flush``, ``session_id``, ``session_release``). Nothing is read
    from the store until the session is first used, and :meth:`session_release` writes
    only what changed, merging with concurrent requests instead of overwriting them.

    From async code with a provider that does I/O, call ``await session.aload()`` first
    (the ASGI middleware does) and release with :meth:`asession_release`.
    """

    __slots__ = (
        "_accessed",
        "_async",
        "_changes",
        "_cleared",
        "_created",
        "_data",
        "_engine",
        "_expire_cookie",
        "_expires_at",
        "_from_client",
        "_is_new",
        "_loaded",
        "_old_sid",
        "_refresh_checked",
        "_secure",
        "_send_id",
        "_sid",
        "_snapshots",
        "_version",
    )

    def __init__(
        self,
        engine: Engine,
        sid: str,
        from_client: bool,
        secure: bool = False,
        async_mode: bool = False,
    ) -> None:
        self._engine = engine
        self._sid = sid
        self._from_client = from_client
        self._secure = secure
        self._async = async_mode
        self._data: dict[str, Any] = {}
        self._changes: dict[str, Any] = {}
        self._snapshots: dict[str, Any] = {}
        self._cleared = False
        self._accessed = False
        self._created = 0.0
        self._expires_at = 0.0
        self._version = 0
        self._old_sid: str | None = None
        self._expire_cookie = False
        self._send_id = False
        self._refresh_checked = False
        # A client-supplied ID must be looked up before it can be trusted; a fresh one
        # is known to be new and empty.
        self._loaded = not from_client
        self._is_new = not from_client

    # -- loading ----------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        self._accessed = True
        if not self._loaded:
            self._engine.load(self)

    def load(self) -> None:
        """Read the session from the store now (it is otherwise read on first use)."""
        self._ensure_loaded()

    async def aload(self) -> None:
        """Async twin of :meth:`load`."""
        self._accessed = True
        if not self._loaded:
            await self._engine.aload(self)

    @property
    def loaded(self) -> bool:
        """Whether the session has been read from the store (or is known to be new)."""
        return self._loaded

    # -- the seed's calls -------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value for ``key``, or ``default``."""
        self._accessed = True
        if not self._loaded:
            self._engine.load(self)
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            return default
        if type(value) not in _SCALARS and isinstance(value, _MUTABLE) and (
            key not in self._snapshots
        ):
            self._snapshots[key] = copy.deepcopy(value)
        return value

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value``."""
        if not isinstance(key, str):
            raise TypeError(f"session keys must be str, not {type(key).__name__}")
        self._accessed = True
        if not self._loaded:
            self._engine.load(self)
        self._data[key] = value
        self._changes[key] = value

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error, as in the seed."""
        self._ensure_loaded()
        if self._data.pop(key, _MISSING) is not _MISSING or not self._is_new:
            self._changes[key] = DELETED

    def flush(self) -> None:
        """Remove every value (the session and its ID remain)."""
        self._ensure_loaded()
        self._data.clear()
        self._changes.clear()
        self._snapshots.clear()
        self._cleared = True

    def session_id(self) -> str:
        """Return the session's ID, issuing a fresh one if the client's was unknown."""
        self._ensure_loaded()
        return self._sid

    def session_release(self, headers: list[tuple[str, str]] | None = None) -> None:
        """Save what changed and append the response headers it needs to ``headers``.

        Appends ``Set-Cookie`` (and ``Cache-Control: no-store``) when the response must
        carry the ID, and ``Vary: Cookie`` when the session was read.
        """
        engine = self._engine
        plan = engine.release(self)
        if plan is not None:
            if self._async and engine.provider.blocking:
                plan.close()
                raise SessionModeError(
                    "this session's provider does I/O: use "
                    "`await session.asession_release(headers)`"
                )
            engine.run(plan)
        if headers is not None:
            engine.response_headers(self, headers)

    async def asession_release(self, headers: list[tuple[str, str]] | None = None) -> None:
        """Async twin of :meth:`session_release`."""
        plan = self._engine.release(self)
        if plan is not None:
            await self._engine.arun(plan)
        if headers is not None:
            self._engine.response_headers(self, headers)

    # -- ID changes -------------------------------------------------------------------

    def regenerate_id(self, new_sid: str | None = None) -> str:
        """Give the session a new ID, keeping its data; the old ID is deleted on release.

        Call it on every privilege change (login, logout, role change). Returns the new ID.
        """
        self._ensure_loaded()
        return self._engine.regenerate(self, new_sid)

    async def aregenerate_id(self, new_sid: str | None = None) -> str:
        """Async twin of :meth:`regenerate_id`."""
        await self.aload()
        return self._engine.regenerate(self, new_sid)

    def destroy(self) -> None:
        """Delete the session from the store now; the response expires the cookie.

        The object then acts as a fresh, empty session: values set afterwards start a new
        one under a new ID.
        """
        self._engine.run(self._engine.destroy(self))

    async def adestroy(self) -> None:
        """Async twin of :meth:`destroy`."""
        await self._engine.arun(self._engine.destroy(self))

    # -- state ------------------------------------------------------------------------

    @property
    def is_new(self) -> bool:
        """Whether the session is not (yet) in the store."""
        self._ensure_loaded()
        return self._is_new

    @property
    def modified(self) -> bool:
        """Whether there are changes that :meth:`session_release` will save."""
        return bool(self._changes or self._cleared or self._engine.mutated_keys(self))

    @property
    def created_at(self) -> float:
        """When the session was created (Unix time; 0 for a session not yet saved)."""
        self._ensure_loaded()
        return self._created

    @property
    def expires_at(self) -> float:
        """When the session expires if left idle (Unix time; 0 for one not yet saved)."""
        self._ensure_loaded()
        return self._expires_at

    @property
    def absolute_expires_at(self) -> float:
        """When the session expires however busy it is (Unix time; 0 if not yet saved)."""
        self._ensure_loaded()
        return self._created + self._engine.absolute if self._created else 0.0

    @property
    def version(self) -> int:
        """How many times the session has been saved (0 for one not yet saved)."""
        self._ensure_loaded()
        return self._version

    # -- the dict interface -----------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    __setitem__ = set  # the same method, not a second call (subclasses re-alias theirs)

    def __delitem__(self, key: str) -> None:
        self._ensure_loaded()
        if key not in self._data:
            raise KeyError(key)
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        self._ensure_loaded()
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        self._ensure_loaded()
        return iter(list(self._data))

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._data)

    def clear(self) -> None:
        """Same as :meth:`flush`."""
        self.flush()

    def __repr__(self) -> str:
        if not self._loaded:
            return "<SessionStore (not loaded)>"
        return f"<SessionStore {len(self._data)} keys{' new' if self._is_new else ''}>"
