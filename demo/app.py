"""The seed's login example (beego's session docs) as a small WSGI app.

``make_app(manager)`` builds the WSGI application (routes wrapped in
:class:`websession.WSGISessionMiddleware`); ``make_server`` serves any WSGI app with the
standard library's wsgiref server, one thread per request; ``main`` is ``python -m demo``.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from types import FrameType
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as _wsgiref_make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import websession
from websession import Manager, StoreUnavailableError, WebSessionError

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_PROVIDER",
    "MAX_BODY_BYTES",
    "MAX_USERNAME_CHARS",
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

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - websession demo</title>
</head>
<body>
<h1>{title}</h1>
{content}
</body>
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


def _page(title: str, content: str) -> bytes:
    return _PAGE.format(title=html.escape(title), content=content).encode("utf-8")


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
        ("Content-Security-Policy", "default-src 'none'; form-action 'self'"),
        ("Referrer-Policy", "no-referrer"),
        *extra_headers,
    ]
    start_response(_status_line(status), headers, exc_info)
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def _redirect(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """303 See Other to ``/``: the browser follows with a GET, so a reload does not re-POST.

    No ``Cache-Control`` of our own here: when the session changed, the session middleware
    adds ``Set-Cookie`` and ``Cache-Control: no-store`` itself.
    """
    body = b'<!doctype html>\n<p><a href="/">Continue</a></p>\n'
    start_response(
        _status_line(HTTPStatus.SEE_OTHER),
        [
            ("Location", "/"),
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


def make_app(manager: Manager) -> WSGIApplication:
    """The demo's WSGI application, sessions included, over ``manager``."""

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

    Handler = Callable[[WSGIEnvironment, StartResponse], list[bytes]]
    routes: dict[str, dict[str, Handler]] = {
        "/": {"GET": index, "HEAD": index},
        "/login": {"POST": login},
        "/logout": {"POST": logout},
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
        return handler(environ, start_response)

    return _unavailable_as_503(websession.WSGISessionMiddleware(app, manager))


# -- serving ------------------------------------------------------------------------------


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server with a thread per request, so one slow client blocks nobody."""

    daemon_threads = True  # Ctrl-C does not wait for open connections


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


def _url(server: ThreadingWSGIServer) -> str:
    host, port = server.server_address[:2]
    host = host.decode() if isinstance(host, bytes) else str(host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


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
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a TCP port")

    try:
        manager = build_manager()
    except WebSessionError as exc:
        print(f"demo: bad session settings: {exc}", file=sys.stderr)
        return 2
    try:
        server = make_server(args.host, args.port, make_app(manager))
    except OSError as exc:
        print(f"demo: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        manager.close()
        return 1

    manager.start_gc()  # the seed's `go globalSessions.GC()`
    provider = os.environ.get("WEBSESSION_PROVIDER") or DEFAULT_PROVIDER
    print(
        f"websession demo ({provider} sessions) on {_url(server)} - press Ctrl-C to stop",
        flush=True,
    )
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        server.server_close()
        manager.stop_gc()
        manager.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
