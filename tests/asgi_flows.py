"""What tests/test_starlette.py and tests/test_fastapi.py share: real stores, a real
uvicorn server, a browser that keeps the session cookie, and the flows a user relies on.

Each framework's test module builds an application with the same routes:

* ``GET /visit``: counts visits in the session (stores a session before any login);
* ``POST /login?user=U[&idle=S]``: a new ID, then ``user`` (and a lifetime of the
  session's own, ``set_lifetime(idle=S)``, when asked);
* ``GET /me``: ``{"user": ...}``, reading only; ``GET /sync/me``: the same from a sync
  endpoint (a worker thread) that loads the session lazily;
* ``POST /logout``: ``ainvalidate()``;
* ``GET /set/{i}``: reads the session, waits a moment (a database call), sets ``k<i>``;
* ``GET /keys``: the session's keys; ``GET /plain``: never touches the session;
* websocket ``/ws``: sends the user, then stores ``ws_seen``.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
import uvicorn
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from tests.servers import require_server

from websession import Manager
from websession.providers.base import BaseProvider
from websession.providers.postgres import PostgresProvider
from websession.providers.redis import RedisProvider
from websession.providers.sqlite import SQLiteProvider
from websession.testing import SpyProvider

__all__ = [
    "COOKIE",
    "IN_FLIGHT",
    "STORES",
    "WORK_SECONDS",
    "Browser",
    "ClosingSpy",
    "FlowSuite",
    "browse",
    "calls",
    "check_concurrent_keys",
    "check_login_read_logout",
    "check_own_idle_expiry",
    "check_pre_login_id_dead",
    "check_websocket_refused",
    "dead_store_manager",
    "no_cookie_jar",
    "serve",
    "spied",
    "store_manager",
]

HOST = "127.0.0.1"
POSTGRES_DSN = f"postgresql://postgres@{HOST}:5432/test"
STORES = ["redis", "sqlite", "postgres"]
COOKIE = "gosessionid"
#: The handler's work between reading the session and setting its key, so that
#: concurrent requests really overlap.
WORK_SECONDS = 0.05


class InFlight:
    """How many ``/set/{i}`` requests are between their read and their write, and the
    most there were at once: proof that a burst's requests really overlapped."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1

    def reset(self) -> None:
        with self._lock:
            self.now = self.peak = 0


IN_FLIGHT = InFlight()


class ClosingSpy(SpyProvider):
    """websession.testing.SpyProvider that also counts ``aclose`` and forwards it, so the
    provider's async pools are closed in their event loop (the spy forwards only the sync
    ``close``)."""

    async def aclose(self) -> None:
        self.calls.append(("aclose", None))
        await self.inner.aclose()


@contextmanager
def store_manager(kind: str, tmp_path: Path, *, spy: bool = False,
                  **config: Any) -> Iterator[Manager]:
    """A manager over a fresh, real store of ``kind`` (redis, sqlite, postgres), its data
    removed afterwards; ``spy`` wraps the provider in a :class:`ClosingSpy`."""
    cleanup: Callable[[], None] | None = None
    provider: BaseProvider
    if kind == "redis":
        require_server("Redis", HOST, 6379)
        prefix = f"test-asgi:{uuid.uuid4().hex}:"
        provider = RedisProvider(f"{HOST}:6379,100", key_prefix=prefix)

        def cleanup() -> None:
            with redis.Redis(HOST, 6379) as client:
                keys = list(client.scan_iter(match=prefix + "*"))
                if keys:
                    client.delete(*keys)
    elif kind == "sqlite":
        provider = SQLiteProvider(str(tmp_path / "sessions.db"))
    elif kind == "postgres":
        require_server("PostgreSQL", HOST, 5432)
        table = f"ws_asgi_{uuid.uuid4().hex[:12]}"
        provider = PostgresProvider(POSTGRES_DSN, table=table)

        def cleanup() -> None:
            import psycopg

            with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    else:  # pragma: no cover - a typo in a test
        raise ValueError(kind)
    manager = Manager(ClosingSpy(provider) if spy else provider,
                      {"cookieName": COOKIE, **config})
    try:
        yield manager
    finally:
        manager.close()
        if cleanup is not None:
            cleanup()


