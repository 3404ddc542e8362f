"""The seed's login example (beego's session docs) as a small WSGI app, and a page that
shows the session as websession sees it.

``make_app(manager)`` builds the WSGI application (routes wrapped in
:class:`websession.WSGISessionMiddleware`); ``make_server`` serves any WSGI app with the
standard library's wsgiref server, one thread per request; ``main`` is ``python -m demo``.

``/session`` shows the session: its ID (shortened: the whole ID is the bearer secret and
stays in its HttpOnly cookie), when it was created and when it expires, idle and
absolute, counting down, its version, its data and the provider. Its buttons fire N
concurrent requests that each set their own key (every key survives), and regenerate the
ID. POSTs are protected from cross-site requests as the login form always was: the
cookie is ``SameSite=Lax``, so a cross-site POST arrives without it, and bodies must be
forms; in addition a POST whose ``Origin`` or ``Sec-Fetch-Site`` names another site is
refused. Nothing is read from URLs. (There is no "log out everywhere": that needs a list
of each user's sessions, which websession does not keep yet.)
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as _wsgiref_make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import websession
from websession import Manager, SessionStore, StoreUnavailableError, WebSessionError

from .assets import CSP, SCRIPT, STYLE

__all__ = [
    "BURST_WORK_SECONDS",
    "DEFAULT_CONFIG",
    "DEFAULT_PROVIDER",
    "MAX_BODY_BYTES",
    "MAX_BURST",
    "MAX_USERNAME_CHARS",
    "SHOWN_ID_CHARS",
    "ThreadingWSGIServer",
    "build_manager",
    "main",
    "make_app",
    "make_server",
]

#: The seed's ``session.NewManager("memory", `{"cookieName":"gosessionid","gclifetime":3600}`)``.
DEFAULT_PROVIDER = "memory"
DEFAULT_CONFIG = '{"cookieName":"gosessionid","gclifetime":3600}'

#: A login form is a few dozen bytes; anything much bigger is refused unread.
MAX_BODY_BYTES = 4096
MAX_USERNAME_CHARS = 64
_MAX_FORM_FIELDS = 16
_DIGITS = re.compile(r"[0-9]+")
#: The session page's concurrency button sends at most this many requests at once.
MAX_BURST = 100
#: Each of those requests reads the session, then works this long before setting its key,
#: as a handler waiting on a database would: so the requests really overlap.
BURST_WORK_SECONDS = 0.05
#: How much of the session ID the page shows. The ID is the bearer secret; 6 of its 32
#: hex characters tell two IDs apart and leave 104 bits unknown.
SHOWN_ID_CHARS = 6
_BURST_KEY = re.compile(r"burst-[0-9]+")

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - websession demo</title>
<style>{style}</style>
</head>
<body>
<nav aria-label="Demo pages"><a href="/">Home</a> <a href="/session">Your session</a></nav>
<main>
<h1>{title}</h1>
{content}
</main>
{script}</body>
</html>
"""

_LOGIN_FORM = """{error}<form method="post" action="/login">
<p><label>Username <input name="username" value="{username}" maxlength="{maxlength}"
 autocomplete="username" required autofocus></label></p>
<p><label>Password <input name="password" type="password"
 autocomplete="current-password"></label></p>
<p><button type="submit">Log in</button></p>
</form>
<p><small>Any password is accepted: this demo shows sessions, not authentication.</small></p>
"""

_WELCOME = """<p>Logged in as {username}</p>
<p>Active sessions: {active}</p>
<form method="post" action="/logout">
<p><button type="submit">Log out</button></p>
</form>
"""


