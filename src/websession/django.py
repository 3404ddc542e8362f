"""Django's session engine on websession: ``SESSION_ENGINE = "websession.django"``.

Settings::

    SESSION_ENGINE = "websession.django"
    WEBSESSION = {
        "provider": "redis",                               # any websession provider
        "config": {"providerConfig": "redis://127.0.0.1:6379/0"},  # seed JSON or a dict
    }

``request.session`` is then a :class:`SessionStore`: Django's whole session API with
Django's meanings, over a websession session that saves only what each request changed,
so concurrent requests on one session merge instead of overwriting each other.

Django's stock ``SessionMiddleware`` stays as it is and sets the cookie, so Django's
``SESSION_COOKIE_NAME``, ``_DOMAIN``, ``_PATH``, ``_SECURE``, ``_HTTPONLY``, ``_SAMESITE``,
``SESSION_COOKIE_AGE``, ``SESSION_EXPIRE_AT_BROWSER_CLOSE`` and
``SESSION_SAVE_EVERY_REQUEST`` keep their meanings; the cookie's value is websession's
session ID. What websession's own config would say about the cookie comes from those
settings: ``SESSION_COOKIE_AGE`` is the idle timeout the server enforces, and the config
may not contradict them (a ``cookieName`` or ``maxLifetime`` there is an error naming the
Django setting to use). ``absoluteLifetime`` defaults to the larger of
``SESSION_COOKIE_AGE`` and one day. Values are stored with websession's codec (JSON with
tagged types, so ``datetime`` and ``Decimal`` round-trip); ``SESSION_SERIALIZER`` is not
used.

How Django's calls map:

* ``cycle_key()`` (``django.contrib.auth.login``): a new ID, data kept; the old ID is
  deleted at once. ``flush()`` (``logout``): the session is deleted at once and the
  request continues with an empty one under a new ID.
* ``set_expiry(value)`` is enforced by the server, not only by the cookie: ``0`` a
  browser-session cookie, an ``int`` that many idle seconds, a ``datetime`` or
  ``timedelta`` a fixed end, ``None`` the settings' default.
* ``save()`` saves only the keys this request set or deleted, with compare-and-set on the
  session's version: a concurrent request's keys are merged, never overwritten. A session
  deleted meanwhile (a logout in another tab) raises ``UpdateError``, which the middleware
  turns into ``SessionInterrupted``, as with Django's database backend.
* A request that only reads a session still slides its idle deadline: ``modified`` is
  true when the deadline is due for a refresh (once a tenth of the idle timeout has
  passed since the last write), so the stock middleware saves — one cheap refresh — and
  sends the cookie again with a fresh ``Max-Age``.
* ``clear_expired()`` (``manage.py clearsessions``, with ``django.contrib.sessions`` in
  ``INSTALLED_APPS``; its table is not used) runs the provider's GC.
* The async API (``aget``, ``aset``, ``acycle_key``, ``aflush``, ``asave``, ...) uses the
  provider's async twins. With a provider that does I/O, load the session with an awaited
  call (``await request.session.aget(...)``) before sync reads in async code. Serve async
  views with ASGI: under WSGI Django runs each one on a new event loop, and a network
  provider keeps its async connections per loop.

One :class:`~websession.Manager` serves the process, built on first use from the settings
(:func:`get_manager`), closed at exit or when a test overrides ``WEBSESSION`` or a
``SESSION_*`` setting. ``WEBSESSION = {"manager": ...}`` (a Manager or its dotted path)
uses one you built with ``session_class=BackingSession`` and :func:`manager_config`.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, cast

from ._config import ManagerConfig, parse_config
from ._manager import Manager
from ._session import SessionStore as _Session
from .exceptions import ConfigurationError, MissingDependencyError

try:
    from django.conf import settings  # type: ignore[import-untyped]
    from django.contrib.sessions.backends.base import (  # type: ignore[import-untyped]
        CreateError,
        SessionBase,
        UpdateError,
    )
    from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
    from django.core.signals import setting_changed  # type: ignore[import-untyped]
    from django.utils.module_loading import import_string  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("django", "django", "django", "adapter") from exc

__all__ = [
    "BackingSession",
    "SessionStore",
    "aclose_manager",
    "close_manager",
    "get_manager",
    "manager_config",
]

#: Django stores a session it is told to save even when it holds nothing (the test
#: client's ``client.session``, ``session.create()`` for an anonymous visitor's key);
#: websession never stores an empty new session, so such a session carries this key,
#: hidden from every view of its data.
_KEPT = "_websession_kept"
#: Where Django keeps a session's own expiry (``set_expiry``) in its data.
_EXPIRY = "_session_expiry"
_ONE_DAY = 86400
_running_loop = asyncio._get_running_loop  # None off an event loop's thread (C, cheap)


class BackingSession(_Session):
    """The websession session behind a Django :class:`SessionStore`.

    A websession session (dict API, ``session_release``, ``set_lifetime`` ...) that also
    answers Django's questions without touching the store: its Django ``key``, whether it
    is ``empty`` in Django's sense, whether a save is ``pending``. Build a manager for
    ``WEBSESSION = {"manager": ...}`` with ``session_class=BackingSession``.
    """

    __slots__ = ()

    @property
    def key(self) -> str | None:
        """Django's ``session_key``: the client's key until the session is read, then the
        ID of the stored session, or ``None`` for one not stored (yet)."""
        if not self.loaded:
            return self.current_id
        return None if self.is_new else self.current_id

    @property
    def empty(self) -> bool:
        """Django's ``is_empty()``: no stored session and no data (no I/O)."""
        return self.loaded and self.is_new and not super().__len__()

    def keep(self) -> None:
        """Make the next release store this session even if it holds nothing."""
        if not super().__len__():
            self.set(_KEPT, True)

    # The kept-marker is the adapter's, not the application's: no view of the data shows it.

    def __iter__(self) -> Iterator[str]:
        return iter([key for key in super().__iter__() if key != _KEPT])

    def __len__(self) -> int:
        return super().__len__() - super().__contains__(_KEPT)

    def __contains__(self, key: object) -> bool:
        return key != _KEPT and super().__contains__(key)


