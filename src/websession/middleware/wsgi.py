"""WSGI middleware: the session is ``environ["websession.session"]``; it is saved when the
application starts its response, and again after the body if it changed while streaming."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .._manager import Manager

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
    ``manager.session_start(environ)``, which returns the same object.
    """

    def __init__(self, app: WSGIApplication, manager: Manager) -> None:
        self.app = app
        self.manager = manager

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
                except BaseException:
                    failed = True
                    raise
            return start_response(status, headers, exc_info)

        def save_late_changes() -> None:
            if not failed:
                session.session_release()

        body = self.app(environ, start)
        if type(body) is list:  # already complete: save any late change now, no wrapper
            save_late_changes()
            return body
        return _Body(body, save_late_changes)
