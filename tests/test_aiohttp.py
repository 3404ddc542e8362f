"""websession.aiohttp: aiohttp applications served through aiohttp's own TestServer and
TestClient, and through a real AppRunner/TCPSite on 127.0.0.1 with aiohttp's client, over
the memory, SQLite, Redis (redis.asyncio) and PostgreSQL (psycopg async) stores."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import redis
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp_security import (
    authorized_userid,
    check_permission,
    forget,
    remember,
)
from aiohttp_security import setup as security_setup
from aiohttp_security.abc import AbstractAuthorizationPolicy
from tests.servers import require_server

from websession import Manager, SessionModeError
from websession.aiohttp import (
    SESSION_KEY,
    Session,
    SessionIdentityPolicy,
    get_manager,
    get_session,
    new_session,
    setup,
)
from websession.providers.memory import MemoryProvider
from websession.providers.postgres import PostgresProvider
from websession.providers.redis import RedisProvider
from websession.providers.sqlite import SQLiteProvider

COOKIE = "AIOHTTP_SESSION"
CONFIG = {"cookieName": COOKIE, "gclifetime": 3600}
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
#: A handler's work between reading the session and setting its key, so requests overlap.
WORK_SECONDS = 0.02
CONCURRENT = 30

# -- stores -------------------------------------------------------------------------------


@dataclass
class Store:
    """A manager over one kind of store, and how to clean up after it."""

    kind: str
    manager: Manager
    cleanups: list[Callable[[], None]] = field(default_factory=list)


def _redis_provider(prefix: str) -> RedisProvider:
    require_server("Redis", "127.0.0.1", 6379)
    return RedisProvider(REDIS_URL, key_prefix=prefix)


def _drop_redis_keys(prefix: str) -> None:
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


def _drop_table(table: str) -> None:
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind: str = request.param
    tag = uuid.uuid4().hex[:12]
    cleanups: list[Callable[[], None]] = []
    provider: Any
    if kind == "memory":
        provider = MemoryProvider()
    elif kind == "sqlite":
        provider = SQLiteProvider(str(tmp_path / "sessions.db"))
    elif kind == "redis":
        prefix = f"test:aiohttp:{tag}:"
        provider = _redis_provider(prefix)
        cleanups.append(lambda: _drop_redis_keys(prefix))
    else:
        require_server("PostgreSQL", "127.0.0.1", 5432)
        table = f"ws_aiohttp_{tag}"
        provider = PostgresProvider(POSTGRES_DSN, table=table)
        cleanups.append(lambda: _drop_table(table))
    manager = Manager(provider, CONFIG, session_class=Session)
    try:
        yield Store(kind, manager, cleanups)
    finally:
        await manager.aclose()
        for cleanup in cleanups:
            cleanup()


async def stored(manager: Manager, sid: str) -> bool:
    """Whether the store still holds a live session under ``sid``."""
    session = manager.get_session_store(sid)
    await session.aload()
    return not session.is_new


# -- a browser, over either transport ----------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Any
    text: str
    set_cookies: list[str]

    def json(self) -> Any:
        import json

        return json.loads(self.text)

    def attributes(self) -> dict[str, str]:
        """The session cookie's attributes in this reply (lowercased names)."""
        for value in self.set_cookies:
            pair, *attrs = value.split(";")
            if pair.split("=", 1)[0].strip() == COOKIE:
                return {a.split("=", 1)[0].strip().lower(): a.partition("=")[2].strip()
                        for a in attrs}
        raise AssertionError(f"no {COOKIE} cookie in {self.set_cookies!r}")


Requester = Callable[..., Any]
_JAR: Any = object()


class Browser:
    """Keeps the session cookie as a browser does (the last response wins), so each
    test can also replay an old one."""

    def __init__(self, request: Requester) -> None:
        self._request = request
        self.sid: str | None = None

    async def call(self, method: str, path: str, *, data: Any = None,
                   cookie: Any = _JAR) -> Reply:
        sid = self.sid if cookie is _JAR else cookie
        headers = {"Cookie": f"{COOKIE}={sid}"} if sid else {}
        async with self._request(method, path, headers=headers, data=data,
                                 allow_redirects=False) as resp:
            reply = Reply(resp.status, resp.headers, await resp.text(),
                          resp.headers.getall("Set-Cookie", []))
        if cookie is _JAR:
            for value in reply.set_cookies:
                pair, *attrs = value.split(";")
                name, _, val = pair.partition("=")
                if name.strip() != COOKIE:
                    continue
                expired = any(a.strip().lower() == "max-age=0" for a in attrs)
                self.sid = None if expired or not val.strip() else val.strip()
        return reply

    def get(self, path: str, **kwargs: Any) -> Awaitable[Reply]:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Awaitable[Reply]:
        return self.call("POST", path, **kwargs)