# -- the process's manager ------------------------------------------------------------------

_lock = threading.Lock()
_manager: Manager | None = None
_owned = False

#: websession settings that Django has a setting for: the Django setting wins, and the
#: websession config may not say otherwise.
_DJANGO_OWNED = {
    "cookie_name": "SESSION_COOKIE_NAME",
    "cookie_path": "SESSION_COOKIE_PATH",
    "domain": "SESSION_COOKIE_DOMAIN",
    "secure": "SESSION_COOKIE_SECURE",
    "disable_http_only": "SESSION_COOKIE_HTTPONLY",
    "cookie_same_site": "SESSION_COOKIE_SAMESITE",
    "max_lifetime": "SESSION_COOKIE_AGE",
    "cookie_life_time": "SESSION_COOKIE_AGE and SESSION_EXPIRE_AT_BROWSER_CLOSE",
    "enable_set_cookie": "SessionMiddleware (it sets the cookie)",
}
#: Ways to carry the ID that Django's SessionMiddleware does not read.
_UNSUPPORTED = ("enable_sid_in_http_header", "enable_sid_in_url_query",
                "session_name_in_http_header")


def manager_config(config: str | Mapping[str, Any] | ManagerConfig | None = None,
                   ) -> ManagerConfig:
    """websession's config for Django: ``config`` (the seed's JSON, a mapping or a
    :class:`~websession.ManagerConfig`) with the cookie and idle timeout taken from Django's
    ``SESSION_*`` settings.

    Raises :class:`~websession.ConfigurationError` when ``config`` sets something Django
    has a setting for (naming that setting), or a way of carrying the ID that Django's
    middleware does not read.
    """
    given = parse_config(config)
    defaults = ManagerConfig()
    for name, setting in _DJANGO_OWNED.items():
        if getattr(given, name) != getattr(defaults, name):
            raise ConfigurationError(
                f"WEBSESSION config sets {name}: with Django, use {setting} instead", key=name)
    for name in _UNSUPPORTED:
        if getattr(given, name) != getattr(defaults, name):
            raise ConfigurationError(
                f"WEBSESSION config sets {name}: Django's SessionMiddleware reads the "
                "session ID from its cookie only", key=name)
    age = int(settings.SESSION_COOKIE_AGE)
    absolute = given.absolute_lifetime
    if absolute == defaults.absolute_lifetime:
        absolute = max(age, _ONE_DAY)
    samesite = settings.SESSION_COOKIE_SAMESITE
    return parse_config(
        given,
        cookie_name=settings.SESSION_COOKIE_NAME,
        cookie_path=settings.SESSION_COOKIE_PATH,
        domain=settings.SESSION_COOKIE_DOMAIN or "",
        secure=bool(settings.SESSION_COOKIE_SECURE),
        disable_http_only=not settings.SESSION_COOKIE_HTTPONLY,
        # Django's None/False (no SameSite attribute) is what browsers treat as Lax.
        cookie_same_site=samesite if isinstance(samesite, str) else "Lax",
        max_lifetime=age,
        cookie_life_time=0 if settings.SESSION_EXPIRE_AT_BROWSER_CLOSE else age,
        absolute_lifetime=absolute,
    )