class _HTTPError(Exception):
    """A request the app refuses, with the status and a message for the user."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _status_line(status: HTTPStatus) -> str:
    return f"{status.value} {status.phrase}"


def _page(title: str, content: str, *, script: bool = False) -> bytes:
    return _PAGE.format(
        title=html.escape(title), content=content, style=STYLE,
        script=f"<script>{SCRIPT}</script>\n" if script else "",
    ).encode("utf-8")


def _login_page(username: str = "", error: str = "") -> bytes:
    error_html = f'<p role="alert"><strong>{html.escape(error)}</strong></p>\n' if error else ""
    return _page(
        "Log in",
        _LOGIN_FORM.format(
            error=error_html, username=html.escape(username), maxlength=MAX_USERNAME_CHARS
        ),
    )


def _respond(
    environ: WSGIEnvironment,
    start_response: StartResponse,
    status: HTTPStatus,
    body: bytes,
    extra_headers: Iterable[tuple[str, str]] = (),
    exc_info: Any = None,
) -> list[bytes]:
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        # Every page depends on who is logged in: keep it out of every cache, including
        # the browser's back/forward cache after a logout.
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", CSP),
        # Same-origin requests keep their real Origin header, which _same_origin checks;
        # nothing goes to other sites (no page links to one).
        ("Referrer-Policy", "same-origin"),
        *extra_headers,
    ]
    start_response(_status_line(status), headers, exc_info)
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _redirect(
    environ: WSGIEnvironment, start_response: StartResponse, location: str = "/"
) -> list[bytes]:
    """303 See Other to ``location``: the browser follows with a GET, so a reload does not
    re-POST.

    No ``Cache-Control`` of our own here: when the session changed, the session middleware
    adds ``Set-Cookie`` and ``Cache-Control: no-store`` itself.
    """
    body = f'<!doctype html>\n<p><a href="{location}">Continue</a></p>\n'.encode()
    start_response(
        _status_line(HTTPStatus.SEE_OTHER),
        [
            ("Location", location),
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]


def _read_form(environ: WSGIEnvironment) -> dict[str, list[str]]:
    """Parse an ``application/x-www-form-urlencoded`` body of at most ``MAX_BODY_BYTES``."""
    media_type = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise _HTTPError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Please submit the login form.")
    raw_length = str(environ.get("CONTENT_LENGTH") or "0").strip()
    if not _DIGITS.fullmatch(raw_length):  # int() would also take "-1", "+5" and "1_0"
        raise _HTTPError(HTTPStatus.BAD_REQUEST, "Bad Content-Length.")
    length = int(raw_length)
    if length > MAX_BODY_BYTES:
        raise _HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "The form is too large.")
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    if len(body) != length:
        raise _HTTPError(HTTPStatus.BAD_REQUEST, "The form arrived incomplete.")
    try:
        return parse_qs(
            body.decode("ascii"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except ValueError as exc:  # UnicodeDecodeError too, and too many fields
        raise _HTTPError(HTTPStatus.BAD_REQUEST, "The form could not be read.") from exc


def _unavailable_as_503(app: WSGIApplication) -> WSGIApplication:
    """Answer 503 when the session store is down.

    It sits outside the session middleware: the failed save raises out of the
    middleware's ``start_response``, and the error page goes straight to the server.
    """

    def wrapped(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return app(environ, start_response)
        except StoreUnavailableError as exc:
            environ["wsgi.errors"].write(f"demo: {exc}\n")
            page = _page("Unavailable", "<p>The session store is unavailable; try again.</p>")
            return _respond(
                environ, start_response, HTTPStatus.SERVICE_UNAVAILABLE, page,
                [("Retry-After", "5")], sys.exc_info(),
            )

    return wrapped


def _same_origin(environ: WSGIEnvironment) -> bool:
    """Whether a POST may come from this site.

    Browsers say where a request comes from in ``Sec-Fetch-Site``, and older ones in
    ``Origin`` (our pages' ``Referrer-Policy: same-origin`` keeps it real for our own
    POSTs; ``null`` means a foreign or sandboxed page). A client that sends neither is no
    browser, so there is no victim's cookie for it to ride on.
    """
    fetch_site = environ.get("HTTP_SEC_FETCH_SITE")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return (parts.scheme, parts.netloc) == (
        environ.get("wsgi.url_scheme", "http"), environ.get("HTTP_HOST", ""))


def _json(
    environ: WSGIEnvironment, start_response: StartResponse, data: object,
    status: HTTPStatus = HTTPStatus.OK,
) -> list[bytes]:
    body = json.dumps(data).encode("utf-8")
    start_response(_status_line(status), [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ])
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _utc(unix: float) -> str:
    if not unix:
        return "not yet: the session is not stored"
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _shown(value: object) -> str:
    """A value as the page shows it: JSON where it can be, cut short."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    except ValueError:  # a circular structure
        text = repr(value)
    return text if len(text) <= 200 else text[:199] + "\N{HORIZONTAL ELLIPSIS}"


def _short_id(session: SessionStore) -> str:
    return session.session_id()[:SHOWN_ID_CHARS] + "\N{HORIZONTAL ELLIPSIS}"


def _data(session: SessionStore) -> list[tuple[str, str]]:
    return [(key, _shown(session[key])) for key in sorted(session)]


