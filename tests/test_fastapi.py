"""websession.fastapi in a real FastAPI application, through FastAPI's TestClient and through
a real uvicorn server, on Redis (redis.asyncio), SQLite and PostgreSQL (psycopg's async
driver). The endpoints below are type-checked by ``make typecheck``: ``SessionDep`` is
websession's session type, so ``await session.aregenerate_id()`` and the rest check."""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Annotated, Any, assert_type

import httpx2
import pytest
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.testclient import TestClient
from tests import asgi_flows
from tests.asgi_flows import (
    IN_FLIGHT,
    WORK_SECONDS,
    Browser,
    FlowSuite,
    calls,
    check_websocket_refused,
    dead_store_manager,
    no_cookie_jar,
    serve,
)

from websession import Manager, MissingDependencyError, SessionStore
from websession.fastapi import (
    SessionDep,
    SessionMiddleware,
    get_session,
    session_lifespan,
)
from websession.starlette import Autoload
from websession.testing import SpyProvider

# -- the application ----------------------------------------------------------------------


def current_user(session: SessionDep) -> str | None:
    """A dependency built on the session, as an application writes one."""
    user = session.get("user")
    return user if isinstance(user, str) else None


CurrentUser = Annotated[str | None, Depends(current_user)]


def make_app(manager: Manager, autoload: Autoload = False, **lifespan: Any) -> FastAPI:
    app = FastAPI(lifespan=session_lifespan(manager, **lifespan))
    app.add_middleware(SessionMiddleware, manager=manager, autoload=autoload)

    @app.get("/visit")
    async def visit(session: SessionDep) -> dict[str, int]:
        session["visits"] = session.get("visits", 0) + 1
        return {"visits": session["visits"]}

    @app.post("/login")
    async def login(session: SessionDep, user: str, idle: float | None = None) -> dict[str, str]:
        assert_type(session, SessionStore)  # checked by mypy: not a dict[str, Any]
        new_id: str = await session.aregenerate_id()  # a new ID at every privilege change
        session["user"] = user
        if idle is not None:
            session.set_lifetime(idle=idle)
        return {"ok": "yes" if new_id == session.session_id() else "no"}

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str | None]:
        return {"user": user}

    @app.get("/sync/me")
    def sync_me(request: Request) -> dict[str, str | None]:
        # A sync endpoint runs in a worker thread: the session loads on first use there.
        return {"user": get_session(request).get("user")}

    @app.get("/sync/visit")
    def sync_visit(session: SessionDep) -> dict[str, int]:
        session["visits"] = session.get("visits", 0) + 1
        return {"visits": session["visits"]}

    @app.get("/auto/me")
    async def auto_me(request: Request) -> dict[str, str | None]:
        # No await: only correct where the middleware's autoload read the session already.
        return {"user": get_session(request).get("user")}

    @app.post("/logout")
    async def logout(session: SessionDep) -> dict[str, bool]:
        await session.ainvalidate()
        return {"ok": True}

    @app.get("/set/{i}")
    async def set_key(i: int, session: SessionDep) -> dict[str, bool]:
        with IN_FLIGHT:
            session.get("user")
            await asyncio.sleep(WORK_SECONDS)
            session[f"k{i}"] = 1
        return {"ok": True}

    @app.get("/keys")
    async def keys(session: SessionDep) -> list[str]:
        return sorted(session)

    @app.get("/plain")
    async def plain() -> dict[str, str]:
        return {"session": "not used"}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, session: SessionDep) -> None:
        await websocket.accept()
        await websocket.send_json({"user": session.get("user")})
        session["ws_seen"] = await websocket.receive_text()
        # Saved before the close: once the client has seen the close, the test client
        # may cancel the app (a real server lets it finish, and the middleware saves).
        await session.asession_release()
        await websocket.close()

    return app


spied = asgi_flows.spied  # a manager over Redis whose every store call is counted


# -- the flows, on every store, through the TestClient and through uvicorn ----------------


class TestFlows(FlowSuite):
    """The shared flows of tests.asgi_flows against this module's FastAPI app (SessionDep)."""


# -- loading only where needed ------------------------------------------------------------