def _build() -> tuple[Manager, bool]:
    conf = getattr(settings, "WEBSESSION", None)
    if not isinstance(conf, Mapping):
        raise ImproperlyConfigured(
            'SESSION_ENGINE = "websession.django" needs settings.WEBSESSION = '
            '{"provider": "<name>", "config": <seed JSON or dict>}'
        )
    unknown = sorted(set(conf) - {"provider", "config", "manager"})
    if unknown:
        raise ImproperlyConfigured(
            f"WEBSESSION: unknown key(s) {', '.join(map(repr, unknown))}; it takes "
            "'provider' and 'config', or 'manager'")
    if "manager" in conf:
        manager = conf["manager"]
        if isinstance(manager, str):
            try:
                manager = import_string(manager)
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f"WEBSESSION['manager']: cannot import {manager!r} ({exc}); give a "
                    "websession.Manager or the dotted path of one") from exc
        if not isinstance(manager, Manager):
            raise ImproperlyConfigured("WEBSESSION['manager'] must be a websession.Manager "
                                       "or the dotted path of one")
        if not issubclass(manager.engine.session_class, BackingSession):
            raise ImproperlyConfigured(
                "WEBSESSION['manager'] must be built with "
                "session_class=websession.django.BackingSession")
        return manager, False
    if "provider" not in conf:
        raise ImproperlyConfigured("WEBSESSION needs a 'provider' (a websession provider "
                                   "name, e.g. 'redis', 'sqlite', 'postgresql')")
    config = manager_config(conf.get("config"))
    return Manager(conf["provider"], config, session_class=BackingSession), True


def get_manager() -> Manager:
    """The process's manager, built from ``settings.WEBSESSION`` on first use."""
    global _manager, _owned
    manager = _manager
    if manager is None:
        with _lock:
            if _manager is None:
                _manager, _owned = _build()
            manager = _manager
    return manager


def close_manager() -> None:
    """Close the process's manager (if this module built it) and forget it; the next
    session builds a new one from the settings."""
    global _manager, _owned
    with _lock:
        manager, owned = _manager, _owned
        _manager, _owned = None, False
    if manager is not None and owned:
        manager.close()


async def aclose_manager() -> None:
    """Async twin of :func:`close_manager` (an ASGI lifespan's shutdown)."""
    global _manager, _owned
    with _lock:
        manager, owned = _manager, _owned
        _manager, _owned = None, False
    if manager is not None and owned:
        await manager.aclose()


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    # Tests override WEBSESSION or SESSION_* settings: the manager must follow them.
    if setting == "WEBSESSION" or setting.startswith("SESSION_"):
        close_manager()


setting_changed.connect(_settings_changed, dispatch_uid="websession.django")
atexit.register(close_manager)


def _open(session_key: str | None) -> BackingSession:
    # The manager's engine hands out BackingSession (checked when it was built).
    return cast(BackingSession, get_manager().engine.open(session_key or None))


# -- the session engine ---------------------------------------------------------------------


