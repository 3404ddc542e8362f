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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the application with the connection's session, and save it."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        session = self.manager.session_start(scope)
        scope["session"] = session
        if self.autoload and not session.loaded and self.manager.provider_blocks:
            await session.aload()
        start = "http.response.start" if scope["type"] == "http" else "websocket.accept"

        async def send_with_session(message: Message) -> None:
            if message["type"] == start:
                extra: list[tuple[str, str]] = []
                await session.asession_release(extra)
                if extra:
                    message["headers"] = [
                        *message.get("headers", ()),
                        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra),
                    ]
            await send(message)

        await self.app(scope, receive, send_with_session)
        await session.asession_release()
