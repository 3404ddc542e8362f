"""websession.starlette in a real Starlette application, through Starlette's TestClient and
through a real uvicorn server, on Redis (redis.asyncio), SQLite and PostgreSQL (psycopg's
async driver)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket
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
)

from websession import Manager, SessionModeError, SessionStore, StoreUnavailableError
from websession.starlette import (
    Autoload,
    SessionMiddleware,
    get_session,
    load_session,
    session_lifespan,
)

# -- the application ----------------------------------------------------------------------


async def visit(request: Request) -> Response:
    session = await load_session(request)
    session["visits"] = session.get("visits", 0) + 1
    return JSONResponse({"visits": session["visits"]})


async def login(request: Request) -> Response:
    session = await load_session(request)
    await session.aregenerate_id()  # a new ID at every privilege change
    session["user"] = request.query_params["user"]
    if "idle" in request.query_params:
        session.set_lifetime(idle=float(request.query_params["idle"]))
    return JSONResponse({"ok": True})


async def me(request: Request) -> Response:
    session = await load_session(request)
    return JSONResponse({"user": session.get("user")})


def sync_me(request: Request) -> Response:
    # A sync endpoint runs in a worker thread: the session loads on first use.
    return JSONResponse({"user": get_session(request).get("user")})


def sync_visit(request: Request) -> Response:
    session = get_session(request)
    session["visits"] = session.get("visits", 0) + 1
    return JSONResponse({"visits": session["visits"]})


async def auto_me(request: Request) -> Response:
    # No await: only correct where the middleware's autoload read the session already.
    return JSONResponse({"user": get_session(request).get("user")})


async def logout(request: Request) -> Response:
    session = await load_session(request)
    await session.ainvalidate()
    return JSONResponse({"ok": True})


async def set_key(request: Request) -> Response:
    session = await load_session(request)
    with IN_FLIGHT:
        session.get("user")
        await asyncio.sleep(WORK_SECONDS)
        session[f"k{request.path_params['i']}"] = 1
    return JSONResponse({"ok": True})


async def keys(request: Request) -> Response:
    session = await load_session(request)
    return JSONResponse(sorted(session))


async def plain(request: Request) -> Response:
    return PlainTextResponse("no session here")


async def ws(websocket: WebSocket) -> None:
    session = await load_session(websocket)
    await websocket.accept()
    await websocket.send_json({"user": session.get("user")})
    session["ws_seen"] = await websocket.receive_text()
    # Saved before the close: once the client has seen the close, the test client may
    # cancel the app (a real server lets it finish, and the middleware saves then).
    await session.asession_release()
    await websocket.close()


def make_app(manager: Manager, autoload: Autoload = False, **lifespan: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/visit", visit), Route("/login", login, methods=["POST"]), Route("/me", me),
            Route("/sync/me", sync_me), Route("/sync/visit", sync_visit),
            Route("/auto/me", auto_me), Route("/logout", logout, methods=["POST"]),
            Route("/set/{i:int}", set_key), Route("/keys", keys), Route("/plain", plain),
            WebSocketRoute("/ws", ws),
        ],
        middleware=[Middleware(SessionMiddleware, manager=manager, autoload=autoload)],
        lifespan=session_lifespan(manager, **lifespan),
    )


spied = asgi_flows.spied  # a manager over Redis whose every store call is counted


# -- the flows, on every store, through the TestClient and through uvicorn ----------------


class TestFlows(FlowSuite):
    """The shared flows of tests.asgi_flows against this module's Starlette app."""


# -- loading only where needed ------------------------------------------------------------


def test_lazy_loading_touches_the_store_only_where_used(spied: Manager) -> None:
    with TestClient(make_app(spied), cookies=no_cookie_jar()) as client:
        browser = Browser(client)
        browser.request("GET", "/plain")
        browser.request("GET", "/me")
        assert calls(spied) == {}  # no cookie: nothing to read, nothing to store
        browser.request("GET", "/visit")
        assert calls(spied) == {"create": 1}
        browser.request("GET", "/plain")
        assert calls(spied) == {}  # a cookie, but the endpoint never asked for the session
        assert browser.request("GET", "/visit").json() == {"visits": 2}
        assert calls(spied) == {"read": 1, "update": 1}
        browser.request("GET", "/me")
        assert calls(spied) == {"read": 1}  # read-only: one read, the refresh rides on it


def test_autoload_reads_before_every_request_with_a_cookie(spied: Manager) -> None:
    with TestClient(make_app(spied, autoload=True), cookies=no_cookie_jar()) as client:
        browser = Browser(client)
        browser.request("GET", "/plain")
        assert calls(spied) == {}
        browser.request("GET", "/visit")
        calls(spied)
        browser.request("GET", "/plain")
        assert calls(spied) == {"read": 1}
        assert browser.request("GET", "/auto/me").json() == {"user": None}


def test_autoload_paths_read_only_matching_requests(spied: Manager) -> None:
    app = make_app(spied, autoload=["/auto/", re.compile(r"/vis")])
    with TestClient(app, cookies=no_cookie_jar()) as client:
        browser = Browser(client)
        browser.request("POST", "/login", params={"user": "ann"})
        calls(spied)
        browser.request("GET", "/plain")
        assert calls(spied) == {}
        assert browser.request("GET", "/auto/me").json() == {"user": "ann"}
        assert calls(spied) == {"read": 1}
        assert browser.request("GET", "/visit").json() == {"visits": 1}
        assert calls(spied) == {"read": 1, "update": 1}


