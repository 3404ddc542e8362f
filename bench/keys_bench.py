"""Concurrent keys kept: N concurrent requests on one session, each setting its own key.

``python -m bench.keys_bench`` opens one session (``/start``), then fires N requests at
once that all carry its cookie; each reads the session, works for a moment (a short
sleep, standing in for a database call), and sets its own key ``k<i>``. The client keeps
cookies as a browser does: the last response to arrive wins. A final ``/keys`` request
counts how many of the N keys the session kept.

Every peer runs in this process as a real application of its framework, over an
in-memory or local store:

* WSGI (threads, one per request): websession's middleware (memory, file, SQLite, Redis,
  cookie, and MariaDB/PostgreSQL when they listen), Beaker (memory, file), Flask with
  Flask-Session (cachelib SimpleCache, cachelib FileSystemCache, Redis), Django's session
  backends (db on SQLite, cache on locmem, cached_db, file, signed_cookies);
* ASGI (tasks on one event loop): websession's middleware in a Starlette app (memory,
  Redis), starsessions (InMemoryStore, RedisStore), Starlette's signed cookie session;
* aiohttp (tasks, over a loopback socket through aiohttp's TestClient): aiohttp-session
  (EncryptedCookieStorage, RedisStorage).

A session held in a cookie cannot merge concurrent changes, whichever library seals it
(websession's cookie provider included): the browser keeps one cookie.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import websession

from . import asgi
from .client import CookieJar, RoundTripError
from .results import Collector, add_argument
from .runner import package_version, print_kept
from .wsgi import _BASE_ENVIRON

__all__ = ["Peer", "main"]

#: The handler's work between reading the session and setting its key.
WORK_SECONDS = 0.02
REQUESTS = 20
RUNS = 5
QUICK_RUNS = 2
REDIS_URL = "redis://127.0.0.1:6379/0"
MYSQL_DSN = "root:@tcp(127.0.0.1:3306)/test?charset=utf8mb4"
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
SECRET = "keys-bench-secret-key-0123456789abcdef"
_KEY = re.compile(r"k[0-9]+")


@dataclass
class Peer:
    """One library over one store: how to fire a burst, and how to tear it down."""

    library: str
    framework: str
    store: str
    burst: Callable[[int], list[str]]  # N concurrent requests -> the session's keys after
    close: Callable[[], None] = field(default=lambda: None)

    @property
    def name(self) -> str:
        return f"{self.library} ({self.framework}, {self.store})"

    @property
    def ours(self) -> bool:
        return self.library == "websession"


class _SharedJar:
    """A browser's cookie jar shared by concurrent requests: the last response wins."""

    def __init__(self) -> None:
        self._jar = CookieJar()
        self._lock = threading.Lock()

    @property
    def header(self) -> str:
        with self._lock:
            return self._jar.header

    def update(self, set_cookies: Iterable[str]) -> None:
        with self._lock:
            self._jar.update(set_cookies)


def _kept(peer: str, keys: Sequence[str], requests: int) -> list[str]:
    """The burst's keys among ``keys``; the ``start`` key proves the session survived."""
    if "start" not in keys:
        raise RoundTripError(f"{peer}: the session itself was lost ({list(keys)!r})")
    kept = [k for k in keys if _KEY.fullmatch(k) and int(k[1:]) < requests]
    return sorted(kept, key=lambda k: int(k[1:]))


# -- WSGI: a thread per request ---------------------------------------------------------------


WSGIApp = Callable[..., Iterable[bytes]]


