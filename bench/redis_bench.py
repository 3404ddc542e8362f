"""websession's Redis provider side by side with a raw redis-py loop and with its peers.

``python -m bench.redis_bench`` runs a read-modify-write loop — read a counter from the
session, increment it, store it, send the cookie back — against the Redis on
127.0.0.1:6379 (``--redis`` to change), through:

* WSGI: websession's middleware over :class:`~websession.providers.redis.RedisProvider`;
  a raw redis-py loop doing the same two round trips (GET, then SET with an expiry);
  Beaker's ``SessionMiddleware`` with its redis backend (``ext:redis``).
* ASGI: websession's middleware over the same provider's redis.asyncio twins; a raw
  redis.asyncio loop; then both session layers in a bare Starlette app, websession
  against starsessions' ``RedisStore``.
* 64 concurrent ASGI clients on one event loop: requests per second and latencies.

Goals: at least 0.9x the raw loops, at least 1.5x Beaker and starsessions. Two more rows
explain the figures without goals of their own: redis-py sending websession's own two
commands (its Lua read and compare-and-set) with no session layer around them, and a
read-only loop, where websession needs one round trip and its peers two. As in
:mod:`bench.runner`, peers alternate over several rounds and each verdict is the median of
per-round ratios. Every round checks that the counter reached the number of requests.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import redis
import redis.asyncio as aredis

import websession
from websession.providers._redis_commands import READ, UPDATE, update_args, value_of
from websession.providers.base import Record

from . import asgi, wsgi
from .client import CookieJar, RoundTripError, check_counter
from .results import Collector
from .runner import (
    Result,
    Settings,
    Timer,
    measure,
    package_version,
    start_store_bench,
    store_parser,
)

__all__ = ["main"]

GOAL_RAW = 0.95  # without the client-side cache
GOAL_RAW_CACHED = 1.3
GOAL_PEER = 1.5
GOAL_READ_ONLY_CACHED = 3.0  # vs starsessions
CONCURRENCY = 64
#: The two ways websession runs: with the client-side cache (the default) and without.
CACHED, UNCACHED = "cached", "uncached"

FULL = Settings(rounds=9, requests=2_000, warmup=500)
QUICK = Settings(rounds=3, requests=1_000, warmup=300)


# -- peers --------------------------------------------------------------------------------


def _manager(url: str, prefix: str, cache: str = CACHED) -> websession.Manager:
    config = (f'{{"save_path": "{url}", "poolsize": 100, "key_prefix": "{prefix}", '
              f'"client_cache": {"true" if cache == CACHED else "false"}}}')
    manager = websession.Manager("redis", {"cookieName": "gosessionid", "gclifetime": 3600,
                                           "ProviderConfig": config})
    provider: Any = manager.provider
    if cache == CACHED:  # tracking is set up in the background: wait for it
        provider.cache_stats()
        deadline = time.monotonic() + 5
        while not provider.cache_stats()["live"] and time.monotonic() < deadline:
            time.sleep(0.01)
    return manager


def _hit_rate(manager: websession.Manager) -> str:
    provider: Any = manager.provider
    stats = provider.cache_stats()
    return "" if stats is None else f" (cache hit rate {stats['hit_rate']:.0%})"


def _raw_sync(client: redis.Redis, key: str) -> Timer:
    """GET then SET EX of one counter: the two round trips a session request needs."""

    def run(requests: int) -> float:
        client.delete(key)
        started = time.perf_counter()
        for _ in range(requests):
            value = client.get(key)
            count = int(value or 0) + 1
            client.set(key, b"%d" % count, ex=3600)
        elapsed = time.perf_counter() - started
        check_counter("raw redis-py", str(count).encode(), requests)
        return elapsed

    return run


async def _raw_async(client: aredis.Redis, key: str, requests: int) -> float:
    await client.delete(key)
    count = 0
    started = time.perf_counter()
    for _ in range(requests):
        value = await client.get(key)
        count = int(value or 0) + 1
        await client.set(key, b"%d" % count, ex=3600)
    elapsed = time.perf_counter() - started
    check_counter("raw redis.asyncio", str(count).encode(), requests)
    return elapsed


def _commands_sync(redis_client: redis.Redis, key: str) -> Timer:
    """websession's two commands for a changing request, sent by plain redis-py."""
    client: Any = redis_client  # execute_command is untyped in redis-py

    def run(requests: int) -> float:
        client.delete(key)
        client.script_load(READ.source)
        client.script_load(UPDATE.source)
        client.set(key, value_of(Record(b"0", time.time() + 3600, 1), 3_600_000), px=3_600_000)
        started = time.perf_counter()
        for version in range(1, requests + 1):
            value = client.execute_command("EVALSHA", READ.sha, 1, key)
            count = int(value.rpartition(b":")[2]) + 1
            record = Record(b"%d" % count, time.time() + 3600, version + 1)
            client.execute_command("EVALSHA", UPDATE.sha, 1, key,
                                   *update_args(version, value_of(record, 3_600_000), 3_600_000))
        elapsed = time.perf_counter() - started
        check_counter("redis-py, websession's commands", str(count).encode(), requests)
        return elapsed

    return run