def test_a_lazy_session_used_without_await_on_the_loop_is_refused(spied: Manager) -> None:
    # What autoload paths are for: without them, the handler must await load_session.
    with TestClient(make_app(spied), cookies=no_cookie_jar()) as client:
        browser = Browser(client)
        browser.request("POST", "/login", params={"user": "ann"})
        with pytest.raises(SessionModeError, match="aload"):
            browser.request("GET", "/auto/me")


def test_sync_endpoints_load_lazily_in_their_worker_thread(spied: Manager) -> None:
    with TestClient(make_app(spied), cookies=no_cookie_jar()) as client:
        browser = Browser(client)
        assert browser.request("GET", "/sync/visit").json() == {"visits": 1}
        assert browser.request("GET", "/sync/visit").json() == {"visits": 2}
        calls(spied)
        browser.request("POST", "/login", params={"user": "ann"})
        assert browser.request("GET", "/sync/me").json() == {"user": "ann"}
        assert browser.request("GET", "/sync/visit").json() == {"visits": 3}


def test_get_session_without_the_middleware_says_what_is_missing() -> None:
    app = Starlette(routes=[Route("/me", me)])
    with TestClient(app) as client, pytest.raises(RuntimeError, match="SessionMiddleware"):
        client.get("/me")


# -- lifespan -----------------------------------------------------------------------------


def test_lifespan_runs_the_apps_own_inside_with_the_store_open(spied: Manager) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def own(app: Starlette) -> AsyncIterator[dict[str, str]]:
        events.append("start")
        yield {"greeting": "hello"}
        events.append(f"stop with {await spied.aget_active_session()} session(s)")

    async def greet(request: Request) -> Response:
        session = await load_session(request)
        session["greeted"] = True
        return PlainTextResponse(request.state.greeting)

    app = Starlette(routes=[Route("/", greet)], lifespan=session_lifespan(spied, lifespan=own),
                    middleware=[Middleware(SessionMiddleware, manager=spied)])
    with TestClient(app) as client:
        assert client.get("/").text == "hello"
    assert events == ["start", "stop with 1 session(s)"]


def test_lifespan_gc_can_stay_off(spied: Manager) -> None:
    with TestClient(make_app(spied, gc=False)):
        assert not spied.gc_running


# -- store outages ------------------------------------------------------------------------


@pytest.mark.parametrize("autoload", [True, False])
def test_store_outage_answers_503_with_retry_after(autoload: bool) -> None:
    manager = dead_store_manager()
    app = make_app(manager, autoload=autoload)
    dead_cookie = {"cookie": "gosessionid=" + "ab" * 16}
    with TestClient(app) as client:
        for method, path, headers in [
            ("GET", "/me", dead_cookie),   # the read fails (in the middleware or handler)
            ("GET", "/visit", {}),        # the save before the response starts fails
            ("GET", "/sync/me", dead_cookie),  # a sync endpoint's lazy read fails
        ]:
            response = client.request(method, path, headers=headers)
            assert response.status_code == 503, path
            assert response.headers["retry-after"] == "5"
            assert response.headers["cache-control"] == "no-store"
            assert "set-cookie" not in response.headers
        plain = client.get("/plain", headers=dead_cookie)
        assert plain.status_code == (503 if autoload else 200)
        check_websocket_refused(client, dead_cookie)


def test_an_exception_handler_of_the_app_wins_over_the_503() -> None:
    manager = dead_store_manager()

    async def unavailable(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("store down, sorry", status_code=503,
                                 headers={"Retry-After": "60"})

    app = make_app(manager)
    app.add_exception_handler(StoreUnavailableError, unavailable)
    with TestClient(app) as client:
        response = client.get("/me", headers={"cookie": "gosessionid=" + "ab" * 16})
    assert (response.status_code, response.text) == (503, "store down, sorry")
    assert response.headers["retry-after"] == "60"


def test_retry_after_is_configurable() -> None:
    app = Starlette(routes=[Route("/me", me)], middleware=[
        Middleware(SessionMiddleware, manager=dead_store_manager(), retry_after=30)])
    with TestClient(app) as client:
        response = client.get("/me", headers={"cookie": "gosessionid=" + "ab" * 16})
    assert (response.status_code, response.headers["retry-after"]) == (503, "30")


def test_memory_sessions_need_no_loading() -> None:
    # A store without I/O: get_session works from async code without any await.
    app = make_app(Manager("memory"))
    with TestClient(app, cookies=no_cookie_jar()) as client:
        browser = Browser(client)
        browser.request("POST", "/login", params={"user": "ann"})
        assert browser.request("GET", "/auto/me").json() == {"user": "ann"}


def test_the_session_is_websessions_type(spied: Manager) -> None:
    seen: list[object] = []

    async def endpoint(request: Request) -> Response:
        seen.append(await load_session(request))
        seen.append(request.session)
        return PlainTextResponse("")

    app = Starlette(routes=[Route("/", endpoint)],
                    middleware=[Middleware(SessionMiddleware, manager=spied)])
    with TestClient(app) as client:
        client.get("/")
    assert isinstance(seen[0], SessionStore) and seen[0] is seen[1]