def _wsgi_call(app: WSGIApp, path: str, jar: _SharedJar) -> bytes:
    environ = _BASE_ENVIRON.copy()
    environ["PATH_INFO"] = path
    environ["wsgi.input"] = io.BytesIO(b"")
    environ["wsgi.multithread"] = True
    cookie = jar.header
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    headers: list[tuple[str, str]] = []
    status: list[str] = []

    def start_response(s: str, h: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status[:] = [s]
        headers[:] = h
        return None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not status or not status[0].startswith("200"):
        raise RoundTripError(f"GET {path} answered {status!r}: {body[:200]!r}")
    jar.update(v for k, v in headers if k.lower() == "set-cookie")
    return body


def wsgi_burst(app: WSGIApp, requests: int) -> list[str]:
    """``/start``, then ``requests`` concurrent ``/set/<i>`` in threads, then ``/keys``."""
    jar = _SharedJar()
    _wsgi_call(app, "/start", jar)
    barrier = threading.Barrier(requests)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            _wsgi_call(app, f"/set/{i}", jar)
        except BaseException as exc:  # reported below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    keys: list[str] = json.loads(_wsgi_call(app, "/keys", jar))
    return keys


def _plain_wsgi_app(environ_key: str, *, save: bool) -> WSGIApp:
    """The three routes as a bare WSGI app using the session a middleware put in environ."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        session = environ[environ_key]
        path = environ["PATH_INFO"]
        body = b"ok"
        if path == "/start":
            session["start"] = True
        elif path.startswith("/set/"):
            session.get("start")  # read first, as a handler does
            time.sleep(WORK_SECONDS)
            session[f"k{int(path[5:])}"] = 1
        else:
            body = json.dumps(sorted(session.keys())).encode()
        if save and path != "/keys":
            session.save()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    return app


def websession_wsgi(store: str, provider: str, config: dict[str, Any]) -> Peer:
    manager = websession.Manager(provider, {"cookieName": "gosessionid", **config})
    app = websession.WSGISessionMiddleware(_plain_wsgi_app("websession.session", save=False),
                                           manager)
    return Peer("websession", "WSGI", store, lambda n: wsgi_burst(app, n), manager.close)


def beaker_wsgi(store: str, options: dict[str, str]) -> Peer:
    from beaker.middleware import SessionMiddleware  # type: ignore[import-untyped]

    app = SessionMiddleware(_plain_wsgi_app("beaker.session", save=True), options)
    return Peer("Beaker", "WSGI", store, lambda n: wsgi_burst(app, n))


def flask_session(store: str, config: dict[str, Any]) -> Peer:
    from flask import Flask, jsonify, session
    from flask.typing import ResponseReturnValue
    from flask_session import Session  # type: ignore[import-untyped, unused-ignore]

    app = Flask(f"keys-bench-{store}")
    app.config.update(SECRET_KEY=SECRET, **config)
    Session(app)

    @app.get("/start")
    def start() -> ResponseReturnValue:
        session["start"] = True
        return "ok"

    @app.get("/set/<int:i>")
    def set_key(i: int) -> ResponseReturnValue:
        session.get("start")
        time.sleep(WORK_SECONDS)
        session[f"k{i}"] = 1
        return "ok"

    @app.get("/keys")
    def keys() -> ResponseReturnValue:
        return jsonify(sorted(session.keys()))

    return Peer("Flask-Session", "Flask", store, lambda n: wsgi_burst(app.wsgi_app, n))


class _DjangoURLs:
    """Django's ROOT_URLCONF: any object with ``urlpatterns`` will do."""

    urlpatterns: ClassVar[list[Any]] = []


def _django_setup(scratch: Path) -> None:
    import django  # type: ignore[import-untyped, unused-ignore]
    from django.conf import settings  # type: ignore[import-untyped, unused-ignore]
    from django.core.management import (  # type: ignore[import-untyped, unused-ignore]
        call_command,
    )

    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS=["bench.local"],
        INSTALLED_APPS=["django.contrib.sessions"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        ROOT_URLCONF=_DjangoURLs,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                               "NAME": str(scratch / "django.sqlite3"),
                               "OPTIONS": {"timeout": 30}}},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        SESSION_FILE_PATH=str(scratch),
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    from django.http import (  # type: ignore[import-untyped, unused-ignore]
        HttpRequest,
        HttpResponse,
        JsonResponse,
    )
    from django.urls import path  # type: ignore[import-untyped, unused-ignore]

    def start(request: HttpRequest) -> HttpResponse:
        request.session["start"] = True
        return HttpResponse("ok")

    def set_key(request: HttpRequest, i: int) -> HttpResponse:
        request.session.get("start")
        time.sleep(WORK_SECONDS)
        request.session[f"k{i}"] = 1
        return HttpResponse("ok")

    def keys(request: HttpRequest) -> HttpResponse:
        return JsonResponse(sorted(request.session.keys()), safe=False)

    _DjangoURLs.urlpatterns = [path("start", start), path("set/<int:i>", set_key),
                               path("keys", keys)]
    call_command("migrate", verbosity=0, skip_checks=True, interactive=False)


