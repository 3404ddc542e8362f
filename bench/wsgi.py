"""WSGI peers: websession's middleware and Beaker's, each over its memory backend."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import websession

from .client import CookieJar, check_counter

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["WSGIPeer", "beaker_peer", "run_wsgi", "websession_peer"]

_EMPTY_INPUT = io.BytesIO(b"")
_BASE_ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "SERVER_NAME": "bench.local",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_HOST": "bench.local",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.input": _EMPTY_INPUT,
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def counter_app(environ_key: str, *, save: bool) -> WSGIApplication:
    """The application under both middlewares: increment ``counter`` in the session."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session = environ[environ_key]
        count = session.get("counter", 0) + 1
        session["counter"] = count
        if save:
            session.save()
        body = str(count).encode()
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


class WSGIPeer:
    """One session middleware under test: a name, its app, and how to tear it down."""

    def __init__(
        self, name: str, app: WSGIApplication, close: Callable[[], None] | None = None
    ) -> None:
        self.name = name
        self.app = app
        self.close = close or (lambda: None)


def websession_peer() -> WSGIPeer:
    manager = websession.Manager("memory", {"cookieName": "gosessionid", "gclifetime": 3600})
    app = websession.WSGISessionMiddleware(counter_app("websession.session", save=False), manager)
    return WSGIPeer("websession", app, manager.close)


def beaker_peer() -> WSGIPeer:
    from beaker.middleware import SessionMiddleware  # type: ignore[import-untyped]

    app = SessionMiddleware(counter_app("beaker.session", save=True), {"session.type": "memory"})
    return WSGIPeer("beaker", app)


def run_wsgi(peer: WSGIPeer, requests: int) -> float:
    """Send ``requests`` requests from one fresh client; return the seconds they took.

    Raises :class:`~bench.client.RoundTripError` if the session did not carry the counter.
    """
    app = peer.app
    jar = CookieJar()
    response_headers: list[tuple[str, str]] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        response_headers[:] = headers
        return _write

    body = b""
    started = time.perf_counter()
    for _ in range(requests):
        environ = _BASE_ENVIRON.copy()
        if jar.header:
            environ["HTTP_COOKIE"] = jar.header
        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        jar.update(value for name, value in response_headers if name.lower() == "set-cookie")
    elapsed = time.perf_counter() - started
    check_counter(f"wsgi {peer.name}", body, requests)
    return elapsed


def _write(data: bytes) -> None:
    raise RuntimeError("the benchmark applications do not use write()")