def _state(session: SessionStore) -> dict[str, object]:
    """What the session page shows, as the JSON its script reads after a burst."""
    return {
        "sid": _short_id(session),
        "stored": not session.is_new,
        "version": session.version,
        "created_at": session.created_at,
        "expires_at": session.expires_at,
        "absolute_expires_at": session.absolute_expires_at,
        "times": {
            "created": _utc(session.created_at),
            "idle": _utc(session.expires_at),
            "absolute": _utc(session.absolute_expires_at),
        },
        "now": time.time(),
        "data": _data(session),
    }


_SESSION_VIEW = """<div id="session-view" data-now="{now:.3f}">
<p>This is your session as websession sees it on this request. The page never shows the
whole session ID: it is the secret that proves the session is yours, and it stays in its
<code>HttpOnly</code> cookie.</p>
<h2>The session</h2>
<dl class="facts">
<dt>Session ID</dt><dd><code id="sid">{sid}</code>
 <span class="muted">(first {shown} characters)</span></dd>
<dt>Stored</dt><dd id="stored">{stored}</dd>
<dt>Created</dt><dd><span id="created-at">{created}</span>
 <span class="muted" id="created-live" data-since="{created_at:.3f}"></span></dd>
<dt>Idle deadline</dt><dd><span id="idle-at">{idle}</span>
 <span class="muted" id="idle-live" data-until="{expires_at:.3f}"></span>
 <br><span class="muted">{idle_timeout} s after the last save; a request that only
 reads moves it once a tenth of that has passed</span></dd>
<dt>Absolute deadline</dt><dd><span id="absolute-at">{absolute}</span>
 <span class="muted" id="absolute-live" data-until="{absolute_at:.3f}"></span>
 <br><span class="muted">{absolute_lifetime} s after creation (or the last new ID),
 however busy</span></dd>
<dt>Version</dt><dd><span id="version">{version}</span>
 <span class="muted">(how many times it was saved)</span></dd>
<dt>On this request</dt><dd><code>is_new</code> {is_new}, <code>modified</code>
 {modified}</dd>
<dt>Provider</dt><dd>{provider} <span class="muted">(<code>{provider_class}</code>)</span></dd>
</dl>
<h2>Concurrent requests</h2>
<p>Your browser sends this many requests at once. Each one reads the session, works for
{work_ms} ms, then sets its own key <code>burst-N</code>. Libraries that write the whole
session at the end of each request keep only the last writer's key; websession saves
each request's own changes, so every key should survive.</p>
<form id="burst-form" class="row" hidden>
<label for="burst-n">Requests</label>
<input id="burst-n" name="requests" type="number" min="1" max="{max_burst}" value="20"
 required>
<button id="burst" type="submit">Send them at once</button>
</form>
<noscript><p class="muted">This button needs JavaScript (the demo's own, inlined in this
page).</p></noscript>
<p id="burst-result" class="result" role="status" aria-live="polite"></p>
<h2>New session ID</h2>
<p>Regenerating moves the data to a fresh ID and deletes the old one, as a login
does.</p>
<form method="post" action="/session/regenerate">
<p><button type="submit" class="secondary">Regenerate the session ID</button></p>
</form>
<h2>The data</h2>
<table>
<thead><tr><th scope="col">key</th><th scope="col">value</th></tr></thead>
<tbody id="data-rows">{rows}</tbody>
</table>
<p id="data-empty" class="muted">{empty}</p>
{logout}
<p class="muted">Not here: a "log out everywhere" button. It needs a list of each user's
sessions, which websession does not keep yet.</p>
</div>
"""

_SESSION_LOGOUT = """<h2>Log out</h2>
<p>Logged in as {username}.</p>
<form method="post" action="/logout">
<p><button type="submit" class="secondary">Log out</button></p>
</form>
"""


def _session_page(session: SessionStore, manager: Manager, provider: str) -> bytes:
    rows = "".join(
        f"<tr><td><code>{html.escape(key)}</code></td><td><code>{html.escape(value)}</code>"
        "</td></tr>" for key, value in _data(session)
    )
    username = session.get("username")
    logout = (
        _SESSION_LOGOUT.format(username=html.escape(username))
        if isinstance(username, str) and username else ""
    )
    klass = type(manager.provider)
    content = _SESSION_VIEW.format(
        now=time.time(),
        sid=html.escape(_short_id(session)),
        shown=SHOWN_ID_CHARS,
        stored="no: nothing has been set in it yet" if session.is_new else "yes",
        created=html.escape(_utc(session.created_at)),
        created_at=session.created_at,
        idle=html.escape(_utc(session.expires_at)),
        expires_at=session.expires_at,
        idle_timeout=manager.config.idle_timeout,
        absolute=html.escape(_utc(session.absolute_expires_at)),
        absolute_at=session.absolute_expires_at,
        absolute_lifetime=manager.config.absolute_lifetime,
        version=session.version,
        is_new=session.is_new,
        modified=session.modified,
        provider=html.escape(provider),
        provider_class=html.escape(f"{klass.__module__}.{klass.__qualname__}"),
        rows=rows,
        empty="" if rows else "The session holds no data.",
        work_ms=round(BURST_WORK_SECONDS * 1000),
        max_burst=MAX_BURST,
        logout=logout,
    )
    return _page("Your session", content, script=True)


