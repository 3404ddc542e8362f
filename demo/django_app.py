"""The login demo as a Django site: ``request.session`` from ``websession.django`` behind
Django's stock ``SessionMiddleware``, with the pages and flow of :mod:`demo.app`.

``serve(manager, host, port)`` serves it (blocking, until Ctrl-C or SIGTERM) with the
standard library's threaded wsgiref server; ``make_app(manager)`` configures Django and
returns its WSGI handler. The Django settings come from the manager's config: its cookie
name, secure/HttpOnly/SameSite/path/domain become ``SESSION_COOKIE_*``, its idle timeout
``SESSION_COOKIE_AGE``, and a ``cookieLifeTime`` of 0 (the seed's default)
``SESSION_EXPIRE_AT_BROWSER_CLOSE``.

Login is ``request.session.cycle_key()`` then the username (what ``django.contrib.auth``'s
``login()`` does, without a user table: any password is accepted, as in the seed's
example); logout is ``request.session.flush()``. POSTs are refused when they come from
another site (``Sec-Fetch-Site``/``Origin``), as in :mod:`demo.app`.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import sys
import time
from contextlib import ExitStack
from http import HTTPStatus
from typing import Any

from websession import Manager, StoreUnavailableError
from websession.django import BackingSession, close_manager, get_manager

from .app import (
    _BURST_KEY,
    _WELCOME,
    BURST_WORK_SECONDS,
    MAX_BODY_BYTES,
    MAX_BURST,
    MAX_USERNAME_CHARS,
    _login_page,
    _page,
    _same_origin,
    _session_page,
    _state,
    make_server,
    serve_until_stopped,
)
from .assets import CSP

__all__ = ["make_app", "serve", "urlpatterns"]

_DIGITS = re.compile(r"[0-9]+")
_FORM = "application/x-www-form-urlencoded"


def _headers(response: Any, *, store: bool = False) -> Any:
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = CSP
    response["Referrer-Policy"] = "same-origin"
    if not store:
        # Every page depends on who is logged in: keep it out of every cache.
        response["Cache-Control"] = "no-store"
    return response


def _html(body: bytes, status: HTTPStatus = HTTPStatus.OK) -> Any:
    from django.http import HttpResponse  # type: ignore[import-untyped]

    return _headers(HttpResponse(body, status=status.value,
                                 content_type="text/html; charset=utf-8"))


def _json(data: object, status: HTTPStatus = HTTPStatus.OK) -> Any:
    from django.http import HttpResponse

    return _headers(HttpResponse(json.dumps(data), status=status.value,
                                 content_type="application/json"))


def _redirect(location: str = "/") -> Any:
    from django.http import HttpResponse

    # 303: the browser follows with a GET, so a reload does not re-POST.
    body = f'<!doctype html>\n<p><a href="{location}">Continue</a></p>\n'.encode()
    response = HttpResponse(body, status=HTTPStatus.SEE_OTHER.value,
                            content_type="text/html; charset=utf-8")
    response["Location"] = location
    return response


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _form(request: Any) -> Any:
    """The POSTed form; Django enforces the size limits set in :func:`_settings`."""
    if request.content_type != _FORM:
        raise _Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Please submit the login form.")
    return request.POST


def _websession(request: Any) -> BackingSession:
    session: BackingSession = request.session.websession
    return session


def _provider_name() -> str:
    return type(get_manager().provider).__name__


def _route(methods: tuple[str, ...], view: Any) -> Any:
    """``view`` for ``methods`` only, with the demo's same-origin rule for POSTs."""

    def handle(request: Any, *args: Any) -> Any:
        from django.core.exceptions import RequestDataTooBig  # type: ignore[import-untyped]

        if request.method not in methods:
            response = _html(_page("Method not allowed", '<p>Not here. <a href="/">Home</a></p>'),
                             HTTPStatus.METHOD_NOT_ALLOWED)
            response["Allow"] = ", ".join(methods)
            return response
        if request.method == "POST" and not _same_origin(request.META):
            return _html(_page("Forbidden", "<p>Cross-site requests are refused. "
                               '<a href="/">Home</a></p>'), HTTPStatus.FORBIDDEN)
        try:
            return view(request, *args)
        except RequestDataTooBig:
            return _html(_page("Bad request", "<p>The form is too large.</p>"),
                         HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        except _Refused as exc:
            return _html(_page("Bad request", f"<p>{html.escape(exc.message)}</p>"),
                         exc.status)

    return handle


# -- views ----------------------------------------------------------------------------------


def index(request: Any) -> Any:
    username = request.session.get("username")
    if not isinstance(username, str) or not username:
        return _html(_login_page())
    content = _WELCOME.format(username=html.escape(username),
                              active=get_manager().get_active_session())
    return _html(_page("Welcome", content))


def login(request: Any) -> Any:
    try:
        username = (_form(request).get("username") or "").strip()
        if not username:
            raise _Refused(HTTPStatus.BAD_REQUEST, "Please enter a username.")
        if len(username) > MAX_USERNAME_CHARS:
            raise _Refused(HTTPStatus.BAD_REQUEST,
                           f"Usernames have at most {MAX_USERNAME_CHARS} characters.")
    except _Refused as exc:
        return _html(_login_page(error=exc.message), exc.status)
    # A new key at every privilege change: a key planted before login is worthless.
    request.session.cycle_key()
    request.session["username"] = username
    return _redirect()


def logout(request: Any) -> Any:
    request.session.flush()
    return _redirect()


def session_page(request: Any) -> Any:
    request.session.accessed = True  # the page shows the session: Vary: Cookie
    return _html(_session_page(_websession(request), get_manager(), _provider_name()))


def session_state(request: Any) -> Any:
    request.session.accessed = True
    return _json(_state(_websession(request)))


def burst_start(request: Any) -> Any:
    raw = _form(request).get("requests") or ""
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_BURST:
        raise _Refused(HTTPStatus.BAD_REQUEST, f"Send 1 to {MAX_BURST} requests.")
    session = request.session
    stored = list(session.keys())  # Django's sessions are not iterable themselves
    for key in [k for k in stored if _BURST_KEY.fullmatch(k)]:
        del session[key]
    # Stores the session if it was not yet, so the burst's requests all share it.
    session["burst_requests"] = int(raw)
    return _json({"ok": True})


def burst(request: Any) -> Any:
    raw = _form(request).get("key") or ""
    if not _DIGITS.fullmatch(raw) or int(raw) >= MAX_BURST:
        raise _Refused(HTTPStatus.BAD_REQUEST, "Bad key.")
    request.session.get("burst_requests")  # read first, as a handler does
    time.sleep(BURST_WORK_SECONDS)
    request.session[f"burst-{int(raw):02d}"] = int(raw)
    return _json({"ok": True})


def regenerate(request: Any) -> Any:
    if request.session.session_key is not None:  # an unsaved session has no key to replace
        request.session.cycle_key()
    return _redirect("/session")


def handler404(request: Any, exception: Exception) -> Any:
    """Django's not-found page, the demo's way."""
    return _html(_page("Not found", '<p>No such page. <a href="/">Home</a></p>'),
                 HTTPStatus.NOT_FOUND)


def handler500(request: Any) -> Any:
    """503 when the session store is down (the failed save raises in the middleware)."""
    if isinstance(sys.exc_info()[1], StoreUnavailableError):
        response = _html(_page("Unavailable",
                               "<p>The session store is unavailable; try again.</p>"),
                         HTTPStatus.SERVICE_UNAVAILABLE)
        response["Retry-After"] = "5"
        return response
    return _html(_page("Error", "<p>Something went wrong.</p>"),
                 HTTPStatus.INTERNAL_SERVER_ERROR)


def _patterns() -> list[Any]:
    from django.urls import path  # type: ignore[import-untyped]

    get, post = ("GET", "HEAD"), ("POST",)
    return [
        path("", _route(get, index)),
        path("login", _route(post, login)),
        path("logout", _route(post, logout)),
        path("session", _route(get, session_page)),
        path("session/state", _route(("GET",), session_state)),
        path("session/burst/start", _route(post, burst_start)),
        path("session/burst", _route(post, burst)),
        path("session/regenerate", _route(post, regenerate)),
    ]


urlpatterns = _patterns()


# -- settings and serving ---------------------------------------------------------------------


def _settings(manager: Manager, host: str) -> dict[str, Any]:
    cfg = manager.config
    any_host = host in ("", "0.0.0.0", "::")
    return {
        "DEBUG": False,
        "ALLOWED_HOSTS": ["*"] if any_host else [host, f"[{host}]", "localhost",
                                                  "127.0.0.1", "[::1]"],
        "ROOT_URLCONF": __name__,
        "MIDDLEWARE": ["django.contrib.sessions.middleware.SessionMiddleware"],
        "SESSION_ENGINE": "websession.django",
        "WEBSESSION": {"manager": manager},
        "SESSION_COOKIE_NAME": cfg.cookie_name,
        "SESSION_COOKIE_AGE": cfg.idle_timeout,
        "SESSION_COOKIE_SECURE": cfg.secure,
        "SESSION_COOKIE_HTTPONLY": not cfg.disable_http_only,
        "SESSION_COOKIE_SAMESITE": cfg.cookie_same_site,
        "SESSION_COOKIE_PATH": cfg.cookie_path,
        "SESSION_COOKIE_DOMAIN": cfg.domain or None,
        "SESSION_EXPIRE_AT_BROWSER_CLOSE": not cfg.cookie_life_time,
        "DATA_UPLOAD_MAX_MEMORY_SIZE": MAX_BODY_BYTES,
        "DATA_UPLOAD_MAX_NUMBER_FIELDS": 16,
    }


def _django_manager(manager: Manager) -> tuple[Manager, bool]:
    """``manager`` if it hands out Django's sessions, else one like it that does (owned)."""
    if issubclass(manager.engine.session_class, BackingSession):
        return manager, False
    return Manager(type(manager.provider), manager.config, session_class=BackingSession), True


def make_app(manager: Manager, host: str = "127.0.0.1", *, stack: ExitStack) -> Any:
    """Configure Django for the demo over ``manager`` (settings undone when ``stack``
    closes) and return its WSGI handler."""
    import django  # type: ignore[import-untyped]
    from django.conf import settings  # type: ignore[import-untyped]
    from django.core.handlers.wsgi import WSGIHandler  # type: ignore[import-untyped]
    from django.test.utils import override_settings  # type: ignore[import-untyped]

    ours, owned = _django_manager(manager)
    if owned:
        stack.callback(ours.close)
    if not settings.configured:
        settings.configure(SECRET_KEY=secrets.token_hex(32), USE_TZ=True)
        django.setup()
    stack.enter_context(override_settings(**_settings(ours, host)))
    return WSGIHandler()


def serve(manager: Manager, host: str, port: int) -> None:
    """Serve the demo through Django on ``host:port`` until Ctrl-C (or SIGTERM)."""
    with ExitStack() as stack:
        app = make_app(manager, host, stack=stack)
        stack.callback(close_manager)
        server = make_server(host, port, app)
        serve_until_stopped(server,
                            f"websession demo (Django, {type(manager.provider).__name__})")
