"""Pure ASGI middleware for http and websocket scopes.

The session is ``scope["session"]`` (so Starlette's ``request.session`` finds it) and
``scope["websession.session"]``. It is saved as the response starts — the ``Set-Cookie``
goes into ``http.response.start`` — and again when the application returns, so changes
made while streaming a body or during a websocket are kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._manager import Manager

__all__ = ["ASGISessionMiddleware"]

# The message that starts a response, per scope type: the session is saved before it.
_STARTS = {"http": "http.response.start", "websocket": "websocket.accept"}
_RAW_NAMES = {"Vary": b"vary", "Set-Cookie": b"set-cookie", "Cache-Control": b"cache-control"}


_RAW_HEADERS = {
    ("Vary", "Cookie"): (b"vary", b"Cookie"),
    ("Cache-Control", "no-store"): (b"cache-control", b"no-store"),
}


def _raw_header(header: tuple[str, str]) -> tuple[bytes, bytes]:
    name, value = header
    return _RAW_NAMES.get(name) or name.lower().encode("latin-1"), value.encode("latin-1")


def _add_headers(message: Message, extra: list[tuple[str, str]]) -> None:
    # A new list: the application may reuse its header list for other responses.
    headers = message.get("headers", ())
    if ("Cache-Control", "no-store") in extra:  # it replaces the application's caching
        headers = [h for h in headers if h[0].lower() != b"cache-control"]
    message["headers"] = [
        *headers,
        *[_RAW_HEADERS.get(header) or _raw_header(header) for header in extra],
    ]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ASGISessionMiddleware:
    """Wrap an ASGI application so that each http or websocket connection has a session.

    ``autoload`` decides when a provider that does I/O is read: ``True`` reads it before
    the application runs (when the client sent an ID), so handlers can use the session
    without awaiting; ``False`` leaves it to the handler (``await session.aload()``), so
    requests that never use their session never touch the store. A provider that does no
    I/O (memory) is always read lazily, on first use.
    """

    def __init__(self, app: ASGIApp, manager: Manager, *, autoload: bool = True) -> None:
        self.app = app
        self.manager = manager
        self.autoload = autoload
        self._blocking = manager.provider_blocks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the application with the connection's session, and save it."""
        start = _STARTS.get(scope["type"])
        if start is None:  # lifespan and anything else: no session
            await self.app(scope, receive, send)
            return
        session = self.manager.session_start(scope)
        scope["session"] = session

        if not self._blocking:
            # Releasing does no I/O: a plain function can hand back send's awaitable, and
            # the session is saved (in memory) before the response starts.
            def send_now(message: Message) -> Awaitable[None]:
                if message["type"] == start:
                    extra: list[tuple[str, str]] = []
                    session.session_release(extra)
                    if extra:
                        _add_headers(message, extra)
                return send(message)

            await self.app(scope, receive, send_now)
            session.session_release()
            return

        if self.autoload and not session.loaded:
            await session.aload()

        async def send_after_save(message: Message) -> None:
            if message["type"] == start:
                extra: list[tuple[str, str]] = []
                await session.asession_release(extra)
                if extra:
                    _add_headers(message, extra)
            await send(message)

        await self.app(scope, receive, send_after_save)
        await session.asession_release()
