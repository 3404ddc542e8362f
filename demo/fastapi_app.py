"""The login demo as a FastAPI application: the same pages, flow and session page as
:mod:`demo.app`, with sessions from :mod:`websession.fastapi`.

``make_app(manager)`` builds the application: ``SessionMiddleware(autoload=False)`` and
``SessionDep``, so only the pages that use the session read it, and ``session_lifespan``,
which starts the manager's GC and closes its store on shutdown. ``serve(manager, host,
port)`` serves it with uvicorn until Ctrl-C. Everything a page shows, and every check on
what a request may do (same-origin POSTs, form bodies of at most ``MAX_BODY_BYTES``),
is :mod:`demo.app`'s, so both demos behave alike; a store outage is the adapter's 503.
"""

from __future__ import annotations

import asyncio
import html
from http import HTTPStatus
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from websession import Manager
from websession.fastapi import SessionDep, SessionMiddleware, session_lifespan

from .app import (
    _BURST_KEY,
    _DIGITS,
    _MAX_FORM_FIELDS,
    _WELCOME,
    BURST_WORK_SECONDS,
    MAX_BODY_BYTES,
    MAX_BURST,
    MAX_USERNAME_CHARS,
    _HTTPError,
    _login_page,
    _page,
    _session_page,
    _state,
)
from .assets import CSP

__all__ = ["make_app", "serve"]

_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _html(body: bytes, status: int = HTTPStatus.OK, headers: dict[str, str] | None = None
          ) -> Response:
    # Every page depends on who is logged in: keep it out of every cache (demo.app's rule).
    return Response(body, status_code=status, media_type="text/html; charset=utf-8",
                    headers={**_NO_STORE, "Content-Security-Policy": CSP,
                             "Referrer-Policy": "same-origin", **(headers or {})})


def _see_other(location: str = "/") -> Response:
    """303 to ``location``; the session middleware adds ``Cache-Control`` when the
    cookie changes, as in :mod:`demo.app`."""
    return RedirectResponse(location, status_code=HTTPStatus.SEE_OTHER)