def dead_store_manager() -> Manager:
    """A manager whose PostgreSQL store refuses connections: a store outage."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    # Nothing listens on a port just released: connections are refused at once.
    return Manager("postgresql", {"cookieName": COOKIE,
                                  "providerConfig": f"postgresql://postgres@{HOST}:{port}/test"})


def no_cookie_jar() -> CookieJar:
    """A cookie jar that keeps nothing: :class:`Browser` sends its cookie itself."""
    return CookieJar(DefaultCookiePolicy(allowed_domains=[]))


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1 (lifespan included) and
    yield its base URL; stop the server, and wait for its shutdown, afterwards."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False,
                            http="h11", ws="none", loop="asyncio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def calls(manager: Manager) -> dict[str, int]:
    """The store calls a spied manager's provider saw since the last look (then forgotten)."""
    spy = manager.provider
    assert isinstance(spy, SpyProvider)
    counts = dict(spy.counts)
    spy.calls.clear()
    return counts


@contextmanager
def browse(app: Any, through: str) -> Iterator[Browser]:
    """A :class:`Browser` talking to ``app`` through the framework's ``TestClient`` or a
    real ``uvicorn`` server; the application's lifespan runs in both."""
    if through == "TestClient":
        from starlette.testclient import TestClient  # FastAPI's is this one

        with TestClient(app, cookies=no_cookie_jar()) as client:
            yield Browser(client)
    else:
        with serve(app) as url, httpx2.Client(base_url=url, cookies=no_cookie_jar(),
                                              timeout=30) as client:
            yield Browser(client)


class Browser:
    """One browser: sends the session cookie it was last given, as a browser does."""

    def __init__(self, client: httpx2.Client) -> None:
        self.client = client
        self.cookie: str | None = None

    def request(self, method: str, path: str, *, cookie: str | bool | None = True,
                **kwargs: Any) -> httpx2.Response:
        """Send a request with the browser's cookie (or ``cookie``, or none for
        ``None``), and keep the cookie the response sets when the browser's was sent."""
        sent = self.cookie if cookie is True else (cookie or None)
        headers = {"cookie": f"{COOKIE}={sent}"} if sent else {}
        response = self.client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text)
        if cookie is True:
            self.cookie = set_cookie(response, self.cookie)
        return response

    def user(self, cookie: str | bool | None = True) -> str | None:
        """Who ``GET /me`` says is logged in."""
        user: str | None = self.request("GET", "/me", cookie=cookie).json()["user"]
        return user


def set_cookie(response: httpx2.Response, current: str | None) -> str | None:
    """The session cookie after ``response``: the one it sets, none if it expires it."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name != COOKIE:
            continue
        value, _, attributes = rest.partition(";")
        expired = "max-age=0" in attributes.lower().replace(" ", "")
        return None if expired or not value else value
    return current


# -- the flows ----------------------------------------------------------------------------


def check_login_read_logout(browser: Browser) -> None:
    """Log in, read who is logged in, log out: the cookie carries the login between
    requests, and after logout neither the browser nor the old cookie is logged in."""
    assert browser.user() is None
    browser.request("POST", "/login", params={"user": "ann"})
    assert browser.cookie is not None
    logged_in = browser.cookie
    assert browser.user() == "ann"
    assert browser.request("GET", "/sync/me").json() == {"user": "ann"}
    browser.request("POST", "/logout")
    assert browser.cookie != logged_in
    assert browser.user() is None
    assert browser.user(cookie=logged_in) is None  # the server forgot it, too


def check_pre_login_id_dead(browser: Browser) -> None:
    """The ID a browser had before logging in is worthless after: replayed, it gets a
    fresh, empty session and a new cookie."""
    assert browser.request("GET", "/visit").json() == {"visits": 1}
    before = browser.cookie
    assert before is not None
    browser.request("POST", "/login", params={"user": "ann"})
    assert browser.cookie is not None and browser.cookie != before
    replay = browser.request("GET", "/keys", cookie=before)
    assert replay.json() == []
    fresh = set_cookie(replay, before)
    assert fresh != before  # the dead cookie is replaced or dropped
    assert browser.request("GET", "/keys").json() == ["user", "visits"]


def check_own_idle_expiry(browser: Browser) -> None:
    """A session given its own idle timeout (``set_lifetime(idle=1)``) is over once that
    second has passed, however long the manager's is; a replayed cookie gets nothing."""
    browser.request("POST", "/login", params={"user": "ann", "idle": "1"})
    cookie = browser.cookie
    assert browser.user() == "ann"
    time.sleep(1.3)
    assert browser.user(cookie=cookie) is None
    assert browser.request("GET", "/keys", cookie=cookie).json() == []