async def _commands_async(redis_client: aredis.Redis, key: str, requests: int) -> float:
    client: Any = redis_client  # execute_command is untyped in redis-py
    await client.delete(key)
    await client.script_load(READ.source)
    await client.script_load(UPDATE.source)
    await client.set(key, value_of(Record(b"0", time.time() + 3600, 1), 3_600_000), px=3_600_000)
    count = 0
    started = time.perf_counter()
    for version in range(1, requests + 1):
        value = await client.execute_command("EVALSHA", READ.sha, 1, key)
        count = int(value.rpartition(b":")[2]) + 1
        record = Record(b"%d" % count, time.time() + 3600, version + 1)
        await client.execute_command("EVALSHA", UPDATE.sha, 1, key,
                                     *update_args(version, value_of(record, 3_600_000),
                                                  3_600_000))
    elapsed = time.perf_counter() - started
    check_counter("redis.asyncio, websession's commands", str(count).encode(), requests)
    return elapsed


def _beaker() -> Any:
    from beaker.middleware import SessionMiddleware  # type: ignore[import-untyped]

    return SessionMiddleware


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def counter(request: Request) -> PlainTextResponse:
        session = request.session
        count = session.get("counter", 0) + 1
        session["counter"] = count
        return PlainTextResponse(str(count))

    return Starlette(routes=[Route("/", counter)])


# -- read-only requests -------------------------------------------------------------------
#
# The first request stores a random token; every later one only reads it back. The last
# answer must be the first one, so a session that did not survive cannot pass for fast.


def _token_wsgi(environ_key: str) -> Any:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        session = environ[environ_key]
        token = session.get("token")
        if token is None:
            token = session["token"] = uuid.uuid4().hex
            if environ_key == "beaker.session":
                session.save()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [token.encode()]

    return app


def _token_starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def token(request: Request) -> PlainTextResponse:
        session = request.session
        if "token" not in session:
            session["token"] = uuid.uuid4().hex
        return PlainTextResponse(session["token"])

    return Starlette(routes=[Route("/", token)])


def _check_token(peer: str, first: bytes, last: bytes) -> None:
    if len(first) != 32 or first != last:
        raise RoundTripError(f"{peer}: the session did not survive ({first!r}, {last!r})")


def _run_wsgi_token(name: str, app: Any, requests: int) -> float:
    jar = CookieJar()
    cookies: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        cookies[:] = [value for key, value in headers if key.lower() == "set-cookie"]

    bodies: list[bytes] = []
    started = time.perf_counter()
    for _ in range(requests):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "bench.local",
                   "SERVER_PORT": "80", "wsgi.url_scheme": "http", "HTTP_COOKIE": jar.header}
        result = app(environ, start_response)
        bodies.append(b"".join(result))
        if cookies:
            jar.update(cookies)
    elapsed = time.perf_counter() - started
    _check_token(name, bodies[0], bodies[-1])
    return elapsed


