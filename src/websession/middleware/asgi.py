"""Pure ASGI middleware for http and websocket scopes.

The session is ``scope["session"]`` (so Starlette's ``request.session`` finds it) and
``scope["websession.session"]``. It is saved as the response starts — the ``Set-Cookie``
goes into ``http.response.start`` — and again when the application returns, so changes
made while streaming a body or during a websocket are kept.

When the session cannot be loaded or saved, the client gets an answer, never a dropped
connection or a half-sent response:

* The store is unavailable (:class:`~websession.StoreUnavailableError`) while the session
  is read before the application runs (``autoload``), or saved as the response starts:
  the middleware answers ``503 Service Unavailable`` with ``Retry-After`` instead of the
  application's response, and quietly drops whatever the application sends after that.
  A websocket handshake is refused instead, with ``websocket.close`` code 1013 (try
  again later).
* The session cannot be saved for another reason (a cookie session over the 4 KB limit,
  :class:`~websession.SessionTooLarge`; a value the codec refuses): a clean ``500``, and
  one log line on the ``websession`` logger.
* Unless the application's response is itself an error (5xx): that one goes out as the
  application made it, without the session's headers (and a log line), since it may be
  how the application handled the error itself.
* The same errors raised out of the application before its response started (a handler
  that loads or saves the session itself, with no handler of its own for them) are
  answered the same way.
* Once the response has started it cannot change: a save that fails when the
  application returns (changes made while the body streamed, or during a websocket) is
  logged, and those late changes are lost.

An application that wants its own handling loads and saves inside its handlers, where
its exception handlers see the errors: ``await session.aload()`` (with
``autoload=False``) and ``await session.asession_release()`` before returning the
response; a cookie session too large for its cookie raises ``SessionTooLarge`` right
there. The middleware then has nothing left to save, and only adds the headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .._manager import Manager
from ..exceptions import StoreUnavailableError, WebSessionError
from ._answers import DEFAULT_RETRY_AFTER, SESSION_ERRORS, answer_for, keeps_own_error, log

__all__ = ["ASGISessionMiddleware"]

# The message that starts a response, per scope type: the session is saved before it.
_STARTS = {"http": "http.response.start", "websocket": "websocket.accept"}
_START_MESSAGES = frozenset(_STARTS.values())
# Where a response stands, in order: not started; the application's response started;
# the application's own error response went out with its session unsaved; ours replaced it.
_BEFORE, _STARTED, _UNSAVED, _ANSWERED = range(4)
_RAW_NAMES = {"Vary": b"vary", "Set-Cookie": b"set-cookie", "Cache-Control": b"cache-control"}
# Websocket close code 1013: "try again later".
_TRY_AGAIN_LATER = 1013


_VARY = ("Vary", "Cookie")
_VARY_RAW = (b"vary", b"Cookie")
#: What most responses get: the session was used, and there is no cookie to send.
_VARY_ONLY = [_VARY]
_RAW_HEADERS = {_VARY: _VARY_RAW, ("Cache-Control", "no-store"): (b"cache-control", b"no-store")}


def _raw_header(header: tuple[str, str]) -> tuple[bytes, bytes]:
    name, value = header
    return _RAW_NAMES.get(name) or name.lower().encode("latin-1"), value.encode("latin-1")


def _add_headers(message: Message, extra: list[tuple[str, str]]) -> None:
    # A new list: the application may reuse its header list for other responses.
    headers = message.get("headers", ())
    if extra == _VARY_ONLY:
        message["headers"] = [*headers, _VARY_RAW]
        return
    if ("Cache-Control", "no-store") in extra:  # it replaces the application's caching
        headers = [h for h in headers if h[0].lower() != b"cache-control"]
    out = [*headers]
    for header in extra:  # (a loop, not a comprehension: a comprehension is a call)
        out.append(_RAW_HEADERS.get(header) or _raw_header(header))
    message["headers"] = out

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _nothing() -> None:
    """What sending costs once the middleware has answered in the application's place."""


