"""aiohttp integration, with aiohttp-session's names: ``setup``, ``get_session``,
``new_session``, ``session.invalidate()``, ``session.max_age``, and an identity policy for
aiohttp-security.

::

    from aiohttp import web
    import websession
    from websession.aiohttp import Session, get_session, new_session, setup

    manager = websession.Manager("redis", config, session_class=Session)
    app = web.Application()
    setup(app, manager)

    async def login(request: web.Request) -> web.Response:
        session = await new_session(request)     # the old ID is deleted now
        session["user"] = "ann"
        raise web.HTTPFound("/")                 # the cookie rides on the redirect

How a request goes:

* Nothing is read until a handler calls :func:`get_session`; a request that never does
  costs the store nothing. The session ID comes from the cookie (or, if the manager is
  configured for them, from a header or the query string), through the core's own
  parsing: :func:`get_session` hands the manager a minimal ASGI-style scope built from
  the request.
* The session is saved when the handler returns (or raises an ``HTTPException``, which
  aiohttp sends as the response), before the response is prepared, so a store outage
  can still become a ``503 Service Unavailable`` with ``Retry-After``. Its
  ``Set-Cookie``, ``Vary: Cookie`` and ``Cache-Control: no-store`` are added in
  ``on_response_prepare``, which also saves a session whose handler prepares its own
  ``web.StreamResponse`` or ``web.WebSocketResponse``: the cookie goes out with the
  first bytes (the websocket handshake), and changes made while streaming or during the
  websocket are saved when the handler returns.
* A handler that fails with another exception saves nothing.

Everything here is async: with a provider that does I/O, a blocking call on the
session (``load()``, ``session_release()``, ``destroy()``) raises
:class:`~websession.SessionModeError` naming its ``a``-prefixed twin, as everywhere in
websession. ``session.invalidate()`` is the exception by design: it does no I/O (see
:meth:`Session.invalidate`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any, Final, cast

from ._manager import Manager
from ._session import SessionStore
from .exceptions import MissingDependencyError, StoreUnavailableError

try:
    from aiohttp import web
    from aiohttp.http_writer import StreamWriter
    from aiohttp.typedefs import Handler, Middleware
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("aiohttp", "aiohttp", "aiohttp") from exc

try:
    from aiohttp_security.abc import AbstractIdentityPolicy as _IdentityPolicyBase
except ImportError:  # pragma: no cover - aiohttp-security is optional
    _IdentityPolicyBase = object  # type: ignore[assignment, misc]

__all__ = [
    "SESSION_KEY",
    "Session",
    "SessionIdentityPolicy",
    "get_manager",
    "get_session",
    "new_session",
    "setup",
]

log = logging.getLogger("websession")

#: Seconds a ``503`` asks clients to wait when the session store is down.
DEFAULT_RETRY_AFTER = 5


class Session(SessionStore):
    """websession's session with aiohttp-session's names added.

    Everything of :class:`~websession.SessionStore` works (``session["k"]``,
    ``regenerate_id()``, ``set_lifetime()``, ``await session.ainvalidate()``, ...);
    besides, ``new``, ``empty``, ``created``, ``changed()``, ``max_age`` and
    ``invalidate()`` behave as aiohttp-session's do. Create the manager with
    ``Manager(..., session_class=Session)`` (or a subclass of it).
    """

    __slots__ = ()

    @property
    def new(self) -> bool:
        """Whether the session is not (yet) stored (aiohttp-session's ``new``)."""
        return self.is_new

    @property
    def empty(self) -> bool:
        """Whether the session holds no values."""
        return len(self) == 0

    @property
    def created(self) -> int:
        """When the session was created, in whole Unix seconds (now, for a session not
        yet stored), as aiohttp-session's ``created``."""
        return int(self.created_at or time.time())

    def changed(self) -> None:
        """Save the session when the response goes out even if no value changed
        (aiohttp-session's ``changed()``; values changed in place are found anyway)."""
        self.mark_modified()

    def invalidate(self) -> None:
        """End the session when the response is prepared (aiohttp-session's
        ``invalidate()``), without I/O, so it can be called from a handler as it is.

        The values are dropped at once and the session moves to a new ID; when the
        handler's response is saved, the old ID is deleted from the store. If nothing is
        set afterwards, the response expires the cookie; values set afterwards start a
        new session under the new ID (with the manager's lifetime). A handler that
        fails with an exception other than ``HTTPException`` saves nothing, so the old
        session then survives: ``await session.ainvalidate()`` deletes it at once.
        """
        # regenerate_id moves the session to a fresh ID whose save deletes the old one;
        # flush drops the values (the data never reach the new ID); the lifetime goes
        # back to the manager's, as a new session's.
        self.regenerate_id()
        self.flush()
        self.set_lifetime(None, None, persistent=None)

    @property
    def max_age(self) -> int | None:
        """The cookie's ``Max-Age`` in seconds, ``None`` for a browser-session cookie.

        Setting it is aiohttp-session's per-session ``max_age``: ``session.max_age =
        3600`` makes the session expire on the server after an hour without a request
        (the cookie's ``Max-Age`` follows that deadline, sliding with each save);
        ``None`` makes the cookie a browser-session one and the idle timeout the
        manager's. Saved when the response goes out. Unlike aiohttp-session's, the session
        still ends at its absolute lifetime (the manager's ``absoluteLifetime`` unless
        :meth:`set_lifetime` gave it one of its own), however long ``max_age`` is.
        """
        persistent = self.persistent
        if persistent is None:
            return self.engine.config.cookie_life_time or None
        return int(self.idle_timeout) if persistent else None

    @max_age.setter
    def max_age(self, value: int | None) -> None:
        absolute = self.absolute_lifetime
        # set_lifetime sets all three; keep an absolute lifetime of the session's own.
        own_absolute = None if absolute == self.engine.absolute else absolute
        if value is None:
            self.set_lifetime(None, own_absolute, persistent=False)
        else:
            self.set_lifetime(value, own_absolute, persistent=True)


#: Where the request's session is kept (``request[SESSION_KEY]``, once
#: :func:`get_session` has run): an ``aiohttp.web.RequestKey`` where aiohttp has them.
SESSION_KEY: Final[Any] = (
    web.RequestKey("websession", Session) if hasattr(web, "RequestKey") else "websession"
)


class _Binding:
    """One application's manager and what its config says about reading IDs."""

    __slots__ = ("header", "manager", "query", "raw_header", "retry_after")

    def __init__(self, manager: Manager, retry_after: int) -> None:
        cfg = manager.config
        self.manager = manager
        self.retry_after = str(retry_after)
        self.header = cfg.session_name_in_http_header if cfg.enable_sid_in_http_header else ""
        self.raw_header = self.header.lower().encode("latin-1")
        self.query = cfg.enable_sid_in_url_query

    def scope(self, request: web.Request) -> dict[str, Any]:
        """The parts of an ASGI scope the manager reads an ID from, for ``request``."""
        # aiohttp decodes header bytes as UTF-8 with surrogateescape: this gives them back.
        headers = [(b"cookie", value.encode("utf-8", "surrogateescape"))
                   for value in request.headers.getall("Cookie", ())]
        scope: dict[str, Any] = {"type": "http", "scheme": request.scheme, "headers": headers}
        if self.header:
            value = request.headers.get(self.header)
            if value:
                headers.append((self.raw_header, value.encode("utf-8", "surrogateescape")))
        if self.query:
            scope["query_string"] = request.query_string.encode("utf-8", "surrogateescape")
        return scope


_BINDING: Final = web.AppKey("websession.aiohttp", _Binding)


def _binding(request: web.Request) -> _Binding:
    binding = request.config_dict.get(_BINDING)
    if binding is None:
        raise RuntimeError("call websession.aiohttp.setup(app, manager) for this application "
                           "before using sessions in it")
    return binding


def _start(request: web.Request) -> Session:
    binding = _binding(request)
    session = cast(Session, binding.manager.session_start(binding.scope(request)))
    request[SESSION_KEY] = session
    return session


def get_manager(request: web.Request) -> Manager:
    """The manager :func:`setup` gave the request's application."""
    return _binding(request).manager


async def get_session(request: web.Request) -> Session:
    """The request's session, read from the store (once per request)."""
    session: Session | None = request.get(SESSION_KEY)
    if session is None:
        session = _start(request)
    if not session.loaded:
        await session.aload()
    return session


async def new_session(request: web.Request) -> Session:
    """A fresh, empty session under a new ID, for a login (aiohttp-session's
    ``new_session``): the request's previous session is deleted from the store now,
    without being read, so an ID planted before the login is worthless after it.
    Returns the request's session object, now fresh (an earlier :func:`get_session`
    result is the same object)."""
    session: Session | None = request.get(SESSION_KEY)
    if session is None:
        session = _start(request)
    await session.ainvalidate()
    return session


def _apply(response: web.StreamResponse, headers: Iterable[tuple[str, str]]) -> None:
    """Put the core's response headers on an aiohttp response that is being prepared."""
    out = response.headers
    for name, value in headers:
        if name == "Cache-Control":  # no-store replaces the application's caching
            out[name] = value
        elif name == "Vary":
            present = out.get("Vary")
            if present is None:
                out["Vary"] = value
            elif value.lower() not in present.lower():
                out["Vary"] = f"{present}, {value}"
        else:
            out.add(name, value)


async def _on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    # Runs after aiohttp has turned response.cookies into headers and before it writes
    # them. The middleware has normally saved already (no I/O here); a handler that
    # prepares its own StreamResponse or websocket is saved here, before its first bytes.
    session: Session | None = request.get(SESSION_KEY)
    if session is None:
        return
    headers: list[tuple[str, str]] = []
    try:
        await session.asession_release(headers)
    except StoreUnavailableError:
        # The middleware answers 503 on this connection instead. aiohttp has already
        # framed this response on the connection's writer (chunked, if it streams with
        # no length): the 503 frames its own body, with a Content-Length.
        writer = request.writer
        if isinstance(writer, StreamWriter):
            writer.chunked = False
        raise
    if headers:
        _apply(response, headers)


#: Saves that outlive a cancelled handler (asyncio keeps only weak references to tasks).
_late_saves: set[asyncio.Task[None]] = set()


async def _save_late(session: Session) -> None:
    try:
        await session.asession_release()
    except StoreUnavailableError:
        log.exception("a session changed after its response started could not be saved")


async def _save_after(request: web.Request, response: web.StreamResponse) -> None:
    session: Session | None = request.get(SESSION_KEY)
    if session is None:
        return
    if not response.prepared:
        await session.asession_release()  # a failure still becomes a 503
        return
    # Headers are gone: keep what changed while the body streamed or the websocket ran.
    # The client may be gone too, and with handler_cancellation (aiohttp's TestServer
    # turns it on) its disconnection cancels this task: the save must finish anyway.
    task = asyncio.ensure_future(_save_late(session))
    _late_saves.add(task)
    task.add_done_callback(_late_saves.discard)
    await asyncio.shield(task)


def _middleware(binding: _Binding) -> Middleware:
    @web.middleware
    async def websession_middleware(request: web.Request,
                                    handler: Handler) -> web.StreamResponse:
        try:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                # aiohttp 3 sends the raised exception as the response: a redirect after
                # a login must carry the new cookie.
                await _save_after(request, exc)
                raise
            except BaseException:
                request.pop(SESSION_KEY, None)  # a failed request saves nothing
                raise
            await _save_after(request, response)
            return response
        except StoreUnavailableError as exc:
            request.pop(SESSION_KEY, None)  # the error page must not try again
            log.warning("session store unavailable: %s", exc)
            raise web.HTTPServiceUnavailable(
                text="The session store is unavailable; try again shortly.",
                headers={"Retry-After": binding.retry_after},
            ) from exc

    return websession_middleware


def setup(app: web.Application, manager: Manager, *,
          retry_after: int = DEFAULT_RETRY_AFTER) -> None:
    """Serve ``manager``'s sessions to ``app``'s handlers (aiohttp-session's ``setup``).

    Adds a middleware and an ``on_response_prepare`` hook; call it before the
    application starts. A store outage answers ``503`` with ``Retry-After:
    retry_after``. ``manager`` must hand out :class:`Session` objects:
    ``Manager(..., session_class=websession.aiohttp.Session)``.
    """
    if not issubclass(manager.engine.session_class, Session):
        raise TypeError(
            "websession.aiohttp needs the manager's sessions to be websession.aiohttp.Session"
            ": create it with Manager(provider, config, session_class=Session)"
        )
    binding = _Binding(manager, retry_after)
    app[_BINDING] = binding
    app.middlewares.append(_middleware(binding))
    app.on_response_prepare.append(_on_response_prepare)


class SessionIdentityPolicy(_IdentityPolicyBase):
    """aiohttp-security's identity policy over websession's session.

    ``remember`` moves the session to a new ID and stores the identity in it (a
    ``max_age=`` keyword makes the session last that long without a request, with a
    persistent cookie: "remember me"); ``forget`` removes the identity and moves the
    session to a new ID, so an ID seen before a login or logout is worthless after it.
    Other values in the session are kept across both. Needs aiohttp-security
    (``pip install 'websession[aiohttp-security]'``).
    """

    def __init__(self, session_key: str = "AIOHTTP_SECURITY") -> None:
        if _IdentityPolicyBase is object:  # pragma: no cover - without aiohttp-security
            raise MissingDependencyError("aiohttp-security", "aiohttp-security",
                                         "aiohttp_security")
        self._session_key = session_key

    async def identify(self, request: web.Request) -> str | None:
        """The identity remembered in the request's session, if any."""
        session = await get_session(request)
        identity = session.get(self._session_key)
        return identity if isinstance(identity, str) else None

    async def remember(self, request: web.Request, response: web.StreamResponse,
                       identity: str, *, max_age: int | None = None, **kwargs: Any) -> None:
        """Store ``identity`` in the session under a new ID (the cookie goes out with
        whichever response the request answers with)."""
        session = await get_session(request)
        await session.aregenerate_id()
        session[self._session_key] = identity
        if max_age is not None:
            session.max_age = max_age

    async def forget(self, request: web.Request, response: web.StreamResponse) -> None:
        """Remove the identity from the session and move it to a new ID."""
        session = await get_session(request)
        session.pop(self._session_key, None)
        await session.aregenerate_id()
