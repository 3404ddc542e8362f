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

import argparse
import asyncio
import os
import statistics
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
from .results import Collector, add_argument
from .runner import Result, Settings, measure, package_version, parse_counts

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


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- reporting ----------------------------------------------------------------------------


def _ratio(ours: Result, other: Result) -> float:
    # Rounds of both ran back to back: a noisy moment slows both and mostly cancels out.
    return statistics.median(o / p for o, p in zip(ours.rates, other.rates, strict=True))


def _throughput(collector: Collector, scenario: str, title: str, ours: Result,
                theirs: Result, goal: float) -> bool:
    ratio = _ratio(ours, theirs)
    met = ratio >= goal
    print(title)
    print(f"  {ours.name:<44} {ours.median:>7,.0f} req/s median {ours.best:>7,.0f} best")
    print(f"  {theirs.name:<44} {theirs.median:>7,.0f} req/s median {theirs.best:>7,.0f} best")
    low, high = min(o / p for o, p in zip(ours.rates, theirs.rates, strict=True)), max(
        o / p for o, p in zip(ours.rates, theirs.rates, strict=True))
    print(f"  websession / starsessions: {ratio:.2f}x (rounds {low:.2f}-{high:.2f}; "
          f"goal >= {goal:g}x){'' if met else '  BELOW GOAL'}")
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
    rows: dict[str, list[tuple[float, list[float]]]] = {name: [] for name in apps}
    names = list(apps)
    for round_no in range(max(3, settings.rounds // 2)):
        for name in names if round_no % 2 == 0 else names[::-1]:
            rows[name].append(runner.run(_concurrently(apps[name], per_client)))
    print(f"{CONCURRENCY} concurrent clients on one event loop, read-modify-write "
          f"({per_client} requests each, {len(rows[names[0]])} rounds)")
    series: list[dict[str, Any]] = []
    p99s: list[float] = []
    for name in names:
        rates = [rate for rate, _ in rows[name]]
        latencies = [lat for _, lats in rows[name] for lat in lats]
        p50, p99 = _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.99) * 1000
        print(f"  {name:<44} {statistics.median(rates):>7,.0f} req/s median"
              f"   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
        series.append({"name": name, "ours": name == names[0], "rates": rates,
                       "p50_ms": p50, "p99_ms": p99})
        p99s.append(p99)
    ratio = p99s[1] / p99s[0]
    met = ratio >= 1.0
    per_round = [
        _percentile(t, 0.99) / _percentile(o, 0.99)
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
    kept: dict[str, list[int]] = {}
    for name, app in apps.items():
        kept[name] = [len(_kept(name, runner.run(asgi_burst(app, KEYS_REQUESTS)),
                                KEYS_REQUESTS)) for _ in range(runs)]
        print(f"  {name:<44} kept {statistics.median(kept[name]):>4g} of {KEYS_REQUESTS} "
              f"(runs: {', '.join(map(str, kept[name]))})")
    # Kept beside the other figures, not as a keys_kept scenario: bench.report draws one
    # keys chart, bench.keys_bench's.
    collector.extra["keys_kept"] = {"requests": KEYS_REQUESTS, "runs": kept}


# -- entry point --------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fastapi_bench",
        description="FastAPI + websession against FastAPI + starsessions' RedisStore, on a "
                    "real Redis, in-process ASGI calls.")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--rounds", type=int, help="timed rounds per peer")
    parser.add_argument("--requests", type=int, help="requests per round")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if a goal is missed")
    add_argument(parser)
    return parse_counts(parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    base = QUICK if args.quick else FULL
    settings = Settings(rounds=args.rounds or base.rounds,
                        requests=args.requests or base.requests,
                        warmup=min(base.warmup, args.requests or base.warmup))
    try:
        with redis.Redis.from_url(args.redis, socket_connect_timeout=2) as probe:
            server = probe.info("server")["redis_version"]
    except redis.RedisError as exc:
        print(f"Redis is not reachable at {args.redis}: {exc}", file=sys.stderr)
        return 2
    v = package_version
    print(f"websession {v('websession')} vs starsessions {v('starsessions')}: FastAPI "
          f"{v('fastapi')} (starlette {v('starlette')}), redis-py {redis.__version__}, "
          f"Redis {server}")
    print(f"{settings.rounds} rounds x {settings.requests:,} requests per peer, peers "
          "alternating; each ratio is the median of per-round ratios\n")
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
            with redis.Redis.from_url(args.redis) as cleaner:
                keys = list(cleaner.scan_iter(match=tag + "*", count=1000))
                for start in range(0, len(keys), 500):
                    cleaner.delete(*keys[start:start + 500])
    collector.write(args.results)
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
