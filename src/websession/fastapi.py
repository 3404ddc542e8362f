"""FastAPI sessions: ``pip install 'websession[fastapi]'``.

::

    from fastapi import FastAPI
    from websession.fastapi import SessionDep, SessionMiddleware, session_lifespan

    manager = websession.Manager("redis", {"ProviderConfig": "127.0.0.1:6379"})
    app = FastAPI(lifespan=session_lifespan(manager))
    app.add_middleware(SessionMiddleware, manager=manager, autoload=False)

    @app.post("/login")
    async def login(session: SessionDep) -> dict[str, str]:
        await session.aregenerate_id()     # mypy knows it: SessionDep is a SessionStore
        session["user"] = "ann"
        return {"user": "ann"}

``SessionDep`` reads the session on first use in a request (one store read, or none
for a request without a session cookie) and hands it over loaded, to ``async def`` and
``def`` endpoints, to dependencies and to websocket routes alike. Requests whose
endpoints do not ask for it never touch the store (with ``autoload=False``).
Everything else comes from :mod:`websession.starlette`.
"""

from __future__ import annotations

from typing import Annotated

from ._session import SessionStore
from .exceptions import MissingDependencyError
from .starlette import SessionMiddleware, get_session, load_session, session_lifespan

try:
    from fastapi import Depends
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    _error = MissingDependencyError("fastapi", "fastapi", "fastapi")
    # The core's message speaks of providers; this is a framework adapter.
    _error.args = ("websession.fastapi needs 'fastapi': pip install 'websession[fastapi]'",)
    raise _error from exc

__all__ = [
    "SessionDep",
    "SessionMiddleware",
    "get_session",
    "load_session",
    "session_lifespan",
]

#: The request's (or websocket's) session, loaded: ``async def f(session: SessionDep)``.
SessionDep = Annotated[SessionStore, Depends(load_session)]