class SessionStore(SessionBase):  # type: ignore[misc]
    """Django's ``request.session``, kept by websession (``SESSION_ENGINE =
    "websession.django"``).

    Every value written goes straight to a websession session (:attr:`websession`), which
    records it per key; ``save()`` writes only those keys, merging with concurrent
    requests. Django's meanings throughout: ``session_key`` is ``None`` until the session
    is stored, ``cycle_key()`` gives it a new key (the old one dies at once), ``flush()``
    deletes it and starts an empty one, ``set_expiry()`` is enforced by the server.
    """

    def __init__(self, session_key: str | None = None) -> None:
        # SessionBase.__init__ is not called: its key and cache attributes are replaced by
        # the websession session below.
        self.accessed = False
        self._force = False  # the application set ``modified = True``
        self._key_changed = False  # the response must carry a key the client lacks
        self._ws = _open(session_key)

    @property
    def websession(self) -> BackingSession:
        """The websession session behind this one (its ``expires_at``, ``version``, ...)."""
        return self._ws

    @property
    def serializer(self) -> Any:
        """``SESSION_SERIALIZER`` (only for SessionBase's ``encode``/``decode``; the store
        uses websession's codec)."""
        return import_string(settings.SESSION_SERIALIZER)

    # -- state Django's middleware reads ----------------------------------------------------

    @property
    def session_key(self) -> str | None:
        """The session's key: ``None`` until it is stored.

        A key the client sent is checked first (one read), so a dead one reads as ``None``
        rather than being taken for a live session's; on an event loop, where that read
        would block, the unchecked key is returned as Django's own backends do.
        """
        ws = self._ws
        if not ws.loaded and not (ws.engine.blocking and _running_loop() is not None):
            ws.load()
        return ws.key

    @property
    def _session_key(self) -> str | None:
        return self._ws.key

    @property
    def modified(self) -> bool:
        """Whether the middleware should save: a change, a new key to send, a read-only
        request's refresh that is due, or ``modified = True`` set by the application."""
        return self._force or self._key_changed or self._ws.pending

    @modified.setter
    def modified(self, value: bool) -> None:
        # ``True`` saves even without a recorded change (in-place changes of mutable values
        # are found anyway); websession keeps recorded changes whatever is set here.
        self._force = bool(value)

    def is_empty(self) -> bool:
        """Whether there is neither a stored session nor data (no store access)."""
        return self._ws.empty

    # -- the mapping: every access goes through the websession session ------------------------

    def _get_session(self, no_load: bool = False) -> BackingSession:
        self.accessed = True
        return self._ws

    _session = property(_get_session)

    async def _aget_session(self, no_load: bool = False) -> BackingSession:
        self.accessed = True
        await self._ws.aload()
        return self._ws

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        return self._ws[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.accessed = True
        self._ws[key] = value

    def __delitem__(self, key: str) -> None:
        self.accessed = True
        del self._ws[key]

    def __contains__(self, key: object) -> bool:
        self.accessed = True
        return key in self._ws

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        self.accessed = True
        return self._ws.get(key, default)

    def clear(self) -> None:
        """Remove every value; the session and its key remain."""
        self.accessed = True
        self._ws.flush()

    # -- expiry: kept in the data as Django does, and enforced by the server -----------------

    def _apply_expiry(self) -> None:
        """Give the websession session the lifetime Django's ``_session_expiry`` says."""
        ws = self._ws
        expiry = ws.get(_EXPIRY)
        if expiry is None:
            ws.set_lifetime(None, None, persistent=None)
            return
        if isinstance(expiry, str):  # Django keeps a fixed end as an ISO string
            expiry = datetime.fromisoformat(expiry)
        if isinstance(expiry, datetime):
            now = time.time()
            end = expiry.timestamp()
            # The absolute lifetime counts from creation (a new key restarts it).
            created = now if ws.is_new else ws.created_at
            ws.set_lifetime(max(end - now, 1.0), max(end - created, 1.0), persistent=True)
        elif not expiry:
            ws.set_lifetime(None, None, persistent=False)  # until the browser closes
        else:
            idle = float(expiry)
            # A remember-me longer than the absolute cap must not be cut by it.
            absolute = idle if idle > ws.engine.absolute else None
            ws.set_lifetime(idle, absolute, persistent=True)

    def set_expiry(self, value: Any) -> None:
        """Django's ``set_expiry``: ``0`` until the browser closes, an ``int`` idle seconds,
        a ``datetime``/``timedelta`` a fixed end, ``None`` the default; enforced by the
        server."""
        super().set_expiry(value)
        self._apply_expiry()

    async def aset_expiry(self, value: Any) -> None:
        """Async twin of :meth:`set_expiry`."""
        await super().aset_expiry(value)
        self._apply_expiry()

    # -- keys ---------------------------------------------------------------------------------

    def _fixed_expiry(self) -> bool:
        return isinstance(self._ws.get(_EXPIRY), str)

    def cycle_key(self) -> None:
        """A new key for this session, its data kept; the old key is deleted now."""
        self.accessed = True
        ws = self._ws
        ws.regenerate_id()
        if self._fixed_expiry():
            self._apply_expiry()  # a fixed end stays where it was
        ws.session_release()
        self._key_changed = True

    async def acycle_key(self) -> None:
        """Async twin of :meth:`cycle_key`."""
        self.accessed = True
        ws = self._ws
        await ws.aregenerate_id()
        if self._fixed_expiry():
            self._apply_expiry()
        await ws.asession_release()
        self._key_changed = True

    def flush(self) -> None:
        """Delete the session now and continue with an empty one under a new key."""
        self.accessed = True
        self._ws.invalidate()
        self._force = self._key_changed = False

    async def aflush(self) -> None:
        """Async twin of :meth:`flush`."""
        self.accessed = True
        await self._ws.ainvalidate()
        self._force = self._key_changed = False

    # -- the storage methods ------------------------------------------------------------------

    def exists(self, session_key: str | None) -> bool:
        """Whether a live session has the key ``session_key``."""
        other = _open(session_key)
        other.load()
        return not other.is_new

    async def aexists(self, session_key: str | None) -> bool:
        """Async twin of :meth:`exists`."""
        other = _open(session_key)
        await other.aload()
        return not other.is_new

    def load(self) -> dict[str, Any]:
        """Read the session; return its data (a copy)."""
        self._ws.load()
        return dict(self._ws)

    async def aload(self) -> dict[str, Any]:
        """Async twin of :meth:`load`."""
        await self._ws.aload()
        return dict(self._ws)

    def _renew(self) -> None:
        # Django's create() on a stored session stores its data under a new key and leaves
        # the old record alone.
        ws = self._ws
        if not ws.is_new:
            fresh = _open(None)
            fresh.update(ws)
            self._ws = fresh
            if _EXPIRY in fresh:
                self._apply_expiry()

    def create(self) -> None:
        """Store this session under a new key now, even if empty."""
        self._ws.load()
        self._renew()
        self.save(must_create=True)
        self._key_changed = True

    async def acreate(self) -> None:
        """Async twin of :meth:`create`."""
        await self._ws.aload()
        self._renew()
        await self.asave(must_create=True)
        self._key_changed = True

    def _before_save(self, must_create: bool) -> bool:
        ws = self._ws
        stored = not ws.is_new
        if must_create and stored:
            raise CreateError
        if self._force:
            ws.mark_modified()
            self._force = False
        if ws.is_new:
            ws.keep()
        return stored

    def _after_save(self, stored: bool) -> None:
        if stored and self._ws.is_new:
            # The save found the session gone (a logout or new key in a concurrent
            # request): nothing was written, as Django's database backend would refuse.
            raise UpdateError

    def save(self, must_create: bool = False) -> None:
        """Save what this request changed (only that: concurrent requests' changes are
        merged), or refresh the idle deadline when due; store a new session even if empty.

        ``must_create``: raise ``CreateError`` if the session is already stored. Raises
        ``UpdateError`` if the session was deleted meanwhile.
        """
        self._ws.load()
        stored = self._before_save(must_create)
        self._ws.session_release()
        self._after_save(stored)

    async def asave(self, must_create: bool = False) -> None:
        """Async twin of :meth:`save`."""
        await self._ws.aload()
        stored = self._before_save(must_create)
        await self._ws.asession_release()
        self._after_save(stored)

    def delete(self, session_key: str | None = None) -> None:
        """Delete this session now (it continues empty, under a new key), or the one with
        ``session_key``."""
        if session_key is None or session_key == self._ws.key:
            self._ws.destroy()
        else:
            _open(session_key).destroy()

    async def adelete(self, session_key: str | None = None) -> None:
        """Async twin of :meth:`delete`."""
        if session_key is None or session_key == self._ws.key:
            await self._ws.adestroy()
        else:
            await _open(session_key).adestroy()

    @classmethod
    def clear_expired(cls) -> None:
        """Remove expired sessions (``manage.py clearsessions``): the provider's GC."""
        get_manager().gc()

    @classmethod
    async def aclear_expired(cls) -> None:
        """Async twin of :meth:`clear_expired`."""
        await get_manager().agc()
