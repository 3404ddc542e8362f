"""ASGI peers: websession's middleware and starsessions', each over its memory store.

Both wrap the same pure ASGI application, which finds a mutable mapping in
``scope["session"]``. starsessions leaves the session unloaded until asked, so its side
adds the ``SessionAutoloadMiddleware`` its documentation prescribes for that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

import websession

from .client import CookieJar, check_counter

__all__ = [
    "ASGIPeer",
    "run_asgi",
    "starsessions_peer",
    "timer",
    "websession_peer",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BASE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"host", b"bench.local"),
    (b"user-agent", b"bench"),
    (b"accept", b"*/*"),
]
_BASE_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "root_path": "",
    "client": ("127.0.0.1", 50000),
    "server": ("bench.local", 80),
}
_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


async def counter_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The application under both middlewares: increment ``counter`` in the session."""
    session = scope["session"]
    count = session.get("counter", 0) + 1
    session["counter"] = count
    body = str(count).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ASGIPeer:
    """One session middleware under test: a name, its app, and how to tear it down."""

    def __init__(
        self, name: str, app: ASGIApp, close: Callable[[], Coroutine[Any, Any, None]] | None = None
    ) -> None:
        self.name = name
        self.app = app
        self.close = close or _nothing


async def _nothing() -> None:
    return None


def websession_peer() -> ASGIPeer:
    manager = websession.Manager("memory", {"cookieName": "gosessionid", "gclifetime": 3600})
    return ASGIPeer(
        "websession", websession.ASGISessionMiddleware(counter_app, manager), manager.aclose
    )


def starsessions_peer() -> ASGIPeer:
    from starsessions import InMemoryStore, SessionAutoloadMiddleware, SessionMiddleware

    app = SessionMiddleware(
        SessionAutoloadMiddleware(counter_app),
        store=InMemoryStore(),
        cookie_name="session",
        cookie_https_only=False,
    )
    return ASGIPeer("starsessions", app)


async def run_asgi(peer: ASGIPeer, requests: int) -> float:
    """Send ``requests`` requests from one fresh client; return the seconds they took.

    Raises :class:`~bench.client.RoundTripError` if the session did not carry the counter.
    """
    app = peer.app
    jar = CookieJar()
    set_cookies: list[str] = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        return _REQUEST

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            set_cookies[:] = [
                value.decode("latin-1")
                for name, value in message["headers"]
                if name.lower() == b"set-cookie"
            ]
        else:
            chunks.append(message.get("body", b""))

    cookie = b""
    body = b""
    started = time.perf_counter()
    for _ in range(requests):
        scope = _BASE_SCOPE.copy()
        scope["headers"] = [*_BASE_HEADERS, (b"cookie", cookie)] if cookie else [*_BASE_HEADERS]
        chunks.clear()
        await app(scope, receive, send)
        body = b"".join(chunks)
        if set_cookies:
            jar.update(set_cookies)
            cookie = jar.header.encode("latin-1")
    elapsed = time.perf_counter() - started
    check_counter(f"asgi {peer.name}", body, requests)
    return elapsed


def timer(runner: asyncio.Runner, peer: ASGIPeer) -> Callable[[int], float]:
    """Time ``run_asgi(peer, n)`` on ``runner``'s loop: what the suites' rounds call."""
    return lambda requests: runner.run(run_asgi(peer, requests))