def django_session(store: str, engine: str, scratch: Path) -> Peer:
    _django_setup(scratch)
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler  # type: ignore[import-untyped, unused-ignore]

    # SessionMiddleware picks its engine when the handler loads its middleware.
    settings.SESSION_ENGINE = engine
    app = WSGIHandler()
    return Peer("Django", "Django", store, lambda n: wsgi_burst(app, n))


# -- ASGI: a task per request -----------------------------------------------------------------


async def _asgi_call(app: asgi.ASGIApp, path: str, jar: _SharedJar) -> bytes:
    scope = asgi._BASE_SCOPE.copy()
    scope["path"] = path
    scope["raw_path"] = path.encode()
    cookie = jar.header
    scope["headers"] = [*asgi._BASE_HEADERS, *([(b"cookie", cookie.encode())] if cookie else [])]
    status: list[int] = []
    chunks: list[bytes] = []
    set_cookies: list[str] = []

    async def receive() -> asgi.Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: asgi.Message) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
            set_cookies.extend(v.decode("latin-1") for k, v in message.get("headers", [])
                               if k.lower() == b"set-cookie")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    body = b"".join(chunks)
    if status != [200]:
        raise RoundTripError(f"GET {path} answered {status!r}: {body[:200]!r}")
    jar.update(set_cookies)
    return body


async def asgi_burst(app: asgi.ASGIApp, requests: int) -> list[str]:
    """``/start``, then ``requests`` concurrent ``/set/<i>`` as tasks, then ``/keys``."""
    jar = _SharedJar()
    await _asgi_call(app, "/start", jar)
    await asyncio.gather(*(_asgi_call(app, f"/set/{i}", jar) for i in range(requests)))
    keys: list[str] = json.loads(await _asgi_call(app, "/keys", jar))
    return keys


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    async def start(request: Request) -> Response:
        request.session["start"] = True
        return PlainTextResponse("ok")

    async def set_key(request: Request) -> Response:
        request.session.get("start")
        await asyncio.sleep(WORK_SECONDS)
        request.session[f"k{request.path_params['i']}"] = 1
        return PlainTextResponse("ok")

    async def keys(request: Request) -> Response:
        return JSONResponse(sorted(request.session.keys()))

    return Starlette(routes=[Route("/start", start), Route("/set/{i:int}", set_key),
                             Route("/keys", keys)])


def _on_loop(runner: asyncio.Runner, app: asgi.ASGIApp) -> Callable[[int], list[str]]:
    return lambda n: runner.run(asgi_burst(app, n))


def websession_asgi(runner: asyncio.Runner, store: str, provider: str,
                    config: dict[str, Any]) -> Peer:
    manager = websession.Manager(provider, {"cookieName": "gosessionid", **config})
    app = websession.ASGISessionMiddleware(_starlette_app(), manager)
    return Peer("websession", "Starlette", store, _on_loop(runner, app),
                lambda: runner.run(manager.aclose()))


def starsessions_asgi(runner: asyncio.Runner, store: str, make_store: Callable[[], Any]) -> Peer:
    from starsessions import SessionAutoloadMiddleware, SessionMiddleware

    app = SessionMiddleware(SessionAutoloadMiddleware(_starlette_app()), store=make_store(),
                            cookie_name="session", cookie_https_only=False, lifetime=3600)
    return Peer("starsessions", "Starlette", store, _on_loop(runner, app))


