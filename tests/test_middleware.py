"""WSGI and ASGI middleware: sessions reach handlers, cookies reach clients, and changes
made while streaming or during a websocket are saved."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from websession import ASGISessionMiddleware, Manager, SessionStore, WSGISessionMiddleware
from websession.providers.memory import MemoryProvider

Scope = MutableMapping[str, Any]

# -- WSGI ------------------------------------------------------------------------------


def counter_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    session: SessionStore = environ["websession.session"]
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session["n"]).encode()]


def call_wsgi(app: Any, cookie: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/",
                               "wsgi.url_scheme": "http"}
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close:
            close()
    return captured["status"], captured["headers"], body


def cookie_of(headers: Iterable[tuple[str, str]]) -> str | None:
    for key, value in headers:
        if key.lower() == "set-cookie":
            return value.split(";", 1)[0]
    return None


def test_wsgi_session_survives_requests() -> None:
    app = WSGISessionMiddleware(counter_app, Manager("memory"))
    status, headers, body = call_wsgi(app)
    assert (status, body) == ("200 OK", b"1")
    cookie = cookie_of(headers)
    assert cookie is not None
    assert ("Vary", "Cookie") in headers and ("Cache-Control", "no-store") in headers
    for expected in (b"2", b"3"):
        _, headers, body = call_wsgi(app, cookie)
        assert body == expected
        assert cookie_of(headers) is None  # the ID did not change: no new cookie


def test_wsgi_changes_made_while_streaming_are_saved() -> None:
    manager = Manager("memory")

    def streaming(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        session: SessionStore = environ["websession.session"]
        session["started"] = True
        start_response("200 OK", [])
        yield b"part"
        session["finished"] = True

    _, headers, _ = call_wsgi(WSGISessionMiddleware(streaming, manager))
    cookie = cookie_of(headers)
    assert cookie is not None
    sid = cookie.split("=", 1)[1]
    assert dict(manager.get_session_store(sid)) == {"started": True, "finished": True}


def test_wsgi_untouched_requests_get_no_session_headers() -> None:
    def plain(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"hi"]

    _, headers, _ = call_wsgi(WSGISessionMiddleware(plain, Manager("memory")))
    assert headers == []


def test_wsgi_concurrent_requests_lose_nothing() -> None:
    from concurrent.futures import ThreadPoolExecutor

    manager = Manager("memory")

    def setter(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session: SessionStore = environ["websession.session"]
        session[environ["QUERY_STRING"]] = True
        start_response("200 OK", [])
        return [b""]

    app = WSGISessionMiddleware(setter, manager)
    _, headers, _ = call_wsgi(WSGISessionMiddleware(counter_app, manager))
    cookie = cookie_of(headers)

    def hit(i: int) -> None:
        environ = {"REQUEST_METHOD": "GET", "QUERY_STRING": f"k{i}", "HTTP_COOKIE": cookie}
        result = app(environ, lambda *a: lambda data: None)
        list(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(hit, range(50)))
    assert cookie is not None
    keys = set(manager.get_session_store(cookie.split("=", 1)[1]))
    assert keys == {"n"} | {f"k{i}" for i in range(50)}


# -- ASGI ------------------------------------------------------------------------------


async def counter(request: Request) -> PlainTextResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    return PlainTextResponse(str(request.session["n"]))


async def stream(request: Request) -> StreamingResponse:
    session = request.session

    async def body() -> Any:
        yield b"a"
        session["streamed"] = True

    return StreamingResponse(body())


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    session: SessionStore = websocket.scope["session"]
    await websocket.send_text(str(session.get("n")))
    session["ws"] = await websocket.receive_text()
    await websocket.close()


def starlette_app(manager: Manager, **options: Any) -> ASGISessionMiddleware:
    routes = [Route("/", counter), Route("/stream", stream), WebSocketRoute("/ws", ws_endpoint)]
    return ASGISessionMiddleware(Starlette(routes=routes), manager, **options)


class SlowMemory(MemoryProvider):
    """Claims to block, so the middleware must use the async twins."""

    blocking = True


@pytest.fixture(params=[MemoryProvider, SlowMemory])
def manager(request: pytest.FixtureRequest) -> Manager:
    return Manager(request.param())


async def test_asgi_starlette_request_session(manager: Manager) -> None:
    transport = httpx.ASGITransport(app=starlette_app(manager))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = await client.get("/")
        assert first.text == "1"
        assert "HttpOnly" in first.headers["set-cookie"]
        assert first.headers["cache-control"] == "no-store"
        assert first.headers["vary"] == "Cookie"
        second = await client.get("/")
        assert second.text == "2"
        assert "set-cookie" not in second.headers


async def test_asgi_changes_while_streaming_are_saved(manager: Manager) -> None:
    transport = httpx.ASGITransport(app=starlette_app(manager))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get("/")
        await client.get("/stream")
        sid = client.cookies["gosessionid"]
    session = manager.get_session_store(sid)
    session.load() if not manager.provider_blocks else await session.aload()
    assert dict(session) == {"n": 1, "streamed": True}


async def test_asgi_websocket_sees_and_saves_the_session(manager: Manager) -> None:
    app = starlette_app(manager)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get("/")
        cookie = f"gosessionid={client.cookies['gosessionid']}"
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[dict[str, Any]] = []
    for message in ({"type": "websocket.connect"},
                    {"type": "websocket.receive", "text": "hello"}):
        inbox.put_nowait(message)

    async def send(message: Scope) -> None:
        outbox.append(dict(message))

    scope = {"type": "websocket", "path": "/ws", "raw_path": b"/ws", "root_path": "",
             "scheme": "ws", "query_string": b"", "headers": [(b"cookie", cookie.encode())],
             "client": ("127.0.0.1", 1), "server": ("test", 80), "subprotocols": [],
             "asgi": {"version": "3.0"}}
    await app(scope, inbox.get, send)
    assert [m["type"] for m in outbox] == ["websocket.accept", "websocket.send",
                                           "websocket.close"]
    assert outbox[1]["text"] == "1"
    session = manager.get_session_store(cookie.split("=", 1)[1])
    await session.aload()
    assert dict(session) == {"n": 1, "ws": "hello"}


async def test_asgi_concurrent_requests_lose_nothing(manager: Manager) -> None:
    async def setter(scope: Scope, receive: Any, send: Any) -> None:
        session: SessionStore = scope["session"]
        await session.aload()
        await asyncio.sleep(0.01)
        session[scope["query_string"].decode()] = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = ASGISessionMiddleware(setter, manager)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get("/?base")
        await asyncio.gather(*(client.get(f"/?k{i}") for i in range(50)))
        sid = client.cookies["gosessionid"]
    session = manager.get_session_store(sid)
    await session.aload()
    assert set(session) == {"base"} | {f"k{i}" for i in range(50)}


async def test_asgi_autoload_false_leaves_loading_to_the_handler() -> None:
    provider = SlowMemory()
    manager = Manager(provider)
    seen: list[bool] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        seen.append(scope["session"].loaded)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sid = manager.engine.ids.new()
    transport = httpx.ASGITransport(app=ASGISessionMiddleware(app, manager, autoload=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/", headers={"cookie": f"gosessionid={sid}"})
    assert seen == [False]
    assert "set-cookie" not in response.headers


async def test_asgi_lifespan_passes_through() -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        calls.append(scope["type"])
        assert "session" not in scope

    await ASGISessionMiddleware(app, Manager("memory"))({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert calls == ["lifespan"]


class BrokenWrites(MemoryProvider):
    def create(self, sid: str, record: Any) -> bool:
        raise ConnectionResetError("store went away")


def test_wsgi_error_page_after_a_failed_save_is_not_saved_again() -> None:
    import sys

    from websession import StoreUnavailableError

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["websession.session"]["user"] = "ann"
        try:
            start_response("200 OK", [])
        except StoreUnavailableError:
            start_response("503 Service Unavailable", [("Retry-After", "5")], sys.exc_info())
            return [b"try again"]
        return [b"ok"]

    status, headers, body = call_wsgi(WSGISessionMiddleware(app, Manager(BrokenWrites())))
    assert (status, body) == ("503 Service Unavailable", b"try again")
    assert cookie_of(headers) is None


async def test_asgi_cookie_responses_drop_the_apps_cache_headers() -> None:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        scope["session"]["user"] = "ann"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"cache-control", b"public, max-age=600")]})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=ASGISessionMiddleware(app, Manager("memory")))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/")
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert "set-cookie" in response.headers
