"""Side-by-side throughput of websession against its peers, in one process.

``python -m bench`` (or ``make bench``) runs a read-modify-write request loop — read a
counter from the session, increment it, store it, send the cookie back — through:

* WSGI: websession's :class:`~websession.WSGISessionMiddleware` and Beaker's
  ``SessionMiddleware``, both with their memory backends;
* ASGI: websession's :class:`~websession.ASGISessionMiddleware` and starsessions'
  ``SessionMiddleware`` with ``InMemoryStore``.

The applications are called in-process (no sockets, no HTTP client library), so the
time measured is the session layers' own. Every round checks that the counter reached
the number of requests, so a broken cookie round trip cannot pass for a fast one.
"""

from .runner import main

__all__ = ["main"]