def check_concurrent_keys(browser: Browser, requests: int = 30) -> list[str]:
    """``requests`` concurrent requests on one session, each setting its own key: return
    the keys the session kept (all of them, or websession has lost an update)."""
    browser.request("POST", "/login", params={"user": "ann"})
    cookie = browser.cookie
    barrier = threading.Barrier(requests)
    IN_FLIGHT.reset()

    def one(i: int) -> None:
        barrier.wait(timeout=30)
        browser.request("GET", f"/set/{i}", cookie=cookie)

    with ThreadPoolExecutor(requests) as pool:
        list(pool.map(one, range(requests)))
    assert IN_FLIGHT.peak > 1, "the requests did not overlap: nothing was tested"
    keys: list[str] = browser.request("GET", "/keys", cookie=cookie).json()
    return sorted((k for k in keys if k.startswith("k")), key=lambda k: int(k[1:]))


def check_websocket_refused(client: TestClient, headers: dict[str, str]) -> None:
    """The store is down: a websocket handshake is refused with 1013, try again later."""
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(
            "/ws", headers=headers):
        pass
    assert closed.value.code == 1013


@pytest.fixture
def spied(tmp_path: Path) -> Iterator[Manager]:
    """A manager over Redis whose every store call is counted (a test module takes it in
    with ``spied = asgi_flows.spied``)."""
    with store_manager("redis", tmp_path, spy=True) as m:
        yield m


class FlowSuite:
    """The flows a user relies on, for each store and each way of serving: a framework's
    test module subclasses it as ``TestFlows``, and its ``make_app(manager)`` builds the
    application they run against."""

    @pytest.fixture(params=STORES)
    def manager(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Manager]:
        """A manager over each real store in turn."""
        with store_manager(request.param, tmp_path) as m:
            yield m

    @pytest.fixture(params=["TestClient", "uvicorn"])
    def browser(self, request: pytest.FixtureRequest, manager: Manager) -> Iterator[Browser]:
        """A browser on the application, through the framework's TestClient and through a
        real uvicorn server."""
        with browse(request.module.make_app(manager), request.param) as b:
            yield b

    def test_lifespan_starts_gc_and_closes_the_store(
            self, request: pytest.FixtureRequest, spied: Manager) -> None:
        spy = spied.provider
        assert isinstance(spy, SpyProvider)
        with TestClient(request.module.make_app(spied), cookies=no_cookie_jar()) as client:
            assert spied.gc_running
            Browser(client).request("GET", "/visit")
            assert spy.counts["aclose"] == 0
        assert not spied.gc_running
        assert spy.counts["aclose"] == 1

    def test_websocket_sees_and_saves_the_session(
            self, request: pytest.FixtureRequest, manager: Manager) -> None:
        with TestClient(request.module.make_app(manager), cookies=no_cookie_jar()) as client:
            browser = Browser(client)
            browser.request("POST", "/login", params={"user": "ann"})
            with client.websocket_connect(
                    "/ws", headers={"cookie": f"{COOKIE}={browser.cookie}"}) as socket:
                assert socket.receive_json() == {"user": "ann"}
                socket.send_text("yes")
                with pytest.raises(WebSocketDisconnect):
                    socket.receive_text()
            assert browser.request("GET", "/keys").json() == ["user", "ws_seen"]

    def test_login_read_logout(self, browser: Browser) -> None:
        check_login_read_logout(browser)

    def test_pre_login_id_is_dead_after_login(self, browser: Browser) -> None:
        check_pre_login_id_dead(browser)

    def test_own_idle_timeout_is_enforced_on_replay(self, browser: Browser) -> None:
        check_own_idle_expiry(browser)

    def test_30_concurrent_requests_keep_30_keys(self, browser: Browser) -> None:
        assert check_concurrent_keys(browser, 30) == [f"k{i}" for i in range(30)]