async def _read_form(request: Request) -> dict[str, list[str]]:
    """Parse an ``application/x-www-form-urlencoded`` body of at most ``MAX_BODY_BYTES``,
    refusing a bigger one on its ``Content-Length`` alone, as :mod:`demo.app` does."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise _HTTPError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Please submit the login form.")
    raw_length = request.headers.get("content-length", "0").strip()
    if not _DIGITS.fullmatch(raw_length):
        raise _HTTPError(HTTPStatus.BAD_REQUEST, "Bad Content-Length.")
    length = int(raw_length)
    if length > MAX_BODY_BYTES:
        raise _HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "The form is too large.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > length:
            break
    if len(body) != length:
        raise _HTTPError(HTTPStatus.BAD_REQUEST, "The form arrived incomplete.")
    try:
        return parse_qs(body.decode("ascii"), keep_blank_values=True, encoding="utf-8",
                        errors="strict", max_num_fields=_MAX_FORM_FIELDS)
    except ValueError as exc:
        raise _HTTPError(HTTPStatus.BAD_REQUEST, "The form could not be read.") from exc


def same_origin(request: Request) -> None:
    """Refuse a POST from another site (:func:`demo.app._same_origin`'s rule)."""
    fetch_site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if fetch_site is not None:
        allowed = fetch_site in ("same-origin", "none")
    elif origin is None:
        allowed = True
    else:
        parts = urlsplit(origin)
        allowed = (parts.scheme, parts.netloc) == (request.url.scheme,
                                                   request.headers.get("host", ""))
    if not allowed:
        raise _HTTPError(HTTPStatus.FORBIDDEN, "Cross-site requests are refused.")


SameOrigin = [Depends(same_origin)]
Form = Annotated[dict[str, list[str]], Depends(_read_form)]


def make_app(manager: Manager, provider: str | None = None) -> FastAPI:
    """The demo's FastAPI application over ``manager``; ``provider`` is the name the
    session page shows (the provider's class name if omitted)."""
    provider_name = provider or type(manager.provider).__name__
    app = FastAPI(lifespan=session_lifespan(manager), redirect_slashes=False,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionMiddleware, manager=manager, autoload=False)

    @app.exception_handler(_HTTPError)
    async def refused(request: Request, exc: _HTTPError) -> Response:
        if request.url.path == "/login" and exc.status != HTTPStatus.FORBIDDEN:
            return _html(_login_page(error=exc.message), exc.status)
        title = "Forbidden" if exc.status == HTTPStatus.FORBIDDEN else "Bad request"
        return _html(_page(title, f"<p>{html.escape(exc.message)}</p>"), exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def not_routed(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            allow = ", ".join(sorted((exc.headers or {}).get("Allow", "").split(", ")))
            page = _page("Method not allowed", '<p>Not here. <a href="/">Home</a></p>')
            return _html(page, exc.status_code, {"Allow": allow})
        if exc.status_code == HTTPStatus.NOT_FOUND:
            return _html(_page("Not found", '<p>No such page. <a href="/">Home</a></p>'),
                         exc.status_code)
        return _html(_page("Error", f"<p>{html.escape(str(exc.detail))}</p>"), exc.status_code)

    @app.api_route("/", methods=["GET", "HEAD"])
    async def index(session: SessionDep) -> Response:
        username = session.get("username")
        if not isinstance(username, str) or not username:
            return _html(_login_page())
        active = await manager.aget_active_session()
        content = _WELCOME.format(username=html.escape(username), active=active)
        return _html(_page("Welcome", content))

    @app.post("/login", dependencies=SameOrigin)
    async def login(form: Form, session: SessionDep) -> Response:
        username = (form.get("username") or [""])[0].strip()
        if not username:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "Please enter a username.")
        if len(username) > MAX_USERNAME_CHARS:
            raise _HTTPError(HTTPStatus.BAD_REQUEST,
                             f"Usernames have at most {MAX_USERNAME_CHARS} characters.")
        # A new ID at every privilege change: an ID planted before login is worthless.
        await session.aregenerate_id()
        session["username"] = username
        return _see_other()

    @app.post("/logout", dependencies=SameOrigin)
    async def logout(session: SessionDep) -> Response:
        await session.ainvalidate()
        return _see_other()

    @app.api_route("/session", methods=["GET", "HEAD"])
    async def session_page(session: SessionDep) -> Response:
        return _html(_session_page(session, manager, provider_name))

    @app.get("/session/state")
    async def session_state(session: SessionDep) -> Response:
        return JSONResponse(_state(session), headers=_NO_STORE)

    @app.post("/session/burst/start", dependencies=SameOrigin)
    async def burst_start(form: Form, session: SessionDep) -> Response:
        raw = (form.get("requests") or [""])[0]
        if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_BURST:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, f"Send 1 to {MAX_BURST} requests.")
        for key in [k for k in session if _BURST_KEY.fullmatch(k)]:
            del session[key]
        # Stores the session if it was not yet, so the burst's requests all share it.
        session["burst_requests"] = int(raw)
        return JSONResponse({"ok": True}, headers=_NO_STORE)

    @app.post("/session/burst", dependencies=SameOrigin)
    async def burst(form: Form, session: SessionDep) -> Response:
        raw = (form.get("key") or [""])[0]
        if not _DIGITS.fullmatch(raw) or int(raw) >= MAX_BURST:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "Bad key.")
        session.get("burst_requests")  # read first, as a handler does
        await asyncio.sleep(BURST_WORK_SECONDS)
        session[f"burst-{int(raw):02d}"] = int(raw)
        return JSONResponse({"ok": True}, headers=_NO_STORE)

    @app.post("/session/regenerate", dependencies=SameOrigin)
    async def regenerate(session: SessionDep) -> Response:
        if not session.is_new:  # an unsaved session has no ID worth replacing
            await session.aregenerate_id()
        return _see_other("/session")

    return app


def serve(manager: Manager, host: str, port: int) -> None:
    """Serve the demo with uvicorn on ``host:port`` until Ctrl-C (or SIGTERM); the
    application's lifespan starts the manager's GC and closes it on the way out."""
    uvicorn.run(make_app(manager), host=host, port=port, log_level="info",
                http="h11", ws="none", lifespan="on")
