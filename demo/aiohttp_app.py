"""The login demo as an aiohttp application, through :mod:`websession.aiohttp`.

The same pages, routes and flow as :mod:`demo.app` (the WSGI version), written the way an
aiohttp application uses sessions: ``await get_session(request)`` in handlers,
``await new_session(request)`` at login (the pre-login ID is deleted at once),
``session.invalidate()`` at logout, a redirect raised as ``web.HTTPFound`` that carries
the cookie. ``serve(manager, host, port)`` runs it until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import html
import json
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from websession import Manager
from websession.aiohttp import Session, get_manager, get_session, new_session, setup

from .app import (
    _BURST_KEY,
    _DIGITS,
    _WELCOME,
    BURST_WORK_SECONDS,
    MAX_BODY_BYTES,
    MAX_BURST,
    MAX_USERNAME_CHARS,
    _login_page,
    _page,
    _session_page,
    _state,
)
from .assets import CSP

__all__ = ["make_app", "serve"]

_PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    # Every page depends on who is logged in: keep it out of every cache, including the
    # browser's back/forward cache after a logout.
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "same-origin",
}
_FORM = "application/x-www-form-urlencoded"
_MAX_FORM_FIELDS = 16


class _Refused(Exception):
    """A request the app refuses, with the status and a message for the user."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _html(body: bytes, status: HTTPStatus = HTTPStatus.OK,
          headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, headers={**_PAGE_HEADERS, **(headers or {})})


def _json(data: object) -> web.Response:
    return web.Response(body=json.dumps(data).encode("utf-8"), headers={
        "Content-Type": "application/json", "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"})


async def _form(request: web.Request) -> dict[str, str]:
    """The first value of each field of an ``application/x-www-form-urlencoded`` body
    (the application refuses bodies over ``MAX_BODY_BYTES``)."""
    if request.content_type != _FORM:
        raise _Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Please submit the login form.")
    try:
        fields = await request.post()
    except ValueError as exc:  # undecodable
        raise _Refused(HTTPStatus.BAD_REQUEST, "The form could not be read.") from exc
    if len(fields) > _MAX_FORM_FIELDS:
        raise _Refused(HTTPStatus.BAD_REQUEST, "The form could not be read.")
    return {key: value for key, value in fields.items() if isinstance(value, str)}