class ASGISessionMiddleware:
    """Wrap an ASGI application so that each http or websocket connection has a session.

    ``autoload`` decides when a provider that does I/O is read: ``True`` reads it before
    the application runs (when the client sent an ID), so handlers can use the session
    without awaiting; ``False`` leaves it to the handler (``await session.aload()``), so
    requests that never use their session never touch the store. A provider that does no
    I/O (memory) is always read lazily, on first use. ``retry_after`` is the
    ``Retry-After`` of the 503 sent when the store is unavailable (see the module
    docstring for what happens on each failure).
    """

    def __init__(
        self, app: ASGIApp, manager: Manager, *, autoload: bool = True,
        retry_after: int = DEFAULT_RETRY_AFTER,
    ) -> None:
        self.app = app
        self.manager = manager
        self.autoload = autoload
        self.retry_after = retry_after
        self._blocking = manager.provider_blocks

    async def _answer(self, scope: Scope, send: Send, exc: WebSessionError) -> None:
        """Send, in place of the application's response, the one that reports ``exc``."""
        status, headers, body = answer_for(exc, self.retry_after)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": _TRY_AGAIN_LATER if status == 503
                        else 1011, "reason": ""})
            return
        await send({"type": "http.response.start", "status": status,
                    "headers": [_raw_header(header) for header in headers]})
        await send({"type": "http.response.body", "body": body})

    def _cannot_save(self, scope: Scope, send: Send, message: Message,
                     exc: WebSessionError) -> tuple[int, Awaitable[None]]:
        """The session could not be saved as the response starts with ``message``: the
        application's own error response goes out without the session's headers
        (``_UNSAVED``), or ours replaces it (``_ANSWERED``). Returns that phase, and the
        sending to await."""
        if keeps_own_error(exc, message.get("status", 200)):
            return _UNSAVED, send(message)
        return _ANSWERED, self._answer(scope, send, exc)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the application with the connection's session, and save it."""
        if scope["type"] not in _STARTS:  # lifespan and anything else: no session
            await self.app(scope, receive, send)
            return
        session = self.manager.session_start(scope)
        scope["session"] = session
        # Where the response stands (one variable, not three flags: each variable the send
        # wrappers below share costs every request a cell).
        phase = _BEFORE

        # send_now saves with the blocking call, which does no I/O for an in-process store
        # (or once send_after_save has saved): a plain function can hand back send's
        # awaitable, with no coroutine of its own on every send.
        def send_now(message: Message) -> Awaitable[None]:
            nonlocal phase
            if phase == _ANSWERED:
                return _nothing()
            if message["type"] in _START_MESSAGES:
                extra: list[tuple[str, str]] = []
                try:
                    session.session_release(extra)
                except SESSION_ERRORS as exc:
                    phase, sending = self._cannot_save(scope, send, message, exc)
                    return sending
                if extra:
                    _add_headers(message, extra)
                if phase == _BEFORE:
                    phase = _STARTED
            return send(message)

        app_send: Send = send_now
        if self._blocking:
            if self.autoload and not session.loaded:
                try:
                    await session.aload()
                except StoreUnavailableError as exc:
                    await self._answer(scope, send, exc)
                    return

            async def send_after_save(message: Message) -> None:
                # The store's I/O, awaited here; then send_now has only the headers to add.
                nonlocal phase
                if phase != _ANSWERED and message["type"] in _START_MESSAGES:
                    try:
                        await session.asession_release()
                    except SESSION_ERRORS as exc:
                        phase, sending = self._cannot_save(scope, send, message, exc)
                        await sending
                        return
                await send_now(message)

            app_send = send_after_save

        try:
            await self.app(scope, receive, app_send)
        except SESSION_ERRORS as exc:
            if phase != _BEFORE:
                raise
            await self._answer(scope, send, exc)  # from a handler that loads or saves itself
            return
        if phase >= _UNSAVED:  # answered already, or its save failed already
            return
        try:
            if self._blocking:
                await session.asession_release()
            else:
                session.session_release()
        except SESSION_ERRORS as exc:
            if phase == _STARTED:
                log.error("session changes made after the response started were lost: %s",
                          exc, exc_info=exc)
            else:
                await self._answer(scope, send, exc)