async def _run_asgi_token(name: str, app: Any, requests: int) -> float:
    jar = CookieJar()
    cookies: list[str] = []
    body: list[bytes] = []

    async def receive() -> asgi.Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: asgi.Message) -> None:
        if message["type"] == "http.response.start":
            cookies[:] = [v.decode("latin-1") for k, v in message["headers"]
                          if k == b"set-cookie"]
        else:
            body.append(message.get("body", b""))

    first = b""
    started = time.perf_counter()
    for _ in range(requests):
        scope = {"type": "http", "method": "GET", "scheme": "http", "path": "/",
                 "query_string": b"", "headers": [(b"cookie", jar.header.encode())]}
        body.clear()
        await app(scope, receive, send)
        first = first or b"".join(body)
        if cookies:
            jar.update(cookies)
    elapsed = time.perf_counter() - started
    _check_token(name, first, b"".join(body))
    return elapsed


def _raw_get(client: redis.Redis, key: str) -> Timer:
    def run(requests: int) -> float:
        client.set(key, uuid.uuid4().hex, ex=3600)
        started = time.perf_counter()
        for _ in range(requests):
            client.get(key)
        return time.perf_counter() - started

    return run


def _read_only_suite(url: str, tag: str, settings: Settings, runner: asyncio.Runner) -> bool:
    from starsessions import SessionAutoloadMiddleware, SessionMiddleware
    from starsessions.stores.redis import RedisStore

    sync_managers = [_manager(url, f"bench:{tag}:ro:", CACHED),
                     _manager(url, f"bench:{tag}:rou:", UNCACHED)]
    client = redis.Redis.from_url(url)
    cached, uncached = (websession.WSGISessionMiddleware(_token_wsgi("websession.session"), m)
                        for m in sync_managers)
    beaker = _beaker()(_token_wsgi("beaker.session"), {
        "session.type": "ext:redis", "session.url": url, "session.timeout": 3600})
    try:
        results = measure([
            ("websession (WSGI, cached): 0 round trips",
             partial(_run_wsgi_token, "websession", cached)),
            ("websession (WSGI, uncached): 1 round trip",
             partial(_run_wsgi_token, "websession", uncached)),
            ("raw redis-py (GET)", _raw_get(client, f"bench:{tag}:rawget")),
            ("Beaker (ext:redis): 2 round trips", partial(_run_wsgi_token, "beaker", beaker)),
        ], settings)
        hit_rate = _hit_rate(sync_managers[0])
    finally:
        for sync_manager in sync_managers:
            sync_manager.close()
        client.close()
    met = _report("Read-only requests, WSGI" + hit_rate, results[0],
                  [(results[1], None), (results[2], None), (results[3], None)])

    managers = [_manager(url, f"bench:{tag}:aro:", CACHED),
                _manager(url, f"bench:{tag}:arou:", UNCACHED)]
    store_client = aredis.Redis.from_url(url)
    ours_cached, ours_uncached = (
        websession.ASGISessionMiddleware(_token_starlette(), m) for m in managers)
    theirs = SessionMiddleware(
        SessionAutoloadMiddleware(_token_starlette()),
        store=RedisStore(connection=store_client, prefix=f"bench:{tag}:astar:"),
        cookie_name="session", cookie_https_only=False, lifetime=3600,
    )
    results = measure([
        ("websession (Starlette, cached): 0 round trips",
         lambda n: runner.run(_run_asgi_token("websession", ours_cached, n))),
        ("websession (Starlette, uncached): 1 round trip",
         lambda n: runner.run(_run_asgi_token("websession", ours_uncached, n))),
        ("starsessions (Starlette): 2 round trips",
         lambda n: runner.run(_run_asgi_token("starsessions", theirs, n))),
    ], settings)
    hit_rate = _hit_rate(managers[0])
    runner.run(store_client.aclose())
    for manager in managers:
        runner.run(manager.aclose())
    met &= _report("Read-only requests, ASGI in a bare Starlette app" + hit_rate, results[0],
                   [(results[2], GOAL_READ_ONLY_CACHED), (results[1], None)])
    return met


# -- reporting ----------------------------------------------------------------------------

#: What ``main`` writes for ``bench.report``; the reporting functions add to it.
_collector = Collector("redis", "python -m bench.redis_bench", {})