def make_app(manager: Manager, provider: str | None = None) -> WSGIApplication:
    """The demo's WSGI application, sessions included, over ``manager``.

    ``provider`` is the name the session page shows (the provider's class name if
    omitted)."""
    provider_name = provider or type(manager.provider).__name__

    def index(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        session = manager.session_start(environ)
        username = session.get("username")
        if not isinstance(username, str) or not username:
            return _respond(environ, start_response, HTTPStatus.OK, _login_page())
        content = _WELCOME.format(
            username=html.escape(username), active=manager.get_active_session()
        )
        return _respond(environ, start_response, HTTPStatus.OK, _page("Welcome", content))

    def login(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        try:
            form = _read_form(environ)
            username = (form.get("username") or [""])[0].strip()
            if not username:
                raise _HTTPError(HTTPStatus.BAD_REQUEST, "Please enter a username.")
            if len(username) > MAX_USERNAME_CHARS:
                raise _HTTPError(
                    HTTPStatus.BAD_REQUEST,
                    f"Usernames have at most {MAX_USERNAME_CHARS} characters.",
                )
        except _HTTPError as exc:
            page = _login_page(error=exc.message)
            return _respond(environ, start_response, exc.status, page)
        # A new ID at every privilege change: an ID planted before login is worthless.
        session = manager.session_regenerate_id(environ)
        session.set("username", username)
        return _redirect(environ, start_response)

    def logout(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        manager.session_destroy(environ)
        return _redirect(environ, start_response)

    def session_page(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        page = _session_page(manager.session_start(environ), manager, provider_name)
        return _respond(environ, start_response, HTTPStatus.OK, page)

    def session_state(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        return _json(environ, start_response, _state(manager.session_start(environ)))

    def burst_start(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        form = _read_form(environ)
        raw = (form.get("requests") or [""])[0]
        if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_BURST:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, f"Send 1 to {MAX_BURST} requests.")
        session = manager.session_start(environ)
        for key in [k for k in session if _BURST_KEY.fullmatch(k)]:
            del session[key]
        # Stores the session if it was not yet, so the burst's requests all share it.
        session["burst_requests"] = int(raw)
        return _json(environ, start_response, {"ok": True})

    def burst(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        raw = (_read_form(environ).get("key") or [""])[0]
        if not _DIGITS.fullmatch(raw) or int(raw) >= MAX_BURST:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "Bad key.")
        session = manager.session_start(environ)
        session.get("burst_requests")  # read first, as a handler does
        time.sleep(BURST_WORK_SECONDS)
        session[f"burst-{int(raw):02d}"] = int(raw)
        return _json(environ, start_response, {"ok": True})

    def regenerate(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        session = manager.session_start(environ)
        if not session.is_new:  # an unsaved session has no ID worth replacing
            session.regenerate_id()
        return _redirect(environ, start_response, "/session")

    Handler = Callable[[WSGIEnvironment, StartResponse], list[bytes]]
    routes: dict[str, dict[str, Handler]] = {
        "/": {"GET": index, "HEAD": index},
        "/login": {"POST": login},
        "/logout": {"POST": logout},
        "/session": {"GET": session_page, "HEAD": session_page},
        "/session/state": {"GET": session_state},
        "/session/burst/start": {"POST": burst_start},
        "/session/burst": {"POST": burst},
        "/session/regenerate": {"POST": regenerate},
    }

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        methods = routes.get(environ.get("PATH_INFO") or "/")
        if methods is None:
            page = _page("Not found", '<p>No such page. <a href="/">Home</a></p>')
            return _respond(environ, start_response, HTTPStatus.NOT_FOUND, page)
        handler = methods.get(environ.get("REQUEST_METHOD", "GET"))
        if handler is None:
            page = _page("Method not allowed", '<p>Not here. <a href="/">Home</a></p>')
            allow = [("Allow", ", ".join(methods))]
            return _respond(environ, start_response, HTTPStatus.METHOD_NOT_ALLOWED, page, allow)
        if environ.get("REQUEST_METHOD") == "POST" and not _same_origin(environ):
            page = _page("Forbidden", "<p>Cross-site requests are refused. "
                         '<a href="/">Home</a></p>')
            return _respond(environ, start_response, HTTPStatus.FORBIDDEN, page)
        try:
            return handler(environ, start_response)
        except _HTTPError as exc:
            page = _page("Bad request", f"<p>{html.escape(exc.message)}</p>")
            return _respond(environ, start_response, exc.status, page)

    return _unavailable_as_503(websession.WSGISessionMiddleware(app, manager))


# -- serving ------------------------------------------------------------------------------


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server with a thread per request, so one slow client blocks nobody."""

    daemon_threads = True  # Ctrl-C does not wait for open connections
    # socketserver's default backlog of 5 resets connections when a page's concurrent
    # requests (the session page's button sends up to 100) arrive at once.
    request_queue_size = 128


class _ThreadingWSGIServerV6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def make_server(
    host: str, port: int, app: WSGIApplication, *, quiet: bool = False
) -> ThreadingWSGIServer:
    """A threaded wsgiref server for ``app`` bound to ``host:port`` (port 0: any free one).

    ``quiet`` turns off the per-request log lines on stderr.
    """
    server_class = _ThreadingWSGIServerV6 if ":" in host else ThreadingWSGIServer
    handler_class = _QuietHandler if quiet else WSGIRequestHandler
    return _wsgiref_make_server(
        host, port, app, server_class=server_class, handler_class=handler_class
    )


def build_manager(env: Mapping[str, str] | None = None) -> Manager:
    """The seed's manager; ``WEBSESSION_PROVIDER`` / ``WEBSESSION_CONFIG`` in ``env`` (the
    process environment by default) replace the provider name and the JSON config."""
    env = os.environ if env is None else env
    provider = env.get("WEBSESSION_PROVIDER") or DEFAULT_PROVIDER
    config = env.get("WEBSESSION_CONFIG") or DEFAULT_CONFIG
    return Manager(provider, config)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve_until_stopped(server: ThreadingWSGIServer, banner: str) -> None:
    """Say ``banner`` and where, serve until Ctrl-C (or SIGTERM, in the main thread), then
    close the server: every flavour of the demo stops the same way."""
    print(f"{banner} on {_url(server)} - press Ctrl-C to stop", flush=True)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        server.server_close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _url(server: ThreadingWSGIServer) -> str:
    host, port = server.server_address[:2]
    host = host.decode() if isinstance(host, bytes) else str(host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


#: The framework versions of the demo: ``demo/<module>.py`` with ``serve(manager, host, port)``.
FRAMEWORKS = {"flask": "flask_app", "django": "django_app", "fastapi": "fastapi_app",
              "aiohttp": "aiohttp_app"}


def _serve_framework(name: str, host: str, port: int) -> int:
    import importlib

    try:
        module = importlib.import_module(f"demo.{FRAMEWORKS[name]}")
    except ImportError as exc:
        print(f"demo: the {name} demo needs its framework: {exc}", file=sys.stderr)
        return 2
    try:
        manager = build_manager()
    except WebSessionError as exc:
        print(f"demo: bad session settings: {exc}", file=sys.stderr)
        return 2
    try:
        module.serve(manager, host, port)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        manager.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve the demo until Ctrl-C (or SIGTERM); return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="The websession login demo. Provider and config come from "
        "WEBSESSION_PROVIDER (default memory) and WEBSESSION_CONFIG (default the seed's "
        "JSON).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    parser.add_argument("--framework", choices=["wsgi", *FRAMEWORKS], default="wsgi",
                        help="serve the demo through a framework adapter (default: plain WSGI)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a TCP port")
    if args.framework != "wsgi":
        return _serve_framework(args.framework, args.host, args.port)

    try:
        manager = build_manager()
    except WebSessionError as exc:
        print(f"demo: bad session settings: {exc}", file=sys.stderr)
        return 2
    try:
        provider = os.environ.get("WEBSESSION_PROVIDER") or DEFAULT_PROVIDER
        server = make_server(args.host, args.port, make_app(manager, provider))
    except OSError as exc:
        print(f"demo: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        manager.close()
        return 1

    manager.start_gc()  # the seed's `go globalSessions.GC()`
    try:
        serve_until_stopped(server, f"websession demo ({provider} sessions)")
    finally:
        manager.stop_gc()
        manager.close()
    return 0
