"""The response both middlewares send when a session cannot be loaded or saved: one
place decides its status, headers, body and log line."""

from __future__ import annotations

import logging

from ..exceptions import (
    SerializationError,
    SessionConflictError,
    SessionTooLarge,
    StoreUnavailableError,
    WebSessionError,
)

__all__ = ["DEFAULT_RETRY_AFTER", "SESSION_ERRORS", "answer_for", "keeps_own_error"]

log = logging.getLogger("websession")

#: Seconds a client is asked to wait (``Retry-After``) when the store is unavailable.
DEFAULT_RETRY_AFTER = 5
#: What loading or saving a session raises when it cannot be done: answered, not crashed on.
SESSION_ERRORS = (StoreUnavailableError, SessionTooLarge, SerializationError, SessionConflictError)
_UNAVAILABLE = b"503 Service Unavailable: the session store is unavailable; try again shortly.\n"
_FAILED = b"500 Internal Server Error: the session could not be saved.\n"


def answer_for(
    exc: WebSessionError, retry_after: int
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Log ``exc`` and return the status, headers and body that answer it instead of the
    application's response: 503 with ``Retry-After`` for an unavailable store, 500 for a
    session that cannot be saved (too large for its cookie, unencodable values...)."""
    if isinstance(exc, StoreUnavailableError):
        log.warning("session store unavailable, answering 503: %s", exc)
        status, body = 503, _UNAVAILABLE
        extra = [("Retry-After", str(retry_after))]
    else:
        log.error("session could not be saved, answering 500: %s", exc, exc_info=exc)
        status, body, extra = 500, _FAILED, []
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *extra,
    ]
    return status, headers, body


def keeps_own_error(exc: WebSessionError, status: int) -> bool:
    """Whether a response of ``status`` goes out as the application made it although its
    session could not be saved: an error (5xx) of its own is kept — it may be how the
    application handled ``exc`` itself — without the session's headers, and logged."""
    if status < 500:
        return False
    log.warning("session could not be saved, sending the application's own %d: %s",
                status, exc)
    return True