#: Store round trips per request of the series whose code the bench knows (its own loops
#: and websession's documented ones); the peers' are left out unless their labels say.
_ROUND_TRIPS = {
    "websession (WSGI, RedisProvider, cached)": 1,
    "websession (WSGI, RedisProvider, uncached)": 2,
    "websession (ASGI, redis.asyncio, cached)": 1,
    "websession (ASGI, redis.asyncio, uncached)": 2,
    "websession (Starlette, cached)": 1,
    "websession (Starlette, uncached)": 2,
    "websession (WSGI, cached): 0 round trips": 0,
    "websession (WSGI, uncached): 1 round trip": 1,
    "websession (Starlette, cached): 0 round trips": 0,
    "websession (Starlette, uncached): 1 round trip": 1,
    "websession (WSGI, RedisProvider)": 2,
    "raw redis-py (GET, SET EX)": 2,
    "redis-py sending websession's commands": 2,
    "websession (ASGI, redis.asyncio)": 2,
    "raw redis.asyncio (GET, SET EX)": 2,
    "redis.asyncio sending websession's commands": 2,
    "websession (Starlette)": 2,
    "websession (WSGI): 1 round trip": 1,
    "raw redis-py (GET)": 1,
    "Beaker (ext:redis): 2 round trips": 2,
    "websession (Starlette): 1 round trip": 1,
    "starsessions (Starlette): 2 round trips": 2,
}
_SCENARIO_IDS = {
    "Read-modify-write, WSGI, sync redis-py": "redis-wsgi",
    "Read-modify-write, WSGI, sync redis-py, uncached": "redis-wsgi-uncached",
    "Read-modify-write, ASGI, redis.asyncio": "redis-asgi",
    "Read-modify-write, ASGI, redis.asyncio, uncached": "redis-asgi-uncached",
    "Read-modify-write, ASGI, in a bare Starlette app": "redis-starlette",
    "Read-only requests, WSGI": "redis-read-only-wsgi",
    "Read-only requests, ASGI in a bare Starlette app": "redis-read-only-asgi",
}


def _ratio(ours: Result, other: Result) -> float:
    # Rounds of both ran back to back: a noisy moment slows both and mostly cancels out.
    return statistics.median(o / p for o, p in zip(ours.rates, other.rates, strict=True))


def _report(suite: str, ours: Result,
            others: Sequence[tuple[Result, float | None]]) -> bool:
    met = True
    print(f"{suite}")
    print(f"  {ours.name:<40} {ours.median:>7,.0f} req/s median {ours.best:>7,.0f} best")
    for other, goal in others:
        ratio = _ratio(ours, other)
        if goal is None:
            verdict = "(no goal: explains the figures)"
        else:
            ok = ratio >= goal
            met &= ok
            verdict = f"(goal >= {goal:g}x){'' if ok else '  BELOW GOAL'}"
        print(f"  {other.name:<40} {other.median:>7,.0f} req/s median {other.best:>7,.0f} best"
              f"   websession/it {ratio:.2f}x {verdict}")
    scenario = suite.partition(" (cache hit rate")[0]
    _collector.throughput(_SCENARIO_IDS.get(scenario, scenario), f"Redis: {scenario}", ours,
                          others,
                          round_trips=_ROUND_TRIPS,
                          notes="the Redis server on 127.0.0.1; rows without a goal explain "
                                "the figures")
    return met


# -- suites -------------------------------------------------------------------------------


def _wsgi_suite(url: str, tag: str, settings: Settings) -> bool:
    managers = {cache: _manager(url, f"bench:{tag}:wsgi{cache}:", cache)
                for cache in (CACHED, UNCACHED)}
    cached, uncached = (wsgi.WSGIPeer(
        f"websession (WSGI, RedisProvider, {cache})",
        websession.WSGISessionMiddleware(wsgi.counter_app("websession.session", save=False),
                                         manager),
        manager.close,
    ) for cache, manager in managers.items())
    beaker = wsgi.WSGIPeer("Beaker (ext:redis)", _beaker()(
        wsgi.counter_app("beaker.session", save=True),
        {"session.type": "ext:redis", "session.url": url, "session.timeout": 3600},
    ))
    client = redis.Redis.from_url(url)
    try:
        results = measure([
            (cached.name, partial(wsgi.run_wsgi, cached)),
            (uncached.name, partial(wsgi.run_wsgi, uncached)),
            ("raw redis-py (GET, SET EX)", _raw_sync(client, f"bench:{tag}:raw")),
            (beaker.name, partial(wsgi.run_wsgi, beaker)),
            ("redis-py sending websession's commands", _commands_sync(client,
                                                                    f"bench:{tag}:cmd")),
        ], settings)
        hit_rate = _hit_rate(managers[CACHED])
    finally:
        cached.close()
        uncached.close()
        client.close()
    met = _report("Read-modify-write, WSGI, sync redis-py" + hit_rate, results[0],
                  [(results[2], GOAL_RAW_CACHED), (results[3], GOAL_PEER)])
    return met & _report("Read-modify-write, WSGI, sync redis-py, uncached", results[1],
                         [(results[2], GOAL_RAW), (results[3], GOAL_PEER),
                          (results[4], None)])


