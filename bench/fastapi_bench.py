"""FastAPI on Redis: websession (``websession.fastapi``) against starsessions' RedisStore.

``python -m bench.fastapi_bench [--quick]``. Both sides are the same FastAPI application
with the same endpoints, each taking its session from a dependency, over the same Redis
server (websession's ``RedisProvider`` with redis.asyncio, starsessions' ``RedisStore``
with a redis.asyncio client), called in-process as ASGI applications (no network between
client and app, a real one between app and Redis):

* websession: ``SessionMiddleware(autoload=False)`` and ``SessionDep``, which reads the
  session where an endpoint asks for it;
* starsessions: its ``SessionMiddleware(store=RedisStore(...))`` and a dependency that
  awaits its ``load_session(request)``, then hands over ``request.session``.

Scenarios, peers alternating round by round, each verdict the median of per-round ratios:

* read-only requests (the first request stores a token, every later one reads it back;
  goal: websession >= 1.5x starsessions' requests per second);
* read-modify-write requests (a counter; goal >= 1.2x);
* 64 concurrent clients on one event loop, each with its own session, read-modify-write:
  p99 latency (goal: no worse than starsessions');
* keys kept: 30 concurrent requests on one session, each setting its own key after
  20 ms of work; the client keeps the last cookie it receives.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import redis
import redis.asyncio as aredis
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

import websession
from websession.fastapi import SessionMiddleware, load_session

from . import asgi
from .client import CookieJar, RoundTripError, check_counter
from .keys_bench import WORK_SECONDS, _kept, asgi_burst
from .results import Collector
from .runner import (
    Result,
    Settings,
    alternate,
    count_kept,
    delete_keys,
    measure,
    package_version,
    percentile,
    print_latencies,
    print_settings,
    print_throughput,
    start_store_bench,
    store_parser,
)

__all__ = ["main"]

GOAL_READ = 1.5
GOAL_WRITE = 1.2
CONCURRENCY = 64
KEYS_REQUESTS = 30

FULL = Settings(rounds=9, requests=2_000, warmup=500)
QUICK = Settings(rounds=3, requests=600, warmup=200)
KEY_RUNS = 5
QUICK_KEY_RUNS = 2


# -- the two applications -----------------------------------------------------------------


def _routes(app: FastAPI, dep: Any) -> FastAPI:
    """The same endpoints on both sides; ``dep`` is each side's session dependency
    (``Depends(...)``: a default value, since an annotation cannot name a local)."""

    @app.get("/")
    async def counter(session: Any = dep) -> Response:
        count = session.get("counter", 0) + 1
        session["counter"] = count
        return PlainTextResponse(str(count))

    @app.get("/token")
    async def token(session: Any = dep) -> Response:
        value = session.get("token")
        if value is None:
            value = session["token"] = uuid.uuid4().hex
        return PlainTextResponse(value)

    @app.get("/start")
    async def start(session: Any = dep) -> Response:
        session["start"] = True
        return PlainTextResponse("ok")

    @app.get("/set/{i}")
    async def set_key(i: int, session: Any = dep) -> Response:
        session.get("start")
        await asyncio.sleep(WORK_SECONDS)
        session[f"k{i}"] = 1
        return PlainTextResponse("ok")

    @app.get("/keys")
    async def keys(session: Any = dep) -> Response:
        return JSONResponse(sorted(session.keys()))

    return app


def websession_app(manager: websession.Manager) -> FastAPI:
    app = FastAPI()
    app.add_middleware(SessionMiddleware, manager=manager, autoload=False)
    return _routes(app, Depends(load_session))  # what SessionDep is


def starsessions_app(client: aredis.Redis, prefix: str) -> FastAPI:
    from starsessions import SessionMiddleware as StarMiddleware
    from starsessions import load_session
    from starsessions.stores.redis import RedisStore

    async def star_session(request: Request) -> dict[str, Any]:
        await load_session(request)
        return request.session

    app = FastAPI()
    app.add_middleware(StarMiddleware, store=RedisStore(connection=client, prefix=prefix),
                       cookie_name="session", cookie_https_only=False, lifetime=3600)
    return _routes(app, Depends(star_session))


def _manager(url: str, prefix: str) -> websession.Manager:
    config = f'{{"save_path": "{url}", "poolsize": 100, "key_prefix": "{prefix}"}}'
    return websession.Manager("redis", {"cookieName": "gosessionid", "gclifetime": 3600,
                                        "ProviderConfig": config})


# -- driving them -------------------------------------------------------------------------


class _Browser:
    """One client calling an ASGI app in-process, keeping its cookies."""

    def __init__(self, app: asgi.ASGIApp) -> None:
        self.app = app
        self.jar = CookieJar()
        self._set_cookies: list[str] = []
        self._chunks: list[bytes] = []

    async def _receive(self) -> asgi.Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def _send(self, message: asgi.Message) -> None:
        if message["type"] == "http.response.start":
            if message["status"] != 200:
                raise RoundTripError(f"status {message['status']}")
            self._set_cookies[:] = [v.decode("latin-1") for k, v in message["headers"]
                                    if k == b"set-cookie"]
        else:
            self._chunks.append(message.get("body", b""))

    async def get(self, path: str) -> bytes:
        scope = asgi._BASE_SCOPE.copy()
        scope["path"] = path
        scope["raw_path"] = path.encode()
        cookie = self.jar.header
        scope["headers"] = [*asgi._BASE_HEADERS,
                            *([(b"cookie", cookie.encode("latin-1"))] if cookie else [])]
        self._chunks.clear()
        self._set_cookies.clear()
        await self.app(scope, self._receive, self._send)
        if self._set_cookies:
            self.jar.update(self._set_cookies)
        return b"".join(self._chunks)


async def _read_only(name: str, app: asgi.ASGIApp, requests: int) -> float:
    browser = _Browser(app)
    first = await browser.get("/token")  # stores the token: not timed
    started = time.perf_counter()
    for _ in range(requests):
        last = await browser.get("/token")
    elapsed = time.perf_counter() - started
    if len(first) != 32 or last != first:
        raise RoundTripError(f"{name}: the session did not survive ({first!r}, {last!r})")
    return elapsed


async def _read_write(name: str, app: asgi.ASGIApp, requests: int) -> float:
    browser = _Browser(app)
    body = b""
    started = time.perf_counter()
    for _ in range(requests):
        body = await browser.get("/")
    elapsed = time.perf_counter() - started
    check_counter(name, body, requests)
    return elapsed


async def _timed_client(app: asgi.ASGIApp, requests: int, latencies: list[float]) -> None:
    browser = _Browser(app)
    body = b""
    for _ in range(requests):
        started = time.perf_counter()
        body = await browser.get("/")
        latencies.append(time.perf_counter() - started)
    check_counter("concurrent client", body, requests)


async def _concurrently(app: asgi.ASGIApp, requests: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(_timed_client(app, requests, latencies)
                           for _ in range(CONCURRENCY)))
    return requests * CONCURRENCY / (time.perf_counter() - started), latencies


# -- reporting ----------------------------------------------------------------------------


def _throughput(collector: Collector, scenario: str, title: str, ours: Result,
                theirs: Result, goal: float) -> bool:
    met = print_throughput(title, ours, [(theirs, goal)], width=44)
    collector.throughput(scenario, f"FastAPI on Redis: {title}", ours, [(theirs, goal)],
                         notes="in-process ASGI calls to a FastAPI app, the Redis server on "
                               "127.0.0.1; each side takes its session from a dependency")
    return met


# -- suites -------------------------------------------------------------------------------


def _throughput_suites(apps: dict[str, asgi.ASGIApp], settings: Settings,
                       runner: asyncio.Runner, collector: Collector) -> bool:
    names = list(apps)

    def timer(kind: Callable[[str, asgi.ASGIApp, int], Coroutine[Any, Any, float]],
              name: str) -> Callable[[int], float]:
        return lambda n: runner.run(kind(name, apps[name], n))

    read = measure([(n, timer(_read_only, n)) for n in names], settings)
    met = _throughput(collector, "fastapi-read-only", "Read-only requests", read[0], read[1],
                      GOAL_READ)
    print()
    write = measure([(n, timer(_read_write, n)) for n in names], settings)
    met &= _throughput(collector, "fastapi-read-modify-write", "Read-modify-write requests",
                       write[0], write[1], GOAL_WRITE)
    return met


def _concurrency_suite(apps: dict[str, asgi.ASGIApp], settings: Settings,
                       runner: asyncio.Runner, collector: Collector) -> bool:
    per_client = max(10, settings.requests // CONCURRENCY * 2)
    names = list(apps)

    def clients(name: str) -> Callable[[], tuple[float, list[float]]]:
        return lambda: runner.run(_concurrently(apps[name], per_client))

    rows = alternate([(name, clients(name)) for name in names], max(3, settings.rounds // 2))
    print(f"{CONCURRENCY} concurrent clients on one event loop, read-modify-write "
          f"({per_client} requests each, {len(rows[names[0]])} rounds)")
    series = print_latencies(rows, width=44)
    ratio = float(series[1]["p99_ms"]) / float(series[0]["p99_ms"])
    met = ratio >= 1.0
    per_round = [
        percentile(t, 0.99) / percentile(o, 0.99)
        for (_, o), (_, t) in zip(rows[names[0]], rows[names[1]], strict=True)]
    print(f"  p99: starsessions / websession {ratio:.2f}x (rounds "
          f"{min(per_round):.2f}-{max(per_round):.2f}; goal >= 1: websession no slower)"
          f"{'' if met else '  BELOW GOAL'}")
    collector.latency("fastapi-concurrency",
                      f"FastAPI on Redis: {CONCURRENCY} concurrent clients on one event loop",
                      series, notes=f"{per_client} read-modify-write requests per client, "
                                    "per round; in-process ASGI calls")
    return met


def _keys_suite(apps: dict[str, asgi.ASGIApp], runs: int, runner: asyncio.Runner,
                collector: Collector) -> None:
    print(f"Keys kept: {KEYS_REQUESTS} concurrent requests on one session, each setting its "
          f"own key after {WORK_SECONDS * 1000:.0f} ms of work ({runs} bursts)")

    def burst(name: str) -> Callable[[], int]:
        return lambda: len(_kept(name, runner.run(asgi_burst(apps[name], KEYS_REQUESTS)),
                                 KEYS_REQUESTS))

    count_kept([(name, burst(name)) for name in apps], runs, KEYS_REQUESTS, collector)


# -- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    started = start_store_bench(store_parser(
        "python -m bench.fastapi_bench",
        "FastAPI + websession against FastAPI + starsessions' RedisStore, on a real Redis, "
        "in-process ASGI calls."), argv, FULL, QUICK)
    if started is None:
        return 2
    args, settings, server = started
    v = package_version
    print(f"websession {v('websession')} vs starsessions {v('starsessions')}: FastAPI "
          f"{v('fastapi')} (starlette {v('starlette')}), redis-py {redis.__version__}, "
          f"Redis {server}")
    print_settings(settings)
    tag = f"bench:fastapi:{os.getpid()}:"
    collector = Collector("fastapi", "python -m bench.fastapi_bench", {
        "rounds": settings.rounds, "requests": settings.requests, "quick": args.quick,
        "concurrency": CONCURRENCY})
    collector.extra["redis_server"] = server
    met = True
    with asyncio.Runner() as runner:
        manager = _manager(args.redis, tag + "ws:")
        client = aredis.Redis.from_url(args.redis, max_connections=CONCURRENCY + 36)
        apps: dict[str, asgi.ASGIApp] = {
            "websession (FastAPI, SessionDep)": websession_app(manager),
            "starsessions RedisStore (FastAPI)": starsessions_app(client, tag + "star:"),
        }
        try:
            met &= _throughput_suites(apps, settings, runner, collector)
            print()
            met &= _concurrency_suite(apps, settings, runner, collector)
            print()
            _keys_suite(apps, QUICK_KEY_RUNS if args.quick else KEY_RUNS, runner, collector)
        finally:
            runner.run(client.aclose())
            runner.run(manager.aclose())
            delete_keys(args.redis, tag + "*")
    collector.write(args.results)
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
