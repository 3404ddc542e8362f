"""The seed's login example as a real web app: ``make demo`` or ``python -m demo``.

Serves on http://127.0.0.1:8000/ with the standard library's threaded WSGI server and the
memory provider. ``WEBSESSION_PROVIDER`` and ``WEBSESSION_CONFIG`` choose another provider
and config; ``--host`` and ``--port`` choose the address.
"""

from .app import build_manager, main, make_app, make_server

__all__ = ["build_manager", "main", "make_app", "make_server"]