Start = Callable[[web.Application], Awaitable[Requester]]


@pytest.fixture(params=["TestClient", "AppRunner"])
async def serve(request: pytest.FixtureRequest) -> AsyncIterator[Start]:
    """Start an application: through aiohttp's TestServer/TestClient, or on a real
    AppRunner + TCPSite on 127.0.0.1 with aiohttp's ClientSession."""
    stack = AsyncExitStack()

    async def start(app: web.Application) -> Requester:
        if request.param == "TestClient":
            client: TestClient[web.Request, web.Application] = TestClient(
                TestServer(app, host="127.0.0.1"), cookie_jar=DummyCookieJar())
            await client.start_server()
            stack.push_async_callback(client.close)
            return client.request
        runner = web.AppRunner(app)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        http = aiohttp.ClientSession(base_url=f"http://{host}:{port}",
                                     cookie_jar=DummyCookieJar())
        stack.push_async_callback(http.close)
        return http.request

    try:
        yield start
    finally:
        await stack.aclose()


async def open_client(app: web.Application) -> TestClient[web.Request, web.Application]:
    client: TestClient[web.Request, web.Application] = TestClient(
        TestServer(app, host="127.0.0.1"), cookie_jar=DummyCookieJar())
    await client.start_server()
    return client


# -- the application under test -----------------------------------------------------------