def test_session_dep_touches_the_store_only_where_used(spied: Manager) -> None:
    with TestClient(make_app(spied), cookies=no_cookie_jar()) as client:
        browser = Browser(client)
        browser.request("GET", "/me")
        assert calls(spied) == {}  # no cookie: nothing to read, nothing to store
        browser.request("POST", "/login", params={"user": "ann"})
        assert calls(spied) == {"create": 1}
        browser.request("GET", "/plain")
        assert calls(spied) == {}  # a cookie, but no endpoint asked for the session
        browser.request("GET", "/me")
        assert calls(spied) == {"read": 1}  # one read, however many dependencies use it
        assert browser.request("GET", "/visit").json() == {"visits": 1}
        assert calls(spied) == {"read": 1, "update": 1}


def test_autoload_paths_read_only_matching_requests(spied: Manager) -> None:
    with TestClient(make_app(spied, autoload="/auto/"), cookies=no_cookie_jar()) as client:
        browser = Browser(client)
        browser.request("POST", "/login", params={"user": "ann"})
        calls(spied)
        browser.request("GET", "/plain")
        assert calls(spied) == {}
        assert browser.request("GET", "/auto/me").json() == {"user": "ann"}
        assert calls(spied) == {"read": 1}


def test_autoload_everywhere(spied: Manager) -> None:
    with TestClient(make_app(spied, autoload=True), cookies=no_cookie_jar()) as client:
        browser = Browser(client)
        browser.request("POST", "/login", params={"user": "ann"})
        calls(spied)
        browser.request("GET", "/plain")
        assert calls(spied) == {"read": 1}
        assert browser.request("GET", "/auto/me").json() == {"user": "ann"}


def test_sync_endpoints_use_the_session_with_lazy_loading(spied: Manager) -> None:
    with TestClient(make_app(spied), cookies=no_cookie_jar()) as client:
        browser = Browser(client)
        assert browser.request("GET", "/sync/visit").json() == {"visits": 1}
        assert browser.request("GET", "/sync/visit").json() == {"visits": 2}
        browser.request("POST", "/login", params={"user": "ann"})
        calls(spied)
        assert browser.request("GET", "/sync/me").json() == {"user": "ann"}
        assert calls(spied) == {"read": 1}  # read in the worker thread, by the sync client


# -- lifespan, websockets, outages --------------------------------------------------------


def test_lifespan_with_a_real_server_closes_the_store(spied: Manager) -> None:
    spy = spied.provider
    assert isinstance(spy, SpyProvider)
    with serve(make_app(spied)) as url, httpx2.Client(base_url=url,
                                                       cookies=no_cookie_jar()) as client:
        Browser(client).request("GET", "/visit")
        assert spied.gc_running
    assert not spied.gc_running
    assert spy.counts["aclose"] == 1


@pytest.mark.parametrize("autoload", [True, False])
def test_store_outage_answers_503_with_retry_after(autoload: bool) -> None:
    dead_cookie = {"cookie": "gosessionid=" + "ab" * 16}
    with TestClient(make_app(dead_store_manager(), autoload=autoload)) as client:
        for path, headers in [("/me", dead_cookie), ("/visit", {}),
                              ("/sync/me", dead_cookie), ("/sync/visit", dead_cookie)]:
            response = client.get(path, headers=headers)
            assert response.status_code == 503, path
            assert response.headers["retry-after"] == "5"
        assert client.get("/plain", headers=dead_cookie).status_code == (
            503 if autoload else 200)
        check_websocket_refused(client, dead_cookie)


@pytest.mark.parametrize(("hidden", "module", "extra"), [
    ("starlette.requests", "websession.starlette", "starlette"),
    ("fastapi", "websession.fastapi", "fastapi"),
])
def test_without_the_framework_the_error_names_the_extra(
        monkeypatch: pytest.MonkeyPatch, hidden: str, module: str, extra: str) -> None:
    monkeypatch.setitem(sys.modules, hidden, None)  # what an absent package looks like
    monkeypatch.delitem(sys.modules, module)
    with pytest.raises(MissingDependencyError, match=rf"websession\[{extra}\]") as error:
        importlib.import_module(module)
    assert error.value.extra == extra
