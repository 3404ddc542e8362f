"""SessionStore: one request's view of one session. Dict-like, tracks what changed, no I/O
of its own: the engine loads and saves it, and its state lives in a :class:`SessionState`."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from ._state import SessionState

if TYPE_CHECKING:
    from ._core import Engine

__all__ = ["SessionStore"]

_MISSING: Any = object()
# Values that can change in place without a __setitem__; remembered on first read so a
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
    (the ASGI middleware does) and release with :meth:`asession_release`: a call that would
    block an event loop's thread raises :class:`~websession.SessionModeError` naming its
    twin. Sync code in worker threads (a threadpool endpoint) may use the blocking calls.
    """

    __slots__ = ("_accessed", "_engine", "_secure", "_state")

    def __init__(self, engine: Engine, state: SessionState, secure: bool = False) -> None:
        self._engine = engine
        self._state = state
        self._secure = secure
        self._accessed = False

    @property
    def engine(self) -> Engine:
        """The engine (and so the manager's provider and settings) serving this session."""
        return self._engine

    # -- loading ----------------------------------------------------------------------

    def _ensure_loaded(self) -> SessionState:
        self._accessed = True
        state = self._state
        if not state.loaded:
            self._engine.load(state)
        return state

    def load(self) -> None:
        """Read the session from the store now (it is otherwise read on first use)."""
        self._ensure_loaded()

    async def aload(self) -> None:
        """Async twin of :meth:`load`."""
        self._accessed = True
        if not self._state.loaded:
            await self._engine.aload(self._state)

    @property
    def loaded(self) -> bool:
        """Whether the session has been read from the store (or is known to be new)."""
        return self._state.loaded

    @property
    def current_id(self) -> str:
        """The session's ID as it stands, without reading the store: before the session is
        loaded, the ID the client sent (not yet checked against the store); once loaded,
        the session's own (:meth:`session_id`)."""
        return self._state.sid

    # -- the seed's calls -------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value for ``key``, or ``default``."""
        self._accessed = True
        state = self._state
        if not state.loaded:
            self._engine.load(state)
        value = state.data.get(key, _MISSING)
        if value is _MISSING:
            return default
        if type(value) not in _SCALARS and isinstance(value, _MUTABLE) and (
            state.snapshots is None or key not in state.snapshots
        ):
            state.remember(key, value)
        return value

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value``."""
        if not isinstance(key, str):
            raise TypeError(f"session keys must be str, not {type(key).__name__}")
        self._accessed = True
        state = self._state
        if not state.loaded:
            self._engine.load(state)
        state.set(key, value)

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error, as in the seed."""
        self._ensure_loaded().delete(key)

    def flush(self) -> None:
        """Remove every value (the session and its ID remain)."""
        self._ensure_loaded().flush()

    def bind_user(self, user: Any) -> None:
        """Bind this session to ``user`` (stored under the manager's ``userKey``; ``None``
        unbinds), so ``manager.sessions_of(user)`` and ``revoke_user(user)`` find it and
        ``maxSessionsPerUser`` counts it. Call it at login, after ``regenerate_id()``."""
        if user is None:
            self.delete(self._engine.config.user_key)
        else:
            self.set(self._engine.config.user_key, user)

    def session_id(self) -> str:
        """Return the session's ID, issuing a fresh one if the client's was unknown."""
        return self._ensure_loaded().sid

    def session_release(self, headers: list[tuple[str, str]] | None = None) -> None:
        """Save what changed and append the response headers it needs to ``headers``.

        Appends ``Set-Cookie`` (and ``Cache-Control: no-store``) when the response must
        carry the ID, and ``Vary: Cookie`` when the session was read.
        """
        state = self._state
        if not state.settled:
            self._engine.release(state)
        if headers is not None:
            self._engine.response_headers(state, headers, self._accessed, self._secure)

    async def asession_release(self, headers: list[tuple[str, str]] | None = None) -> None:
        """Async twin of :meth:`session_release`."""
        state = self._state
        if not state.settled:
            await self._engine.arelease(state)
        if headers is not None:
            self._engine.response_headers(state, headers, self._accessed, self._secure)

    # -- ID changes -------------------------------------------------------------------

    def regenerate_id(self, new_sid: str | None = None) -> str:
        """Give the session a new ID, keeping its data; the old ID is deleted on release.

        Call it on every privilege change (login, logout, role change). Returns the new ID.
        """
        return self._engine.regenerate(self._ensure_loaded(), new_sid)

    async def aregenerate_id(self, new_sid: str | None = None) -> str:
        """Async twin of :meth:`regenerate_id`."""
        await self.aload()
        return self._engine.regenerate(self._state, new_sid)

    def destroy(self) -> None:
        """Delete the session from the store now; the response expires the cookie.

        The object then acts as a fresh, empty session: values set afterwards start a new
        one under a new ID.
        """
        self._engine.destroy(self._state)

    async def adestroy(self) -> None:
        """Async twin of :meth:`destroy`."""
        await self._engine.adestroy(self._state)

    def abandon(self) -> None:
        """Continue this request with a fresh, empty session, without touching the store:
        for a request that cannot use its session (the store is down). The stored
        session, if any, is left as it is; the request should not release this one."""
        self._engine.forget(self._state, False)

    def invalidate(self) -> None:
        """End this session and continue with a fresh, empty one under a new ID: what a
        logout means (Django's ``flush()``, aiohttp-session's ``invalidate()``). The old
        record is deleted now and the response replaces or drops the cookie."""
        self.destroy()

    async def ainvalidate(self) -> None:
        """Async twin of :meth:`invalidate`."""
        await self.adestroy()

    # -- lifetime ---------------------------------------------------------------------

    def set_lifetime(self, idle: float | None = None, absolute: float | None = None, *,
                     persistent: bool | None = None) -> None:
        """Give this session a lifetime of its own ("remember me"), kept across
        regenerations and enforced by the server.

        ``idle``: seconds without a request before it expires; ``absolute``: seconds from
        its creation (or last regeneration) after which it expires however busy it is;
        ``None`` keeps the manager's setting. ``persistent``: ``True`` gives the cookie a
        ``Max-Age`` matching the server's deadline, ``False`` makes it a browser-session
        cookie, ``None`` follows the manager's ``cookieLifeTime``. Saved on release.
        """
        for name, value in (("idle", idle), ("absolute", absolute)):
            if value is not None and not (isinstance(value, int | float) and 0 < value < 1e10
                                          and not isinstance(value, bool)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self._ensure_loaded().set_lifetime(
            None if idle is None else float(idle),
            None if absolute is None else float(absolute),
            persistent,
        )

    @property
    def own_lifetime(self) -> tuple[float | None, float | None, bool | None]:
        """The lifetime this session has of its own, as :meth:`set_lifetime` set it (here
        or in an earlier request): ``(idle, absolute, persistent)``, each ``None`` where
        the manager's setting applies (:attr:`idle_timeout`, :attr:`absolute_lifetime`
        and :attr:`persistent` give the values in force)."""
        return self._ensure_loaded().lifetime or (None, None, None)

    @property
    def idle_timeout(self) -> float:
        """Seconds without a request after which this session expires."""
        return self._engine.idle_timeout(self._ensure_loaded())

    @property
    def absolute_lifetime(self) -> float:
        """Seconds from creation after which this session expires however busy it is."""
        return self._engine.absolute_lifetime(self._ensure_loaded())

    @property
    def persistent(self) -> bool | None:
        """Whether the cookie outlives the browser session (``None``: the manager's
        ``cookieLifeTime`` decides)."""
        return self._engine.persistent(self._ensure_loaded())

    def mark_modified(self) -> None:
        """Save on release even if no value changed (values changed in place are found
        anyway); concurrent requests' changes are still merged, never overwritten."""
        self._ensure_loaded().force_save()

    # -- state ------------------------------------------------------------------------

    @property
    def is_new(self) -> bool:
        """Whether the session is not (yet) in the store."""
        return self._ensure_loaded().is_new

    @property
    def modified(self) -> bool:
        """Whether there are changes that :meth:`session_release` will save."""
        state = self._state
        return bool(state.changes or state.cleared or state.forced or state.mutated_keys())

    @property
    def pending(self) -> bool:
        """Whether :meth:`session_release` has something to do (no I/O to find out):
        changes to save, a regeneration to complete, or a read-only request's idle
        deadline due for a refresh (or already moved by the store's read, so that a
        persistent cookie follows it). ``False`` for a session never used."""
        return self._engine.pending(self._state)

    @property
    def accessed(self) -> bool:
        """Whether the application used the session in this request (the response then
        varies with the cookie)."""
        return self._accessed

    @property
    def created_at(self) -> float:
        """When the session was created (Unix time; 0 for a session not yet saved)."""
        return self._ensure_loaded().created

    @property
    def expires_at(self) -> float:
        """When the session expires if left idle (Unix time; 0 for one not yet saved)."""
        return self._ensure_loaded().expires_at

    @property
    def absolute_expires_at(self) -> float:
        """When the session expires however busy it is (Unix time; 0 if not yet saved)."""
        return self._engine.absolute_deadline(self._ensure_loaded())

    @property
    def version(self) -> int:
        """How many times the session has been saved (0 for one not yet saved)."""
        return self._ensure_loaded().version

    # -- the dict interface -----------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    __setitem__ = set  # the same method, not a second call (subclasses re-alias theirs)

    def __delitem__(self, key: str) -> None:
        state = self._ensure_loaded()
        if key not in state.data:
            raise KeyError(key)
        state.delete(key)

    def __contains__(self, key: object) -> bool:
        return key in self._ensure_loaded().data

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._ensure_loaded().data))

    def __len__(self) -> int:
        return len(self._ensure_loaded().data)

    def clear(self) -> None:
        """Same as :meth:`flush`."""
        self.flush()

    def __repr__(self) -> str:
        state = self._state
        if not state.loaded:
            return "<SessionStore (not loaded)>"
        return f"<SessionStore {len(state.data)} keys{' new' if state.is_new else ''}>"
