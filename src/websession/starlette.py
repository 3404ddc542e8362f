"""Starlette (and FastAPI) sessions: ``pip install 'websession[starlette]'``.

::

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from websession.starlette import SessionMiddleware, load_session, session_lifespan

    manager = websession.Manager("redis", {"ProviderConfig": "127.0.0.1:6379"})

    async def login(request):
        session = await load_session(request)   # typed: websession.SessionStore
        await session.aregenerate_id()
        session["user"] = "ann"
        ...

    app = Starlette(routes=[...], lifespan=session_lifespan(manager),
                    middleware=[Middleware(SessionMiddleware, manager=manager, autoload=False)])

:class:`SessionMiddleware` is :class:`websession.ASGISessionMiddleware` with what a
Starlette application expects around it:

* **when the store is read.** ``autoload=True`` (the default) reads the session before
  every request that sends a session cookie; ``autoload=False`` reads it only where a
  handler asks (:func:`load_session`, FastAPI's ``SessionDep``, or a first use from a
  sync endpoint); ``autoload=["/account", re.compile(r"/admin/.*")]`` reads it before the
  requests whose path matches one of the patterns (``re.match``, as starsessions'
  ``SessionAutoloadMiddleware(paths=...)`` does) and lazily elsewhere. A request that never
  uses its session never touches the store.
* **store outages.** :class:`~websession.StoreUnavailableError` (raised while loading, by a
  handler, or by the save before the response starts) becomes ``503 Service Unavailable``
  with ``Retry-After``; a websocket not yet accepted is closed with code 1013 ("try again
  later"). For errors raised by handlers, an exception handler the application registers
  for it runs instead.

``request.session`` still works (it is the same object), but Starlette types it as a
``dict``; :func:`get_session` and :func:`load_session` return it as websession's
:class:`~websession.SessionStore`, with ``aregenerate_id``, ``ainvalidate``,
``set_lifetime`` and the rest. Sync (``def``) endpoints run in Starlette's threadpool,
where the session loads on first use without awaiting anything.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from ._manager import SESSION_KEY, Manager
from ._session import SessionStore
from .exceptions import MissingDependencyError, StoreUnavailableError
from .middleware.asgi import ASGIApp, ASGISessionMiddleware, Message, Receive, Scope, Send

try:
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    _error = MissingDependencyError("starlette", "starlette", "starlette")
    # The core's message speaks of providers; this is a framework adapter.
    _error.args = ("websession.starlette needs 'starlette': "
                   "pip install 'websession[starlette]'",)
    raise _error from exc

__all__ = [
    "Autoload",
    "SessionMiddleware",
    "get_session",
    "load_session",
    "session_lifespan",
]

log = logging.getLogger("websession")

_UNAVAILABLE_BODY = b"503 Service Unavailable: the session store is unavailable; try again.\n"
#: "Try Again Later": the websocket close code for a temporary server condition.
WS_TRY_AGAIN_LATER = 1013

#: What ``autoload`` takes: ``True``/``False``, or path patterns (strings or compiled).
Autoload = bool | str | re.Pattern[str] | Iterable[str | re.Pattern[str]]


def _patterns(autoload: Autoload) -> tuple[bool, tuple[re.Pattern[str], ...]]:
    if isinstance(autoload, bool):
        return autoload, ()
    if isinstance(autoload, str | re.Pattern):
        autoload = [autoload]
    return False, tuple(re.compile(p) if isinstance(p, str) else p for p in autoload)


class SessionMiddleware(ASGISessionMiddleware):
    """Sessions for a Starlette or FastAPI application.

    ``app.add_middleware(SessionMiddleware, manager=manager)``, or
    ``Middleware(SessionMiddleware, manager=manager, autoload=False)`` in the application's
    middleware list. ``autoload``: ``True`` reads the session before each request that
    carries a session cookie; ``False`` leaves it to :func:`load_session` (or FastAPI's
    ``SessionDep``, or a sync endpoint's first use); a path pattern, or a list of them,
    reads it before the requests whose path matches (``re.match``, starsessions' rule).
    ``retry_after`` is the ``Retry-After`` of the 503 answered when the store is down.
    """

    def __init__(self, app: ASGIApp, manager: Manager, *, autoload: Autoload = True,
                 retry_after: int = 5) -> None:
        everywhere, patterns = _patterns(autoload)
        super().__init__(app, manager, autoload=everywhere)
        #: The path patterns whose requests are read before the application runs.
        self.autoload_paths = patterns
        self.retry_after = retry_after
        self._retry_after = str(retry_after).encode("latin-1")
        self._io = manager.provider_blocks

    def _wants_load(self, path: str) -> bool:
        return any(pattern.match(path) for pattern in self.autoload_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the application with the connection's session; answer 503 when the store
        is down and nothing has been sent yet."""
        if scope["type"] not in ("http", "websocket"):  # lifespan: no session
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            # (A provider without I/O is read on first use, at no cost: nothing to do.)
            if self._io and self.autoload_paths and self._wants_load(scope["path"]):
                session = self.manager.session_start(scope)  # the base class finds it again
                if not session.loaded:
                    await session.aload()
            await super().__call__(scope, receive, watched_send)
        except StoreUnavailableError as exc:
            if started:
                raise  # the response is under way: only the server can end it now
            log.warning("session store unavailable, answering 503: %s", exc)
            await self._unavailable(scope, send)

    async def _unavailable(self, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": WS_TRY_AGAIN_LATER,
                        "reason": "session store unavailable"})
            return
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(_UNAVAILABLE_BODY)).encode("latin-1")),
            (b"retry-after", self._retry_after),
            (b"cache-control", b"no-store"),
        ]})
        await send({"type": "http.response.body", "body": _UNAVAILABLE_BODY})


def get_session(connection: HTTPConnection) -> SessionStore:
    """The connection's session (a request's or a websocket's), typed as websession's.

    It is not read from the store here: it loads on first use, which from a sync endpoint
    (run in a worker thread) just works; async code with a store that does I/O awaits
    :func:`load_session` first, unless the middleware's ``autoload`` already read it.
    """
    session = connection.scope.get(SESSION_KEY)
    if not isinstance(session, SessionStore):
        raise RuntimeError("no websession session on this connection: add "
                           "websession.starlette.SessionMiddleware to the application")
    return session


async def load_session(connection: HTTPConnection) -> SessionStore:
    """Read the connection's session from the store if it was not yet, and return it.

    Await it once per request; then reads and writes need no ``await``. As a FastAPI
    dependency it is ``websession.fastapi.SessionDep``. A request without a session
    cookie costs no store access at all.
    """
    session = get_session(connection)
    if not session.loaded:
        await session.aload()
    return session


def session_lifespan(
    manager: Manager,
    *,
    gc: bool = True,
    lifespan: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """A lifespan for ``Starlette(lifespan=...)`` or ``FastAPI(lifespan=...)``: starts the
    manager's background GC (``gc=False`` leaves it off) and, on shutdown, stops it and
    closes the provider's connection pools (``await manager.aclose()``).

    ``lifespan`` is the application's own lifespan, run inside this one (its state, if it
    yields one, is passed on), so the session store is open for its start-up and
    shutdown code.
    """

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        if gc:
            manager.start_gc()
        try:
            if lifespan is None:
                yield None
            else:
                async with lifespan(app) as state:
                    yield state
        finally:
            await manager.aclose()

    return run