def make_app(manager: Manager) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/")
    async def index(request: web.Request) -> web.Response:
        session = await get_session(request)
        return web.json_response({"user": session.get("user"), "keys": sorted(session)})

    @routes.post("/visit")
    async def visit(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["visits"] = session.get("visits", 0) + 1
        return web.Response(text=str(session["visits"]))

    @routes.post("/login")
    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        session = await new_session(request)
        session["user"] = str(form["user"])
        if "max_age" in form:
            session.max_age = int(str(form["max_age"]))
        raise web.HTTPFound("/")

    @routes.post("/logout")
    async def logout(request: web.Request) -> web.Response:
        session = await get_session(request)
        session.invalidate()
        raise web.HTTPFound("/")

    @routes.post("/set/{i}")
    async def set_key(request: web.Request) -> web.Response:
        session = await get_session(request)
        session.get("user")  # read first, as a handler does
        await asyncio.sleep(WORK_SECONDS)
        session[f"k{request.match_info['i']}"] = int(request.match_info["i"])
        return web.Response(text="ok")

    @routes.get("/plain")
    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="no session here")

    @routes.get("/stream")
    async def stream(request: web.Request) -> web.StreamResponse:
        session = await get_session(request)
        session["streamed"] = "before prepare"
        response = web.StreamResponse()
        response.content_type = "text/plain"
        await response.prepare(request)
        for chunk in (b"one ", b"two"):
            await response.write(chunk)
        session["after"] = "while streaming"  # saved when the handler returns
        await response.write_eof()
        return response

    @routes.get("/ws")
    async def websocket(request: web.Request) -> web.WebSocketResponse:
        session = await get_session(request)
        session["ws"] = "opened"
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            key, _, value = message.data.partition("=")
            if key == "bye":
                break
            session[key] = value
            await ws.send_str(f"{sorted(session)}")
        await ws.close()
        return ws

    @routes.post("/blocking")
    async def blocking(request: web.Request) -> web.Response:
        session = await get_session(request)
        try:
            session.destroy()
        except SessionModeError as exc:
            return web.Response(text=f"SessionModeError: {exc}")
        return web.Response(text="destroyed")

    @routes.post("/fail")
    async def fail(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["half"] = "done"
        raise RuntimeError("the handler failed")

    app = web.Application()
    setup(app, manager)
    app.add_routes(routes)
    return app


# -- the flows, on every store and both transports ---------------------------------------


async def test_login_read_logout(store: Store, serve: Start) -> None:
    browser = Browser(await serve(make_app(store.manager)))

    reply = await browser.post("/login", data={"user": "ann"})
    assert reply.status == 302 and reply.headers["Location"] == "/"
    attrs = reply.attributes()  # the cookie rides on the raised redirect
    assert "httponly" in attrs and attrs["samesite"] == "Lax" and attrs["path"] == "/"
    assert "max-age" not in attrs  # a browser-session cookie unless asked otherwise
    assert reply.headers["Cache-Control"] == "no-store"
    assert "Cookie" in reply.headers["Vary"]
    sid = browser.sid
    assert sid is not None and await stored(store.manager, sid)

    for _ in range(2):
        reply = await browser.get("/")
        assert reply.json() == {"user": "ann", "keys": ["user"]}
        assert reply.set_cookies == []  # same ID: no new cookie
        assert reply.headers["Vary"] == "Cookie"

    reply = await browser.post("/logout")
    assert reply.status == 302
    assert reply.attributes()["max-age"] == "0"  # the cookie is dropped
    assert browser.sid is None
    assert not await stored(store.manager, sid)  # and the session deleted
    assert (await browser.get("/")).json() == {"user": None, "keys": []}
    replayed = await browser.get("/", cookie=sid)
    assert replayed.json() == {"user": None, "keys": []}


async def test_concurrent_requests_keep_every_key(store: Store, serve: Start) -> None:
    browser = Browser(await serve(make_app(store.manager)))
    await browser.post("/login", data={"user": "ann"})
    replies = await asyncio.gather(*(browser.post(f"/set/{i}") for i in range(CONCURRENT)))
    assert [r.status for r in replies] == [200] * CONCURRENT
    keys = (await browser.get("/")).json()["keys"]
    assert sorted(keys) == sorted(["user", *(f"k{i}" for i in range(CONCURRENT))])


async def test_the_pre_login_id_is_dead_after_login(store: Store, serve: Start) -> None:
    browser = Browser(await serve(make_app(store.manager)))
    assert (await browser.post("/visit")).text == "1"
    before = browser.sid
    assert before is not None and await stored(store.manager, before)

    await browser.post("/login", data={"user": "ann"})
    assert browser.sid is not None and browser.sid != before
    assert not await stored(store.manager, before)
    # Whoever planted or copied the old ID gets a fresh, empty session, and the response
    # drops the dead cookie.
    replayed = await browser.get("/", cookie=before)
    assert replayed.json() == {"user": None, "keys": []}
    assert replayed.attributes()["max-age"] == "0"
    assert (await browser.get("/")).json() == {"user": "ann", "keys": ["user"]}


async def test_per_session_max_age_is_enforced_on_replay(store: Store, serve: Start) -> None:
    requester = await serve(make_app(store.manager))
    short, default = Browser(requester), Browser(requester)
    reply = await short.post("/login", data={"user": "ann", "max_age": "2"})
    assert int(reply.attributes()["max-age"]) in (1, 2)  # a persistent cookie, that long
    await default.post("/login", data={"user": "bob"})
    sid = short.sid
    assert (await short.get("/")).json()["user"] == "ann"
    last_use = time.monotonic()  # (a slow machine may take a while between requests)

    await asyncio.sleep(last_use + 2.3 - time.monotonic())  # 2 s idle, and then some
    # The browser would have dropped the cookie; a copy replayed is refused by the server.
    replayed = await short.get("/", cookie=sid)
    assert replayed.json() == {"user": None, "keys": []}
    assert replayed.attributes()["max-age"] == "0"
    assert (await default.get("/")).json()["user"] == "bob"  # the manager's lifetime


# -- streaming responses and websockets ---------------------------------------------------


async def _eventually_keys(browser: Browser, wanted: set[str]) -> list[str]:
    """The session's keys once they include ``wanted`` (a websocket's last changes are
    saved after its handler returns, which the client cannot wait for)."""
    deadline = time.monotonic() + 5
    while True:
        keys: list[str] = (await browser.get("/")).json()["keys"]
        if wanted <= set(keys) or time.monotonic() > deadline:
            return keys
        await asyncio.sleep(0.02)


async def test_stream_response_carries_the_cookie_and_keeps_later_changes(
        store: Store) -> None:
    client = await open_client(make_app(store.manager))
    try:
        browser = Browser(client.request)
        reply = await browser.get("/stream")
        assert reply.text == "one two"
        assert browser.sid is not None  # saved and sent before the first bytes
        assert reply.headers["Cache-Control"] == "no-store"
        keys = (await browser.get("/")).json()["keys"]
        assert keys == ["after", "streamed"]
    finally:
        await client.close()


async def test_websocket_handshake_carries_the_cookie_and_changes_are_saved(
        store: Store) -> None:
    client = await open_client(make_app(store.manager))
    try:
        ws = await client.ws_connect("/ws")
        handshake = ws._response  # the 101 response, with its headers
        set_cookies = handshake.headers.getall("Set-Cookie", [])
        assert [c for c in set_cookies if c.startswith(f"{COOKIE}=")]
        await ws.send_str("color=blue")
        assert await ws.receive_str() == "['color', 'ws']"
        await ws.send_str("bye")
        await ws.close()

        browser = Browser(client.request)
        browser.sid = set_cookies[0].split(";")[0].partition("=")[2]
        assert await _eventually_keys(browser, {"color", "ws"}) == ["color", "ws"]
    finally:
        await client.close()


# -- aiohttp-session's API ----------------------------------------------------------------


async def test_aiohttp_session_names(store: Store) -> None:
    seen: dict[str, Any] = {}

    async def look(request: web.Request) -> web.Response:
        session = await get_session(request)
        assert session is await get_session(request)  # one object per request
        assert request[SESSION_KEY] is session
        assert get_manager(request) is store.manager
        seen.update(new=session.new, empty=session.empty, created=session.created,
                    max_age=session.max_age)
        if request.query.get("touch"):
            session.changed()  # saved although no value changed
        else:
            session["n"] = session.get("n", 0) + 1
        return web.Response(text="ok")

    app = make_app(store.manager)
    app.router.add_get("/look", look)
    client = await open_client(app)
    try:
        browser = Browser(client.request)
        await browser.get("/look")
        assert seen["new"] is True and seen["empty"] is True and seen["max_age"] is None
        assert abs(seen["created"] - time.time()) < 5
        sid = browser.sid
        assert sid is not None
        before = store.manager.get_session_store(sid)
        await before.aload()
        await browser.get("/look?touch=1")
        assert seen["new"] is False and seen["empty"] is False
        assert seen["created"] == int(before.created_at)
        after = store.manager.get_session_store(sid)
        await after.aload()
        assert after.version == before.version + 1  # changed() forced the save
    finally:
        await client.close()


async def test_invalidate_then_set_starts_a_new_session(store: Store) -> None:
    async def switch(request: web.Request) -> web.Response:
        session = await get_session(request)
        session.invalidate()
        assert session.empty and session.new
        session["fresh"] = True
        return web.Response(text="ok")

    app = make_app(store.manager)
    app.router.add_post("/switch", switch)
    client = await open_client(app)
    try:
        browser = Browser(client.request)
        await browser.post("/login", data={"user": "ann", "max_age": "60"})
        old = browser.sid
        assert old is not None
        reply = await browser.post("/switch")
        assert browser.sid not in (None, old)
        assert "max-age" not in reply.attributes()  # the manager's lifetime again
        assert not await stored(store.manager, old)
        assert (await browser.get("/")).json() == {"user": None, "keys": ["fresh"]}
    finally:
        await client.close()


async def test_requests_that_never_use_the_session_get_no_cookie(store: Store) -> None:
    client = await open_client(make_app(store.manager))
    try:
        browser = Browser(client.request)
        await browser.post("/login", data={"user": "ann"})
        reply = await browser.get("/plain")
        assert reply.set_cookies == [] and "Vary" not in reply.headers
        reply = await browser.get("/plain", cookie=None)
        assert reply.set_cookies == [] and "Vary" not in reply.headers
        # A session read but never written is not stored: no cookie for it either.
        reply = await browser.get("/", cookie=None)
        assert reply.set_cookies == [] and reply.headers["Vary"] == "Cookie"
    finally:
        await client.close()


async def test_a_failed_handler_saves_nothing(store: Store) -> None:
    client = await open_client(make_app(store.manager))
    try:
        browser = Browser(client.request)
        await browser.post("/login", data={"user": "ann"})
        reply = await browser.post("/fail")
        assert reply.status == 500 and reply.set_cookies == []
        assert (await browser.get("/")).json()["keys"] == ["user"]
    finally:
        await client.close()


async def test_blocking_calls_raise_session_mode_error(store: Store) -> None:
    client = await open_client(make_app(store.manager))
    try:
        browser = Browser(client.request)
        await browser.post("/login", data={"user": "ann"})
        reply = await browser.post("/blocking")
        if store.kind == "memory":  # no I/O: both styles work
            assert reply.text == "destroyed"
        else:
            assert reply.text.startswith("SessionModeError")
            assert "session.adestroy()" in reply.text
    finally:
        await client.close()


def test_setup_needs_the_adapters_session_class() -> None:
    with pytest.raises(TypeError, match="session_class=Session"):
        setup(web.Application(), Manager("memory"))


async def test_get_session_without_setup_is_a_clear_error() -> None:
    async def handler(request: web.Request) -> web.Response:
        try:
            await get_session(request)
        except RuntimeError as exc:
            return web.Response(text=str(exc))
        return web.Response(text="no error")

    app = web.Application()
    app.router.add_get("/", handler)
    client = await open_client(app)
    try:
        async with client.get("/") as resp:
            assert "setup(app, manager)" in await resp.text()
    finally:
        await client.close()


async def test_the_session_id_can_come_from_a_header() -> None:
    manager = Manager("memory", {**CONFIG, "EnableSidInHTTPHeader": True,
                                 "SessionNameInHTTPHeader": "X-Session-Id"},
                      session_class=Session)
    client = await open_client(make_app(manager))
    try:
        async with client.post("/login", data={"user": "ann"}, allow_redirects=False) as r:
            sid = r.headers["X-Session-Id"]
        async with client.get("/", headers={"X-Session-Id": sid}) as r:
            assert (await r.json())["user"] == "ann"
    finally:
        await client.close()


# -- outages ------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


async def test_an_unreachable_store_answers_503_with_retry_after() -> None:
    provider = RedisProvider({"save_path": f"127.0.0.1:{_closed_port()}", "max_retries": 0,
                              "connect_timeout": 1})
    manager = Manager(provider, CONFIG, session_class=Session)
    app = make_app(manager)
    client = await open_client(app)
    try:
        browser = Browser(client.request)
        reply = await browser.post("/visit")  # a new session: the save fails
        assert reply.status == 503 and reply.headers["Retry-After"] == "5"
        assert reply.set_cookies == []
        reply = await browser.get("/", cookie=uuid.uuid4().hex)  # the read fails
        assert reply.status == 503 and reply.headers["Retry-After"] == "5"
    finally:
        await client.close()
        await manager.aclose()


async def test_a_store_failing_as_a_stream_starts_answers_503(tmp_path: Path) -> None:
    path = str(tmp_path / "locked.db")
    manager = Manager(SQLiteProvider(path, busy_timeout=0.1), CONFIG, session_class=Session)
    client = await open_client(make_app(manager))
    try:
        browser = Browser(client.request)
        await browser.post("/login", data={"user": "ann"})
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # readers go on (WAL); writers fail
        try:
            reply = await browser.get("/stream")
            with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
                await client.ws_connect("/ws", headers={"Cookie": f"{COOKIE}={browser.sid}"})
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert reply.status == 503 and reply.headers["Retry-After"] == "5"
        assert reply.text.startswith("The session store is unavailable")
        assert handshake.value.status == 503
        # Nothing half-written, and the next response on the connection is whole.
        assert (await browser.get("/")).json()["keys"] == ["user"]
        assert (await browser.get("/stream")).text == "one two"
    finally:
        await client.close()
        await manager.aclose()


# -- aiohttp-security ---------------------------------------------------------------------


class _Users(AbstractAuthorizationPolicy):
    async def authorized_userid(self, identity: str) -> str | None:
        return identity if identity in ("ann", "bob") else None

    async def permits(self, identity: str | None, permission: Any,
                      context: Any = None) -> bool:
        return identity == "ann" and permission == "admin"


async def test_identity_policy_for_aiohttp_security(store: Store) -> None:
    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        response = web.HTTPFound("/me")
        max_age = {"max_age": int(str(form["max_age"]))} if "max_age" in form else {}
        await remember(request, response, str(form["user"]), **max_age)
        raise response

    async def logout(request: web.Request) -> web.Response:
        response = web.HTTPFound("/me")
        await forget(request, response)
        raise response

    async def me(request: web.Request) -> web.Response:
        session = await get_session(request)
        return web.json_response({"user": await authorized_userid(request),
                                  "cart": session.get("cart")})

    async def admin(request: web.Request) -> web.Response:
        await check_permission(request, "admin")
        return web.Response(text="welcome")

    app = make_app(store.manager)
    security_setup(app, SessionIdentityPolicy(), _Users())
    app.router.add_post("/sec/login", login)
    app.router.add_post("/sec/logout", logout)
    app.router.add_get("/me", me)
    app.router.add_get("/admin", admin)

    async def cart(request: web.Request) -> web.Response:
        (await get_session(request))["cart"] = ["tea"]
        return web.Response(text="ok")

    app.router.add_post("/cart", cart)
    client = await open_client(app)
    try:
        browser = Browser(client.request)
        await browser.post("/cart")
        anonymous = browser.sid
        assert (await browser.get("/admin")).status == 401

        reply = await browser.post("/sec/login", data={"user": "ann"})
        assert reply.status == 302
        logged_in = browser.sid
        assert logged_in not in (None, anonymous)
        assert anonymous is not None and not await stored(store.manager, anonymous)
        assert (await browser.get("/me")).json() == {"user": "ann", "cart": ["tea"]}
        assert (await browser.get("/admin")).text == "welcome"

        await browser.post("/sec/logout")
        assert browser.sid not in (None, logged_in)
        assert logged_in is not None and not await stored(store.manager, logged_in)
        assert (await browser.get("/me")).json() == {"user": None, "cart": ["tea"]}
        assert (await browser.get("/admin")).status == 401

        reply = await browser.post("/sec/login", data={"user": "bob", "max_age": "600"})
        assert 590 <= int(reply.attributes()["max-age"]) <= 600  # remember me
        assert (await browser.get("/me")).json()["user"] == "bob"
    finally:
        await client.close()


# -- the demo -----------------------------------------------------------------------------


async def test_demo_login_burst_regenerate_logout(store: Store) -> None:
    from demo.aiohttp_app import make_app as demo_app

    client = await open_client(demo_app(store.manager, "test"))
    try:
        browser = Browser(client.request)
        assert "Log in" in (await browser.get("/")).text
        reply = await browser.post("/login", data={"username": "ann"})
        assert reply.status == 303 and reply.headers["Location"] == "/"
        assert reply.headers["Cache-Control"] == "no-store"
        welcome = (await browser.get("/")).text
        assert "Logged in as ann" in welcome and "Active sessions:" in welcome

        assert (await browser.post("/session/burst/start", data={"requests": "20"})).status == 200
        replies = await asyncio.gather(*(browser.post("/session/burst", data={"key": str(i)})
                                         for i in range(20)))
        assert {r.status for r in replies} == {200}
        state = (await browser.get("/session/state")).json()
        burst_keys = [key for key, _ in state["data"] if key.startswith("burst-")]
        assert len(burst_keys) == 20

        before = browser.sid
        assert (await browser.post("/session/regenerate")).headers["Location"] == "/session"
        assert browser.sid not in (None, before)
        page = (await browser.get("/session")).text
        assert "Logged in as ann" in page and "test" in page

        await browser.post("/logout")
        assert browser.sid is None
        assert "Log in" in (await browser.get("/")).text
    finally:
        await client.close()


async def test_demo_refusals_are_pages() -> None:
    from demo.aiohttp_app import make_app as demo_app

    client = await open_client(demo_app(Manager("memory", session_class=Session)))
    try:
        async with client.post("/login", data={"username": "ann"},
                               headers={"Origin": "https://evil.example"}) as resp:
            assert resp.status == 403 and "Cross-site" in await resp.text()
        async with client.get("/nowhere") as resp:
            assert resp.status == 404 and "No such page" in await resp.text()
            assert resp.headers["Content-Type"].startswith("text/html")
        async with client.get("/login") as resp:
            assert resp.status == 405 and "POST" in resp.headers["Allow"]
        async with client.post("/login", json={"username": "ann"}) as resp:
            assert resp.status == 415
        async with client.post("/login", data={"username": "x" * 5000}) as resp:
            assert resp.status == 413
    finally:
        await client.close()


def test_demo_serve_runs_aiohttp_until_sigterm() -> None:
    import signal
    import subprocess
    import sys

    port = _closed_port()
    code = ("import websession; from demo.aiohttp_app import serve; "
            f"serve(websession.Manager('memory'), '127.0.0.1', {port})")
    root = Path(__file__).resolve().parent.parent
    with subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            deadline = time.monotonic() + 30
            while True:  # wait until it listens
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                    assert time.monotonic() < deadline, "the demo did not start listening"
                    time.sleep(0.1)

            async def visit() -> str:
                jar = aiohttp.CookieJar(unsafe=True)  # it keeps cookies from an IP address
                async with aiohttp.ClientSession(f"http://127.0.0.1:{port}",
                                                 cookie_jar=jar) as http, \
                        http.post("/login", data={"username": "ann"}) as resp:
                    return await resp.text()

            assert "Logged in as ann" in asyncio.run(visit())
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        assert proc.returncode == 0
