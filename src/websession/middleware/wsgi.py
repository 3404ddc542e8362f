"""WSGI middleware: the session is ``environ["websession.session"]``; it is saved when the
application starts its response, and again after the body if it changed while streaming.

A failed save at ``start_response`` raises out of it, so the application may handle it
itself (with ``exc_info``, as WSGI allows). If it does not, and the error leaves the
application before any of the body was sent, the middleware answers in its place: ``503``
with ``Retry-After`` for :class:`~websession.StoreUnavailableError` (an unreachable store,
at load or at save), a clean ``500`` and one log line when the session cannot be saved
otherwise (:class:`~websession.SessionTooLarge`, a value the codec refuses). A response
the application already made an error (5xx) goes out as it is, without the session's
headers: it may be how the application handled the error itself. A save of
changes made while the body streamed comes after the response: if it fails, it is logged
and those changes are lost.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from .._manager import Manager
from ._answers import DEFAULT_RETRY_AFTER, SESSION_ERRORS, answer_for, keeps_own_error, log

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["WSGISessionMiddleware"]

class _Body:
    """The application's body; saves late session changes once it is done."""

    __slots__ = ("_after", "_body")

    def __init__(self, body: Iterable[bytes], after: Callable[[], None]) -> None:
        self._body = body
        self._after = after

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._after()


class WSGISessionMiddleware:
    """Wrap a WSGI application so that each request has a session.

    Handlers find it as ``environ["websession.session"]``, or through
    ``manager.session_start(environ)``, which returns the same object. ``retry_after``
    is the ``Retry-After`` of the 503 sent when the store is unavailable.
    """

    def __init__(
        self, app: WSGIApplication, manager: Manager, *, retry_after: int = DEFAULT_RETRY_AFTER
    ) -> None:
        self.app = app
        self.manager = manager
        self.retry_after = retry_after

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Run the application with the request's session, and save it."""
        session = self.manager.session_start(environ)
        released = failed = False

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal released, failed
            # Once only: an error page sent after a failed save (exc_info set) must not
            # try the save again.
            if not released:
                released = True
                try:
                    session.session_release(headers)
                except SESSION_ERRORS as exc:
                    failed = True
                    code = status[:3]
                    if not keeps_own_error(exc, int(code) if code.isdigit() else 200):
                        raise
                except BaseException:
                    failed = True
                    raise
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
            if type(body) is list:  # already complete: save any late change now, no wrapper
                if not failed:
                    session.session_release()
                return body
        except SESSION_ERRORS as exc:
            failed = True
            code, headers, page = answer_for(exc, self.retry_after)
            # With exc_info, a server that already sent headers re-raises: nothing else
            # could be done then.
            start_response(f"{code} {HTTPStatus(code).phrase}", headers, sys.exc_info())
            return [page]

        def save_after_body() -> None:
            if failed:
                return
            try:
                session.session_release()
            except SESSION_ERRORS as exc:  # the response is out: nothing else to do
                log.error("session changes made while the body streamed were lost: %s",
                          exc, exc_info=exc)

        return _Body(body, save_after_body)