def _asgi_suite(url: str, tag: str, settings: Settings,
                runner: asyncio.Runner) -> tuple[bool, dict[str, websession.Manager]]:
    managers = {cache: _manager(url, f"bench:{tag}:asgi{cache}:", cache)
                for cache in (CACHED, UNCACHED)}
    cached, uncached = (
        asgi.ASGIPeer(f"websession (ASGI, redis.asyncio, {cache})",
                      websession.ASGISessionMiddleware(asgi.counter_app, manager))
        for cache, manager in managers.items())
    client = aredis.Redis.from_url(url)
    results = measure([
        (cached.name, lambda n: runner.run(asgi.run_asgi(cached, n))),
        (uncached.name, lambda n: runner.run(asgi.run_asgi(uncached, n))),
        ("raw redis.asyncio (GET, SET EX)",
         lambda n: runner.run(_raw_async(client, f"bench:{tag}:araw", n))),
        ("redis.asyncio sending websession's commands",
         lambda n: runner.run(_commands_async(client, f"bench:{tag}:acmd", n))),
    ], settings)
    runner.run(client.aclose())
    met = _report("Read-modify-write, ASGI, redis.asyncio" + _hit_rate(managers[CACHED]),
                  results[0], [(results[2], GOAL_RAW_CACHED)])
    met &= _report("Read-modify-write, ASGI, redis.asyncio, uncached", results[1],
                   [(results[2], GOAL_RAW), (results[3], None)])

    from starsessions import SessionAutoloadMiddleware, SessionMiddleware
    from starsessions.stores.redis import RedisStore

    store_client = aredis.Redis.from_url(url)
    theirs = asgi.ASGIPeer("starsessions RedisStore (Starlette)", SessionMiddleware(
        SessionAutoloadMiddleware(_starlette_app()),
        store=RedisStore(connection=store_client, prefix=f"bench:{tag}:star:"),
        cookie_name="session", cookie_https_only=False, lifetime=3600,
    ))
    starlette_cached, starlette_uncached = (
        asgi.ASGIPeer(f"websession (Starlette, {cache})",
                      websession.ASGISessionMiddleware(_starlette_app(), manager))
        for cache, manager in managers.items())
    results = measure([
        (starlette_cached.name, lambda n: runner.run(asgi.run_asgi(starlette_cached, n))),
        (starlette_uncached.name, lambda n: runner.run(asgi.run_asgi(starlette_uncached, n))),
        (theirs.name, lambda n: runner.run(asgi.run_asgi(theirs, n))),
    ], settings)
    runner.run(store_client.aclose())
    met &= _report("Read-modify-write, ASGI, in a bare Starlette app", results[0],
                   [(results[2], GOAL_PEER)])
    met &= _report("Read-modify-write, ASGI, in a bare Starlette app, uncached", results[1],
                   [(results[2], GOAL_PEER)])
    return met, managers


async def _timed_client(app: asgi.ASGIApp, requests: int, latencies: list[float]) -> None:
    """One browser sending ``requests`` requests in a row, timing each one."""
    jar = CookieJar()
    set_cookies: list[str] = []
    body: list[bytes] = []

    async def receive() -> asgi.Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: asgi.Message) -> None:
        if message["type"] == "http.response.start":
            set_cookies[:] = [v.decode("latin-1") for k, v in message["headers"]
                              if k == b"set-cookie"]
        else:
            body.append(message.get("body", b""))

    for _ in range(requests):
        scope = {"type": "http", "method": "GET", "scheme": "http", "path": "/",
                 "query_string": b"", "headers": [(b"cookie", jar.header.encode())]}
        body.clear()
        started = time.perf_counter()
        await app(scope, receive, send)
        latencies.append(time.perf_counter() - started)
        if set_cookies:
            jar.update(set_cookies)
    check_counter("concurrent websession", b"".join(body), requests)