def _same_origin(request: web.Request) -> bool:
    """Whether a POST may come from this site (see :func:`demo.app._same_origin`)."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.host}"


async def index(request: web.Request) -> web.Response:
    session = await get_session(request)
    username = session.get("username")
    if not isinstance(username, str) or not username:
        return _html(_login_page())
    active = await get_manager(request).aget_active_session()
    content = _WELCOME.format(username=html.escape(username), active=active)
    return _html(_page("Welcome", content))


async def login(request: web.Request) -> web.Response:
    try:
        username = (await _form(request)).get("username", "").strip()
        if not username:
            raise _Refused(HTTPStatus.BAD_REQUEST, "Please enter a username.")
        if len(username) > MAX_USERNAME_CHARS:
            raise _Refused(HTTPStatus.BAD_REQUEST,
                           f"Usernames have at most {MAX_USERNAME_CHARS} characters.")
    except _Refused as exc:
        return _html(_login_page(error=exc.message), exc.status)
    # A new session at every privilege change: an ID planted before login is worthless.
    session = await new_session(request)
    session["username"] = username
    raise web.HTTPSeeOther("/")  # the new cookie rides on the redirect


async def logout(request: web.Request) -> web.Response:
    (await get_session(request)).invalidate()  # the old ID is deleted as the response goes
    raise web.HTTPSeeOther("/")


async def session_page(request: web.Request) -> web.Response:
    session = await get_session(request)
    provider = request.app[_PROVIDER]
    return _html(_session_page(session, get_manager(request), provider))


async def session_state(request: web.Request) -> web.Response:
    return _json(_state(await get_session(request)))


async def burst_start(request: web.Request) -> web.Response:
    raw = (await _form(request)).get("requests", "")
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_BURST:
        raise _Refused(HTTPStatus.BAD_REQUEST, f"Send 1 to {MAX_BURST} requests.")
    session = await get_session(request)
    for key in [k for k in session if _BURST_KEY.fullmatch(k)]:
        del session[key]
    # Stores the session if it was not yet, so the burst's requests all share it.
    session["burst_requests"] = int(raw)
    return _json({"ok": True})


async def burst(request: web.Request) -> web.Response:
    raw = (await _form(request)).get("key", "")
    if not _DIGITS.fullmatch(raw) or int(raw) >= MAX_BURST:
        raise _Refused(HTTPStatus.BAD_REQUEST, "Bad key.")
    session = await get_session(request)
    session.get("burst_requests")  # read first, as a handler does
    await asyncio.sleep(BURST_WORK_SECONDS)  # a database call, say: the requests overlap
    session[f"burst-{int(raw):02d}"] = int(raw)
    return _json({"ok": True})


async def regenerate(request: web.Request) -> web.Response:
    session = await get_session(request)
    if not session.new:  # an unsaved session has no ID worth replacing
        await session.aregenerate_id()
    raise web.HTTPSeeOther("/session")


@web.middleware
async def _pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The demo's own pages for refusals and errors; outside the session middleware, so it
    also dresses the 503 that websession.aiohttp answers when the store is down."""
    if request.method == "POST" and not _same_origin(request):
        return _html(_page("Forbidden", '<p>Cross-site requests are refused. '
                                        '<a href="/">Home</a></p>'), HTTPStatus.FORBIDDEN)
    try:
        return await handler(request)
    except _Refused as exc:
        return _html(_page("Bad request", f"<p>{html.escape(exc.message)}</p>"), exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects go as they are
            raise
        messages: dict[int, str] = {
            HTTPStatus.NOT_FOUND: '<p>No such page. <a href="/">Home</a></p>',
            HTTPStatus.METHOD_NOT_ALLOWED: '<p>Not here. <a href="/">Home</a></p>',
            HTTPStatus.SERVICE_UNAVAILABLE: "<p>The session store is unavailable; try "
                                            "again.</p>",
        }
        content = messages.get(exc.status) or f"<p>{html.escape(exc.reason)}</p>"
        kept = {name: exc.headers[name] for name in ("Allow", "Retry-After")
                if name in exc.headers}
        return _html(_page(exc.reason, content), HTTPStatus(exc.status), kept)


_PROVIDER = web.AppKey("demo.provider", str)


def _session_manager(manager: Manager) -> Manager:
    """``manager``, or one over the same provider and settings that hands out
    websession.aiohttp's sessions (``python -m demo`` builds a plain one)."""
    if issubclass(manager.engine.session_class, Session):
        return manager
    return Manager(manager.provider, manager.config, session_class=Session)


def make_app(manager: Manager, provider: str | None = None) -> web.Application:
    """The demo's aiohttp application over ``manager`` (its sessions must be
    :class:`websession.aiohttp.Session`). ``provider`` is the name the session page shows
    (the provider's class name if omitted)."""
    app = web.Application(middlewares=[_pages], client_max_size=MAX_BODY_BYTES)
    setup(app, manager)
    app[_PROVIDER] = provider or type(manager.provider).__name__
    app.router.add_get("/", index)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/session", session_page)
    app.router.add_get("/session/state", session_state)
    app.router.add_post("/session/burst/start", burst_start)
    app.router.add_post("/session/burst", burst)
    app.router.add_post("/session/regenerate", regenerate)
    return app


def serve(manager: Manager, host: str, port: int, *, provider: str | None = None,
          **run_app: Any) -> None:
    """Serve the demo on ``host:port`` with aiohttp's own server until Ctrl-C or SIGTERM.

    Background GC runs meanwhile; the store's connections are closed at the end.
    ``run_app`` goes to :func:`aiohttp.web.run_app` (``print=None`` silences it).
    """
    manager = _session_manager(manager)
    app = make_app(manager, provider)

    async def close(app: web.Application) -> None:
        manager.stop_gc()
        await manager.aclose()

    app.on_cleanup.append(close)
    manager.start_gc()  # the seed's `go globalSessions.GC()`
    web.run_app(app, host=host, port=port, **run_app)
