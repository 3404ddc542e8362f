"""The application ``make reliability``'s servers run: a session counter behind websession's
middleware (:func:`wsgi_app` for gunicorn, :func:`asgi_app` for uvicorn), over the store
the environment names, answering each request with how long the server spent on it
(``X-Handled``, seconds)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import MutableMapping
from typing import Any

__all__ = ["CONFIG_ENV", "HANDLED", "PROVIDER_ENV", "asgi_app", "wsgi_app"]

#: The provider's registry name, and its providerConfig (JSON).
PROVIDER_ENV = "WEBSESSION_RELIABILITY_PROVIDER"
CONFIG_ENV = "WEBSESSION_RELIABILITY_CONFIG"
#: The response header carrying the server's time on the request.
HANDLED = "x-handled"

_managers: dict[str, Any] = {}
_manager_lock = threading.Lock()


def _manager() -> Any:
    """This process's manager, made on first use from the environment."""
    manager = _managers.get("manager")
    if manager is None:
        from websession import Manager

        with _manager_lock:
            manager = _managers.get("manager")
            if manager is None:
                manager = Manager(os.environ[PROVIDER_ENV], {
                    "ProviderConfig": os.environ[CONFIG_ENV], "gclifetime": 3600})
                _managers["manager"] = manager
    return manager


def _counter_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["websession.session"]
    session["n"] = n = session.get("n", 0) + 1
    body = str(n).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


async def _counter_asgi(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    session = scope["session"]
    session["n"] = n = session.get("n", 0) + 1
    body = str(n).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


_apps: dict[str, Any] = {}


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
    """The counter behind :class:`~websession.WSGISessionMiddleware` (gunicorn runs it)."""
    began = time.perf_counter()
    app = _apps.get("wsgi")
    if app is None:
        from websession import WSGISessionMiddleware

        app = _apps["wsgi"] = WSGISessionMiddleware(_counter_wsgi, _manager())

    def timed_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        headers.append((HANDLED, f"{time.perf_counter() - began:.4f}"))
        return start_response(status, headers, exc_info)

    return app(environ, timed_start)


async def asgi_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """The counter behind :class:`~websession.ASGISessionMiddleware` (uvicorn runs it)."""
    began = time.perf_counter()
    app = _apps.get("asgi")
    if app is None:
        from websession import ASGISessionMiddleware

        app = _apps["asgi"] = ASGISessionMiddleware(_counter_asgi, _manager())

    async def timed_send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            handled = f"{time.perf_counter() - began:.4f}".encode()
            message = {**message, "headers": [*message.get("headers", []),
                                              (HANDLED.encode(), handled)]}
        await send(message)

    await app(scope, receive, timed_send)