async def _raw_client(client: aredis.Redis, key: str, requests: int,
                      latencies: list[float]) -> None:
    await client.delete(key)
    for _ in range(requests):
        started = time.perf_counter()
        count = int(await client.get(key) or 0) + 1
        await client.set(key, b"%d" % count, ex=3600)
        latencies.append(time.perf_counter() - started)


async def _concurrently(make: Callable[[int, list[float]], Awaitable[None]], clients: int,
                        requests: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(make(i, latencies) for i in range(clients)))
    return requests * clients / (time.perf_counter() - started), latencies


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _one_of_many(app: asgi.ASGIApp, requests: int, client: int,
                 latencies: list[float]) -> Awaitable[None]:
    return _timed_client(app, requests, latencies)


def _concurrency_suite(url: str, tag: str, managers: dict[str, websession.Manager],
                       settings: Settings, runner: asyncio.Runner) -> bool:
    apps = {cache: websession.ASGISessionMiddleware(asgi.counter_app, manager)
            for cache, manager in managers.items()}
    client = aredis.Redis.from_url(url, max_connections=CONCURRENCY + 4)
    per_client = max(10, settings.requests // CONCURRENCY * 2)
    names = [*apps, "raw"]
    labels = {CACHED: "websession (ASGI, cached)", UNCACHED: "websession (ASGI, uncached)",
              "raw": "raw redis.asyncio (GET, SET EX)"}
    rows: dict[str, list[tuple[float, list[float]]]] = {name: [] for name in names}
    # Round -1 is a warm-up, not recorded: each side opens its 64 connections there. The
    # raw loop opened its connections untimed anyway (its DEL before the timed loop), a
    # session layer inside its first timed request, which put the one-off connection
    # set-up (~100 ms for 64) into websession's p99 alone.
    for round_no in range(-1, max(3, settings.rounds // 2)):
        for name in names if round_no % 2 == 0 else reversed(names):
            if name == "raw":
                row = runner.run(_concurrently(
                    lambda i, lat: _raw_client(client, f"bench:{tag}:c{i}", per_client, lat),
                    CONCURRENCY, per_client))
            else:
                row = runner.run(_concurrently(
                    partial(_one_of_many, apps[name], per_client), CONCURRENCY, per_client))
            if round_no >= 0:
                rows[name].append(row)
    runner.run(client.aclose())
    print(f"ASGI, {CONCURRENCY} concurrent clients on one event loop "
          f"({per_client} requests each, {len(rows['raw'])} rounds)")
    p99 = {}
    for name in names:
        rates = [rate for rate, _ in rows[name]]
        latencies = [lat for _, lats in rows[name] for lat in lats]
        p99[name] = _percentile(latencies, 0.99)
        print(f"  {labels[name]:<34} {statistics.median(rates):>8,.0f} req/s median"
              f"   p50 {_percentile(latencies, 0.5) * 1000:6.2f} ms"
              f"   p99 {p99[name] * 1000:6.2f} ms")
    met = True
    for name in apps:
        ratio = statistics.median(o / r for (o, _), (r, _) in zip(rows[name], rows["raw"],
                                                                    strict=True))
        ok = p99[name] <= p99["raw"]
        met &= ok
        print(f"  {labels[name]}/raw {ratio:.2f}x, p99 "
              f"{'<=' if ok else '>'} raw's (goal: <=){'' if ok else '  BELOW GOAL'}")
    _collector.latency(
        "redis-concurrency",
        f"Redis: {CONCURRENCY} concurrent ASGI clients on one event loop",
        [{"name": labels[name], "ours": name != "raw",
          "rates": [rate for rate, _ in rows[name]],
          "p50_ms": _percentile([lat for _, lats in rows[name] for lat in lats], 0.5) * 1000,
          "p99_ms": p99[name] * 1000}
         for name in names],
        notes=f"{per_client} read-modify-write requests per client, per round")
    return met


def _staleness(url: str, tag: str, samples: int = 200) -> None:
    """How long after another client's write a cached reader stops serving the old record:
    from the write's reply until the reader's cache, looked up in a loop, no longer has
    it (the invalidation arrived and was applied)."""
    from websession.providers.redis import RedisProvider

    reader = _manager(url, f"bench:{tag}:stale:").provider
    assert isinstance(reader, RedisProvider)
    cache = reader.client_cache
    assert cache is not None
    writer = redis.Redis.from_url(url)
    windows: list[float] = []
    stale_reads = 0
    sid = "5" * 32
    key = f"bench:{tag}:stale:{sid}"
    try:
        for version in range(1, samples + 1):
            record = Record(b"x", time.time() + 3600, version)
            writer.set(key, value_of(record, 3_600_000), px=3_600_000)
            while reader.read(sid) != record:  # until the reader holds this version
                pass
            newer = record._replace(version=version + 1)
            writer.set(key, value_of(newer, 3_600_000), px=3_600_000)
            written = time.perf_counter()
            # A cache lookup reads what has arrived first: it serves the old record
            # until the invalidation is there.
            while cache.get(key) is not None:
                stale_reads += 1
            windows.append(time.perf_counter() - written)
            if reader.read(sid) != newer:
                raise AssertionError("the reader did not see the new version")
    finally:
        writer.close()
        reader.close()
    windows.sort()
    print(f"Staleness window of the client-side cache ({samples} writes by another client, "
          "loopback): from the write's reply until the reader's cache drops the old record")
    print(f"  median {statistics.median(windows) * 1e6:,.0f} µs   "
          f"p99 {_percentile(windows, 0.99) * 1e6:,.0f} µs   max {windows[-1] * 1e6:,.0f} µs"
          f"   ({stale_reads} lookups served the old record in all)")
    _collector.extra["staleness_us"] = {
        "median": statistics.median(windows) * 1e6, "p99": _percentile(windows, 0.99) * 1e6,
        "max": windows[-1] * 1e6, "stale_reads": stale_reads, "samples": samples}


def _cleanup(url: str, tag: str, beaker_before: set[bytes]) -> None:
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"bench:{tag}:*", count=1000))
        keys += [k for k in client.scan_iter(match="beaker_cache:*", count=1000)
                 if k not in beaker_before]
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])