def starlette_cookie(runner: asyncio.Runner) -> Peer:
    from starlette.middleware.sessions import SessionMiddleware

    app = SessionMiddleware(_starlette_app(), secret_key=SECRET)
    return Peer("Starlette", "Starlette", "signed cookie", _on_loop(runner, app))


# -- aiohttp: tasks over a loopback socket ----------------------------------------------------


def aiohttp_session(runner: asyncio.Runner, store: str,
                    make_storage: Callable[[], Any]) -> Peer:
    from aiohttp import DummyCookieJar, web
    from aiohttp.test_utils import TestClient, TestServer
    from aiohttp_session import get_session, setup

    async def start(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["start"] = True
        return web.Response(text="ok")

    async def set_key(request: web.Request) -> web.Response:
        session = await get_session(request)
        session.get("start")
        await asyncio.sleep(WORK_SECONDS)
        session[f"k{int(request.match_info['i'])}"] = 1
        return web.Response(text="ok")

    async def keys(request: web.Request) -> web.Response:
        session = await get_session(request)
        return web.json_response(sorted(session.keys()))

    async def open_client() -> TestClient[web.Request, web.Application]:
        app = web.Application()
        setup(app, make_storage())
        app.router.add_get("/start", start)
        app.router.add_get("/set/{i}", set_key)
        app.router.add_get("/keys", keys)
        # The jar is ours (a browser's: last response wins); aiohttp's would refuse
        # cookies from an IP address anyway.
        client = TestClient(TestServer(app, host="127.0.0.1"), cookie_jar=DummyCookieJar())
        await client.start_server()
        return client

    client = runner.run(open_client())

    async def call(path: str, jar: _SharedJar) -> bytes:
        cookie = jar.header
        async with client.get(path, headers={"Cookie": cookie} if cookie else {}) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RoundTripError(f"GET {path} answered {resp.status}: {body[:200]!r}")
            jar.update(resp.headers.getall("Set-Cookie", []))
            return body

    async def burst(requests: int) -> list[str]:
        jar = _SharedJar()
        await call("/start", jar)
        await asyncio.gather(*(call(f"/set/{i}", jar) for i in range(requests)))
        keys: list[str] = json.loads(await call("/keys", jar))
        return keys

    return Peer("aiohttp-session", "aiohttp", store, lambda n: runner.run(burst(n)),
                lambda: runner.run(client.close()))


# -- the peers --------------------------------------------------------------------------------


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@contextmanager
def peers(scratch: Path, runner: asyncio.Runner, tag: str,
          skipped: list[str]) -> Iterator[list[Callable[[], Peer]]]:
    """Factories for every peer whose store is here; the unreachable ones go to ``skipped``."""
    redis_up = _listening("127.0.0.1", 6379)
    if not redis_up:
        skipped.append("the Redis peers: nothing listens on 127.0.0.1:6379")
    prefix = f"bench:keys:{tag}:"
    made: list[Callable[[], Peer]] = [
        lambda: websession_wsgi("memory", "memory", {}),
        lambda: websession_wsgi("file", "file", {
            "ProviderConfig": {"path": str(scratch / "ws-file"), "fsync": False}}),
        lambda: websession_wsgi("SQLite", "sqlite", {
            "ProviderConfig": str(scratch / "ws.sqlite3")}),
        lambda: websession_asgi(runner, "memory", "memory", {}),
    ]
    if redis_up:
        redis_config = {"ProviderConfig": {"save_path": REDIS_URL, "key_prefix": prefix}}
        made += [lambda: websession_wsgi("Redis", "redis", redis_config),
                 lambda: websession_asgi(runner, "Redis", "redis", redis_config)]
    if _listening("127.0.0.1", 3306):
        made.append(lambda: websession_wsgi("MariaDB", "mysql", {"ProviderConfig": {
            "dsn": MYSQL_DSN, "table": f"websession_keys_{tag}"}}))
    else:
        skipped.append("websession on MariaDB: nothing listens on 127.0.0.1:3306")
    if _listening("127.0.0.1", 5432):
        made.append(lambda: websession_wsgi("PostgreSQL", "postgresql", {"ProviderConfig": {
            "dsn": POSTGRES_DSN, "table": f"websession_keys_{tag}"}}))
    else:
        skipped.append("websession on PostgreSQL: nothing listens on 127.0.0.1:5432")
    made.append(lambda: websession_wsgi("cookie", "cookie", {
        "ProviderConfig": {"securityKey": SECRET}}))

    made += [
        lambda: beaker_wsgi("memory", {"session.type": "memory"}),
        lambda: beaker_wsgi("file", {"session.type": "file",
                                     "session.data_dir": str(scratch / "beaker" / "data"),
                                     "session.lock_dir": str(scratch / "beaker" / "lock")}),
    ]

    def simple_cache() -> Any:
        from cachelib import SimpleCache

        return SimpleCache()

    def file_cache() -> Any:
        from cachelib import FileSystemCache

        return FileSystemCache(str(scratch / "flask"))

    made += [
        lambda: flask_session("cachelib SimpleCache", {
            "SESSION_TYPE": "cachelib", "SESSION_CACHELIB": simple_cache()}),
        lambda: flask_session("cachelib FileSystemCache", {
            "SESSION_TYPE": "cachelib", "SESSION_CACHELIB": file_cache()}),
    ]
    if redis_up:
        def flask_redis() -> Peer:
            import redis

            return flask_session("Redis", {"SESSION_TYPE": "redis",
                                           "SESSION_REDIS": redis.Redis.from_url(REDIS_URL),
                                           "SESSION_KEY_PREFIX": f"{prefix}flask:"})

        made.append(flask_redis)

    django_dir = scratch / "django"
    django_dir.mkdir()
    made += [
        lambda: django_session("db on SQLite", "django.contrib.sessions.backends.db",
                               django_dir),
        lambda: django_session("cache on locmem", "django.contrib.sessions.backends.cache",
                               django_dir),
        lambda: django_session("cached_db", "django.contrib.sessions.backends.cached_db",
                               django_dir),
        lambda: django_session("file", "django.contrib.sessions.backends.file", django_dir),
        lambda: django_session("signed cookie",
                               "django.contrib.sessions.backends.signed_cookies", django_dir),
    ]

    def in_memory() -> Any:
        from starsessions import InMemoryStore

        return InMemoryStore()

    made += [lambda: starsessions_asgi(runner, "InMemoryStore", in_memory)]
    redis_clients: list[Any] = []
    if redis_up:
        def star_redis() -> Any:
            import redis.asyncio as aredis
            from starsessions.stores.redis import RedisStore

            client = aredis.Redis.from_url(REDIS_URL)
            redis_clients.append(client)
            return RedisStore(connection=client, prefix=f"{prefix}star:")

        made.append(lambda: starsessions_asgi(runner, "RedisStore", star_redis))
    made.append(lambda: starlette_cookie(runner))

    def encrypted_cookie() -> Any:
        from aiohttp_session.cookie_storage import EncryptedCookieStorage

        return EncryptedCookieStorage(secrets.token_bytes(32))

    made.append(lambda: aiohttp_session(runner, "EncryptedCookieStorage", encrypted_cookie))
    if redis_up:
        def aiohttp_redis() -> Any:
            import redis.asyncio as aredis
            from aiohttp_session.redis_storage import RedisStorage

            client = aredis.Redis.from_url(REDIS_URL)
            redis_clients.append(client)
            return RedisStorage(client, key_factory=lambda: f"{prefix}aio:{secrets.token_hex(16)}",
                                max_age=3600)

        made.append(lambda: aiohttp_session(runner, "RedisStorage", aiohttp_redis))
    try:
        yield made
    finally:
        for client in redis_clients:
            runner.run(client.aclose())
        if redis_up:
            _redis_cleanup(prefix)


def _redis_cleanup(prefix: str) -> None:
    import redis

    with redis.Redis.from_url(REDIS_URL) as client:
        keys = [*client.scan_iter(match=f"{prefix}*", count=1000),
                *client.scan_iter(match=f"AIOHTTP_SESSION_{prefix}*", count=1000)]
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])