# -- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = store_parser("python -m bench.redis_bench",
                          "websession's Redis provider against raw redis-py, Beaker and "
                          "starsessions, on a real Redis.")
    started = start_store_bench(parser, argv, FULL, QUICK)
    if started is None:
        return 2
    args, settings, server = started
    with redis.Redis.from_url(args.redis, socket_connect_timeout=2) as probe:
        beaker_before = set(probe.scan_iter(match="beaker_cache:*", count=1000))
    v = package_version
    print(f"websession {v('websession')} (redis-py {redis.__version__}, Redis {server})"
          f" vs Beaker {v('beaker')}, starsessions {v('starsessions')}"
          f" (starlette {v('starlette')})")
    print(f"{settings.rounds} rounds x {settings.requests:,} requests per peer, peers "
          "alternating; each ratio is the median of per-round ratios\n")
    tag = f"{os.getpid()}"
    _collector.settings = {"rounds": settings.rounds, "requests": settings.requests,
                           "quick": args.quick, "concurrency": CONCURRENCY}
    _collector.extra["redis_server"] = server
    met = True
    try:
        met &= _wsgi_suite(args.redis, tag, settings)
        print()
        with asyncio.Runner() as runner:
            asgi_met, managers = _asgi_suite(args.redis, tag, settings, runner)
            met &= asgi_met
            print()
            met &= _concurrency_suite(args.redis, tag, managers, settings, runner)
            for manager in managers.values():
                runner.run(manager.aclose())
            print()
            met &= _read_only_suite(args.redis, tag, settings, runner)
        print()
        _staleness(args.redis, tag)
    finally:
        _cleanup(args.redis, tag, beaker_before)
    _collector.write(args.results)
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