def _drop_sql_tables(tag: str) -> None:
    table = f"websession_keys_{tag}"
    if _listening("127.0.0.1", 3306):
        import pymysql  # type: ignore[import-untyped, unused-ignore]

        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test",
                               autocommit=True)
        try:
            conn.cursor().execute(f"DROP TABLE IF EXISTS `{table}`")
        finally:
            conn.close()
    if _listening("127.0.0.1", 5432):
        import psycopg

        with psycopg.connect(POSTGRES_DSN, autocommit=True) as pg:
            pg.execute(f'DROP TABLE IF EXISTS "{table}"')


# -- command line -----------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.keys_bench",
        description="N concurrent requests on one session, each setting its own key: how "
                    "many keys does each session library keep?",
    )
    parser.add_argument("--requests", type=int, default=REQUESTS,
                        help=f"concurrent requests per burst (default {REQUESTS})")
    parser.add_argument("--runs", type=int, help=f"bursts per peer (default {RUNS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} bursts per peer")
    parser.add_argument("--only", help="run the peers whose name contains this text")
    add_argument(parser)
    args = parser.parse_args(argv)
    for option in ("requests", "runs"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    runs = args.runs or (QUICK_RUNS if args.quick else RUNS)
    requests = args.requests
    v = package_version
    print(f"websession {v('websession')} vs Beaker {v('beaker')}, Flask-Session "
          f"{v('flask-session')} (Flask {v('flask')}), Django {v('django')}, starsessions "
          f"{v('starsessions')} (starlette {v('starlette')}), aiohttp-session "
          f"{v('aiohttp-session')} (aiohttp {v('aiohttp')})")
    print(f"{requests} concurrent requests on one session, each setting its own key after "
          f"{WORK_SECONDS * 1000:.0f} ms of work; {runs} bursts per peer\n")
    collector = Collector("keys", "python -m bench.keys_bench", {
        "requests": requests, "runs": runs, "work_ms": WORK_SECONDS * 1000,
        "quick": args.quick})
    tag = f"{os.getpid()}"
    skipped: list[str] = []
    rows: list[dict[str, Any]] = []
    failed = False
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="keys-bench-")))
        runner = stack.enter_context(asyncio.Runner())
        factories = stack.enter_context(peers(scratch, runner, tag, skipped))
        stack.callback(_drop_sql_tables, tag)
        for make in factories:
            peer = make()
            try:
                if args.only and args.only.lower() not in peer.name.lower():
                    continue
                counts: list[int] = []
                started = time.perf_counter()
                for _ in range(runs):
                    counts.append(len(_kept(peer.name, peer.burst(requests), requests)))
                elapsed = time.perf_counter() - started
            except Exception as exc:  # one broken peer must not hide the others' figures
                print(f"  {peer.name:<58} FAILED: {type(exc).__name__}: {exc}")
                failed = True
                continue
            finally:
                peer.close()
            print_kept(peer.name, counts, requests, width=58, extra=f"; {elapsed:.1f} s")
            rows.append({"name": peer.name, "library": peer.library,
                         "framework": peer.framework, "store": peer.store, "ours": peer.ours,
                         "kept": counts})
    for reason in skipped:
        print(f"  skipped {reason}")
    collector.extra["skipped"] = skipped
    collector.keys_kept(
        "keys-kept", f"Keys kept: {requests} concurrent requests on one session, each "
        "setting its own key", requests, rows,
        notes="every peer a real in-process application of its framework over an "
              "in-memory or local store; the client keeps the last cookie it receives")
    collector.write(args.results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
